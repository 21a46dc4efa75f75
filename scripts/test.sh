#!/usr/bin/env bash
# The whole test suite: installs what the suite needs (LiquidJS for the
# conformance suite, the MCP Python and TypeScript SDKs, fastmcp,
# opentelemetry-proto, Selenium and the oidc-provider authorization server
# for interop) into
# ignored folders of this checkout, and redis-server from Debian if it is
# missing, then runs `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! [ -d tests/conformance/node_modules/liquidjs ]; then
  echo "== installing liquidjs (conformance reference)"
  npm ci --prefix tests/conformance --no-audit --no-fund --loglevel=error
fi

if ! [ -d tests/interop/node/node_modules/@modelcontextprotocol/sdk ] || ! [ -d tests/interop/node/node_modules/oidc-provider ]; then
  echo "== installing the MCP TypeScript SDK and oidc-provider (interop)"
  npm ci --prefix tests/interop/node --no-audit --no-fund --loglevel=error
fi

if ! [ -x .venv/bin/python ] || ! .venv/bin/python -c 'import mcp, fastmcp, retell, elevenlabs, vapi, selenium, opentelemetry.proto.collector.trace.v1.trace_service_pb2' 2>/dev/null; then
  echo "== installing the MCP Python SDK and fastmcp (interop)"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r tests/interop/requirements.txt
fi

if ! command -v promtool >/dev/null 2>&1; then
  # Only the promtool binary from Debian's prometheus package: installing
  # the package would start a Prometheus server on :9090.
  echo "== installing promtool (checks the /metrics exposition)"
  tmp=$(mktemp -d)
  sudo_=""; [ "$(id -u)" = 0 ] || sudo_=sudo
  (cd "$tmp" && { apt-get download prometheus >/dev/null 2>&1 || { $sudo_ apt-get update -qq && apt-get download prometheus >/dev/null; }; })
  dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/x"
  $sudo_ install -m 0755 "$tmp/x/usr/bin/promtool" /usr/local/bin/promtool
  rm -rf "$tmp"
fi

if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  echo "== installing chromium and chromium-driver (the console's browser test)"
  sudo_=""; [ "$(id -u)" = 0 ] || sudo_=sudo
  $sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null \
    || { $sudo_ apt-get update -qq && $sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }
fi

if ! command -v redis-server >/dev/null 2>&1; then
  echo "== installing redis-server (the Redis store tests start their own on loopback)"
  if [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  else
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  fi
fi

echo "== cargo test"
cargo test --locked --workspace --all-targets "$@"
echo "== cargo test --doc"
cargo test --locked --workspace --doc
echo "== the template library's example, with no other crate of headgate's"
test "$(cargo run -q --locked -p headgate-template --example render)" = "Bearer tok-123"
