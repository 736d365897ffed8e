#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60). Stable toolchain:
# RUSTC_BOOTSTRAP lets cargo-fuzz use the sanitizer flags it needs.
# Usage: fuzz/run.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-60}"; shift || true
targets=("$@"); [ ${#targets[@]} -gt 0 ] || targets=(frame manifest outboard ticket playback config range loadtest revocations)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  # Seeds: the shipped scenarios.
  [ "$t" = loadtest ] && cp ../loadtest/scenarios/*.toml "corpus/$t/"
  echo "== fuzz $t for ${secs}s"
  cargo fuzz run "$t" "corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=2048 2>&1 | grep -E "^(#[0-9]+ *DONE|Done|==[0-9]+==|SUMMARY|.*panicked)" || true
  if ls "artifacts/$t"/crash-* >/dev/null 2>&1; then echo "CRASH in $t: see fuzz/artifacts/$t"; exit 1; fi
done
echo "fuzz: no crashes"
