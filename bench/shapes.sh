# Sourced by bench/callgrind.sh and bench/pgo.sh: the four route shapes they
# run headgate under, each in a config directory of its own, and the two
# upstreams those routes reach.
#
#   shapes_start BIN_DIR WORK BASE
#       starts examples/bench_upstream from BIN_DIR on 127.0.0.1:BASE (HTTP)
#       and BASE+1 (HTTPS with a leaf of a CA made in WORK), and writes
#       WORK/{plain,mcp,cred,tls}: a session token
#       (`Bearer << call.metadata.token >>`); the same with `[mcp]
#       deny_tools`; the token from a cached RFC 8693 credential; and the
#       plain one with TLS on both sides.
#   shape_ports NAME BASE   prints the shape's listener and admin ports
#   register_sessions ADMIN_PORT
#       waits for the admin listener, then PUTs the 1,000 sessions
#       bench/load.lua rotates over
#   shape_url NAME PORT     the URL wrk drives the shape at
. bench/certs.sh

shape_ports() { # NAME BASE
  case $1 in
    plain) echo "$(($2 + 86)) $(($2 + 96))" ;;
    cred) echo "$(($2 + 87)) $(($2 + 97))" ;;
    mcp) echo "$(($2 + 88)) $(($2 + 98))" ;;
    tls) echo "$(($2 + 89)) $(($2 + 99))" ;;
  esac
}

shape_url() { # NAME PORT
  if [ "$1" = tls ]; then echo "https://localhost:$2"; else echo "http://127.0.0.1:$2"; fi
}

shapes_start() { # BIN_DIR WORK BASE
  local bin=$1 work=$2 up=127.0.0.1:$3 up_tls=127.0.0.1:$(($3 + 1))
  make_certs "$work"
  "$bin/examples/bench_upstream" "$up" >/dev/null 2>&1 &
  "$bin/examples/bench_upstream" "$up_tls" "$work/leaf.pem" "$work/leaf.key" >/dev/null 2>&1 &
  local token='[headers]
authorization = "Bearer << call.metadata.token >>"'
  _route() { printf 'upstream = "http://%s/bench"\ninbound_auth = { header = "x-headgate-key", secret_env = "HG_BENCH_KEY" }\n%s\n' "$up" "$1"; }
  _shape() { # NAME MAIN BASE ROUTE
    local ports; read -r -a ports < <(shape_ports "$1" "$3")
    mkdir -p "$work/$1/routes"
    printf 'listen = "127.0.0.1:%s"\nadmin_listen = "127.0.0.1:%s"\n%s\n' "${ports[0]}" "${ports[1]}" "$2" > "$work/$1/headgate.toml"
    printf '%s' "$4" > "$work/$1/routes/bench.toml"
  }
  _shape plain "" "$3" "$(_route "$token")"
  _shape mcp "" "$3" "$(_route "$token
[mcp]
deny_tools = [\"delete_*\", \"admin_*\"]")"
  _shape cred "[credentials.crm]
kind = \"token_exchange\"
token_url = \"http://$up/token\"
client_id = \"bench\"
client_secret_env = \"HG_BENCH_CLIENT_SECRET\"
subject_token = \"<< call.metadata.token >>\"" "$3" "$(_route '[headers]
authorization = "Bearer << credentials.crm.access_token >>"')"
  _shape tls "[tls]
ca_file = \"$work/ca.pem\"
cert_file = \"$work/leaf.pem\"
key_file = \"$work/leaf.key\"" "$3" "$(_route "$token" | sed "s|http://$up|https://localhost:${up_tls#*:}|")"
}

register_sessions() { # ADMIN_PORT
  for _ in $(seq 1 300); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && break; sleep 0.2; done
  python3 - "$1" <<'PY'
import http.client, json, sys
c = http.client.HTTPConnection("127.0.0.1:" + sys.argv[1])
for i in range(1000):
    body = json.dumps({"call": {"id": f"call-{i}", "metadata": {"token": f"tok-call-{i}"}}})
    c.request("PUT", f"/sessions/call-{i}", body, {"content-type": "application/json"})
    r = c.getresponse(); r.read(); assert r.status == 204, r.status
PY
}
