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
#   BIN=/tmp/headgate-old bash bench/callgrind.sh
#                                      # another build of headgate (an A/B:
#                                      # run both, one after the other)
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
CONNS=${CONNS:-8}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
. bench/shapes.sh
shapes_start "$T" "$work" 28000

measure() { # NAME
  local name=$1 out="/tmp/hg-callgrind.$1" port admin
  read -r port admin < <(shape_ports "$name" 28000)
  rm -f "$out".*
  RUST_LOG=warn valgrind --tool=callgrind ${VALGRIND_ARGS:-} --callgrind-out-file="$out.%p" \
    "${BIN:-$T/headgate}" serve --templates "$work/$name" --no-watch >"$work/$name.log" 2>&1 &
  local vpid=$!
  register_sessions "$admin"
  local url; url=$(shape_url "$name" "$port")
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
    measure "$s"
  done
)
