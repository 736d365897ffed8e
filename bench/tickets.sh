#!/usr/bin/env bash
# Ticket validations per second over HTTP/2 (TLS, real origins on
# 127.0.0.1; each validation a signature check, a certificate signature and
# a durable write) beside the raw Ed25519 sign+verify rate on all cores,
# same process, same run (taking turns: five slices each), with dalek (the
# goal's yardstick) and with AWS-LC (what the origin signs with): on the embedded engine (RocksDB), and on a
# private PostgreSQL with one and with two origin processes. A second table
# gives CPU per operation: the origins' per play (the load's client runs on
# threads of its own, counted apart; on PostgreSQL the database's CPU added)
# against the raw crypto's per sign+verify.
# Usage: bench/tickets.sh [SECONDS=5] [CONCURRENCY=64]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
. bench/lib.sh
bench_bin
bench_tmp tickets
bench_cleanup_more() { [ -n "${PG_STOP:-}" ] && "${PG_STOP[@]}" >/dev/null 2>&1 || true; }
S="${1:-5}"; C="${2:-64}"
"$BIN" bench tickets --seconds "$S" --concurrency "$C" >"$T/rocksdb.json"
bench_postgres
bench_postgres_db one
"$BIN" bench tickets --seconds "$S" --concurrency "$C" --state-url "$PG_URL" >"$T/pg1.json"
bench_postgres_db two
"$BIN" bench tickets --seconds "$S" --concurrency "$C" --state-url "$PG_URL" --origins 2 >"$T/pg2.json"
python3 - "$T" <<'PY'
import sys; sys.path.insert(0, "bench")  # the scripts run from the repository's root
from results import record
import json
t = sys.argv[1]
print(f"{'engine':<30}{'validations/s':>15}{'raw sign+verify/s':>20}{'ratio':>8}{'AWS-LC raw/s':>14}{'ratio':>8}{'errors':>8}{'cores: ours':>13}{'others':>8}")
for f, label, goal in [("rocksdb", "embedded (RocksDB)", ">= 0.5"), ("pg1", "PostgreSQL, 1 origin", ""), ("pg2", "PostgreSQL, 2 origins", "")]:
    r = json.load(open(f"{t}/{f}.json"))
    print(f"{label:<30}{r['validations_per_s']:>15.0f}{r['raw_sign_verify_per_s']:>20.0f}{r['ratio']:>8.3f}"
          f"{r['raw_aws_lc_sign_verify_per_s']:>14.0f}{r['ratio_aws_lc']:>8.3f}{r['errors']:>8}"
          f"{r['cores_this_process']:>13.2f}{r['cores_other_processes']:>8.2f}")
    record(f"ticket validations / raw Ed25519 sign+verify, {label}", f"{r['validations_per_s']:.0f}", f"{r['raw_sign_verify_per_s']:.0f}", r["ratio"], goal)
    record(f"ticket validations / raw AWS-LC Ed25519 sign+verify, {label}", f"{r['validations_per_s']:.0f}", f"{r['raw_aws_lc_sign_verify_per_s']:.0f}", r["ratio_aws_lc"], "")
print(f"(concurrency {json.load(open(t + '/rocksdb.json'))['concurrency']}; cores busy while measuring: ours = the origins and the"
      " client in one process, others = every other process, the database on PostgreSQL. Raw sign+verify: dalek, the"
      " yardstick of the goal; AWS-LC raw: the library the origin signs with, the stricter yardstick. Plays and raw"
      " crypto take turns in five slices.)")
r = json.load(open(f"{t}/rocksdb.json"))
print(f"HTTP/2 floor (GET /v1/origin-key, same client and concurrency): {r['http_floor_per_s']:.0f}/s; with raw sign+verify on the"
      f" same cores the ceiling is {r['ceiling_per_s']:.0f} plays/s = {r['ceiling_per_s'] / r['raw_sign_verify_per_s']:.2f} of raw;"
      f" embedded reaches {r['validations_per_s'] / r['ceiling_per_s']:.2f} of that ceiling")
# CPU per operation: the load's client runs on threads of its own, so what a
# play costs the origins (and the database) is told apart from what asking
# costs; the raw crypto's CPU per sign+verify is measured the same way.
print()
print(f"{'CPU per operation, us':<30}{'origins':>9}{'database':>10}{'client':>8}{'raw dalek':>11}{'ratio':>8}{'raw AWS-LC':>12}{'ratio':>8}")
for f, label, goal in [("rocksdb", "embedded (RocksDB)", ">= 0.5"), ("pg1", "PostgreSQL, 1 origin", ""), ("pg2", "PostgreSQL, 2 origins", "")]:
    r = json.load(open(f"{t}/{f}.json"))
    db = r['others_cpu_us_per_play'] if f != "rocksdb" else float("nan")
    print(f"{label:<30}{r['origin_cpu_us_per_play']:>9.1f}{db:>10.1f}{r['client_cpu_us_per_play']:>8.1f}"
          f"{r['raw_cpu_us_per_sign_verify']:>11.1f}{r['cpu_ratio']:>8.3f}{r['raw_aws_lc_cpu_us_per_sign_verify']:>12.1f}{r['cpu_ratio_aws_lc']:>8.3f}")
    record(f"ticket validation CPU / raw Ed25519 sign+verify CPU (dalek), {label}", f"{r['origin_cpu_us_per_play'] + (0 if f == 'rocksdb' else db):.1f} us",
           f"{r['raw_cpu_us_per_sign_verify']:.1f} us", r["cpu_ratio"], goal)
    record(f"ticket validation CPU / raw Ed25519 sign+verify CPU (AWS-LC), {label}", f"{r['origin_cpu_us_per_play'] + (0 if f == 'rocksdb' else db):.1f} us",
           f"{r['raw_aws_lc_cpu_us_per_sign_verify']:.1f} us", r["cpu_ratio_aws_lc"], goal)
print("(ratio = raw CPU per sign+verify / CPU per play: the origins', and on PostgreSQL the database's too; the client's apart)")
PY
