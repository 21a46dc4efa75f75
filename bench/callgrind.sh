#!/usr/bin/env bash
# Instructions per request under callgrind: the steady measure on a noisy
# machine. For each route shape (plain session token; MCP-aware; the token
# from a cached credential; and the plain one with TLS on both sides, a
# CA and leaf made for the run: wrk over HTTPS, the upstream on HTTPS and
# verified) it runs the release binary under
# `valgrind --tool=callgrind`, registers 1,000 sessions, warms every
# session up, zeroes the counters, drives `wrk -t1 -c8` through
# bench/load.lua for 10 s, dumps, and divides the instructions by the
# requests wrk completed. Eight connections, as the research scripts
# (../shared/research/forwarding-core/scripts/callgrind.sh) that set the
# 15k target measured; until 2026-12-02 this script drove four, which
# costs a proxy more runtime wake-ups per request (CONNS=4 gives those).
#
#   bash bench/callgrind.sh            # prints one table
#   KEEP=1 bash bench/callgrind.sh     # also keeps the profiles (/tmp/hg-callgrind.*)
#   SHAPES="plain mcp" bash bench/callgrind.sh   # only these shapes
#   CONNS=4 bash bench/callgrind.sh    # wrk connections (default 8)
#   VALGRIND_ARGS=--cache-sim=yes KEEP=1 bash bench/callgrind.sh
#                                      # also simulated cache misses (read
#                                      # them from the kept profile's totals)
#   CARGO_TARGET_DIR=target/lines CARGO_PROFILE_RELEASE_DEBUG=line-tables-only \
#     KEEP=1 bash bench/callgrind.sh   # profiles with source lines
#
# Per-function self cost of a kept profile:
#   callgrind_annotate --threshold=100 /tmp/hg-callgrind.cred.out | head -60
# (the default threshold of 99% shows only the thread entry point).
set -euo pipefail
cd "$(dirname "$0")/.."
for t in valgrind wrk; do command -v $t >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $t >/dev/null; }; done
# The binary on its own, as `cargo build --release` makes it: built in one
# command with an example, it would get the dev-dependencies' features
# too (tokio's `test-util`, a mutex on every clock read of the runtime).
cargo build --release --quiet --bin headgate
cargo build --release --quiet --example bench_upstream
# Honours CARGO_TARGET_DIR: a profile with line tables
# (CARGO_PROFILE_RELEASE_DEBUG=line-tables-only) builds beside the plain one.
T=${CARGO_TARGET_DIR:-target}/release
export HG_BENCH_KEY=bench-route-key-0123 HG_BENCH_CLIENT_SECRET=bench-client-secret
UP=127.0.0.1:28000
CONNS=${CONNS:-8}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
"$T/examples/bench_upstream" "$UP" >/dev/null 2>&1 &
# The TLS shape's upstream: the same, on HTTPS with a leaf of a CA made here.
UP_TLS=127.0.0.1:28001
. bench/certs.sh
make_certs "$work"
"$T/examples/bench_upstream" "$UP_TLS" "$work/leaf.pem" "$work/leaf.key" >/dev/null 2>&1 &

route() { printf 'upstream = "http://%s/bench"\ninbound_auth = { header = "x-headgate-key", secret_env = "HG_BENCH_KEY" }\n%s\n' "$UP" "$1"; }
shape() { # NAME PORT ADMIN_PORT MAIN ROUTE
  mkdir -p "$work/$1/routes"
  printf 'listen = "127.0.0.1:%s"\nadmin_listen = "127.0.0.1:%s"\n%s\n' "$2" "$3" "$4" > "$work/$1/headgate.toml"
  printf '%s' "$5" > "$work/$1/routes/bench.toml"
}
TOKEN='[headers]
authorization = "Bearer << call.metadata.token >>"'
CRED="[credentials.crm]
kind = \"token_exchange\"
token_url = \"http://$UP/token\"
client_id = \"bench\"
client_secret_env = \"HG_BENCH_CLIENT_SECRET\"
subject_token = \"<< call.metadata.token >>\""
shape plain 28086 28096 "" "$(route "$TOKEN")"
shape mcp 28088 28098 "" "$(route "$TOKEN
[mcp]
deny_tools = [\"delete_*\", \"admin_*\"]")"
shape cred 28087 28097 "$CRED" "$(route '[headers]
authorization = "Bearer << credentials.crm.access_token >>"')"
shape tls 28089 28099 "[tls]
ca_file = \"$work/ca.pem\"
cert_file = \"$work/leaf.pem\"
key_file = \"$work/leaf.key\"" "$(route "$TOKEN" | sed "s|http://$UP|https://localhost:${UP_TLS#*:}|")"

measure() { # NAME PORT ADMIN_PORT
  local name=$1 port=$2 admin=$3 out="/tmp/hg-callgrind.$1"
  rm -f "$out".*
  RUST_LOG=warn valgrind --tool=callgrind ${VALGRIND_ARGS:-} --callgrind-out-file="$out.%p" \
    "$T/headgate" serve --templates "$work/$name" --no-watch >"$work/$name.log" 2>&1 &
  local vpid=$!
  for _ in $(seq 1 300); do (exec 3<>/dev/tcp/127.0.0.1/$admin) 2>/dev/null && break; sleep 0.2; done
  python3 - "$admin" <<'PY'
import http.client, json, sys
c = http.client.HTTPConnection("127.0.0.1:" + sys.argv[1])
for i in range(1000):
    body = json.dumps({"call": {"id": f"call-{i}", "metadata": {"token": f"tok-call-{i}"}}})
    c.request("PUT", f"/sessions/call-{i}", body, {"content-type": "application/json"})
    r = c.getresponse(); r.read(); assert r.status == 204, r.status
PY
  local url="http://127.0.0.1:$port"; [ "$name" = tls ] && url="https://localhost:$port"
  wrk -t1 -c"$CONNS" -d6s -s bench/load.lua "$url" >/dev/null
  callgrind_control -z "$vpid" >/dev/null 2>&1
  local res; res=$(wrk -t1 -c"$CONNS" -d10s -s bench/load.lua "$url" | grep RESULT)
  callgrind_control -d "$vpid" >/dev/null 2>&1
  sleep 1; kill "$vpid"; wait "$vpid" 2>/dev/null || true
  local rps; rps=$(sed 's/.*rps=\([0-9]*\).*/\1/' <<<"$res")
  local total; total=$(callgrind_annotate "$out.$vpid.1" 2>/dev/null | awk '/PROGRAM TOTALS/{gsub(",","",$1); print $1}')
  [ -n "${KEEP:-}" ] && mv "$out.$vpid.1" "$out.out"
  rm -f "$out".[0-9]*
  echo "$name $((total / (rps * 10)))"
}

echo "| route | Ir/request |"
echo "|---|---|"
while read -r name ir; do echo "| $name | $ir |"; done < <(
  for s in ${SHAPES:-plain mcp cred tls}; do
    case $s in
      plain) measure plain 28086 28096 ;;
      mcp) measure mcp 28088 28098 ;;
      cred) measure cred 28087 28097 ;;
      tls) measure tls 28089 28099 ;;
    esac
  done
)
