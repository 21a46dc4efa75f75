#!/usr/bin/env bash
# The research folder's framing checks against headgate, cleartext and
# with TLS on both sides (the bytes after the handshake are framed by the
# same code, so the verdicts must be the same):
#
#   bash bench/framing.sh [path/to/own_fwd_framing.py]
#
# Routes x, chunked, close and smuggle-resp go to the checks' raw upstream
# on 127.0.0.1:19001 (https://localhost:19001 with TLS); session call-3
# carries tok-call-3, the route key is the checks' own.
set -euo pipefail
cd "$(dirname "$0")/.."
CHECKS=${1:-../shared/research/forwarding-core/tests/own_fwd_framing.py}
cargo build --release --quiet --bin headgate
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
. bench/certs.sh
make_certs "$work"
export HG_BENCH_KEY=bench-route-key-0123
status=0
for mode in cleartext tls; do
  dir="$work/$mode"; mkdir -p "$dir/routes"
  up=http://127.0.0.1:19001; tls_toml=""
  if [ "$mode" = tls ]; then
    up=https://localhost:19001
    tls_toml="[tls]
ca_file = \"$work/ca.pem\"
cert_file = \"$work/leaf.pem\"
key_file = \"$work/leaf.key\""
  fi
  printf 'listen = "127.0.0.1:28180"\nadmin_listen = "127.0.0.1:28190"\n%s\n' "$tls_toml" > "$dir/headgate.toml"
  for r in x chunked close smuggle-resp; do
    printf 'upstream = "%s/%s"\ninbound_auth = { header = "x-headgate-key", secret_env = "HG_BENCH_KEY" }\n[headers]\nauthorization = "Bearer << call.metadata.token >>"\n' "$up" "$r" > "$dir/routes/$r.toml"
  done
  RUST_LOG=error ./target/release/headgate serve --templates "$dir" --no-watch >"$dir/log" 2>&1 & pid=$!
  for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/28190) 2>/dev/null && break; sleep 0.1; done
  curl -sf -X PUT 127.0.0.1:28190/sessions/call-3 -d '{"call":{"metadata":{"token":"tok-call-3"}}}'
  echo "== $mode"
  args=(); [ "$mode" = tls ] && args=("$work/ca.pem" "$work/leaf.pem" "$work/leaf.key")
  python3 bench/framing.py "$CHECKS" 28180 "${args[@]}" | tee "$work/$mode.out" | grep -v '^PASS' || true
  grep -c '^PASS' "$work/$mode.out" | sed 's/^/passed: /'
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
done
diff <(sed 's/  .*//' "$work/cleartext.out") <(sed 's/  .*//' "$work/tls.out") >/dev/null \
  && echo "same verdicts over cleartext and TLS" || { echo "verdicts differ"; status=1; }
exit $status
