#!/usr/bin/env bash
# Ingest throughput beside the raw crypto it is made of, same bytes, same run.
#   raw  = read the file's segments + AES-256-GCM-SIV seal + blake3, all cores, no store
#   ours = `tranzcast ingest` (the same, plus outboards, RocksDB writes, fsync, manifest)
# Usage: bench/ingest.sh [SIZE_MIB=512] [SEGMENT_BYTES=4194304]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
size_mib="${1:-512}"; seg="${2:-4194304}"
cargo build --release --locked --bin tranzcast >/dev/null 2>&1 || cargo build --release --locked --bin tranzcast
bin="$CARGO_TARGET_DIR/release/tranzcast"
work="$(mktemp -d "${TMPDIR:-/tmp}/tranzcast-bench-ingest.XXXXXX")"
trap 'rm -rf "$work"' EXIT
head -c "$((size_mib << 20))" /dev/urandom > "$work/in.bin"
cat "$work/in.bin" > /dev/null  # warm the page cache for both sides
best() { sort -g | tail -1; }
raw1=(); rawn=(); ours=()
for run in 1 2 3; do
  rawn+=("$("$bin" bench crypto --input "$work/in.bin" --segment-size "$seg" | python3 -c 'import json,sys; print(json.load(sys.stdin)["mb_per_s"])')")
  raw1+=("$("$bin" bench crypto --input "$work/in.bin" --segment-size "$seg" --threads 1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["mb_per_s"])')")
  rm -rf "$work/store"
  ours+=("$("$bin" ingest "$work/in.bin" --data "$work/store" --title bench --segment-size "$seg" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["mb_per_s"])')")
done
rn=$(printf '%s\n' "${rawn[@]}" | best); r1=$(printf '%s\n' "${raw1[@]}" | best); o=$(printf '%s\n' "${ours[@]}" | best)
python3 - "$size_mib" "$seg" "$rn" "$r1" "$o" <<'PY'
import sys
size, seg, rn, r1, o = sys.argv[1], sys.argv[2], *map(float, sys.argv[3:])
print(f"ingest of {size} MiB, {int(seg)>>10} KiB segments, best of 3 runs each")
print(f"{'figure':<42}{'MB/s':>10}")
print(f"{'raw seal+blake3, all cores (peer)':<42}{rn:>10.0f}")
print(f"{'raw seal+blake3, one core':<42}{r1:>10.0f}")
print(f"{'tranzcast ingest (ours)':<42}{o:>10.0f}")
print(f"ratio ours/raw(all cores) = {o/rn:.2f}   (goal >= 0.90)")
print(f"ratio ours/raw(one core)  = {o/r1:.2f}")
PY
