#!/usr/bin/env bash
# RSS of the in-memory session store at 100k and 1M sessions of a ~300-byte
# call object. Target: <= 1 GiB at 1M. Prints one line per size.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --example session_memory
for n in 100000 1000000; do
  ./target/release/examples/session_memory "$n"
done
