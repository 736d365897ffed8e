#!/usr/bin/env bash
# Every test, end to end: installs what is missing, builds, runs the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. scripts/env.sh
cargo test --release --workspace --locked "$@"
