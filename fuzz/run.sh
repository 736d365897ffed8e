#!/usr/bin/env bash
# Fuzzes every target (or those named) for SECONDS each (default 60): first
# replays its committed seeds (fuzz/seeds/<target>) and its local corpus
# (fuzz/corpus/<target>, kept between runs, not committed), then fuzzes from
# them. Prints each target's executions; exits non-zero at the first crash
# (input in fuzz/artifacts/<target>). CI runs `fuzz/run.sh 10` from
# scripts/test.sh; long runs before resolving: `fuzz/run.sh 600`.
# RUNS=N fuzzes each target for N executions instead of SECONDS (the
# issue's bar: RUNS=10000000). SANITIZER=none|address (default address):
# our crates forbid unsafe code, so AddressSanitizer guards only the
# dependencies; runs without it go 3-6x faster (used for the long runs).
# Stable toolchain: RUSTC_BOOTSTRAP lets cargo-fuzz use the sanitizer flags it needs.
# Usage: [RUNS=N] [SANITIZER=none] fuzz/run.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-60}"; shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^tranzcast-fuzz$')
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
# Outside the clone, like the main build (../shared/BUILD.md): a fresh clone finds it warm.
san="${SANITIZER:-address}"
tdir="${FUZZ_TARGET_DIR:-$HOME/.cache/tranzcast/fuzz-target-$san}"
cargo fuzz build -s "$san" --target-dir "$tdir" 2>&1 | grep -E "^(error|warning)" -A5 || true
cargo fuzz build -s "$san" --target-dir "$tdir" >/dev/null 2>&1 || { echo "fuzz: build failed" >&2; exit 1; }
# How long each target runs: SECONDS, or RUNS executions (then at most 3 h).
if [ -n "${RUNS:-}" ]; then budget=(-runs="$RUNS" -max_total_time=10800); else budget=(-max_total_time="$secs"); fi
total=0
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "seeds/$t" "artifacts/$t"
  # Seeds that come from the tree itself.
  [ "$t" = loadtest ] && cp ../loadtest/scenarios/*.toml "corpus/$t/" 2>/dev/null || true
  [ "$t" = config ] && cp ../config/examples/*.toml "corpus/$t/" 2>/dev/null || true
  log=$(mktemp)
  # Every seed and corpus input once (-runs=0), then fuzz into the corpus.
  if ! cargo fuzz run -s "$san" --target-dir "$tdir" "$t" "seeds/$t" "corpus/$t" -- -runs=0 >"$log" 2>&1; then
    tail -30 "$log"; echo "CRASH replaying the seeds or corpus of $t: see fuzz/artifacts/$t" >&2; exit 1
  fi
  replayed=$(sed -n 's/.*INITED .*corp: \([0-9]*\).*/\1/p' "$log" | tail -1)
  if ! cargo fuzz run -s "$san" --target-dir "$tdir" "$t" "corpus/$t" "seeds/$t" -- "${budget[@]}" -rss_limit_mb=2048 \
      -print_final_stats=1 >"$log" 2>&1; then
    grep -E "panicked|SUMMARY|==[0-9]+==" "$log" | head -20; echo "CRASH in $t: see fuzz/artifacts/$t" >&2; exit 1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\)/\1/p' "$log" | tail -1)
  total=$((total + ${runs:-0}))
  printf 'fuzz %-14s %12s executions (sanitizer %s; replayed %s seed and corpus inputs first)\n' "$t" "${runs:-?}" "$san" "${replayed:-0}"
  rm -f "$log"
done
echo "fuzz: no crashes; $total executions over ${#targets[@]} targets"
