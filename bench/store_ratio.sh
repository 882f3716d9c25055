#!/usr/bin/env bash
# Store throughput: auditflow end to end versus the raw ceiling of its store, same schema.
#
# STORE=postgres (default): the ceiling is a raw COPY into the same schema (below).
# STORE=sqlite: the ceiling is `sqlite_ceiling`, one prepared INSERT per row in transactions of
#   COPY_BATCH rows into a fresh file migrated with auditflow's schema, WAL + synchronous=FULL as
#   auditflow uses; (b) is the server storing into a fresh SQLite file in the same folder.
#
# In one run against the same PostgreSQL, RUNS times each:
#   (a) ceiling: `copy_ceiling` COPYs EVENTS synthesized dev-set events straight into a fresh
#       database migrated with auditflow's schema (binary COPY, 5000 rows per transaction);
#       also, as a reference for where the time goes (not part of the ratio), the same COPY plus
#       the `event_ids` rows auditflow's dedupe needs;
#   (b) end to end: `auditflow serve` with the quick start pipeline (redact + enrich Wasm stages)
#       storing into a fresh database, signing chain checkpoints, driven by `loadgen` posting the
#       same number of events over CONNS connections in requests of BATCH events.
# Prints both medians, the ratio (b)/(a), and each run's figures (as JSON lines on stderr).
#
#   bench/store_ratio.sh                      # 3 runs of 100 000 events
#   RUNS=5 EVENTS=200000 CONNS=32 IDS=v7 bench/store_ratio.sh
#   COMPARE_BIN=/tmp/auditflow-before bench/store_ratio.sh   # also (b) with another build, same runs
#   STORE=sqlite bench/store_ratio.sh          # the embedded store against its raw ceiling
#
# Needs: psql on PATH, a PostgreSQL reachable at PG (no password, or via ~/.pgpass / PGPASSWORD).
set -euo pipefail

RUNS=${RUNS:-3}
EVENTS=${EVENTS:-100000}
BATCH=${BATCH:-500}
CONNS=${CONNS:-16}
IDS=${IDS:-v4}    # fresh event ids: v4 (random, like the dev set) or v7 (time-ordered)
PIPELINE=${PIPELINE:-quickstart}   # quickstart (redact + enrich) or none (the store path alone)
COPY_BATCH=${COPY_BATCH:-5000}
PG=${PG:-postgres://postgres@127.0.0.1:5432}
STORE=${STORE:-postgres}  # postgres or sqlite

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# SKIP_BUILD=1 uses the binaries already in target/release.
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -q -p auditflow -p auditflow-bench --bins
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET/release
WORK=$(mktemp -d)
SERVER_PID=
DBS=()

cleanup() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    for db in "${DBS[@]}"; do psql "$PG/postgres" -qAtc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

new_db() {
    local db="af_bench_$$_$1"
    DBS+=("$db")
    psql "$PG/postgres" -qAtc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
    psql "$PG/postgres" -qAtc "CREATE DATABASE $db" >/dev/null
    echo "$db"
}

drop_db() {
    psql "$PG/postgres" -qAtc "DROP DATABASE IF EXISTS $1 WITH (FORCE)" >/dev/null
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# A production-like signing key for the chain checkpoints.
export AUDITFLOW_CHAIN_KEY=$("$BIN/auditflow" keygen 2>/dev/null | sed -n 's/^private_key=//p')
export AUDITFLOW_TOKEN=bench-token-$$

# (b) auditflow end to end, quick start pipeline, PostgreSQL: run_e2e BINARY LABEL; sets `result`.
run_e2e() {
    local server_bin=$1 label=$2 db port out
    if [ "$STORE" = sqlite ]; then
        db=
        url="sqlite://$WORK/e2e-$run-$label.db"
    else
        db=$(new_db "e2e$run$label")
        url="$PG/$db"
    fi
    port=$(free_port)
    # The quick start config with PostgreSQL storage, this run's port and a checkpoint key
    # (`[storage.chain]` goes right after the storage url, inside `[storage]`).
    PIPELINE=$PIPELINE python3 "$ROOT/bench/quickstart_config.py" "$ROOT/examples/quickstart.toml" "$WORK/auditflow.toml" "$url" "$port"
    RUST_LOG=warn "$server_bin" serve --config "$WORK/auditflow.toml" 2>"$WORK/server-$run-$label.log" &
    SERVER_PID=$!
    for _ in $(seq 1 600); do
        curl -fs "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
        sleep 0.1
    done
    curl -fs "http://127.0.0.1:$port/health" >/dev/null || { cat "$WORK/server-$run-$label.log" >&2; exit 1; }
    # Warm-up (plugin instances, connections), not measured.
    "$BIN/loadgen" --url "http://127.0.0.1:$port" --events 5000 --batch "$BATCH" --connections "$CONNS" --ids "$IDS" --json >/dev/null
    out=$("$BIN/loadgen" --url "http://127.0.0.1:$port" --events "$EVENTS" --batch "$BATCH" --connections "$CONNS" --ids "$IDS" --json)
    echo "run $run auditflow ($label): $out" >&2
    result=("$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["events_per_sec"])' "$out")")
    kill "$SERVER_PID"; wait "$SERVER_PID" || true; SERVER_PID=
    "$server_bin" verify --config "$WORK/auditflow.toml" >&2
    if [ -n "$db" ]; then drop_db "$db"; else rm -f "$WORK"/e2e-*.db*; fi
}

ceilings=()
others=()
withids=()
e2es=()
for run in $(seq 1 "$RUNS"); do
  if [ "$STORE" = sqlite ]; then
    # (a) raw ceiling: prepared INSERTs into a fresh file
    out=$("$BIN/sqlite_ceiling" --path "$WORK/ceiling-$run.db" --events "$EVENTS" --batch "$COPY_BATCH" --ids "$IDS" --json)
    echo "run $run ceiling: $out" >&2
    ceilings+=("$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["events_per_sec"])' "$out")")
    withids+=("${ceilings[-1]}")
    rm -f "$WORK/ceiling-$run.db"*
  else
    # (a) raw ceiling
    db=$(new_db "copy$run")
    out=$("$BIN/copy_ceiling" --database-url "$PG/$db" --events "$EVENTS" --batch "$COPY_BATCH" --ids "$IDS" --json)
    echo "run $run ceiling: $out" >&2
    ceilings+=("$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["events_per_sec"])' "$out")")
    drop_db "$db"
    db=$(new_db "ids$run")
    out=$("$BIN/copy_ceiling" --database-url "$PG/$db" --events "$EVENTS" --batch "$COPY_BATCH" --ids "$IDS" --event-ids --json)
    echo "run $run ceiling + event_ids: $out" >&2
    withids+=("$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["events_per_sec"])' "$out")")
    drop_db "$db"
  fi

    run_e2e "$BIN/auditflow" this; e2es+=("${result[@]}")
    if [ -n "${COMPARE_BIN:-}" ]; then run_e2e "$COMPARE_BIN" compare; others+=("${result[@]}"); fi
done

python3 - "${ceilings[*]}" "${withids[*]}" "${e2es[*]}" "$EVENTS" "$BATCH" "$CONNS" "$COPY_BATCH" "$IDS" "$PIPELINE" "${others[*]:-}" "${COMPARE_BIN:-}" "$STORE" <<'EOF'
import statistics, sys
ceil, ids, e2e = ([float(x) for x in a.split()] for a in sys.argv[1:4])
mc, mi, me = statistics.median(ceil), statistics.median(ids), statistics.median(e2e)
runs = lambda xs: ', '.join(f'{x:,.0f}' for x in xs)
store = sys.argv[12]
print(f"store {store}; events per run: {sys.argv[4]} ({sys.argv[8]} ids, pipeline {sys.argv[9]}); loadgen: {sys.argv[6]} connections x {sys.argv[5]} events/request; ceiling: {sys.argv[7]} rows/transaction")
if store == "sqlite":
    print(f"(a) raw prepared-INSERT ceiling runs: {runs(ceil)}  median {mc:,.0f} events/s")
else:
    print(f"(a) raw COPY ceiling            runs: {runs(ceil)}  median {mc:,.0f} events/s")
    print(f"    reference: COPY + event_ids runs: {runs(ids)}  median {mi:,.0f} events/s")
print(f"(b) auditflow end to end        runs: {runs(e2e)}  median {me:,.0f} events/s")
print(f"ratio (b)/(a) = {me / mc:.2f}" + ("" if store == "sqlite" else f"   (b)/reference = {me / mi:.2f}"))
if sys.argv[10]:
    other = [float(x) for x in sys.argv[10].split()]
    mo = statistics.median(other)
    print(f"(b') {sys.argv[11]}  runs: {runs(other)}  median {mo:,.0f} events/s; ratio (b')/(a) = {mo / mc:.2f}, (b)/(b') = {me / mo:.2f}")
EOF
