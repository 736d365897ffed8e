#!/usr/bin/env bash
# Every test, end to end: installs what is missing, builds, runs the suite.
# One profile (release) and one target dir outside the clone: see scripts/env.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. scripts/env.sh
cargo fmt --all -- --check
cargo clippy --release --workspace --all-targets --locked -- -D warnings
cargo test --release --workspace --locked "$@"
