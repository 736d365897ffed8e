#!/usr/bin/env bash
# oha against the demo cluster's edge: the command lines of docs/loadtest.md,
# bounded (-z), on 127.0.0.1 only. Starts `tranzcast demo --serve`, reads its
# cluster.json, runs each line, prints requests/s, p99 and status codes.
#
# Usage: loadtest/oha.sh [SECONDS=5] [CONNECTIONS=32]
# Needs: oha 1.16 with http3 (see ../shared/PEERS.md), jq-free (python3).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
SECS="${1:-5}"; CONNS="${2:-32}"
command -v oha >/dev/null || { echo "loadtest/oha.sh: oha is not installed (see ../shared/PEERS.md)" >&2; exit 2; }
cargo build --release --locked --bin tranzcast >/dev/null 2>&1 || cargo build --release --locked --bin tranzcast
BIN="$CARGO_TARGET_DIR/release/tranzcast"
T="$(mktemp -d /tmp/tz-oha.XXXXXX)"
PID=
cleanup() { [ -n "$PID" ] && kill -INT "$PID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$T"; }
trap cleanup EXIT
RUST_LOG=error "$BIN" demo --serve --json --data "$T/demo" >"$T/demo.out" 2>"$T/demo.err" &
PID=$!
for _ in $(seq 600); do [ -f "$T/demo/cluster.json" ] && break; sleep 0.2; done
[ -f "$T/demo/cluster.json" ] || { echo "the demo cluster did not come up" >&2; cat "$T/demo.err" >&2; exit 1; }
sleep 0.5
get() { python3 -c "import json,sys; c=json.load(open('$T/demo/cluster.json')); print(eval(sys.argv[1]))" "$1"; }
EDGE=$(get 'c["edges"][0]["https"]'); H3=$(get 'c["edges"][0]["h3"]')
BLOB=$(get 'c["blob"]'); CERT=$(get 'c["certificate"]'); PLAY=$(get 'c["playback_url"]'); CA=$(get 'c["ca"]')
AUTH="Authorization: Tranzcast $CERT"
# Warm: the edge fetches the blob and the title once.
curl -sf --cacert "$CA" -H "$AUTH" -o /dev/null "$EDGE/v1/blobs/$BLOB"
curl -sf --cacert "$CA" -o /dev/null "$PLAY"
run() { # name, oha arguments
    local name=$1; shift
    printf 'oha -z %ss -c %s' "$SECS" "$CONNS" >"$T/$name.cmd"
    for a in "$@"; do case "$a" in *" "*) printf " '%s'" "$a" ;; *) printf ' %s' "$a" ;; esac; done >>"$T/$name.cmd"
    sed -i "s|$CERT|\$CERT|; s|$PLAY|\$PLAY|; s|$EDGE|\$EDGE|; s|$BLOB|\$BLOB|" "$T/$name.cmd"
    timeout $((SECS + 30)) oha --no-tui --insecure --output-format json -z "${SECS}s" -c "$CONNS" "$@" >"$T/$name.json" 2>/dev/null || true
}
run blob-h1 --http-version 1.1 -H "$AUTH" "$EDGE/v1/blobs/$BLOB"
run blob-h2 --http2 -p 8 -H "$AUTH" "$EDGE/v1/blobs/$BLOB"
run blob-h3 --http-version 3 -H "$AUTH" "$EDGE/v1/blobs/$BLOB"
run range-h2 --http2 -p 8 -H "$AUTH" -H "Range: bytes=4096-8191" "$EDGE/v1/blobs/$BLOB"
run play-h2 --http2 -p 8 -H "Range: bytes=1000000-1065535" "$PLAY"
run play-h3 --http-version 3 -H "Range: bytes=1000000-1065535" "$PLAY"
run unauth-h2 --http2 -p 8 "$EDGE/v1/blobs/$BLOB"
python3 - "$T" "$SECS" <<'PY'
import json, os, sys
T, secs = sys.argv[1], float(sys.argv[2])
print(f"{'load':<12}{'req/s':>10}{'p99 ms':>9}  statuses                 command")
for name in ["blob-h1", "blob-h2", "blob-h3", "range-h2", "play-h2", "play-h3", "unauth-h2"]:
    try:
        r = json.load(open(os.path.join(T, name + ".json")))
    except Exception:
        print(f"{name:<12}  (no result)"); continue
    codes = r.get("statusCodeDistribution", {})
    ok = sum(v for k, v in codes.items())
    p99 = ((r.get("latencyPercentiles") or {}).get("p99") or 0) * 1000
    cmd = open(os.path.join(T, name + ".cmd")).read().strip()
    print(f"{name:<12}{ok / secs:>10.0f}{p99:>9.1f}  {json.dumps(codes):<24} {cmd}")
PY
