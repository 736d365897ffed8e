#!/usr/bin/env bash
# Edge serving speed beside nginx (HTTP/1.1, HTTP/2) and Caddy (HTTP/2,
# HTTP/3), all over TLS on 127.0.0.1, same machine, same run, same load tool
# (oha). Two loads: hot 1 MiB blobs (16 of them, random order), and 4 KiB
# ranges of them. Our edge gets the certificate header on every request, so
# its access check is part of the figure; nginx and Caddy serve the same
# bytes as plain files.
#
# Usage: bench/edge.sh [SECONDS=5] [CONNECTIONS=32]; CASES=REGEX runs only matching cases (e.g. 'edge-h3').
# REPEAT=N runs N rounds (every server in each) and prints medians: this machine drifts over minutes.
# EDGE_ENV="VAR=VALUE ..." starts the edge with those variables (e.g. TOKIO_WORKER_THREADS=1).
# BIN=PATH runs another tranzcast binary (before/after comparisons).
# BIN2=PATH also runs a second edge of that build against the same origin (cases edge2-*), each of its
#   cases beside the first edge's (after it in odd rounds, before it in even ones: use an even REPEAT),
#   and prints their paired ratios per round: a before/after comparison that this machine's drift (a
#   fifth between minutes) does not swamp.
# PERF=DIR profiles the edge and the floor per case (PERF_CALLGRAPH="--call-graph dwarf,16384" for call chains);
# STRACE=DIR counts every server's system calls for 2 s of each case (strace -c), a file per case in DIR;
# STAT=1 keeps perf stat counts (context switches, migrations) per case in the run directory (KEEP=1 keeps it).
# VETH=1 (root): the load crosses a veth pair with MTU 1500 between two network namespaces the script
#   creates (servers in one, oha in the other) instead of loopback, whose 64 KiB MTU flatters TCP (it
#   sends 64 KiB segments where QUIC sends datagrams of about 1,452 bytes). Nothing leaves the namespaces.
# QUICHE=0 skips the tokio-quiche floor (bench/quiche-floor: Cloudflare's quiche and BoringSSL behind
#   tokio, built on first use with cmake, which the script installs with apt when it can; ~10 minutes).
# Needs: nginx, caddy (apt), oha 1.16 with http3 (see ../shared/PEERS.md).
# Prints requests/s and p99 per case and the ratios:
#   edge/nginx over h1 and h2 (goal >= 1.2), our h3/our h2 (goal >= 0.9),
#   and Caddy's h3/h2 beside it; and the floor (`tranzcast bench floor-server`:
#   our listeners, hyper, rustls, quinn + our HTTP/3, with no access check, store or
#   demand behind them): floor/nginx is what the stack allows, edge/floor what
#   the edge's own work costs. Per case also: server and oha CPU per request,
#   server CPU seconds per GB, and UDP datagrams received per request (udp/r:
#   over the veth, what oha sent the servers, ACKs included; on loopback both
#   directions, a GRO batch counting once).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${VETH:-}" ] && [ -z "${TZ_EDGE_NETNS:-}" ]; then
    srv_ns="tzedge-srv-$$" cli_ns="tzedge-cli-$$" srv_if="tzs$$" cli_if="tzc$$"
    ip netns add "$srv_ns" || { echo "bench/edge.sh: VETH=1 needs root (ip netns)" >&2; exit 2; }
    trap 'ip netns del "$srv_ns" 2>/dev/null || true; ip netns del "$cli_ns" 2>/dev/null || true' EXIT
    ip netns add "$cli_ns"
    ip link add "$srv_if" type veth peer name "$cli_if"
    ip link set "$srv_if" netns "$srv_ns"
    ip link set "$cli_if" netns "$cli_ns"
    ip -n "$srv_ns" addr add 10.199.0.1/24 dev "$srv_if"
    ip -n "$cli_ns" addr add 10.199.0.2/24 dev "$cli_if"
    for pair in "$srv_ns $srv_if" "$cli_ns $cli_if"; do
        read -r ns ifc <<<"$pair"
        ip -n "$ns" link set lo up
        ip -n "$ns" link set "$ifc" mtu 1500 up
    done
    echo "== over a veth pair, MTU 1500: servers in $srv_ns (10.199.0.1), oha in $cli_ns"
    TZ_EDGE_NETNS=1 VETH_CLI="$cli_ns" VETH_SRV=10.199.0.1 ip netns exec "$srv_ns" bash "$0" "$@"
    exit $?
fi
# Where the servers listen: loopback, or every address of their namespace (VETH=1).
LISTEN="${VETH_SRV:+0.0.0.0}"
LISTEN="${LISTEN:-127.0.0.1}"
. scripts/env.sh
SECS="${1:-5}"
CONNS="${2:-32}"
for tool in nginx caddy oha openssl curl python3; do
    command -v "$tool" >/dev/null || { echo "bench/edge.sh: $tool is not installed (see ../shared/PEERS.md)" >&2; exit 2; }
done
. bench/lib.sh
bench_bin
# The tokio-quiche floor, built outside the workspace (its own lock file and
# target directory): the other HTTP/3 stack that runs at scale, beside quinn.
QF=""
if [ "${QUICHE:-1}" != 0 ]; then
    command -v cmake >/dev/null || { [ "$(id -u)" = 0 ] && apt-get install -y -q cmake >/dev/null 2>&1; } || true
    QF_TARGET="${CARGO_TARGET_DIR%/*}/quiche-floor"
    if command -v cmake >/dev/null && CARGO_TARGET_DIR="$QF_TARGET" cargo build --release --locked \
        --manifest-path bench/quiche-floor/Cargo.toml >"/tmp/tz-quiche-floor-build.log" 2>&1; then
        QF="$QF_TARGET/release/tranzcast-quiche-floor"
    else
        echo "bench/edge.sh: no tokio-quiche floor (cmake missing or build failed: /tmp/tz-quiche-floor-build.log)" >&2
    fi
fi
bench_tmp edge
bench_cleanup_more() { [ -f "$T/nginx/nginx.pid" ] && nginx -p "$T/nginx" -c "$T/nginx/nginx.conf" -s quit 2>/dev/null || true; }

OP=$(free_port); EP=$(free_port); NP=$(free_port); CP=$(free_port)

echo "== setup: 16 MiB title in 1 MiB segments, origin, edge, nginx, caddy"
bench_origin "$OP" 16
env ${EDGE_ENV:-} "$BIN" edge --ca-dir "$T/origin/tls" --set role=edge --set name=bench-edge --set "data_dir=$T/edge" \
    --set "origin=https://localhost:$OP" --set "cluster_token=$CLUSTER_TOKEN" --set "member_credential=$(credential bench-edge edge)" --set "listen.https=$LISTEN:$EP" \
    --set store.cache_bytes=256MiB >"$T/edge.log" 2>&1 &
EDGE_PID=$!
PIDS+=($!)
wait_up "https://localhost:$EP/healthz"
E2P="" EDGE2_PID=""
if [ -n "${BIN2:-}" ]; then
    E2P=$(free_port)
    env ${EDGE_ENV:-} "$BIN2" edge --ca-dir "$T/origin/tls" --set role=edge --set name=bench-edge2 --set "data_dir=$T/edge2" \
        --set "origin=https://localhost:$OP" --set "cluster_token=$CLUSTER_TOKEN" --set "member_credential=$(credential bench-edge2 edge)" \
        --set "listen.https=$LISTEN:$E2P" --set store.cache_bytes=256MiB >"$T/edge2.log" 2>&1 &
    EDGE2_PID=$!
    PIDS+=($!)
    wait_up "https://localhost:$E2P/healthz"
fi

# A customer rents the title and plays it: the certificate every request carries.
O="https://localhost:$OP"
CUST=$(curl -s --cacert "$CA" -H "authorization: Bearer $STORE_TOKEN" -d '{"name":"bench"}' -H 'content-type: application/json' "$O/v1/customers" | python3 -c 'import json,sys; print(json.load(sys.stdin)["customer"])')
TICKET=$(curl -s --cacert "$CA" -H "authorization: Bearer $STORE_TOKEN" -H 'content-type: application/json' \
    -d "{\"customer\":$CUST,\"title\":\"film\",\"kind\":\"rent\",\"plays\":5,\"hours\":2}" "$O/v1/orders" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ticket"])')
CERT=$(curl -s --cacert "$CA" -H 'content-type: application/json' -d "{\"ticket\":\"$TICKET\"}" "$O/v1/play" | python3 -c 'import json,sys; print(json.load(sys.stdin)["certificate"])')
AUTH="Authorization: Tranzcast $CERT"

# The same blobs as files for nginx and Caddy, fetched through the edge (which warms it).
mkdir -p "$T/www/v1/blobs"
for s in $SEGS; do
    curl -sf --cacert "$CA" -H "$AUTH" -o "$T/www/v1/blobs/$s" "https://localhost:$EP/v1/blobs/$s"
    [ -z "$E2P" ] || curl -sf --cacert "$CA" -H "$AUTH" -o /dev/null "https://localhost:$E2P/v1/blobs/$s"
done
python3 - "$T/www/v1/blobs" <<'PY'
import hashlib, os, sys
d = sys.argv[1]
n = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
assert len(os.listdir(d)) == 16 and n > 16 << 20, (len(os.listdir(d)), n)
PY

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost -keyout "$T/peer.key" -out "$T/peer.pem" 2>/dev/null
mkdir -p "$T/nginx/logs" "$T/nginx/tmp"
cat >"$T/nginx/nginx.conf" <<EOF
worker_processes auto;
pid $T/nginx/nginx.pid;
error_log $T/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    open_file_cache max=1000 inactive=60s;
    client_body_temp_path $T/nginx/tmp; proxy_temp_path $T/nginx/tmp; fastcgi_temp_path $T/nginx/tmp;
    uwsgi_temp_path $T/nginx/tmp; scgi_temp_path $T/nginx/tmp;
    server {
        listen $LISTEN:$NP ssl http2;
        ssl_certificate $T/peer.pem;
        ssl_certificate_key $T/peer.key;
        root $T/www;
        default_type application/octet-stream;
    }
}
EOF
chmod -R a+rX "$T"  # nginx's workers run as another user
nginx -p "$T/nginx" -c "$T/nginx/nginx.conf"
wait_up "https://localhost:$NP/"
mkdir -p "$T/caddy/home" "$T/caddy/data" "$T/caddy/config"
cat >"$T/caddy/Caddyfile" <<EOF
{
    skip_install_trust
    admin off
    auto_https disable_redirects
    servers {
        protocols h1 h2 h3
    }
}
https://localhost:$CP {
    tls $T/peer.pem $T/peer.key
    root * $T/www
    file_server
}
EOF
HOME="$T/caddy/home" XDG_DATA_HOME="$T/caddy/data" XDG_CONFIG_HOME="$T/caddy/config" \
    caddy run --config "$T/caddy/Caddyfile" --adapter caddyfile >"$T/caddy.log" 2>&1 &
CADDY_PID=$!
PIDS+=($!)
wait_up "https://localhost:$CP/"

# The floor: our serving stack (net::HttpServer: hyper, rustls, quinn + our HTTP/3)
# with nothing behind it, the same files from memory, one range at most, no
# access check. Where the edge stands against the libraries it is built on.
"$BIN" bench floor-server --listen "$LISTEN:0" --dir "$T/www/v1/blobs" --cert "$T/peer.pem" --key "$T/peer.key" >"$T/floor.addr" 2>"$T/floor.log" &
FLOOR_PID=$!
PIDS+=($!)
for _ in $(seq 100); do [ -s "$T/floor.addr" ] && break; sleep 0.1; done
FP=$(sed 's/.*://' "$T/floor.addr")
wait_up "https://localhost:$FP/"
QP=""
if [ -n "$QF" ]; then
    "$QF" "$LISTEN:0" "$T/www/v1/blobs" "$T/peer.pem" "$T/peer.key" >"$T/quiche.addr" 2>"$T/quiche.log" &
    QF_PID=$!
    PIDS+=($!)
    for _ in $(seq 100); do [ -s "$T/quiche.addr" ] && break; sleep 0.1; done
    QP=$(sed 's/.*://' "$T/quiche.addr")
fi

for s in $SEGS; do echo "https://localhost:PORT/v1/blobs/$s"; done >"$T/urls.tmpl"
# CPU time (clock ticks, user + system) of a server's processes: on a 2-core
# machine shared with the load tool, requests/s depend on both programs' cost
# per request, so each case also records each side's CPU per request.
server_pids() {
    case $1 in
        edge-*) echo "$EDGE_PID" ;;
        edge2-*) echo "$EDGE2_PID" ;;
        nginx-*) echo "$(cat "$T/nginx/nginx.pid") $(pgrep -P "$(cat "$T/nginx/nginx.pid")" | tr '\n' ' ')" ;;
        caddy-*) echo "$CADDY_PID" ;;
        floor-*) echo "$FLOOR_PID" ;;
        quiche-*) echo "$QF_PID" ;;
    esac
}
cpu_ticks() {
    local t=0 f
    for p in "$@"; do
        read -r -a f <"/proc/$p/stat" 2>/dev/null || continue
        t=$((t + f[13] + f[14]))
    done
    echo "$t"
}
# UDP datagrams received in this network namespace: over the veth, what the
# clients sent the servers (ACKs and requests); on loopback, both directions.
udp_in() { awk '/^Udp: [0-9]/ { print $2; exit }' /proc/net/snmp; }
run() { # name port proto range -> json file
    local name=$1 port=$2 proto=$3 range=$4 args=()
    [[ "$name" =~ ${CASES:-.} ]] || return 0
    [ -n "$port" ] || return 0
    sed "s/PORT/$port/" "$T/urls.tmpl" >"$T/urls.$name"
    case $proto in
        h1) args=(--http-version 1.1 -c "$CONNS") ;;
        h2) args=(--http2 -c 4 -p $((CONNS / 4))) ;;
        h3) args=(--http-version 3 ${H3ARGS:--c 4 -p $((CONNS / 4))}) ;;
    esac
    [ "$range" = yes ] && args+=(-H "Range: bytes=4096-8191")
    # VETH=1: oha runs in the other namespace and reaches "localhost" over the veth.
    local cli=()
    if [ -n "${VETH_CLI:-}" ]; then
        cli=(ip netns exec "$VETH_CLI")
        args+=(--connect-to "localhost:$port:$VETH_SRV:$port")
    fi
    # Over h3, oha hangs ~30 s after the deadline (hatoo/oha#835): requests/s
    # is computed below from the answers counted within the deadline.
    # PERF=DIR: profile our edge in each of its cases (perf report text in DIR);
    # PERF_CALLGRAPH="--call-graph dwarf" gives call chains (release builds keep no frame pointers).
    if [ -n "${PERF:-}" ] && [[ $name == edge-* || $name == floor-* || $name == quiche-* ]]; then
        perf record -F 499 ${PERF_CALLGRAPH:--g} -p "$(server_pids "$name")" -o "$T/$name.r$REP.perf" -- sleep "$SECS" >/dev/null 2>&1 &
        perf_pid=$!
    fi
    local pids before tool
    pids=$(server_pids "$name")
    # STRACE=DIR: the server's system calls during 2 s of the case, counted (strace -c).
    if [ -n "${STRACE:-}" ]; then
        # shellcheck disable=SC2046
        ( sleep 1; timeout -s INT 2 strace -c -f $(printf -- '-p %s ' $pids) -o "$STRACE/$name.r$REP.strace" ) >/dev/null 2>&1 &
    fi
    # STAT=1: context switches of the server's threads during the case (perf stat).
    if [ -n "${STAT:-}" ]; then
        perf stat -e context-switches,cpu-migrations,task-clock -p "$(echo $pids | tr ' ' ,)" -o "$T/$name.r$REP.stat" -- sleep "$SECS" >/dev/null 2>&1 &
    fi
    # shellcheck disable=SC2086
    before=$(cpu_ticks $pids)
    local udp_before
    udp_before=$(udp_in)
    tool=$( { TIMEFORMAT='%U %S'; time timeout $((SECS + 60)) "${cli[@]}" oha --no-tui --insecure --output-format json -z "${SECS}s" "${args[@]}" -H "$AUTH" \
        --urls-from-file "$T/urls.$name" >"$T/$name.r$REP.json" 2>"$T/$name.r$REP.err"; } 2>&1 || true)
    # shellcheck disable=SC2086
    echo "$(( $(cpu_ticks $pids) - before )) $(getconf CLK_TCK) $tool" >"$T/$name.r$REP.cpu"
    echo "$(( $(udp_in) - udp_before ))" >"$T/$name.r$REP.udp"
    if [ -f "$T/$name.r$REP.perf" ]; then
        wait "$perf_pid" || true
        perf report -i "$T/$name.r$REP.perf" --no-children --percent-limit 0.7 --stdio -g none >"$PERF/$name.r$REP.txt" 2>/dev/null || true
    fi
}
# REPEAT rounds, each server beside the others in every round: this machine
# is shared, its speed drifts over minutes, and the figures are medians.
echo "== load: ${SECS}s per case, $CONNS concurrent requests, ${REPEAT:-1} round(s)"
for load in hot range; do
    r=no; [ $load = range ] && r=yes
    for REP in $(seq "${REPEAT:-1}"); do
        # A round's first case comes after the last round's HTTP/3 cases,
        # whose oha idles ~30 s at its end. So the two edges swap places
        # every other round (use an even REPEAT) and a second of load on
        # nginx goes first, not counted. Even so, the same build in both
        # places (an A/A run) gave 0.83 to 1.15 per round over HTTP/1.1 at
        # 4 KiB: read medians of many rounds, and trust no difference under
        # a tenth from a few.
        if [ -n "$E2P" ] && [[ "edge2-h1-$load" =~ ${CASES:-.} ]]; then
            SECS=1 CASES=. run "warm-h1-$load" "$NP" h1 $r
        fi
        pair() { # proto: the edge's case and the second edge's, in this round's order
            if (( REP % 2 == 0 )); then
                run "edge2-$1-$load" "$E2P" "$1" $r
                run "edge-$1-$load" "$EP" "$1" $r
            else
                run "edge-$1-$load" "$EP" "$1" $r
                run "edge2-$1-$load" "$E2P" "$1" $r
            fi
        }
        pair h1
        run "floor-h1-$load" "$FP" h1 $r
        run "nginx-h1-$load" "$NP" h1 $r
        pair h2
        run "floor-h2-$load" "$FP" h2 $r
        run "nginx-h2-$load" "$NP" h2 $r
        run "caddy-h2-$load" "$CP" h2 $r
        pair h3
        run "floor-h3-$load" "$FP" h3 $r
        [ -n "$QP" ] && run "quiche-h3-$load" "$QP" h3 $r
        run "caddy-h3-$load" "$CP" h3 $r
    done
done
# Pulse cost: one connection, one request at a time, so latency ~ round trip + server time.
if [[ "pulse" =~ ${CASES:-.} ]]; then
    oha --no-tui --insecure --output-format json -n 3000 -c 1 --http2 "https://localhost:$EP/v1/pulse?title=film" >"$T/pulse.json" 2>/dev/null || true
fi
curl -s --cacert "$CA" "https://localhost:$EP/metrics" | grep -E '^edge_(http_requests|h3_body_bytes|h3_endpoint_connections)_total' | sed 's/^/   /' >"$T/edge.metrics" || true

python3 - "$T" "$SECS" <<'PY'
import json, os, sys
T, secs = sys.argv[1], float(sys.argv[2])
def load_round(name):
    try:
        r = json.load(open(os.path.join(T, name + ".json")))
    except Exception:
        return None
    codes = r.get("statusCodeDistribution", {})
    ok = sum(v for k, v in codes.items() if k in ("200", "206"))
    bad = sum(v for k, v in codes.items() if k not in ("200", "206")) + sum(r.get("errorDistribution", {}).values())
    p99 = (r.get("latencyPercentiles") or {}).get("p99")
    # CPU per answered request, server and load tool (oha's time includes
    # its ~30 s h3 hang after the deadline, when it is idle).
    srv_us = tool_us = float("nan")
    try:
        ticks, hz, tu, ts = open(os.path.join(T, name + ".cpu")).read().split()[:4]
        n = sum(codes.values()) or 1
        srv_us = int(ticks) / int(hz) / n * 1e6
        tool_us = (float(tu) + float(ts)) / n * 1e6
    except Exception:
        pass
    # UDP datagrams per answered request (HTTP/3 only; 0 over TCP).
    udp = float("nan")
    try:
        udp = int(open(os.path.join(T, name + ".udp")).read()) / (sum(codes.values()) or 1)
    except Exception:
        pass
    return {"rps": ok / secs, "p99_ms": (p99 or 0) * 1000, "bad": bad, "srv_us": srv_us, "tool_us": tool_us, "udp": udp}
def load(name):
    """The median of each figure over the rounds, and the requests/s of each round."""
    import glob, statistics
    rounds = [r for f in sorted(glob.glob(os.path.join(T, name + ".r*.json"))) if (r := load_round(f[:-5])) is not None]
    if not rounds:
        return None
    out = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    out["each"] = "/".join(f"{r['rps'] / 1000:.1f}k" if r["rps"] >= 1000 else f"{r['rps']:.0f}" for r in rounds)
    return out
rows, res = [], {}
for load_ in ("hot", "range"):
    for srv in ("edge", "edge2", "nginx", "caddy", "floor", "quiche"):
        for proto in ("h1", "h2", "h3"):
            n = f"{srv}-{proto}-{load_}"
            r = load(n)
            if r is not None:
                res[n] = r
                what = "1 MiB blobs" if load_ == "hot" else "4 KiB ranges"
                # Server CPU seconds per GB of answers (body bytes), the cost side of a CDN.
                per_gb = r["srv_us"] * 1e-6 / ((1 << 20 if load_ == "hot" else 4096) / 1e9)
                rows.append(f"{srv:<7}{proto:<5}{what:<14}{r['rps']:>10.0f}{r['p99_ms']:>10.1f}{r['bad']:>6.0f}{r['srv_us']:>10.1f}{per_gb:>10.2f}{r['tool_us']:>10.1f}{r['udp']:>8.1f}   {r['each']}")
# "cut": requests in flight when the deadline stopped oha, plus any errors.
print(f"{'server':<7}{'prot':<5}{'load':<14}{'req/s':>10}{'p99 ms':>10}{'cut':>6}{'srv us/r':>10}{'srv s/GB':>10}{'oha us/r':>10}{'udp/r':>8}   req/s by round")
print("\n".join(rows))
try:
    p = json.load(open(os.path.join(T, "pulse.json")))["latencyPercentiles"]
    print(f"pulse?title=film, sequential over h2: p50 {p['p50'] * 1e6:.0f} us, p99 {p['p99'] * 1e6:.0f} us (round trip included)")
except Exception:
    pass
import sys; sys.path.insert(0, "bench")  # the scripts run from the repository's root
from results import record
over = " (veth, MTU 1500)" if os.environ.get("VETH_SRV") else ""
def ratio(a, b):
    return res[a]["rps"] / res[b]["rps"] if a in res and b in res and res[b]["rps"] > 0 else float("nan")
print()
print(f"{'ratio':<52}{'hot 1 MiB':>10}{'4 KiB':>10}{'goal':>8}")
for label, a, b, goal in [
    ("edge/nginx over HTTP/1.1", "edge-h1", "nginx-h1", ">=1.2"),
    ("edge/nginx over HTTP/2", "edge-h2", "nginx-h2", ">=1.2"),
    ("our HTTP/3 / our HTTP/2", "edge-h3", "edge-h2", ">=0.9"),
    ("Caddy HTTP/3 / Caddy HTTP/2 (peer)", "caddy-h3", "caddy-h2", ""),
    ("edge HTTP/3 / Caddy HTTP/3", "edge-h3", "caddy-h3", ""),
    ("floor/nginx over HTTP/1.1 (what the stack allows)", "floor-h1", "nginx-h1", ""),
    ("floor/nginx over HTTP/2 (what the stack allows)", "floor-h2", "nginx-h2", ""),
    ("floor HTTP/3 / floor HTTP/2", "floor-h3", "floor-h2", ""),
    ("tokio-quiche floor / quinn floor, HTTP/3", "quiche-h3", "floor-h3", ">=1.3?"),
    ("tokio-quiche floor HTTP/3 / floor HTTP/2", "quiche-h3", "floor-h2", ""),
    ("edge/floor over HTTP/1.1", "edge-h1", "floor-h1", ""),
    ("edge/floor over HTTP/2", "edge-h2", "floor-h2", ""),
    ("edge/floor over HTTP/3", "edge-h3", "floor-h3", ""),
]:
    print(f"{label:<52}{ratio(a + '-hot', b + '-hot'):>10.2f}{ratio(a + '-range', b + '-range'):>10.2f}{goal:>8}")
    cpu = lambda l: res[b + l]["srv_us"] / res[a + l]["srv_us"] if a + l in res and b + l in res else float("nan")
    print(f"{'  same, by server CPU per request (b/a)':<52}{cpu('-hot'):>10.2f}{cpu('-range'):>10.2f}")
    for load, what in (("hot", "hot 1 MiB, req/s"), ("range", "4 KiB ranges, req/s")):
        if a + "-" + load in res and b + "-" + load in res:
            record(f"{label}: {what}{over}", f"{res[a + '-' + load]['rps']:.0f}", f"{res[b + '-' + load]['rps']:.0f}", ratio(a + "-" + load, b + "-" + load), goal)
# BIN2: the second edge against the first, round by round (each pair ran back to back).
import glob, re, statistics
for proto in ("h1", "h2", "h3"):
    for load_ in ("hot", "range"):
        pairs = []
        for f in sorted(glob.glob(os.path.join(T, f"edge2-{proto}-{load_}.r*.json"))):
            rep = re.search(r"\.r(\d+)\.json$", f).group(1)
            a, b = load_round(f"edge-{proto}-{load_}.r{rep}"), load_round(f"edge2-{proto}-{load_}.r{rep}")
            if a and b and a["rps"] > 0 and b["srv_us"] > 0:
                pairs.append((b["rps"] / a["rps"], a["srv_us"] / b["srv_us"]))
        if pairs:
            print(f"edge2/edge {proto} {load_}: req/s median {statistics.median(p[0] for p in pairs):.3f} "
                  f"({' '.join(f'{p[0]:.2f}' for p in pairs)}), server CPU per request (edge/edge2) median "
                  f"{statistics.median(p[1] for p in pairs):.3f} ({' '.join(f'{p[1]:.2f}' for p in pairs)})")
PY
echo "(edge's own counters: requests by protocol and status, HTTP/3 body bytes sent uncopied or copied, HTTP/3 connections by endpoint:)"
cat "$T/edge.metrics"
