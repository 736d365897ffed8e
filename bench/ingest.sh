#!/usr/bin/env bash
# Ingest throughput beside its peers, same bytes, same run:
#   raw crypto = read the file's segments + AES-256-GCM-SIV seal + blake3, all cores, no store
#   disk       = dd of the same bytes to the same file system with fdatasync (the durable-write limit)
#   ours       = `tranzcast ingest` to the same file system (durable: blob files fsynced)
#   ours (RAM) = `tranzcast ingest` into a tmpfs store: our CPU path without the disk
# Usage: bench/ingest.sh [SIZE_MIB=512] [SEGMENT_BYTES=4194304]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
size_mib="${1:-512}"; seg="${2:-4194304}"
cargo build --release --locked --bin tranzcast >/dev/null 2>&1 || cargo build --release --locked --bin tranzcast
bin="$CARGO_TARGET_DIR/release/tranzcast"
work="$(mktemp -d "${TMPDIR:-/tmp}/tranzcast-bench-ingest.XXXXXX")"
ram=""
cleanup() { [ -n "$ram" ] && umount "$ram" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
head -c "$((size_mib << 20))" /dev/urandom > "$work/in.bin"
cat "$work/in.bin" > /dev/null  # warm the page cache for every side
if mkdir -p "$work/ram" && mount -t tmpfs -o size=$((size_mib * 3 + 256))m tmpfs "$work/ram" 2>/dev/null; then ram="$work/ram"; fi
mbps() { python3 -c 'import json,sys; print(json.load(sys.stdin)["mb_per_s"])'; }
raw=(); disk=(); ours=(); oram=()
for run in 1 2 3; do
  raw+=("$("$bin" bench crypto --input "$work/in.bin" --segment-size "$seg" | mbps)")
  s=$(date +%s.%N); dd if="$work/in.bin" of="$work/dd.out" bs=4M conv=fdatasync status=none; e=$(date +%s.%N)
  disk+=("$(python3 -c "print(${size_mib}*1048576/1e6/($e-$s))")"); rm -f "$work/dd.out"
  rm -rf "$work/store"; sync
  ours+=("$("$bin" ingest "$work/in.bin" --data "$work/store" --title bench --segment-size "$seg" --json | mbps)")
  if [ -n "$ram" ]; then
    rm -rf "$ram/store"
    oram+=("$("$bin" ingest "$work/in.bin" --data "$ram/store" --title bench --segment-size "$seg" --json | mbps)")
  fi
done
best() { printf '%s\n' "$@" | sort -g | tail -1; }
python3 - "$size_mib" "$seg" "$(best "${raw[@]}")" "$(best "${disk[@]}")" "$(best "${ours[@]}")" "$( [ -n "$ram" ] && best "${oram[@]}" || echo 0)" <<'PY'
import sys; sys.path.insert(0, "bench")  # the scripts run from the repository's root
from results import record
import sys
size, seg = sys.argv[1], int(sys.argv[2])
raw, disk, ours, oram = map(float, sys.argv[3:])
print(f"ingest of {size} MiB in {seg >> 10} KiB segments, best of 3 runs each, same machine, same run")
print(f"{'figure':<46}{'MB/s':>8}")
print(f"{'raw seal + blake3, all cores (crypto peer)':<46}{raw:>8.0f}")
print(f"{'dd with fdatasync (durable-write peer)':<46}{disk:>8.0f}")
print(f"{'tranzcast ingest to disk (ours)':<46}{ours:>8.0f}")
if oram: print(f"{'tranzcast ingest to tmpfs (ours, no disk)':<46}{oram:>8.0f}")
print(f"ratio ours/raw crypto            = {ours/raw:.2f}")
record("ingest / raw crypto, MB/s", f"{ours:.0f}", f"{raw:.0f}", ours / raw, "")
record("ingest / physical limit min(crypto, disk), MB/s", f"{ours:.0f}", f"{min(raw, disk):.0f}", ours / min(raw, disk), ">= 0.90")
print(f"ratio ours/min(raw, disk)        = {ours/min(raw, disk):.2f}   (goal >= 0.90: the physical limit of this machine)")
if oram: print(f"ratio ours(tmpfs)/raw crypto     = {oram/raw:.2f}   (cost of our pipeline beyond the crypto)")
PY
