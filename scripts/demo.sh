#!/usr/bin/env bash
# The main job on a fresh machine: installs what is missing, builds, runs the demo.
# Extra arguments go to `tranzcast demo` (e.g. --json, --data DIR, --input FILE).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. scripts/env.sh
cargo build --release --locked --bin tranzcast
exec "$CARGO_TARGET_DIR/release/tranzcast" demo "$@"
