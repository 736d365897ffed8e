#!/usr/bin/env bash
# The peers and the load tool the benches measure against (../shared/PEERS.md),
# installed when missing, so a fresh machine runs bench/all.sh without hand
# work: nginx (the HTTP/1.1 and HTTP/2 peer) and Caddy (the HTTP/3 peer) from
# Debian; oha built with cargo, HTTP/3 included (about 15 minutes the first
# time, on two cores). The tests need none of them: scripts/setup.sh leaves
# them out. Debian starts the packaged services; the benches run their own
# instances on loopback, so those are stopped again at once.
set -euo pipefail
need=()
for p in nginx caddy; do
  command -v "$p" >/dev/null || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "bench/peers.sh: installing ${need[*]}" >&2
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  for p in "${need[@]}"; do
    $SUDO service "$p" stop >/dev/null 2>&1 || $SUDO pkill -x "$p" 2>/dev/null || true
  done
fi
if ! command -v oha >/dev/null; then
  echo "bench/peers.sh: building oha 1.16.0 with HTTP/3 (cargo install; about 15 minutes)" >&2
  cargo install --quiet oha --version 1.16.0 --locked --features http3
fi
