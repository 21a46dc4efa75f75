#!/usr/bin/env bash
# Load benchmark: headgate vs nginx vs HAProxy doing the same per-session
# injection, loopback only, bounded in time. One command from a clean
# checkout; prints one results table (then where the CPU went); exits
# non-zero if any proxy mis-injected.
#
#   bash bench/load.sh            # DURATION=20 CONNECTIONS=64 ROUNDS=5 by default
#   PROXIES="headgate nginx haproxy" bash bench/load.sh   # only these rows (round 1 in this order, then rotated)
#   SSE_ROUNDS=5 bash bench/load.sh                       # SSE rounds (3)
#   TLS=out bash bench/load.sh      # the upstream on HTTPS, every proxy verifying it
#   HG_SESSIONS=10 bash bench/load.sh   # wrk rotates over 10 of the 1,000
#                                   # sessions: their state stays in cache
#   TLS=in,out bash bench/load.sh   # and wrk to every proxy over HTTPS too
#   PERF=1 bash bench/load.sh       # also samples each proxy (perf, 8 s of
#                                   # the last round) and prints where its
#                                   # CPU went, function by function
#   ALT_BIN=target/pgo/release/headgate PROXIES="headgate headgate-alt nginx haproxy" \
#     bash bench/load.sh              # two builds of headgate side by side
#                                   # (rounds rotate the order, as the run
#                                   # first in a round can gain ~1.5%,
#                                   # BENCHMARKS.md: ROUNDS a multiple of the
#                                   # proxies named, here 4 or 8, gives each
#                                   # every place equally often)
#
# With TLS, a test CA and a leaf certificate for localhost are made for the
# run (openssl); the upstream speaks HTTP/1.1 over TLS; headgate trusts the
# CA by `[tls] ca_file`, nginx by `proxy_ssl_verify` (with
# `proxy_ssl_session_reuse`), HAProxy by `ssl verify required`. The SSE
# latency part runs on cleartext shapes only (its client speaks no TLS).
#
# 1. direct to the upstream (the floor; wrk sends the right token itself)
# 2. headgate: authorization = "Bearer << call.metadata.token >>", 1,000
#    sessions, X-Call-Id rotating over them, inbound auth on
# 3. nginx (2 workers): map $http_x_call_id → token from a 1,000-line map file
# 4. HAProxy (nbthread 2): set-header from map(tokens.map)
# 5. headgate-redis: as 2, with the sessions in Redis (a local redis-server)
# 6. headgate-mcp: as 2, on an MCP route ([mcp] deny_tools): the JSON-RPC
#    body read and judged before forwarding (the cost of MCP awareness)
# 7. headgate-cred: as 2, with the token from an obtained credential
#    instead of the session: authorization = "Bearer << credentials.crm.
#    access_token >>", an RFC 8693 exchange of the session's token at the
#    bench upstream's /token, cached per subject token (the cost of a
#    cached credential).
#    Afterwards its token requests are read from /metrics: one per
#    session, not one per request.
# 8. headgate-alt (only when PROXIES names it): as 2, run by another
#    build, ALT_BIN=path: an A/B of two builds (a profile-guided one,
#    another commit's) in the same interleaved rounds.
# Then SSE relay latency through each (1,000 events, 5 ms apart), in
# SSE_ROUNDS interleaved rounds: the table is each proxy's median p50/p99.
#
# During each measured run it also reads where the machine's CPU went
# (/proc): the proxy's own user and kernel time per request, the rest (wrk,
# the upstream, softirq), idle, and the proxy's context switches per
# request (all its threads). From that, "ceiling if user = 0": the
# req/s this run would reach if the proxy spent no user-space CPU at all and
# everything else stayed as measured. It bounds what any proxy making the
# same system calls can get out of this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-20}
WARMUP=${WARMUP:-5}
CONNS=${CONNECTIONS:-64}
EVENTS=${EVENTS:-1000}
ROUNDS=${ROUNDS:-5}
SSE_ROUNDS=${SSE_ROUNDS:-3}
# The throughput rows to run (the ratios need headgate, nginx and haproxy).
PROXIES=${PROXIES:-direct headgate nginx haproxy headgate-redis headgate-mcp headgate-cred}
export HG_BENCH_KEY=bench-route-key-0123
UP=127.0.0.1:18000; HG=127.0.0.1:18080; HG_ADMIN=127.0.0.1:18090; NGX=127.0.0.1:18081; HAP=127.0.0.1:18082
HGR=127.0.0.1:18083; HGR_ADMIN=127.0.0.1:18093; REDIS_PORT=16379
HGM=127.0.0.1:18084; HGM_ADMIN=127.0.0.1:18094
HGC=127.0.0.1:18085; HGC_ADMIN=127.0.0.1:18095
HGA=127.0.0.1:18086; HGA_ADMIN=127.0.0.1:18096
ALT=""; [[ " $PROXIES " == *" headgate-alt "* ]] && ALT=1
if [ -n "$ALT" ] && [ ! -x "${ALT_BIN:-}" ]; then echo "headgate-alt needs ALT_BIN, the path of a headgate binary"; exit 2; fi
TLS=${TLS:-}
case ",$TLS," in *,out,*) UPS=https ;; *) UPS=http ;; esac
case ",$TLS," in *,in,*) FRONT=https ;; *) FRONT=http ;; esac

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
command -v redis-server >/dev/null || need+=(redis-server)
[ -n "${PERF:-}" ] && ! command -v perf >/dev/null && need+=(linux-perf)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)

echo "== building (release)"
# The binary on its own, as `cargo build --release` makes it: built in one
# command with an example, it would get the dev-dependencies' features
# too (tokio's `test-util`, a mutex on every clock read of the runtime).
cargo build --release --quiet --bin headgate
cargo build --release --quiet --example bench_upstream --example sse_latency

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null; sleep 0.2; rm -rf "$work"; }
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# A CA and a leaf for localhost and 127.0.0.1, made for this run.
. bench/certs.sh
[ -n "$TLS" ] && make_certs "$work"
UP_TLS=(); [ "$UPS" = https ] && UP_TLS=("$work/leaf.pem" "$work/leaf.key")
./target/release/examples/bench_upstream "$UP" "${UP_TLS[@]}" 2>/dev/null & pids+=($!)
# Appended to every headgate's config: its TLS, each side as TLS says.
TLS_TOML=""
[ -n "$TLS" ] && TLS_TOML=$'[tls]\n'
[ "$UPS" = https ] && TLS_TOML+="ca_file = \"$work/ca.pem\""$'\n'
[ "$FRONT" = https ] && TLS_TOML+="cert_file = \"$work/leaf.pem\""$'\n'"key_file = \"$work/leaf.key\""$'\n'
UPHOST=$UP; [ "$UPS" = https ] && UPHOST=localhost:${UP#*:}

# headgate config + 1,000 sessions.
mkdir -p "$work/hg/routes"
cat > "$work/hg/headgate.toml" <<TOML
listen = "$HG"
admin_listen = "$HG_ADMIN"
TOML
cat > "$work/hg/routes/bench.toml" <<TOML
upstream = "$UPS://$UPHOST/bench"
inbound_auth = { header = "x-headgate-key", secret_env = "HG_BENCH_KEY" }
[headers]
authorization = "Bearer << call.metadata.token >>"
TOML
printf '%s' "$TLS_TOML" >> "$work/hg/headgate.toml"
RUST_LOG=warn ./target/release/headgate serve --templates "$work/hg" --no-watch >"$work/hg.log" 2>&1 & HG_PID=$!; pids+=($HG_PID)

# The same headgate on Redis.
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --daemonize no --loglevel warning >"$work/redis.log" 2>&1 & REDIS_PID=$!; pids+=($REDIS_PID)
cp -r "$work/hg" "$work/hgr"
cat > "$work/hgr/headgate.toml" <<TOML
listen = "$HGR"
admin_listen = "$HGR_ADMIN"
[store]
kind = "redis"
url = "redis://127.0.0.1:$REDIS_PORT/0"
$TLS_TOML
TOML
wait_redis() { for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/$REDIS_PORT) 2>/dev/null && return 0; sleep 0.1; done; }
wait_redis
RUST_LOG=warn ./target/release/headgate serve --templates "$work/hgr" --no-watch >"$work/hgr.log" 2>&1 & HGR_PID=$!; pids+=($HGR_PID)

# The same headgate, with the route MCP-aware.
cp -r "$work/hg" "$work/hgm"
cat > "$work/hgm/headgate.toml" <<TOML
listen = "$HGM"
admin_listen = "$HGM_ADMIN"
TOML
cat >> "$work/hgm/routes/bench.toml" <<TOML
[mcp]
deny_tools = ["delete_*", "admin_*"]
TOML
printf '%s' "$TLS_TOML" >> "$work/hgm/headgate.toml"
RUST_LOG=warn ./target/release/headgate serve --templates "$work/hgm" --no-watch >"$work/hgm.log" 2>&1 & HGM_PID=$!; pids+=($HGM_PID)

# The same headgate, the token obtained by a credential (cached per call).
export HG_BENCH_CLIENT_SECRET=bench-client-secret
cp -r "$work/hg" "$work/hgc"
cat > "$work/hgc/headgate.toml" <<TOML
listen = "$HGC"
admin_listen = "$HGC_ADMIN"
[credentials.crm]
kind = "token_exchange"
token_url = "$UPS://$UPHOST/token"
client_id = "bench"
client_secret_env = "HG_BENCH_CLIENT_SECRET"
subject_token = "<< call.metadata.token >>"
$TLS_TOML
TOML
# The same route, its token from the credential instead of the session.
sed -i 's/<< call.metadata.token >>/<< credentials.crm.access_token >>/' "$work/hgc/routes/bench.toml"
RUST_LOG=warn ./target/release/headgate serve --templates "$work/hgc" --no-watch >"$work/hgc.log" 2>&1 & HGC_PID=$!; pids+=($HGC_PID)

# The same headgate run by another build.
ALT_PORTS=(); ALT_ADMIN=()
if [ -n "$ALT" ]; then
  cp -r "$work/hg" "$work/hga"
  sed -i "s/$HG/$HGA/; s/$HG_ADMIN/$HGA_ADMIN/" "$work/hga/headgate.toml"
  RUST_LOG=warn "$ALT_BIN" serve --templates "$work/hga" --no-watch >"$work/hga.log" 2>&1 & HGA_PID=$!; pids+=($HGA_PID)
  ALT_PORTS=("$HGA" "$HGA_ADMIN"); ALT_ADMIN=("$HGA_ADMIN")
fi

# Map files for nginx and HAProxy.
for i in $(seq 0 999); do echo "call-$i tok-call-$i;"; done > "$work/tokens.nginx"
for i in $(seq 0 999); do echo "call-$i tok-call-$i"; done > "$work/tokens.map"

NGX_SSL=""; NGX_CERT=""; NGX_VERIFY=""
[ "$FRONT" = https ] && NGX_SSL=ssl && NGX_CERT="ssl_certificate $work/leaf.pem; ssl_certificate_key $work/leaf.key;"
[ "$UPS" = https ] && NGX_VERIFY="proxy_ssl_verify on; proxy_ssl_trusted_certificate $work/ca.pem; proxy_ssl_name localhost; proxy_ssl_server_name on; proxy_ssl_session_reuse on;"
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
    listen $NGX $NGX_SSL;
    $NGX_CERT
    location / {
      if (\$http_x_headgate_key != "$HG_BENCH_KEY") { return 401; }
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Authorization "Bearer \$token";
      proxy_set_header x-headgate-key "";
      proxy_buffering off;
      $NGX_VERIFY
      proxy_pass $UPS://up;
    }
  }
}
NGX
"$NGINX" -c "$work/nginx.conf" -p "$work"

HAP_BIND_TLS=""; HAP_SERVER_TLS=""
[ "$FRONT" = https ] && HAP_BIND_TLS="ssl crt $work/leaf.both alpn http/1.1"
[ "$UPS" = https ] && HAP_SERVER_TLS="ssl verify required ca-file $work/ca.pem verifyhost localhost sni str(localhost) alpn http/1.1"
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
  bind $HAP $HAP_BIND_TLS
  http-request deny deny_status 401 unless { req.hdr(x-headgate-key) -m str $HG_BENCH_KEY }
  http-request set-header Authorization "Bearer %[req.hdr(x-call-id),map($work/tokens.map)]"
  http-request del-header x-headgate-key
  default_backend be
backend be
  http-reuse always
  server s1 $UP $HAP_SERVER_TLS
HAP
}
start_haproxy() { hap_cfg "$1" > "$work/haproxy.cfg"; "$HAPROXY" -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 & HAP_PID=$!; pids+=($HAP_PID); }
start_haproxy ""

wait_port() { for _ in $(seq 1 100); do (exec 3<>/dev/tcp/${1%:*}/${1#*:}) 2>/dev/null && return 0; sleep 0.1; done; echo "nothing listening on $1"; exit 1; }
for p in $UP $HG $HG_ADMIN $NGX $HAP $HGR $HGR_ADMIN $HGM $HGM_ADMIN $HGC $HGC_ADMIN "${ALT_PORTS[@]}"; do wait_port "$p"; done

echo "== registering 1,000 sessions (memory, Redis, MCP and credential headgates)"
python3 - "$HG_ADMIN" "$HGR_ADMIN" "$HGM_ADMIN" "$HGC_ADMIN" "${ALT_ADMIN[@]}" <<'PY'
import http.client, json, sys
for admin in sys.argv[1:]:
  c = http.client.HTTPConnection(admin)
  for i in range(1000):
    body = json.dumps({"call": {"id": f"call-{i}", "metadata": {"token": f"tok-call-{i}", "tenant": "acme"}}})
    c.request("PUT", f"/sessions/call-{i}", body, {"content-type": "application/json"})
    r = c.getresponse(); r.read()
    assert r.status == 204, (admin, r.status)
PY

mismatches() { curl -s --cacert "$work/ca.pem" "$UPS://$UPHOST/_stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["mismatch"])'; }

# CPU ticks (user, system) of the given processes, all threads; and the
# machine's busy and idle ticks.
proc_ticks() { local u=0 s=0 a b; for p in "$@"; do read -r a b < <(awk '{print $14, $15}' "/proc/$p/stat" 2>/dev/null || echo 0 0); u=$((u + a)); s=$((s + b)); done; echo "$u $s"; }
machine_ticks() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $5+$6}' /proc/stat; }
# Context switches (voluntary + not) of the given processes' live threads.
proc_ctx() { local n=0 p; for p in "$@"; do n=$((n + $(cat /proc/"$p"/task/*/status 2>/dev/null | awk '/ctxt_switches/{s+=$2} END{print s+0}'))); done; echo "$n"; }
proxy_pids() {
  case $1 in
    headgate) echo "$HG_PID" ;;
    nginx) pgrep -P "$(cat "$work/nginx.pid")" | tr '\n' ' ' ;;
    haproxy) echo "$HAP_PID" ;;
    headgate-redis) echo "$HGR_PID $REDIS_PID" ;;
    headgate-mcp) echo "$HGM_PID" ;;
    headgate-cred) echo "$HGC_PID" ;;
    headgate-alt) echo "$HGA_PID" ;;
  esac
}
TICK_US=$((1000000 / $(getconf CLK_TCK)))
NCPU=$(nproc)

RESULTS="$work/results"
run() {
  local name=$1 addr=$2 mode=${3:-}
  local scheme=$FRONT; [ "$name" = direct ] && scheme=$UPS
  [ "$scheme" = https ] && addr=localhost:${addr#*:}
  wrk -t2 -c"$CONNS" -d"${WARMUP}s" -s bench/load.lua "$scheme://$addr" -- $mode >/dev/null 2>&1 || true
  local before; before=$(mismatches)
  local procs; procs=$(proxy_pids "$name")
  local pu0 ps0 mb0 mi0 pu1 ps1 mb1 mi1
  # shellcheck disable=SC2086
  read -r pu0 ps0 < <(proc_ticks $procs); read -r mb0 mi0 < <(machine_ticks)
  # shellcheck disable=SC2086
  local cs0; cs0=$(proc_ctx $procs)
  local perf_pid=""
  if [ -n "${PERF:-}" ] && [ "$r" = "$ROUNDS" ] && [ "$name" != direct ]; then
    # The middle of the last round; its sampling interrupts count in the
    # proxy's own system time (every proxy's alike).
    # shellcheck disable=SC2086
    (sleep 1; exec perf record -q -e cpu-clock -F 1999 -p "$(echo $procs | tr ' ' ',')" \
      -o "$work/perf.$name" -- sleep $((DURATION - 2))) >/dev/null 2>&1 &
    perf_pid=$!
  fi
  local out; out=$(wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency -s bench/load.lua "$scheme://$addr" -- $mode 2>&1 | grep RESULT)
  # shellcheck disable=SC2086
  read -r pu1 ps1 < <(proc_ticks $procs); read -r mb1 mi1 < <(machine_ticks)
  # shellcheck disable=SC2086
  local cs1; cs1=$(proc_ctx $procs)
  [ -n "$perf_pid" ] && wait "$perf_pid"
  local after; after=$(mismatches)
  echo "   $name: $out ($((after - before)) mis-injected)"
  echo "$name $out mis=$((after - before)) ctx=$((cs1 - cs0)) cpu=$((pu1 - pu0)),$((ps1 - ps0)),$((mb1 - mb0)),$((mi1 - mi0))" >> "$RESULTS"
}

# Rounds interleave the proxies, so a slow spell of this shared machine
# falls on all of them; the table is the median round of each. Each round
# starts one proxy further along PROXIES (round 1 in its order): a run's
# place in its round moves its CPU a request by about 1.5% (BENCHMARKS.md,
# the A/B of two builds), so no proxy holds the first place in every round.
read -r -a ORDER <<< "$PROXIES"
echo "== throughput: $CONNS connections, ${DURATION}s each after ${WARMUP}s warm-up, $ROUNDS round(s)"
for r in $(seq 1 "$ROUNDS"); do
  echo "  round $r"
  n=${#ORDER[@]}; k=$(( (r - 1) % n ))
  for name in "${ORDER[@]:k}" "${ORDER[@]:0:k}"; do
    case $name in
      direct) run direct "$UP" direct ;;
      headgate) run headgate "$HG" ;;
      nginx) run nginx "$NGX" ;;
      haproxy) run haproxy "$HAP" ;;
      headgate-redis) run headgate-redis "$HGR" ;;
      headgate-mcp) run headgate-mcp "$HGM" ;;
      headgate-cred) run headgate-cred "$HGC" ;;
      headgate-alt) run headgate-alt "$HGA" ;;
      *) echo "unknown proxy in PROXIES: $name"; exit 2 ;;
    esac
  done
done

# With PERF, each proxy's samples as text, for the summary to weigh.
for name in $PROXIES; do
  [ -s "$work/perf.$name" ] || continue
  perf report -i "$work/perf.$name" --no-children --sort sym --stdio > "$work/perf.$name.txt" 2>/dev/null
done

echo
python3 - "$RESULTS" "$DURATION" "$TICK_US" "$NCPU" "$work" <<'PY'
import os, re, statistics, sys
path, dur, tick, ncpu, work = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
runs = {}  # in the order of PROXIES, as the first round ran them
for line in open(path):
    name = line.split()[0]
    f = dict(re.findall(r"(\w+)=([\d.,]+)", line))
    cpu = [float(x) for x in f["cpu"].split(",")]
    runs.setdefault(name, []).append(dict(rps=float(f["rps"]), p50=f["p50"], p99=f["p99"], p999=f["p999"],
                           mis=int(f["mis"]), errs=int(f["errors"]) + int(f["non2xx"]), cpu=cpu,
                           ctx=int(f.get("ctx", 0))))
names = list(runs)
# The median round by req/s (an odd number of rounds gives a real run).
med = {n: sorted(r, key=lambda x: x["rps"])[len(r) // 2] for n, r in runs.items()}
print(f"| {'proxy':<17} | {'req/s':>9} | {'p50 ms':>8} | {'p99 ms':>8} | {'p99.9 ms':>9} | {'checked (all rounds)':<26} |")
print("|-------------------|-----------|----------|----------|-----------|----------------------------|")
for n in names:
    m = med[n]
    checked = f"{sum(x['mis'] for x in runs[n])} mis-injected, {sum(x['errs'] for x in runs[n])} errors"
    print(f"| {n:<17} | {m['rps']:>9.0f} | {m['p50']:>8} | {m['p99']:>8} | {m['p999']:>9} | {checked:<26} |")
peers = [n for n in ["nginx", "haproxy"] if n in runs]
best = max((med[n]["rps"] for n in peers), default=None)
if "headgate" in runs:
    h = med["headgate"]["rps"]
    ratios = [f"headgate/{n} = {h / med[n]['rps']:.2f}x" for n in peers]
    if best:
        ratios.append(f"headgate/best = {h / best:.2f}x")
    ratios += [f"{n}/headgate = {med[n]['rps'] / h:.2f}x" for n in ["headgate-redis", "headgate-mcp", "headgate-cred", "headgate-alt"] if n in runs]
    print("\n" + ", ".join(ratios))
def by_round(label, ratios):
    """Ratios of one round's rows (the machine's slow spells fall on both),
    and their median: the figure the targets are read against."""
    if len(ratios) > 1:
        shown = ", ".join(f"{r:.2f}x" for r in ratios)
        print(f"{label} round by round: {shown} (median {statistics.median(ratios):.3f}x)")
def best_peer(i):
    return max(runs[n][i]["rps"] for n in peers)
for n in ["headgate"]:
    if n in runs and peers:
        by_round(f"{n}/best", [a["rps"] / best_peer(i) for i, a in enumerate(runs[n])])
for n in ["headgate-mcp", "headgate-cred", "headgate-alt"]:
    if n in runs and "headgate" in runs:
        by_round(f"{n}/headgate", [a["rps"] / b["rps"] for a, b in zip(runs[n], runs["headgate"])])
def cpu(x):
    """The proxy's own CPU µs (user + sys) per request in one run."""
    return (x["cpu"][0] + x["cpu"][1]) * tick / (x["rps"] * dur)
if "headgate" in runs and peers:
    leaner = [min(cpu(runs[p][i]) for p in peers) for i in range(len(runs["headgate"]))]
    by_round("headgate CPU per request/leaner peer's", [cpu(a) / l for a, l in zip(runs["headgate"], leaner)])
if "headgate-alt" in runs and "headgate" in runs:
    by_round("headgate-alt CPU per request/headgate's", [cpu(a) / cpu(b) for a, b in zip(runs["headgate-alt"], runs["headgate"])])

print(f"\nCPU per request over all rounds (µs; {ncpu} CPUs; 'rest' is wrk, the upstream and softirq):")
print(f"| {'proxy':<17} | {'proxy user':>10} | {'proxy sys':>9} | {'rest':>6} | {'idle':>6} | {'ctx switches':>12} | {'ceiling if user = 0':>19} |")
print("|-------------------|------------|-----------|--------|--------|--------------|---------------------|")
ceiling = {}
for n in names:
    reqs = sum(x["rps"] * dur for x in runs[n])
    u, s, busy, idle = (sum(x["cpu"][i] for x in runs[n]) * tick / reqs for i in range(4))
    ceiling[n] = ncpu * 1e6 / (busy - u)
    c = f"{ceiling[n]:,.0f}" if n != "direct" else "-"
    cs = sum(x["ctx"] for x in runs[n]) / reqs
    print(f"| {n:<17} | {u:>10.1f} | {s:>9.1f} | {busy - u - s:>6.1f} | {idle:>6.1f} | {cs:>12.2f} | {c:>19} |")
if "headgate" in runs and best:
    print(f"\nheadgate with no user-space CPU at all would reach {ceiling['headgate']:,.0f} req/s = {ceiling['headgate']/best:.2f}x the better peer's median")
sampled = [n for n in names if os.path.exists(f"{work}/perf.{n}.txt")]
if sampled:
    print("\n== where each proxy's CPU went in the last round (perf cpu-clock samples, as µs a request)")
for n in sampled:
    per_req = cpu(runs[n][-1])
    rows = [(float(m[1]), m[2], m[3].strip()) for m in
            (re.match(r"\s*([\d.]+)%\s+\[(k|\.)\]\s+(.+)", l) for l in open(f"{work}/perf.{n}.txt")) if m]
    kernel, user = (sum(p for p, k, _ in rows if k == kind) * per_req / 100 for kind in "k.")
    print(f"{n}: {per_req:.1f} µs a request in this round; sampled {kernel:.2f} kernel + {user:.2f} user")
    for p, k, sym in rows[:12]:
        print(f"   {p * per_req / 100:6.3f}  {'kernel' if k == 'k' else 'user':<6} {sym[:90]}")
PY

if [[ " $PROXIES " == *" headgate-cred "* ]]; then
  echo
  signed=$(curl -s "http://$HGC_ADMIN/metrics" | awk '/^headgate_credential_requests_total\{credential="crm",outcome="ok"\}/{print $2}')
  hits=$(curl -s "http://$HGC_ADMIN/metrics" | awk '/^headgate_credential_cache_hits_total\{credential="crm"\}/{print $2}')
  echo "headgate-cred: ${signed:-0} token requests (1,000 sessions) for ${hits:-0} cached uses"
fi

[ -n "$TLS" ] && SSE_ROUNDS=0
echo
echo "== SSE relay latency: $EVENTS events, 5 ms apart, $SSE_ROUNDS round(s)"
kill "$HAP_PID" 2>/dev/null || true; wait "$HAP_PID" 2>/dev/null || true
start_haproxy "option http-no-delay"; wait_port "$HAP"
SSE_RESULTS="$work/sse"
sse() {
  local name=$1 addr=$2; shift 2
  local out; out=$(./target/release/examples/sse_latency "http://$addr/bench/sse?n=$EVENTS&gap_ms=5" "X-Call-Id: call-7" "$@" | grep RESULT)
  echo "   $name: $out"
  echo "$name $out" >> "$SSE_RESULTS"
}
# Interleaved like the throughput rounds: one run's p99 is the tenth-worst
# of 1,000 wake-ups of an idle machine, and moves by tens of µs run to run.
for r in $(seq 1 "$SSE_ROUNDS"); do
  echo "  round $r"
  sse direct "$UP" "Authorization: Bearer tok-call-7"
  sse headgate "$HG" "x-headgate-key: $HG_BENCH_KEY"
  sse nginx "$NGX" "x-headgate-key: $HG_BENCH_KEY"
  sse haproxy "$HAP" "x-headgate-key: $HG_BENCH_KEY"
done
[ "$SSE_ROUNDS" -gt 0 ] && python3 - "$SSE_RESULTS" <<'PY'
import re, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    name = line.split()[0]
    f = dict(re.findall(r"(\w+)=([\d.]+)", line))
    runs.setdefault(name, []).append({k: float(f[k]) for k in ("p50", "p99", "max")})
print(f"\n| {'proxy':<24} | {'p50 ms':>7} | {'p99 ms':>7} | {'max ms':>7} |  (medians over rounds)")
print("|--------------------------|---------|---------|---------|")
for n, r in runs.items():
    label = "haproxy (http-no-delay)" if n == "haproxy" else n
    m = {k: statistics.median(x[k] for x in r) for k in ("p50", "p99", "max")}
    print(f"| {label:<24} | {m['p50']:>7.3f} | {m['p99']:>7.3f} | {m['max']:>7.3f} |")
best = [min(a["p99"], b["p99"]) for a, b in zip(runs["nginx"], runs["haproxy"])]
ratios = [h["p99"] / b for h, b in zip(runs["headgate"], best)]
shown = ", ".join(f"{r:.2f}" for r in ratios)
print(f"headgate p99 / better peer's, round by round: {shown} (median {statistics.median(ratios):.2f})")
PY

total_bad=$(mismatches)
echo
echo "upstream saw $total_bad request(s) with a wrong or missing token in proxied runs"
if [ "$total_bad" != 0 ] || grep -v '^direct' "$RESULTS" | grep -qv ' mis=0 '; then
  echo "INVALID RUN: a proxy mis-injected"; grep -v ' mis=0 ' "$RESULTS" || true; exit 1
fi
