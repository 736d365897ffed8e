#!/usr/bin/env bash
# Every side-by-side benchmark of the project, then one table: figure, ours,
# peer, ratio, goal. Each peer is measured in the same run on the same
# machine as ours (these machines are shared and noisy: ratios, not
# absolutes, are what to compare across runs).
#
#   ingest.sh       ingest                     vs raw AES-256-GCM-SIV + blake3, and the disk
#   tickets.sh      ticket validations         vs raw Ed25519 sign + verify
#   edge.sh         edge (h1, h2)              vs nginx; our HTTP/3 vs our HTTP/2 (and Caddy's);
#                   as root, again over a veth pair with MTU 1500 (VETH=1)
#   play.sh         edge playback URLs         vs the same edge's raw blobs
#   multisource.sh  smart client               vs aria2c and the physical limit (root: netns + tc)
#   hostile.sh      edge and origin under seven attacks: probe p99 vs unloaded, memory, descriptors, play
#   cache.sh        the edge's residency policy vs LRU and Belady on demand traces (byte hit ratio)
#   k6.sh           loadtest/k6/edge.js under real k6 (checks and thresholds) beside oha, h2
#
# Usage: bench/all.sh [fast|full]
#   fast  a quick look (about 5 minutes): small inputs, 2 s loads
#   full  the figures for notes (about 15 minutes): the scripts' defaults
# Each script's own output is kept in the log directory printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE="${1:-fast}"
case "$MODE" in
    fast) INGEST=(128); TICKETS=(2 64); EDGE=(2 32); PLAY=(2 32 8); MULTI=(24); HOSTILE=(10 "" 0.2); K6=(3 32) ;;
    full) INGEST=(512); TICKETS=(5 64); EDGE=(5 32); PLAY=(5 32 8); MULTI=(64); HOSTILE=(20 "" 1.0); K6=(10 32) ;;
    *) echo "usage: bench/all.sh [fast|full]" >&2; exit 2 ;;
esac
. scripts/env.sh
# The peers and oha, when missing (a fresh machine: about 15 minutes once).
bash bench/peers.sh
cargo build --release --locked --bin tranzcast >/dev/null 2>&1 || cargo build --release --locked --bin tranzcast
LOG="$(mktemp -d /tmp/tz-bench-all.XXXXXX)"
export RESULTS="$LOG/results.tsv"
: >"$RESULTS"
failed=()
run() {
    local name=$1; shift
    local t0=$SECONDS
    printf '== %-12s %s ... ' "$name" "$*"
    if "$@" >"$LOG/$name.log" 2>&1; then
        echo "done in $((SECONDS - t0)) s"
    else
        echo "FAILED in $((SECONDS - t0)) s (see $LOG/$name.log)"
        failed+=("$name")
    fi
}
run ingest bench/ingest.sh "${INGEST[@]}"
run tickets bench/tickets.sh "${TICKETS[@]}"
run edge bench/edge.sh "${EDGE[@]}"
run play bench/play.sh "${PLAY[@]}"
run hostile bench/hostile.sh "${HOSTILE[@]}"
run cache bench/cache.sh
run k6 bench/k6.sh "${K6[@]}"
if [ "$(id -u)" = 0 ] && command -v tc >/dev/null; then
    run multisource bench/multisource.sh "${MULTI[@]}"
    run edge-veth env VETH=1 bench/edge.sh "${EDGE[@]}"
else
    echo "== multisource, edge-veth  skipped: need root (ip netns, tc)"
fi
echo
python3 - "$RESULTS" "$MODE" <<'PY'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
print(f"bench/all.sh {sys.argv[2]}: {len(rows)} figures (ratio = ours / peer; for times, peer / ours)")
w = max([len(r[0]) for r in rows] + [6])
print(f"{'figure':<{w}}  {'ours':>10}  {'peer':>10}  {'ratio':>6}  goal")
for f, ours, peer, ratio, goal in rows:
    print(f"{f:<{w}}  {ours:>10}  {peer:>10}  {ratio:>6}  {goal}")
PY
echo "(logs: $LOG)"
[ ${#failed[@]} -eq 0 ] || { echo "failed: ${failed[*]}" >&2; exit 1; }
