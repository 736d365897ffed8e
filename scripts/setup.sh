#!/usr/bin/env bash
# Installs the system packages the build and the tests need (Debian/Ubuntu).
# libclang-dev: bindgen for RocksDB's bindings. ffmpeg: test clips, --encode, probing.
set -euo pipefail
need=()
for pkg in libclang-dev ffmpeg; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}" >&2
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust with rustup first" >&2; exit 1; }
