#!/usr/bin/env bash
# Targets 1 and 5 of the performance issue, on PostgreSQL, in one run, RUNS times:
#   - stage overhead: auditflow's own CPU per event (utime + stime from /proc/PID/stat over the
#     measured load) with the quick start stages (redact + enrich) next to the same server with
#     no stages, both at full load (loadgen, CONNS connections × BATCH events); ratio quick
#     start / none (target ≤ 1.5);
#   - peak RSS (VmHWM) of the quick start server at full load (target ≤ 150 MiB);
#   - latency at half of peak: the quick start server held at half its measured peak rate
#     (`loadgen --rate`, open loop, RATE_BATCH events per request over RATE_CONNS connections)
#     for RATE_EVENTS events; p99 ack latency (target ≤ 25 ms).
# Prints each run as a JSON line on stderr and the medians on stdout.
#
#   bench/perf_targets.sh                    # 3 runs of 100 000 events
#   RUNS=5 EVENTS=200000 bench/perf_targets.sh
#
# Needs: psql on PATH, PostgreSQL at PG (trust auth or ~/.pgpass).
set -euo pipefail

RUNS=${RUNS:-3}
EVENTS=${EVENTS:-100000}
BATCH=${BATCH:-500}
CONNS=${CONNS:-8}
RATE_EVENTS=${RATE_EVENTS:-60000}
RATE_BATCH=${RATE_BATCH:-$BATCH}
RATE_CONNS=${RATE_CONNS:-$CONNS}
PG=${PG:-postgres://postgres@127.0.0.1:5432}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -q -p auditflow -p auditflow-bench --bins
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
WORK=$(mktemp -d)
SERVER_PID=
DBS=()
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    for db in "${DBS[@]}"; do psql "$PG/postgres" -qAtc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
export AUDITFLOW_TOKEN=bench-token-$$
export AUDITFLOW_CHAIN_KEY=$("$BIN/auditflow" keygen 2>/dev/null | sed -n 's/^private_key=//p')
TICK=$(getconf CLK_TCK)

# CPU seconds (user + system) the process has used so far.
cpu_seconds() { awk -v t="$TICK" '{ print ($14 + $15) / t }' "/proc/$1/stat"; }

# start_server PIPELINE: a fresh database, the quick start config (or its stages removed).
start_server() {
    local pipeline=$1 db port
    db="af_perf_$$_${run}_$pipeline"
    DBS+=("$db")
    psql "$PG/postgres" -qAtc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
    psql "$PG/postgres" -qAtc "CREATE DATABASE $db" >/dev/null
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    PIPELINE=$pipeline python3 "$ROOT/bench/quickstart_config.py" "$ROOT/examples/quickstart.toml" "$WORK/auditflow.toml" "$PG/$db" "$port"
    RUST_LOG=warn "$BIN/auditflow" serve --config "$WORK/auditflow.toml" 2>"$WORK/server.log" &
    SERVER_PID=$!
    URL="http://127.0.0.1:$port"
    for _ in $(seq 1 600); do curl -fs "$URL/health" >/dev/null 2>&1 && break; sleep 0.1; done
    curl -fs "$URL/health" >/dev/null || { cat "$WORK/server.log" >&2; exit 1; }
    "$BIN/loadgen" --url "$URL" --events 5000 --batch "$BATCH" --connections "$CONNS" --json >/dev/null
}

stop_server() { kill "$SERVER_PID"; wait "$SERVER_PID" || true; SERVER_PID=; }

# full_load: sets rate (events/s), cpu_us (server CPU µs per event), rss_mib (VmHWM).
full_load() {
    local before after out
    before=$(cpu_seconds "$SERVER_PID")
    out=$("$BIN/loadgen" --url "$URL" --events "$EVENTS" --batch "$BATCH" --connections "$CONNS" --json)
    after=$(cpu_seconds "$SERVER_PID")
    rate=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["events_per_sec"])' "$out")
    cpu_us=$(python3 -c "print(($after - $before) * 1e6 / $EVENTS)")
    rss_mib=$(awk '/VmHWM/ { print $2 / 1024 }' "/proc/$SERVER_PID/status")
    echo "run $run $1 full load: $out cpu_us_per_event=$cpu_us peak_rss_mib=$rss_mib" >&2
}

results=()
for run in $(seq 1 "$RUNS"); do
    start_server none; full_load none; none_cpu=$cpu_us; none_rate=$rate; stop_server
    start_server quickstart; full_load quickstart; qs_cpu=$cpu_us; qs_rate=$rate; qs_rss=$rss_mib
    half=$(python3 -c "print($qs_rate / 2)")
    out=$("$BIN/loadgen" --url "$URL" --events "$RATE_EVENTS" --batch "$RATE_BATCH" --connections "$RATE_CONNS" --rate "$half" --json)
    echo "run $run quickstart at half of peak ($half/s): $out" >&2
    p99=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["p99_ms"])' "$out")
    rss_after=$(awk '/VmHWM/ { print $2 / 1024 }' "/proc/$SERVER_PID/status")
    stop_server
    results+=("$none_rate $none_cpu $qs_rate $qs_cpu $qs_rss $p99 $rss_after")
done

python3 - "$EVENTS" "$BATCH" "$CONNS" "$RATE_BATCH" "$RATE_CONNS" "${results[@]}" <<'EOF'
import statistics, sys
events, batch, conns, rbatch, rconns = sys.argv[1:6]
runs = [[float(x) for x in r.split()] for r in sys.argv[6:]]
col = lambda i: [r[i] for r in runs]
med = lambda i: statistics.median(col(i))
fmt = lambda xs, f="{:,.1f}": ", ".join(f.format(x) for x in xs)
print(f"PostgreSQL; {events} events per full-load run, loadgen {conns} connections x {batch} events; half-peak load: {rbatch} events/request, {rconns} connections")
print(f"no stages:   events/s {fmt(col(0), '{:,.0f}')} (median {med(0):,.0f}); server CPU us/event {fmt(col(1))} (median {med(1):.1f})")
print(f"quick start: events/s {fmt(col(2), '{:,.0f}')} (median {med(2):,.0f}); server CPU us/event {fmt(col(3))} (median {med(3):.1f})")
print(f"target 1, stage overhead: CPU/event quick start / none per run {fmt([r[3] / r[1] for r in runs], '{:.2f}')}; median of medians {med(3) / med(1):.2f} (target <= 1.5)")
print(f"target 5, p99 ack latency at half of peak: {fmt(col(5))} ms (median {med(5):.1f}; target <= 25)")
print(f"target 5, peak RSS at full load: {fmt(col(4))} MiB (median {med(4):.1f}; after the half-peak run {med(6):.1f}; target <= 150)")
EOF
