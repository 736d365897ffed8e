# What every bench script shares (sourced after scripts/env.sh; never run
# alone): the build, a scratch directory whose processes are stopped
# however the script ends, free ports, waiting for a server, and the
# cluster's secrets with member credentials minted from them.

# BIN=PATH measures another build (e.g. an earlier commit's) on the same
# machine; else this tree's release binary, built now.
bench_bin() {
    if [ -z "${BIN:-}" ]; then
        cargo build --release --locked --bin tranzcast >/dev/null 2>&1 || cargo build --release --locked --bin tranzcast
        BIN="$CARGO_TARGET_DIR/release/tranzcast"
    fi
}

# A scratch directory $T (kept with KEEP=1) and the list PIDS of processes
# to stop when the script ends; bench_cleanup_more, if defined, runs after
# they are signalled (nginx's own stop, say).
bench_tmp() {
    T="$(mktemp -d "/tmp/tz-bench-$1.XXXXXX")"
    PIDS=()
    trap bench_cleanup EXIT
}

bench_cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    if declare -F bench_cleanup_more >/dev/null; then bench_cleanup_more; fi
    wait 2>/dev/null || true
    [ -n "${KEEP:-}" ] || rm -rf "$T"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Waits for URL to answer (at most TENTHS tenths of a second, default 100).
wait_up() {
    for _ in $(seq "${2:-100}"); do curl -sk "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done
    echo "not up: $1" >&2
    exit 1
}

STORE_TOKEN=bench-storefront-token-0123456789
CLUSTER_TOKEN=bench-cluster-token-0123456789
MEMBER_KEY=bench-member-key-0123456789-0123456789
# A member credential for NAME as ROLE, minted with the origin's member_key.
credential() {
    "$BIN" cluster add-member "$1" --role "$2" --set "member_key=$MEMBER_KEY" --set "storefront_token=$STORE_TOKEN" \
        --set "cluster_token=$CLUSTER_TOKEN" 2>/dev/null
}

# A title of MIB MiB of random bytes in 1 MiB segments, ingested into
# $T/origin, and the origin serving it on port $1; sets CA (its CA's PEM),
# O (its URL) and SEGS (the segment addresses).
bench_origin() {
    head -c "$2M" /dev/urandom >"$T/film.bin"
    "$BIN" ingest --data "$T/origin" --title film --segment-size 1048576 "$T/film.bin" >/dev/null
    SEGS=$("$BIN" titles --data "$T/origin" --json | python3 -c 'import json,sys; print(" ".join(json.load(sys.stdin)[0]["segments"]))')
    "$BIN" origin --set "data_dir=$T/origin" --set "storefront_token=$STORE_TOKEN" --set "cluster_token=$CLUSTER_TOKEN" \
        --set "member_key=$MEMBER_KEY" --set "listen.https=127.0.0.1:$1" >"$T/origin.log" 2>&1 &
    PIDS+=($!)
    wait_up "https://localhost:$1/healthz" "${3:-100}"
    CA="$T/origin/tls/ca.pem"
    O="https://localhost:$1"
}

# `tranzcast demo --serve` in $T/demo, up and warmed: sets EDGE, BLOB, CERT,
# PLAY, CA and AUTH from its cluster.json (stopped with the script).
bench_demo() {
    RUST_LOG=error "$BIN" demo --serve --json --data "$T/demo" >"$T/demo.out" 2>"$T/demo.err" &
    PIDS+=($!)
    for _ in $(seq 600); do [ -f "$T/demo/cluster.json" ] && break; sleep 0.2; done
    [ -f "$T/demo/cluster.json" ] || { echo "the demo cluster did not come up" >&2; cat "$T/demo.err" >&2; exit 1; }
    sleep 0.5
    local get='import json,sys; c=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))'
    EDGE=$(python3 -c "$get" "$T/demo/cluster.json" 'c["edges"][0]["https"]')
    BLOB=$(python3 -c "$get" "$T/demo/cluster.json" 'c["blob"]')
    CERT=$(python3 -c "$get" "$T/demo/cluster.json" 'c["certificate"]')
    PLAY=$(python3 -c "$get" "$T/demo/cluster.json" 'c["playback_url"]')
    CA=$(python3 -c "$get" "$T/demo/cluster.json" 'c["ca"]')
    AUTH="Authorization: Tranzcast $CERT"
    # Warm: the edge fetches the blob and the title once.
    curl -sf --cacert "$CA" -H "$AUTH" -o /dev/null "$EDGE/v1/blobs/$BLOB"
    curl -sf --cacert "$CA" -o /dev/null "$PLAY"
}

# A private PostgreSQL in $T/pg on a free port, stopped with the script;
# sets PG_URL (database `bench`). initdb refuses root: under root its tools
# run as the postgres user the Debian package creates.
bench_postgres() {
    local bin; bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    [ -n "$bin" ] || { echo "PostgreSQL is not installed: run scripts/setup.sh" >&2; exit 1; }
    local as=(); [ "$(id -u)" = 0 ] && as=(runuser -u postgres --)
    # The postgres user must reach its directory through $T (mode 700).
    mkdir -p "$T/pg"; [ "$(id -u)" = 0 ] && chmod o+x "$T" && chown postgres:postgres "$T/pg"
    "${as[@]}" "$bin/initdb" -D "$T/pg/data" -A trust -U postgres --no-sync >/dev/null
    local port; port=$(free_port)
    "${as[@]}" "$bin/pg_ctl" -D "$T/pg/data" -l "$T/pg/log" -w -o "-p $port -k $T/pg -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null
    PG_STOP=("${as[@]}" "$bin/pg_ctl" -D "$T/pg/data" -m immediate stop)
    "${as[@]}" "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres bench
    PG_URL="postgres://postgres@127.0.0.1:$port/bench"
    PG_BIN="$bin"; PG_PORT="$port"; PG_AS=("${as[@]}")
}

# A fresh database NAME on the bench's PostgreSQL: sets PG_URL to it.
bench_postgres_db() {
    "${PG_AS[@]}" "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres "$1"
    PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/$1"
}
