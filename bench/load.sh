#!/usr/bin/env bash
# Load benchmark: headgate vs nginx vs HAProxy doing the same per-session
# injection, loopback only, bounded in time. One command from a clean
# checkout; prints one table; exits non-zero if any proxy mis-injected.
#
#   bash bench/load.sh            # DURATION=20 CONNECTIONS=64 by default
#
# 1. direct to the upstream (the floor; wrk sends the right token itself)
# 2. headgate: authorization = "Bearer << call.metadata.token >>", 1,000
#    sessions, X-Call-Id rotating over them, inbound auth on
# 3. nginx (2 workers): map $http_x_call_id → token from a 1,000-line map file
# 4. HAProxy (nbthread 2): set-header from map(tokens.map)
# 5. headgate-redis: as 2, with the sessions in Redis (a local redis-server)
# Then SSE relay latency through each (1,000 events, 5 ms apart).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-20}
WARMUP=${WARMUP:-5}
CONNS=${CONNECTIONS:-64}
EVENTS=${EVENTS:-1000}
export HG_BENCH_KEY=bench-route-key-0123
UP=127.0.0.1:18000; HG=127.0.0.1:18080; HG_ADMIN=127.0.0.1:18090; NGX=127.0.0.1:18081; HAP=127.0.0.1:18082
HGR=127.0.0.1:18083; HGR_ADMIN=127.0.0.1:18093; REDIS_PORT=16379

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
command -v redis-server >/dev/null || need+=(redis-server)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)

echo "== building (release)"
cargo build --release --quiet --bin headgate --example bench_upstream --example sse_latency

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null; sleep 0.2; rm -rf "$work"; }
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

./target/release/examples/bench_upstream "$UP" 2>/dev/null & pids+=($!)

# headgate config + 1,000 sessions.
mkdir -p "$work/hg/routes"
cat > "$work/hg/headgate.toml" <<TOML
listen = "$HG"
admin_listen = "$HG_ADMIN"
TOML
cat > "$work/hg/routes/bench.toml" <<TOML
upstream = "http://$UP/bench"
inbound_auth = { header = "x-headgate-key", secret_env = "HG_BENCH_KEY" }
[headers]
authorization = "Bearer << call.metadata.token >>"
TOML
RUST_LOG=warn ./target/release/headgate serve --templates "$work/hg" --no-watch >"$work/hg.log" 2>&1 & pids+=($!)

# The same headgate on Redis.
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --daemonize no --loglevel warning >"$work/redis.log" 2>&1 & pids+=($!)
cp -r "$work/hg" "$work/hgr"
cat > "$work/hgr/headgate.toml" <<TOML
listen = "$HGR"
admin_listen = "$HGR_ADMIN"
[store]
kind = "redis"
url = "redis://127.0.0.1:$REDIS_PORT/0"
TOML
wait_redis() { for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/$REDIS_PORT) 2>/dev/null && return 0; sleep 0.1; done; }
wait_redis
RUST_LOG=warn ./target/release/headgate serve --templates "$work/hgr" --no-watch >"$work/hgr.log" 2>&1 & pids+=($!)

# Map files for nginx and HAProxy.
for i in $(seq 0 999); do echo "call-$i tok-call-$i;"; done > "$work/tokens.nginx"
for i in $(seq 0 999); do echo "call-$i tok-call-$i"; done > "$work/tokens.map"

cat > "$work/nginx.conf" <<NGX
worker_processes 2;
pid $work/nginx.pid;
error_log $work/nginx.err warn;
events { worker_connections 8192; }
http {
  access_log off;
  map \$http_x_call_id \$token { include $work/tokens.nginx; }
  upstream up { server $UP; keepalive 128; }
  server {
    listen $NGX;
    location / {
      if (\$http_x_headgate_key != "$HG_BENCH_KEY") { return 401; }
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Authorization "Bearer \$token";
      proxy_set_header x-headgate-key "";
      proxy_buffering off;
      proxy_pass http://up;
    }
  }
}
NGX
"$NGINX" -c "$work/nginx.conf" -p "$work"

hap_cfg() {
cat <<HAP
global
  nbthread 2
  maxconn 8000
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
  $1
frontend fe
  bind $HAP
  http-request deny deny_status 401 unless { req.hdr(x-headgate-key) -m str $HG_BENCH_KEY }
  http-request set-header Authorization "Bearer %[req.hdr(x-call-id),map($work/tokens.map)]"
  http-request del-header x-headgate-key
  default_backend be
backend be
  http-reuse always
  server s1 $UP
HAP
}
start_haproxy() { hap_cfg "$1" > "$work/haproxy.cfg"; "$HAPROXY" -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 & HAP_PID=$!; pids+=($HAP_PID); }
start_haproxy ""

wait_port() { for _ in $(seq 1 100); do (exec 3<>/dev/tcp/${1%:*}/${1#*:}) 2>/dev/null && return 0; sleep 0.1; done; echo "nothing listening on $1"; exit 1; }
for p in $UP $HG $HG_ADMIN $NGX $HAP $HGR $HGR_ADMIN; do wait_port "$p"; done

echo "== registering 1,000 sessions (memory and Redis headgates)"
python3 - "$HG_ADMIN" "$HGR_ADMIN" <<'PY'
import http.client, json, sys
for admin in sys.argv[1:]:
  c = http.client.HTTPConnection(admin)
  for i in range(1000):
    body = json.dumps({"call": {"id": f"call-{i}", "metadata": {"token": f"tok-call-{i}", "tenant": "acme"}}})
    c.request("PUT", f"/sessions/call-{i}", body, {"content-type": "application/json"})
    r = c.getresponse(); r.read()
    assert r.status == 204, (admin, r.status)
PY

mismatches() { curl -s "http://$UP/_stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["mismatch"])'; }

declare -A RPS P50 P99 P999 BAD
run() {
  local name=$1 addr=$2 mode=${3:-}
  wrk -t2 -c"$CONNS" -d"${WARMUP}s" -s bench/load.lua "http://$addr" -- $mode >/dev/null 2>&1 || true
  local before; before=$(mismatches)
  local out; out=$(wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency -s bench/load.lua "http://$addr" -- $mode 2>&1 | grep RESULT)
  local after; after=$(mismatches)
  RPS[$name]=$(sed -E 's/.*rps=([0-9]+).*/\1/' <<<"$out")
  P50[$name]=$(sed -E 's/.*p50=([0-9.]+).*/\1/' <<<"$out")
  P99[$name]=$(sed -E 's/.*p99=([0-9.]+).*/\1/' <<<"$out")
  P999[$name]=$(sed -E 's/.*p999=([0-9.]+).*/\1/' <<<"$out")
  local errs; errs=$(sed -E 's/.*errors=([0-9]+) non2xx=([0-9]+).*/\1+\2/' <<<"$out")
  BAD[$name]="$((after - before)) mis-injected, $((errs)) errors"
  echo "   $name: $out (${BAD[$name]})"
}

echo "== throughput: $CONNS connections, ${DURATION}s each after ${WARMUP}s warm-up"
run direct "$UP" direct
run headgate "$HG"
run nginx "$NGX"
run haproxy "$HAP"
run headgate-redis "$HGR"

best=$(( RPS[nginx] > RPS[haproxy] ? RPS[nginx] : RPS[haproxy] ))
echo
printf "| %-14s | %9s | %8s | %8s | %9s | %-26s |\n" proxy "req/s" "p50 ms" "p99 ms" "p99.9 ms" "checked"
printf "|----------------|-----------|----------|----------|-----------|----------------------------|\n"
for n in direct headgate nginx haproxy headgate-redis; do
  printf "| %-14s | %9s | %8s | %8s | %9s | %-26s |\n" "$n" "${RPS[$n]}" "${P50[$n]}" "${P99[$n]}" "${P999[$n]}" "${BAD[$n]}"
done
python3 - "${RPS[headgate]}" "${RPS[nginx]}" "${RPS[haproxy]}" "${RPS[headgate-redis]}" <<'PY'
import sys
h, n, a, r = map(float, sys.argv[1:])
print(f"\nheadgate/nginx = {h/n:.2f}x, headgate/haproxy = {h/a:.2f}x, headgate/best = {h/max(n,a):.2f}x, headgate-redis/headgate = {r/h:.2f}x")
PY

echo
echo "== SSE relay latency: $EVENTS events, 5 ms apart"
kill "$HAP_PID" 2>/dev/null || true; wait "$HAP_PID" 2>/dev/null || true
start_haproxy "option http-no-delay"; wait_port "$HAP"
sse() {
  local name=$1 addr=$2; shift 2
  local out; out=$(./target/release/examples/sse_latency "http://$addr/bench/sse?n=$EVENTS&gap_ms=5" "X-Call-Id: call-7" "$@" | grep RESULT)
  echo "   $name: $out"
}
sse direct "$UP" "Authorization: Bearer tok-call-7"
sse headgate "$HG" "x-headgate-key: $HG_BENCH_KEY"
sse nginx "$NGX" "x-headgate-key: $HG_BENCH_KEY"
sse "haproxy (http-no-delay)" "$HAP" "x-headgate-key: $HG_BENCH_KEY"

total_bad=$(mismatches)
echo
echo "upstream saw $total_bad request(s) with a wrong or missing token in proxied runs"
for n in headgate nginx haproxy headgate-redis; do
  case "${BAD[$n]}" in 0\ mis-injected*) ;; *) echo "INVALID RUN: $n ${BAD[$n]}"; exit 1;; esac
done
