#!/usr/bin/env bash
# Multi-source download speed: our smart client against aria2c, both fetching
# the same title from three sources whose links are limited to known rates,
# and against the physical limit (the sum of those rates).
#
# Everything runs inside a network namespace this script creates (its own
# loopback, nothing leaves it). tc shapes that loopback per source port with
# HTB, so each source has a link of its own: our three nodes (origin-staged,
# complete sets) and three of our edges share the three shaped classes (node i
# and edge i: same rate; never used at once). aria2c downloads the title's
# playback URLs on the edges (the plaintext, decrypted at the edge: what a
# standard player or downloader gets from us); the edges are warmed first
# (one unshaped download each), as the nodes are by staging.
#
# Runs, each on a cold client (after one untimed play: servers warm, as in production):
#   ours       tranzcast play (default settings) from the three nodes (--source: the
#              edges are cluster members too, but they are aria2c's)
#   single     tranzcast play --source <the fastest node> (time to first segment)
#   aria2c     aria2c -s3 -x3 -k1M on the three playback URLs, all three as
#              "localhost" (-x3 lets it use all three): tuned for this case
#              (1 MiB pieces let it move work off a slow source), the strongest
#              aria2c we found
#   shipped    aria2c with its defaults (-s5, one connection per host, 20 MiB
#              minimum split) on the same URLs named as three hosts
#              (127.0.0.1, .2, .3), as a user with three URLs would run it
#   degrading  ours and aria2c again, the fastest source dropped to a tenth of
#              its rate halfway through (tc class change)
# Both aria2c runs happen steady and degrading.
# Prints rates, ratios and the goals: ours >= 0.95 of the physical limit and
# ahead of aria2c; >= 1.5x aria2c and >= 0.95 of its own limit when degrading; time to first segment
# <= 1.1x the fastest single source's.
#
# Usage: bench/multisource.sh [MIB=64] [RATES_MBIT="48 32 16"]   (root: ip netns, tc); BIN=path: that binary
# ONLY_OURS=1 runs only our client (quick look; ONLY_OURS=degrade: its degrading run; ONLY_OURS=single: the
# single-source run); REPEAT=N runs each of those N times on the same setup; QUEUE_MS=N gives each shaped
# link a queue of N ms of its rate (bfifo; default: HTB's 1000-packet FIFO).
# RUST_LOG=tranzcast_client=trace with KEEP=1 leaves $T/play.log with a per-source meter every 200 ms.
# Needs: iproute2 (ip, tc), aria2c, curl, python3, openssl.
set -euo pipefail
cd "$(dirname "$0")/.."
MIB="${1:-64}"
RATES="${2:-48 32 16}"
if [ -z "${TZ_IN_NETNS:-}" ]; then
    for tool in ip tc aria2c curl python3 openssl; do
        command -v "$tool" >/dev/null || { echo "bench/multisource.sh: $tool is not installed (apt-get install -y iproute2 aria2)" >&2; exit 2; }
    done
    . scripts/env.sh
    # BIN=path runs a given build (an A/B of two commits); else this tree's, built now.
    if [ -z "${BIN:-}" ]; then
        cargo build --release --locked --bin tranzcast >/dev/null 2>&1 || cargo build --release --locked --bin tranzcast
    fi
    NS="tzbench-$$"
    ip netns add "$NS" || { echo "bench/multisource.sh: cannot create a network namespace (needs root / CAP_NET_ADMIN)" >&2; exit 2; }
    trap 'ip netns del "$NS" 2>/dev/null || true' EXIT
    TZ_IN_NETNS=1 BIN="${BIN:-$CARGO_TARGET_DIR/release/tranzcast}" ip netns exec "$NS" bash "$0" "$MIB" "$RATES"
    exit $?
fi

# ---- inside the namespace ----
read -r -a RATE <<<"$RATES"
[ "${#RATE[@]}" -eq 3 ] || { echo "give three rates (Mbit/s)" >&2; exit 2; }
. bench/lib.sh
bench_tmp ms
ip link set lo up
# Jumbo frames, as between servers in one data centre: TCP/IP headers cost
# 0.7% of the link (1.5 KB frames would cost 4.4%, 64 KiB loopback frames
# make HTB bursty). The physical limit below is the link rate itself.
ip link set lo mtu 9000
wait_up() { for _ in $(seq 200); do curl -sk "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "not up: $1" >&2; exit 1; }

OP=8443
NODE_PORT=(9001 9002 9003)
EDGE_PORT=(9101 9102 9103)
tc qdisc add dev lo root handle 1: htb default 99
tc class add dev lo parent 1: classid 1:99 htb rate 20gbit quantum 60000
for i in 0 1 2; do
    tc class add dev lo parent 1: classid "1:1$i" htb rate "${RATE[$i]}mbit" ceil "${RATE[$i]}mbit" burst 64k cburst 64k quantum 9014
    if [ -n "${QUEUE_MS:-}" ]; then
        tc qdisc add dev lo parent "1:1$i" bfifo limit "$(( RATE[i] * 125 * QUEUE_MS ))"
    fi
    for port in "${NODE_PORT[$i]}" "${EDGE_PORT[$i]}"; do
        tc filter add dev lo parent 1: protocol ip prio 1 u32 match ip sport "$port" 0xffff flowid "1:1$i"
    done
done
set_rate() { tc class change dev lo parent 1: classid "1:1$1" htb rate "$2mbit" ceil "$2mbit" burst 64k cburst 64k quantum 9014; }

echo "== setup: ${MIB} MiB title in 1 MiB segments; sources limited to ${RATE[*]} Mbit/s"
bench_origin "$OP" "$MIB"
for i in 0 1 2; do
    "$BIN" edge --ca-dir "$T/origin/tls" --set role=node --set "name=node-$((i + 1))" --set "data_dir=$T/node-$i" \
        --set "origin=$O" --set "cluster_token=$CLUSTER_TOKEN" --set "member_credential=$(credential node-$((i + 1)) node)" --set "listen.https=127.0.0.1:${NODE_PORT[$i]}" \
        >"$T/node-$i.log" 2>&1 &
    PIDS+=($!)
done
for i in 0 1 2; do wait_up "https://localhost:${NODE_PORT[$i]}/healthz"; done
# Staged: every node holds the complete set (the origin pushes it; unshaped).
for i in 0 1 2; do
    for _ in $(seq 600); do
        held=$(curl -s --cacert "$CA" "https://localhost:${NODE_PORT[$i]}/v1/pulse?title=film" |
            python3 -c 'import json,sys; s=json.load(sys.stdin).get("segments") or {}; print(int(s.get("held",0)==s.get("total",-1)))' 2>/dev/null || echo 0)
        [ "$held" = 1 ] && break
        sleep 0.2
    done
    [ "$held" = 1 ] || { echo "node-$((i + 1)) never held the set" >&2; exit 1; }
done
CUST=$(curl -s --cacert "$CA" -H "authorization: Bearer $STORE_TOKEN" -d '{"name":"bench"}' -H 'content-type: application/json' "$O/v1/customers" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["customer"])')
ticket() {
    curl -s --cacert "$CA" -H "authorization: Bearer $STORE_TOKEN" -H 'content-type: application/json' \
        -d "{\"customer\":$CUST,\"title\":\"film\",\"kind\":\"buy\"}" "$O/v1/orders" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ticket"])'
}

# Three edges, one per shaped port, on every address of the namespace's
# loopback (so 127.0.0.2 and .3 reach them too), with a certificate for those
# names: aria2c's sources. Their misses go to the origin (unshaped).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost,IP:127.0.0.1,IP:127.0.0.2,IP:127.0.0.3 -keyout "$T/peer.key" -out "$T/peer.pem" 2>/dev/null
for i in 0 1 2; do
    "$BIN" edge --ca-dir "$T/origin/tls" --set role=edge --set "name=edge-$((i + 1))" --set "data_dir=$T/edge-$i" \
        --set "origin=$O" --set "cluster_token=$CLUSTER_TOKEN" --set "member_credential=$(credential edge-$((i + 1)) edge)" --set "listen.https=0.0.0.0:${EDGE_PORT[$i]}" \
        --set "tls.cert=$T/peer.pem" --set "tls.key=$T/peer.key" --set "ca=$CA" >"$T/edge-$i.log" 2>&1 &
    PIDS+=($!)
done
for i in 0 1 2; do wait_up "https://localhost:${EDGE_PORT[$i]}/healthz"; done
# Playback URLs on the three edges (a fresh url-mode play each time), in
# EDGE_PORT order, as "localhost" or ("hosts") as 127.0.0.(i+1).
play_urls() { # localhost|hosts
    local t; t=$(ticket)
    curl -s --cacert "$CA" -H 'content-type: application/json' -d "{\"ticket\":\"$t\",\"mode\":\"url\",\"urls\":3}" "$O/v1/play" |
        python3 -c '
import json, sys, urllib.parse
ports, names = [int(p) for p in sys.argv[1:4]], sys.argv[4]
urls = {urllib.parse.urlsplit(u["url"]).port: u["url"] for u in json.load(sys.stdin).get("urls", [])}
assert sorted(urls) == sorted(ports), f"playback URLs on {sorted(urls)}, wanted {ports}"
for i, p in enumerate(ports):
    host = "localhost" if names == "localhost" else f"127.0.0.{i + 1}"
    print(urls[p].replace(f"https://localhost:{p}/", f"https://{host}:{p}/", 1))
' "${EDGE_PORT[@]}" "$1"
}
# The edges join the cluster with their playback keys: wait until the origin hands out URLs on all three.
for _ in $(seq 100); do play_urls localhost >/dev/null 2>&1 && break; sleep 0.2; done
# Warm: each edge's whole title once, links unshaped meanwhile (the nodes were warmed by staging).
for i in 0 1 2; do set_rate "$i" 20000; done
mapfile -t WARM < <(play_urls localhost)
for u in "${WARM[@]}"; do curl -sf --cacert "$T/peer.pem" -o /dev/null "$u"; done
for i in 0 1 2; do set_rate "$i" "${RATE[$i]}"; done

BYTES=$(stat -c %s "$T/film.bin")
LIMIT=$(python3 -c "print(sum(float(r) for r in '${RATES}'.split()) * 1e6 / 8)")
HALF=$(python3 -c "print($BYTES / $LIMIT / 2)")
FASTEST=0
now() { date +%s.%N; }

# ours [--source NAME] [degrade] -> "seconds startup_ms"
ours() {
    local extra=(--source node-1 --source node-2 --source node-3) degrade=""
    [ "${1:-}" = single ] && extra=(--source node-$((FASTEST + 1)))
    [ "${1:-}" = degrade ] && degrade=1
    ticket >"$T/ticket"
    rm -f "$T/out.bin"
    local t0; t0=$(now)
    "$BIN" play --origin "$O" --ca "$CA" --ticket "@$T/ticket" --out "$T/out.bin" --json ${PLAY_ARGS:-} "${extra[@]}" >"$T/play.json" 2>"$T/play.log" &
    local pid=$!
    if [ -n "$degrade" ]; then sleep "$HALF"; set_rate "$FASTEST" "$(python3 -c "print(${RATE[$FASTEST]} / 10)")"; fi
    wait "$pid" || { cat "$T/play.log" >&2; exit 1; }
    local t1; t1=$(now)
    [ -n "$degrade" ] && set_rate "$FASTEST" "${RATE[$FASTEST]}"
    cmp -s "$T/out.bin" "$T/film.bin" || { echo "ours: output differs" >&2; exit 1; }
    python3 -c "import json; j=json.load(open('$T/play.json')); print($t1-$t0, j['startup_ms'], json.dumps(j['sources'], separators=(',', ':')), 'in-play', round(j['seconds'], 3))"
}
aria() { # tuned|shipped [degrade]
    local mode="$1" degrade="${2:-}" args urls=()
    if [ "$mode" = tuned ]; then
        args=(-s3 -x3 -k1M --min-split-size=1M --uri-selector=inorder)
        mapfile -t urls < <(play_urls localhost)
    else
        args=()
        mapfile -t urls < <(play_urls hosts)
    fi
    [ "${#urls[@]}" -eq 3 ] || { echo "no playback URLs" >&2; exit 1; }
    rm -f "$T/aria.bin"
    local t0; t0=$(now)
    aria2c -q --async-dns=false --ca-certificate="$T/peer.pem" "${args[@]}" --file-allocation=none \
        --allow-overwrite=true -d "$T" -o aria.bin "${urls[@]}" &
    local pid=$!
    if [ -n "$degrade" ]; then sleep "$HALF"; set_rate "$FASTEST" "$(python3 -c "print(${RATE[$FASTEST]} / 10)")"; fi
    wait "$pid"
    local t1; t1=$(now)
    [ -n "$degrade" ] && set_rate "$FASTEST" "${RATE[$FASTEST]}"
    cmp "$T/aria.bin" "$T/film.bin" >&2 || { ls -la "$T" >&2; echo "aria2c: output differs" >&2; exit 1; }
    python3 -c "print($t1-$t0)"
}

echo "== runs (each from a cold client)"
# One untimed play first: the servers' first requests after start (RocksDB
# table readers, blocking-pool threads, TLS) cost ~20 ms of the first segment
# and ~0.1 s of the play, once per server process; the edges paid their
# equivalent in the warm-up above (a whole download from each). The
# client stays cold: a new process, new connections, nothing measured.
ours >/dev/null
if [ -n "${ONLY_OURS:-}" ]; then
    # Quick looks: one kind of run, REPEAT times on this setup (with KEEP=1, play-K.log is run K's log).
    for k in $(seq "${REPEAT:-1}"); do
        case "$ONLY_OURS" in
        single)
            read -r SINGLE_S SINGLE_START _ < <(ours single)
            echo "single:      ${SINGLE_S}s, first segment ${SINGLE_START} ms (node-$((FASTEST + 1)) only)" ;;
        degrade)
            read -r OURS_D _ OURS_D_SRC < <(ours degrade)
            echo "ours, degrading:   ${OURS_D}s, bytes by source $OURS_D_SRC" ;;
        *)
            read -r OURS_S OURS_START OURS_SRC < <(ours)
            echo "ours:        ${OURS_S}s, first segment ${OURS_START} ms, bytes by source $OURS_SRC" ;;
        esac
        cp "$T/play.log" "$T/play-$k.log"
    done
    exit 0
fi
read -r OURS_S OURS_START OURS_SRC < <(ours)
echo "ours:        ${OURS_S}s, first segment ${OURS_START} ms, bytes by source $OURS_SRC"
read -r SINGLE_S SINGLE_START _ < <(ours single)
echo "single:      ${SINGLE_S}s, first segment ${SINGLE_START} ms (node-$((FASTEST + 1)) only)"
ARIA1_S=$(aria shipped)
echo "aria2c as shipped, three hosts:  ${ARIA1_S}s"
ARIA_S=$(aria tuned)
echo "aria2c -x3, tuned:  ${ARIA_S}s"
read -r OURS_D _ OURS_D_SRC < <(ours degrade)
echo "ours, degrading:   ${OURS_D}s, bytes by source $OURS_D_SRC"
ARIA1_D=$(aria shipped degrade)
echo "aria2c as shipped, degrading: ${ARIA1_D}s"
ARIA_D=$(aria tuned degrade)
echo "aria2c -x3, tuned, degrading: ${ARIA_D}s"

echo "aria2c's sources (their /metrics, warm-up included):"
for i in 0 1 2; do
    curl -s --cacert "$T/peer.pem" "https://localhost:${EDGE_PORT[$i]}/metrics" |
        awk -v e="edge-$((i + 1))" '/^edge_(playback_requests|http_response_bytes)_total/ { n = $1; sub(/\{.*/, "", n); s[n] += $NF }
            END { printf "  %s:", e; for (k in s) printf " %s %d", k, s[k]; print "" }'
done
python3 - "$BYTES" "$LIMIT" "$OURS_S" "$OURS_START" "$SINGLE_S" "$SINGLE_START" "$ARIA_S" "$OURS_D" "$ARIA_D" "$ARIA1_S" "$ARIA1_D" "${RATE[$FASTEST]}" "$HALF" <<'PY'
import sys; sys.path.insert(0, "bench")  # the scripts run from the repository's root
from results import record
import sys
b, limit, ours, start, single, single_start, aria, ours_d, aria_d, aria1, aria1_d, fastest_mbit, half = map(float, sys.argv[1:])
mbs = lambda s: b / s / 1e6
# The degrading run's own limit: every link full until the fastest drops to
# a tenth at `half` seconds, the rest at what is left.
after = limit - 0.9 * fastest_mbit * 1e6 / 8
limit_d = half + max(b - limit * half, 0) / after
rows = [
    ("ours / physical limit", mbs(ours), limit / 1e6, mbs(ours) * 1e6 / limit, ">= 0.95"),
    ("ours / physical limit, degrading", mbs(ours_d), mbs(limit_d), limit_d / ours_d, ">= 0.95"),
    ("ours / aria2c -x3", mbs(ours), mbs(aria), aria / ours, "> 1.0"),
    ("ours / aria2c -x3, degrading", mbs(ours_d), mbs(aria_d), aria_d / ours_d, ">= 1.5"),
    ("ours / aria2c as shipped", mbs(ours), mbs(aria1), aria1 / ours, "> 1.0"),
    ("ours / aria2c as shipped, degrading", mbs(ours_d), mbs(aria1_d), aria1_d / ours_d, ">= 1.5"),
    ("first segment / single fastest (ms)", start, single_start, start / single_start, "<= 1.1"),
]
print()
print(f"{'figure':<38}{'ours':>10}{'peer':>10}{'ratio':>8}  goal")
for name, o, p, r, goal in rows:
    print(f"{name:<38}{o:>10.2f}{p:>10.2f}{r:>8.2f}  {goal}")
    record(f"client: {name}" + ("" if "ms" in name else ", MB/s"), f"{o:.2f}", f"{p:.2f}", r, goal)
print(f"(MB/s unless noted; {b / 1e6:.1f} MB; wall time of each process, cold client)")
PY
