#!/usr/bin/env bash
# A profile-guided build of headgate: builds an instrumented binary, runs
# it under the benchmark's four route shapes (a session token; MCP-aware;
# a cached credential; TLS in and out, as bench/callgrind.sh sets them up),
# merges the profile and builds `target/pgo/release/headgate` with it.
# The default build (`cargo build --release`) is unchanged; BENCHMARKS.md
# compares the two.
#
#   bash bench/pgo.sh                       # the binary: target/pgo/release/headgate
#   SECONDS_EACH=10 bash bench/pgo.sh       # wrk time per shape (default 5)
#
# Needs llvm-profdata of the toolchain's LLVM: `rustup component add
# llvm-tools` (installed here if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
for t in wrk; do command -v $t >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $t >/dev/null; }; done
SYSROOT=$(rustc --print sysroot)
HOST=$(rustc -vV | awk '/^host/{print $2}')
PROFDATA=$SYSROOT/lib/rustlib/$HOST/bin/llvm-profdata
[ -x "$PROFDATA" ] || rustup component add llvm-tools
work=$(mktemp -d)
data=$work/profiles
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

echo "== instrumented build (target/pgo-gen)"
RUSTFLAGS="-Cprofile-generate=$data" CARGO_TARGET_DIR=target/pgo-gen \
  cargo build --release --quiet --locked --bin headgate
cargo build --release --quiet --locked --example bench_upstream
GEN=target/pgo-gen/release/headgate
T=target/release

export HG_BENCH_KEY=bench-route-key-0123 HG_BENCH_CLIENT_SECRET=bench-client-secret
UP=127.0.0.1:28200 UP_TLS=127.0.0.1:28201
. bench/certs.sh
make_certs "$work"
"$T/examples/bench_upstream" "$UP" >/dev/null 2>&1 &
"$T/examples/bench_upstream" "$UP_TLS" "$work/leaf.pem" "$work/leaf.key" >/dev/null 2>&1 &

route() { printf 'upstream = "http://%s/bench"\ninbound_auth = { header = "x-headgate-key", secret_env = "HG_BENCH_KEY" }\n%s\n' "$UP" "$1"; }
shape() { # NAME PORT ADMIN_PORT MAIN ROUTE
  mkdir -p "$work/$1/routes"
  printf 'listen = "127.0.0.1:%s"\nadmin_listen = "127.0.0.1:%s"\n%s\n' "$2" "$3" "$4" > "$work/$1/headgate.toml"
  printf '%s' "$5" > "$work/$1/routes/bench.toml"
}
TOKEN='[headers]
authorization = "Bearer << call.metadata.token >>"'
shape plain 28286 28296 "" "$(route "$TOKEN")"
shape mcp 28288 28298 "" "$(route "$TOKEN
[mcp]
deny_tools = [\"delete_*\", \"admin_*\"]")"
shape cred 28287 28297 "[credentials.crm]
kind = \"token_exchange\"
token_url = \"http://$UP/token\"
client_id = \"bench\"
client_secret_env = \"HG_BENCH_CLIENT_SECRET\"
subject_token = \"<< call.metadata.token >>\"" "$(route '[headers]
authorization = "Bearer << credentials.crm.access_token >>"')"
shape tls 28289 28299 "[tls]
ca_file = \"$work/ca.pem\"
cert_file = \"$work/leaf.pem\"
key_file = \"$work/leaf.key\"" "$(route "$TOKEN" | sed "s|http://$UP|https://localhost:${UP_TLS#*:}|")"

train() { # NAME PORT ADMIN_PORT
  RUST_LOG=warn "$GEN" serve --templates "$work/$1" --no-watch >"$work/$1.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/$3) 2>/dev/null && break; sleep 0.1; done
  python3 - "$3" <<'PY'
import http.client, json, sys
c = http.client.HTTPConnection("127.0.0.1:" + sys.argv[1])
for i in range(1000):
    body = json.dumps({"call": {"id": f"call-{i}", "metadata": {"token": f"tok-call-{i}"}}})
    c.request("PUT", f"/sessions/call-{i}", body, {"content-type": "application/json"})
    r = c.getresponse(); r.read(); assert r.status == 204, r.status
PY
  local url="http://127.0.0.1:$2"; [ "$1" = tls ] && url="https://localhost:$2"
  echo "   $1: $(wrk -t2 -c32 -d"${SECONDS_EACH:-5}s" -s bench/load.lua "$url" | grep RESULT)"
  # A clean exit writes the profile.
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
}
echo "== training"
train plain 28286 28296
train mcp 28288 28298
train cred 28287 28297
train tls 28289 28299

echo "== merging $(ls "$data" | wc -l) profile(s)"
"$PROFDATA" merge -o "$work/merged.profdata" "$data"
echo "== optimized build (target/pgo)"
RUSTFLAGS="-Cprofile-use=$work/merged.profdata" CARGO_TARGET_DIR=target/pgo \
  cargo build --release --quiet --locked --bin headgate
echo "target/pgo/release/headgate"
