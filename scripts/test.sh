#!/usr/bin/env bash
# Every test, end to end: installs what is missing, builds, runs the suite.
# One profile (release) and one target dir outside the clone: see scripts/env.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. scripts/env.sh
cargo fmt --all -- --check
python3 scripts/module_cycles.py
cargo clippy --release --workspace --all-targets --locked -- -D warnings
cargo test --release --workspace --locked "$@"
# Every fuzz target built, its seeds and corpus replayed, then fuzzed 10 s
# (with AddressSanitizer). Long runs before resolving: fuzz/run.sh 600, or
# RUNS=10000000 SANITIZER=none fuzz/run.sh.
bash fuzz/run.sh 10
