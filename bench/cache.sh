#!/usr/bin/env bash
# Cache policies side by side on demand traces: the edge's own residency
# policy (edge/src/residency.rs: Belady's rule on estimated next requests,
# from each title's playheads and each blob's reuse gaps), plain LRU and
# Belady's offline optimum, by byte and object hit ratio, with the cache a
# tenth of the catalogue.
#
# Traces (loadtest/src/cache.rs, seeded): viewings of a catalogue of 1,000
# titles (clips, episodes, films at 1.5 to 8 Mbit/s, 6 s segments) chosen by
# Zipf popularity (s = 0.8), each played from its start for a watch length
# like the load test's, interleaved by arrival over two hours; and the
# long-tail scenario's viewers as the load test plans them.
#
# Usage: bench/cache.sh [SEED=1] [VIEWS=3000] [ZIPF=0.8] [RATIO=10]
# Prints the table, then the goal line: ours / LRU by bytes on the Zipf trace
# (goal >= 1.1) and ours / Belady (the distance to the optimum).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
. bench/lib.sh
bench_bin
SEED="${1:-1}"
VIEWS="${2:-3000}"
ZIPF="${3:-0.8}"
RATIO="${4:-10}"
OUT="$("$BIN" bench cache --seed "$SEED" --views "$VIEWS" --zipf "$ZIPF" --ratio "$RATIO")"
grep -v '^{' <<<"$OUT"
python3 - "$OUT" <<'PY'
import json, sys
sys.path.insert(0, "bench")  # the scripts run from the repository's root
from results import record
rows = [json.loads(l) for l in sys.argv[1].splitlines() if l.startswith("{")]
by = {(r["trace"], r["policy"]): r for r in rows}
print()
print(f"{'figure':<52} {'ours':>7} {'peer':>7} {'ratio':>6}  goal")
for trace in dict.fromkeys(r["trace"] for r in rows):
    ours, lru, opt = (by[(trace, p)]["byte_hit"] for p in ("ours", "LRU", "Belady"))
    goal = ">= 1.1" if trace.startswith("zipf") else ""
    name = "zipf" if trace.startswith("zipf") else "long-tail"
    print(f"{'byte hit, ours / LRU, ' + trace[:28]:<52} {ours:>7.3f} {lru:>7.3f} {ours / max(lru, 1e-9):>6.2f}  {goal}")
    print(f"{'byte hit, ours / Belady, ' + trace[:25]:<52} {ours:>7.3f} {opt:>7.3f} {ours / max(opt, 1e-9):>6.2f}")
    record(f"cache byte hit / LRU, {name}", f"{ours:.3f}", f"{lru:.3f}", ours / max(lru, 1e-9), goal)
    record(f"cache byte hit / Belady, {name}", f"{ours:.3f}", f"{opt:.3f}", ours / max(opt, 1e-9), "")
PY
