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
# A fixed directory: the instrumented build's flags stay the same from run
# to run, so it is built once (the profile-use flags name this run's merged
# profile, so that build is always redone).
data=$PWD/target/pgo-gen/profiles
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

echo "== instrumented build (target/pgo-gen)"
RUSTFLAGS="-Cprofile-generate=$data" CARGO_TARGET_DIR=target/pgo-gen \
  cargo build --release --quiet --locked --bin headgate
cargo build --release --quiet --locked --example bench_upstream
GEN=target/pgo-gen/release/headgate
T=target/release

export HG_BENCH_KEY=bench-route-key-0123 HG_BENCH_CLIENT_SECRET=bench-client-secret
. bench/shapes.sh
shapes_start "$T" "$work" 28200

train() { # NAME
  local port admin
  read -r port admin < <(shape_ports "$1" 28200)
  RUST_LOG=warn "$GEN" serve --templates "$work/$1" --no-watch >"$work/$1.log" 2>&1 &
  local pid=$!
  register_sessions "$admin"
  echo "   $1: $(wrk -t2 -c32 -d"${SECONDS_EACH:-5}s" -s bench/load.lua "$(shape_url "$1" "$port")" | grep RESULT)"
  # A clean exit writes the profile.
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
}
rm -rf "$data"
echo "== training"
for s in plain mcp cred tls; do train "$s"; done

echo "== merging $(ls "$data" | wc -l) profile(s)"
"$PROFDATA" merge -o "$work/merged.profdata" "$data"
echo "== optimized build (target/pgo)"
RUSTFLAGS="-Cprofile-use=$work/merged.profdata" CARGO_TARGET_DIR=target/pgo \
  cargo build --release --quiet --locked --bin headgate
echo "target/pgo/release/headgate"
