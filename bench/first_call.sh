#!/usr/bin/env bash
# The latency of a call's first tool call, with and without `prefetch`,
# against the real oidc-provider whose token endpoint answers after
# AS_DELAY_MS (a real identity provider's hundreds of milliseconds).
# Loopback only, bounded: SESSIONS calls per mode, interleaved.
#
#   bash bench/first_call.sh                    # SESSIONS=20 AS_DELAY_MS=150
#
# Per session: PUT /sessions/{id} (as a platform's call-started webhook
# would store it), GREETING_MS of silence (the agent's greeting, before
# any tool call), then the first tool call and a second one (warm), each
# timed by curl (time_total). Two routes, one credential each, the same
# refresh-token grant: `prefetch = true` and without. Prints each mode's
# median first and warm call, in milliseconds.
set -euo pipefail
cd "$(dirname "$0")/.."
SESSIONS=${SESSIONS:-20}
AS_DELAY_MS=${AS_DELAY_MS:-150}
GREETING_MS=${GREETING_MS:-500}

[ -d tests/interop/node/node_modules/oidc-provider ] \
  || npm ci --prefix tests/interop/node --no-audit --no-fund --loglevel=error
cargo build --release --locked -q
work=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }

as_port=$(free_port); up_port=$(free_port); hg_port=$(free_port); admin_port=$(free_port)
node tests/interop/node/auth_server.mjs "$as_port" 600 opaque "$AS_DELAY_MS" >/dev/null 2>&1 & pids+=($!)
# The upstream: answers every POST with a JSON-RPC result at once, head
# and body in one write (written apart, Nagle's algorithm and a delayed
# ACK add 40 ms to some answers: the upstream's cost, not the proxy's).
python3 - "$up_port" <<'PY' >/dev/null 2>&1 & pids+=($!)
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        body = b'{"jsonrpc":"2.0","id":1,"result":{}}'
        head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body)
        self.wfile.write(head + body)
    def log_message(self, *a):
        pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
wait_port "$as_port"; wait_port "$up_port"

mkdir -p "$work/routes"
cred() {
  cat <<EOF
[credentials.$1]
kind = "refresh_token"
token_url = "http://127.0.0.1:$as_port/token"
client_id = "headgate"
client_secret_env = "BENCH_CLIENT_SECRET"
refresh_token_from = "call.metadata.refresh_token"
resource = "http://crm.test/mcp"
prefetch = $2
EOF
}
{
  echo "admin_token_env = \"BENCH_ADMIN_TOKEN\""
  cred crm_pre true
  cred crm_lazy false
} > "$work/headgate.toml"
for mode in pre lazy; do
  printf 'upstream = "http://127.0.0.1:%s"\ninbound_auth = "none"\n[headers]\nauthorization = "Bearer << credentials.crm_%s.access_token >>"\n' \
    "$up_port" "$mode" > "$work/routes/$mode.toml"
done
BENCH_CLIENT_SECRET=hg-client-secret BENCH_ADMIN_TOKEN=bench-admin-token RUST_LOG=warn \
  target/release/headgate serve --templates "$work" --listen "127.0.0.1:$hg_port" \
  --admin-listen "127.0.0.1:$admin_port" >"$work/hg.log" 2>&1 & pids+=($!)
wait_port "$hg_port"

call() {
  curl -s -o /dev/null -w '%{time_total}\n' -X POST "http://127.0.0.1:$hg_port/$1/mcp" \
    -H "x-call-id: $2" -H 'content-type: application/json' \
    -d '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"lookup"}}'
}
for i in $(seq "$SESSIONS"); do
  for mode in pre lazy; do
    rt=$(curl -s -X POST "http://127.0.0.1:$as_port/test/mint?user=u$i$mode" | python3 -c 'import json,sys; print(json.load(sys.stdin)["refresh_token"])')
    id="call-$mode-$i"
    curl -s -o /dev/null -X PUT "http://127.0.0.1:$admin_port/sessions/$id" \
      -H 'authorization: Bearer bench-admin-token' -H 'content-type: application/json' \
      -d "{\"call\":{\"metadata\":{\"refresh_token\":\"$rt\"}}}"
    sleep "$(python3 -c "print($GREETING_MS/1000)")"
    echo "$mode first $(call "$mode" "$id")" >> "$work/times"
    echo "$mode warm $(call "$mode" "$id")" >> "$work/times"
  done
done

python3 - "$work/times" "$SESSIONS" "$AS_DELAY_MS" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    mode, which, t = line.split()
    rows.setdefault((mode, which), []).append(float(t) * 1000)
print(f"first tool call of a call, {sys.argv[2]} calls per mode, token endpoint answering after {sys.argv[3]} ms")
print(f"{'mode':<16}{'first p50 ms':>14}{'first max ms':>14}{'warm p50 ms':>14}")
for mode, name in (("pre", "prefetch"), ("lazy", "no prefetch")):
    first, warm = rows[(mode, "first")], rows[(mode, "warm")]
    print(f"{name:<16}{statistics.median(first):>14.2f}{max(first):>14.2f}{statistics.median(warm):>14.2f}")
PY
