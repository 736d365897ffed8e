#!/usr/bin/env bash
# Ticket validations per second over HTTP/2 (TLS, real origin on 127.0.0.1,
# each one a signature check, a certificate signature and a synced RocksDB
# write) beside the raw Ed25519 sign+verify rate on all cores, same process,
# same run. Usage: bench/tickets.sh [SECONDS=5] [CONCURRENCY=64]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
cargo build --release --locked --bin tranzcast >/dev/null 2>&1 || cargo build --release --locked --bin tranzcast
out="$("$CARGO_TARGET_DIR/release/tranzcast" bench tickets --seconds "${1:-5}" --concurrency "${2:-64}")"
python3 - "$out" <<'PY'
import sys; sys.path.insert(0, "bench")  # the scripts run from the repository's root
from results import record
import json, sys
r = json.loads(sys.argv[1])
print(f"{'figure':<52}{'per second':>12}")
print(f"{'raw Ed25519 verify + sign, all cores (peer)':<52}{r['raw_sign_verify_per_s']:>12.0f}")
print(f"{'validations over HTTP/2, fsynced (ours)':<52}{r['validations_per_s']:>12.0f}")
print(f"ratio ours/raw = {r['ratio']:.3f}   (concurrency {r['concurrency']}, errors {r['errors']})")
record("ticket validations / raw Ed25519 sign+verify, per s", f"{r['validations_per_s']:.0f}", f"{r['raw_sign_verify_per_s']:.0f}", r["ratio"], "")
PY
