#!/usr/bin/env bash
# The cost of decrypting at the edge: oha load on a playback URL (plaintext,
# decrypted in memory by the edge) next to the same load on the raw blobs
# (ciphertext, with the certificate header), same edge, same run, over TLS
# (HTTP/2) on 127.0.0.1. Random ranges: PROCS oha processes run at once, each
# with its own random 64 KiB range (oha keeps one Range header per run), so
# the load spreads over the whole title / every blob.
#
# Usage: bench/play.sh [SECONDS=5] [CONNECTIONS=32] [PROCS=8]
# Prints requests/s and p99 for both and the ratio playback/raw.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
SECS="${1:-5}"; CONNS="${2:-32}"; PROCS="${3:-8}"
for tool in oha curl python3; do
    command -v "$tool" >/dev/null || { echo "bench/play.sh: $tool is not installed (see ../shared/PEERS.md)" >&2; exit 2; }
done
. bench/lib.sh
bench_bin
bench_tmp play
OP=$(free_port); EP=$(free_port)

echo "== setup: 32 MiB title in 1 MiB segments, origin, edge"
bench_origin "$OP" 32
"$BIN" edge --ca-dir "$T/origin/tls" --set role=edge --set name=bench-edge --set "data_dir=$T/edge" \
    --set "origin=$O" --set "cluster_token=$CLUSTER_TOKEN" --set "member_credential=$(credential bench-edge edge)" --set "listen.https=127.0.0.1:$EP" \
    --set store.cache_bytes=256MiB >"$T/edge.log" 2>&1 &
PIDS+=($!)
wait_up "https://localhost:$EP/healthz"
order() {
    local cust
    cust=$(curl -s --cacert "$CA" -H "authorization: Bearer $STORE_TOKEN" -d '{"name":"bench"}' -H 'content-type: application/json' "$O/v1/customers" | python3 -c 'import json,sys; print(json.load(sys.stdin)["customer"])')
    curl -s --cacert "$CA" -H "authorization: Bearer $STORE_TOKEN" -H 'content-type: application/json' \
        -d "{\"customer\":$cust,\"title\":\"film\",\"kind\":\"buy\"}" "$O/v1/orders" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ticket"])'
}
CERT=$(curl -s --cacert "$CA" -H 'content-type: application/json' -d "{\"ticket\":\"$(order)\"}" "$O/v1/play" | python3 -c 'import json,sys; print(json.load(sys.stdin)["certificate"])')
AUTH="Authorization: Tranzcast $CERT"
URL=$("$BIN" play --origin "$O" --ca "$CA" --ticket "$(order)" --url --urls 1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["urls"][0]["url"])')
# Both warmed: every blob through the edge once, the whole title once.
for s in $SEGS; do echo "https://localhost:$EP/v1/blobs/$s"; done >"$T/blobs.urls"
while read -r u; do curl -sf --cacert "$CA" -H "$AUTH" -o /dev/null "$u"; done <"$T/blobs.urls"
curl -sf --cacert "$CA" -o "$T/played" "$URL"
cmp -s "$T/played" "$T/film.bin" || { echo "bench/play.sh: the playback URL did not give the title back" >&2; exit 1; }

LEN=$(stat -c %s "$T/film.bin")
echo "== load: ${SECS}s per case, $CONNS connections over h2 in $PROCS oha processes, random 64 KiB ranges"
load() { # name, then oha URL arguments
    local name=$1; shift
    local per=$(( CONNS / PROCS < 1 ? 1 : CONNS / PROCS )) jobs=()
    for i in $(seq "$PROCS"); do
        local off=$(( (RANDOM * 32768 + RANDOM) % (LEN - 65536) ))
        [ "$name" = raw ] && off=$(( off % (1048576 - 65536) ))
        timeout $((SECS + 30)) oha --no-tui --insecure --output-format json -z "${SECS}s" --http2 -c 1 -p "$per" \
            -H "Range: bytes=$off-$((off + 65535))" "$@" >"$T/$name.$i.json" 2>/dev/null &
        jobs+=($!)
    done
    for j in "${jobs[@]}"; do wait "$j" || true; done
}
load raw -H "$AUTH" --urls-from-file "$T/blobs.urls"
load play "$URL"
curl -s --cacert "$CA" "https://localhost:$EP/metrics" | grep -E '^edge_playback_(requests|refused|decrypted)' | sed 's/^/   /'
python3 - "$T" "$SECS" "$PROCS" <<'PY'
import sys; sys.path.insert(0, "bench")  # the scripts run from the repository's root
from results import record
import json, os, sys
T, secs, procs = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
def agg(name):
    ok = bad = 0; p99 = []
    for i in range(1, procs + 1):
        r = json.load(open(os.path.join(T, f"{name}.{i}.json")))
        codes = r.get("statusCodeDistribution", {})
        ok += codes.get("206", 0)
        bad += sum(v for k, v in codes.items() if k != "206") + sum(r.get("errorDistribution", {}).values())
        p99.append((r.get("latencyPercentiles") or {}).get("p99") or 0)
    return ok / secs, max(p99) * 1000, bad
raw, play = agg("raw"), agg("play")
print(f"{'load':<34}{'req/s':>10}{'p99 ms':>10}{'cut':>6}")
print(f"{'raw blobs (ciphertext, cert)':<34}{raw[0]:>10.0f}{raw[1]:>10.1f}{raw[2]:>6}")
print(f"{'playback URL (decrypted at edge)':<34}{play[0]:>10.0f}{play[1]:>10.1f}{play[2]:>6}")
print(f"\nplayback/raw requests/s: {play[0] / raw[0]:.2f}   (the cost of decrypting at the edge; 1.0 = free)")
record("edge playback URL / raw blobs, 64 KiB ranges req/s", f"{play[0]:.0f}", f"{raw[0]:.0f}", play[0] / raw[0], "~1.0")
PY
