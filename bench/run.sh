#!/usr/bin/env bash
# Tenant-dashboard benchmark (plus workflow graph save/publish, the connector-catalog
# page and secret seal/open throughput): builds the release server, starts it with an embedded
# PostgreSQL in a temporary directory, seeds it, drives load with bench/bench.py,
# compares with the same reads as hand-written SQL through pgbench (bench/dashboard.sql,
# against the same cluster, as the application role) and writes
# bench/out/results.json. See bench/README.md. Exits non-zero when a request or a
# pgbench run fails, SQL statements per request depend on the page size, or (unless
# BENCH_REPORT_ONLY=1) a budget is missed: GraphQL req/s below half the pgbench tps,
# p99 above 5x p50 at 32 clients. The engine phase (bench/engine.py, BENCH_ENGINE=0 skips
# it, BENCH_ONLY=engine runs only it) measures `trellis worker` throughput first. The
# processes phase (bench/processes.py, BENCH_PROCESSES=0 skips it, BENCH_ONLY=processes
# runs only it) measures cached process calls against pgbench and a miss's added latency.
# The matrix phase (bench/matrix.py, BENCH_MATRIX=0 skips it, BENCH_ONLY=matrix runs only
# it) measures every request shape of issue 19 against its pgbench twin (bench/matrix/).
# The agents phase (bench/agents.py, BENCH_AGENTS=0 skips it, BENCH_ONLY=agents runs only
# it) measures the agents dashboard (a tenant's agents with active version, skills, 10
# latest activities and today's metrics) at 5 and 20 agents against bench/agents.sql:
# statements per request must not depend on the page (this fails even with
# BENCH_REPORT_ONLY=1) and req/s must reach half the twin's tps at 8 clients.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

BIN="$ROOT/target/release/trellis"
OUT="${BENCH_OUT:-$ROOT/bench/out/results.json}"
READY_TIMEOUT="${BENCH_READY_TIMEOUT:-180}"
# BENCH_PROFILE=1: the server is the `profiling` build (release code, frame pointers,
# line tables) and `perf record -g` samples it through the matrix phase; the report's
# top frames go to bench/out/profile.txt (bench/README.md, "Profiling").
PROFILE="${BENCH_PROFILE:-0}"

if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
    echo "==> cargo build --release -p trellis-server -p trellis-loadgen" >&2
    cargo build --release -p trellis-server -p trellis-loadgen
fi
if [[ "$PROFILE" == 1 ]]; then
    command -v perf >/dev/null || { echo "==> BENCH_PROFILE=1 needs perf (linux-perf)" >&2; exit 2; }
    echo "==> cargo build --profile profiling -p trellis-server (frame pointers)" >&2
    RUSTFLAGS="${RUSTFLAGS:-} -C force-frame-pointers=yes" \
        cargo build --profile profiling -p trellis-server
    BIN="$ROOT/target/profiling/trellis"
fi

DATA_DIR="$(mktemp -d /tmp/trellis-bench-XXXXXX)"
# Run as root, the embedded cluster runs as `postgres`, which must reach its folder.
chmod 755 "$DATA_DIR"
SERVER_LOG="$DATA_DIR/server.log"
SERVER_PID=""
BENCH_PID=""

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if [[ -n "$BENCH_PID" ]] && kill -0 "$BENCH_PID" 2>/dev/null; then
        kill -TERM "$BENCH_PID" 2>/dev/null || true
        wait "$BENCH_PID" 2>/dev/null || true
    fi
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        echo "==> stopping the server (SIGTERM to $SERVER_PID)" >&2
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 300); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "==> the server did not stop in 30 s; SIGKILL" >&2
            kill -KILL "$SERVER_PID" 2>/dev/null || true
        fi
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    # The server stops its embedded PostgreSQL on shutdown; if it crashed, stop the
    # postmaster it started (fast shutdown) before removing its files.
    local pidfile="$DATA_DIR/pg/postmaster.pid"
    if [[ -f "$pidfile" ]]; then
        local pg_pid
        pg_pid="$(head -n1 "$pidfile" 2>/dev/null || true)"
        if [[ "$pg_pid" =~ ^[0-9]+$ ]] && kill -0 "$pg_pid" 2>/dev/null; then
            echo "==> PostgreSQL ($pg_pid) still running; fast shutdown" >&2
            kill -INT "$pg_pid" 2>/dev/null || true
            for _ in $(seq 1 300); do
                kill -0 "$pg_pid" 2>/dev/null || break
                sleep 0.1
            done
        fi
    fi
    if [[ $status -ne 0 && -f "$SERVER_LOG" ]]; then
        echo "==> last lines of the server log:" >&2
        tail -n 40 "$SERVER_LOG" >&2 || true
    fi
    rm -rf "$DATA_DIR"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# BENCH_ONLY=engine runs only the engine phase (below), with no other server started;
# BENCH_ONLY=processes only the processes phase, BENCH_ONLY=matrix only the matrix phase,
# BENCH_ONLY=agents only the agents phase, each on the main server.
ONLY="${BENCH_ONLY:-}"
if [[ -n "$ONLY" && "$ONLY" != engine && "$ONLY" != processes && "$ONLY" != matrix && "$ONLY" != agents ]]; then
    echo "==> BENCH_ONLY=$ONLY: only 'engine', 'processes', 'matrix' and 'agents' are known" >&2
    exit 2
fi

# Seal and open of 1 KiB secrets (crates/core/benches/secrets.rs), before the server
# starts so that nothing else runs on the CPUs; its JSON line goes to bench.py.
SECRETS_ARGS=()
if [[ "${BENCH_SECRETS:-1}" != 0 && -z "$ONLY" ]]; then
    echo "==> cargo bench -p trellis-core --bench secrets" >&2
    cargo bench -q -p trellis-core --bench secrets | tail -n 1 >"$DATA_DIR/secrets.json"
    cat "$DATA_DIR/secrets.json" >&2
    SECRETS_ARGS=(--secrets-json "$DATA_DIR/secrets.json")
fi

# What ordering a response's fields costs (crates/graphql/benches/order.rs), also before
# the server starts; BENCH_ORDER=0 skips it.
if [[ "${BENCH_ORDER:-1}" != 0 && -z "$ONLY" ]]; then
    echo "==> cargo bench -p trellis-graphql --bench order" >&2
    mkdir -p "$(dirname "$OUT")"
    cargo bench -q -p trellis-graphql --bench order | tail -n 1 >"$(dirname "$OUT")/order.json"
    cat "$(dirname "$OUT")/order.json" >&2
fi

# The engine (bench/engine.py): runs executed by 1, 2 and 4 `trellis worker` processes
# on one database. It starts its own server (executor off), PostgreSQL and workers in a
# folder of its own, before the main server starts, so that nothing else competes for
# the CPUs and no other phase's runs reach its workers. BENCH_ENGINE=0 skips it.
if [[ "${BENCH_ENGINE:-1}" != 0 && ( -z "$ONLY" || "$ONLY" == engine ) ]]; then
    mkdir -p "$(dirname "$OUT")"
    python3 "$ROOT/bench/engine.py" --bin "$BIN" --out "$(dirname "$OUT")/engine.json" &
    BENCH_PID=$!
    wait "$BENCH_PID"
fi
[[ "$ONLY" != engine ]] || exit 0

PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
URL="http://127.0.0.1:$PORT"

echo "==> starting $BIN on $URL (data dir $DATA_DIR)" >&2
# No DATABASE_URL: the server starts its own PostgreSQL under the data dir. Access
# tokens live an hour so that seeding plus load never outlasts them. Seeding signs up
# hundreds of users from one address and sends large batches: the per-address throttle
# and the per-request mutation budget are lifted (the bench measures the work, not the
# abuse limits). The egress guard admits 127.0.0.1: the processes phase's model
# provider listens there. No phase needs the executor or the scheduler, and the
# scheduler's once-a-second poll would land in the statement counts.
env -u DATABASE_URL -u TRELLIS_APP_DATABASE_URL \
    TRELLIS_DATA_DIR="$DATA_DIR" \
    TRELLIS_LISTEN="127.0.0.1:$PORT" \
    TRELLIS_ENV=development \
    TRELLIS_ACCESS_TOKEN_TTL=3600 \
    TRELLIS_ANONYMOUS_MUTATIONS_PER_MINUTE=0 \
    TRELLIS_MAX_MUTATION_COST=1000000 \
    TRELLIS_EXECUTOR=false \
    TRELLIS_SCHEDULER=false \
    TRELLIS_EGRESS_ALLOW=127.0.0.1 \
    RUST_LOG="${BENCH_RUST_LOG:-warn}" \
    "$BIN" serve >"$SERVER_LOG" 2>&1 &
SERVER_PID=$!

started=$SECONDS
until curl -fsS -o /dev/null --max-time 2 "$URL/readyz" 2>/dev/null; do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        echo "==> the server exited during start-up" >&2
        exit 1
    fi
    if (( SECONDS - started > READY_TIMEOUT )); then
        echo "==> the server was not ready after ${READY_TIMEOUT}s" >&2
        exit 1
    fi
    sleep 0.25
done
echo "==> ready after $(( SECONDS - started ))s" >&2

# Processes first, on the fresh server (bench/processes.py): cache-hit invocations over
# REST against bench/processes.sql through pgbench, and the latency a miss adds to a
# loopback provider (trellis-chat-provider). Its results also go into results.json under
# `processes`. BENCH_PROCESSES=0 skips it; BENCH_ONLY=processes runs only it.
PROCESSES_ARGS=()
if [[ "${BENCH_PROCESSES:-1}" != 0 && ( -z "$ONLY" || "$ONLY" == processes ) ]]; then
    mkdir -p "$(dirname "$OUT")"
    python3 "$ROOT/bench/processes.py" --url "$URL" --pid "$SERVER_PID" \
        --pg-pidfile "$DATA_DIR/pg/postmaster.pid" --out "$(dirname "$OUT")/processes.json" &
    BENCH_PID=$!
    wait "$BENCH_PID"
    PROCESSES_ARGS=(--processes-json "$(dirname "$OUT")/processes.json")
fi
[[ "$ONLY" != processes ]] || exit 0

# The request-shape matrix (bench/matrix.py, issue 19): viewer, workflows page, run
# detail, runs page, catalog, startRun and the runs dashboard (at 5, 20 and 50
# workflows), each GraphQL run followed by its pgbench twin (bench/matrix/<shape>.sql).
# Its own tenants and data; results in bench/out/matrix.json. BENCH_MATRIX=0 skips it;
# BENCH_ONLY=matrix runs only it.
if [[ "${BENCH_MATRIX:-1}" != 0 && ( -z "$ONLY" || "$ONLY" == matrix ) ]]; then
    mkdir -p "$(dirname "$OUT")"
    PERF_PID=""
    if [[ "$PROFILE" == 1 ]]; then
        perf record -q -F 499 -g -p "$SERVER_PID" -o "$DATA_DIR/perf.data" 2>"$DATA_DIR/perf.log" &
        PERF_PID=$!
    fi
    python3 "$ROOT/bench/matrix.py" --url "$URL" --pid "$SERVER_PID" \
        --pg-pidfile "$DATA_DIR/pg/postmaster.pid" --out "$(dirname "$OUT")/matrix.json" &
    BENCH_PID=$!
    wait "$BENCH_PID"
    if [[ -n "$PERF_PID" ]]; then
        kill -INT "$PERF_PID" && wait "$PERF_PID" || true
        # Self time by function, then the same with callers folded in.
        { perf report -i "$DATA_DIR/perf.data" --no-children --sort symbol --percent-limit 1 --stdio -g none 2>/dev/null
          perf report -i "$DATA_DIR/perf.data" --children --sort symbol --percent-limit 4 --stdio -g none 2>/dev/null
        } | grep -v '^$' >"$(dirname "$OUT")/profile.txt"
        echo "==> profile: $(dirname "$OUT")/profile.txt" >&2
    fi
fi
[[ "$ONLY" != matrix ]] || exit 0

# The agents dashboard (bench/agents.py, issue 18 §6): a tenant of its own with 20 agents
# (active version, skills, activities, runs with usage reports), `agents(first: N)` at
# N = 5 and 20 against its pgbench twin (bench/agents.sql). Results in
# bench/out/agents.json and, in a full run, in results.json under `agents`.
# BENCH_AGENTS=0 skips it; BENCH_ONLY=agents runs only it.
AGENTS_ARGS=()
if [[ "${BENCH_AGENTS:-1}" != 0 && ( -z "$ONLY" || "$ONLY" == agents ) ]]; then
    mkdir -p "$(dirname "$OUT")"
    python3 "$ROOT/bench/agents.py" --url "$URL" --pid "$SERVER_PID" \
        --pg-pidfile "$DATA_DIR/pg/postmaster.pid" --out "$(dirname "$OUT")/agents.json" &
    BENCH_PID=$!
    wait "$BENCH_PID"
    AGENTS_ARGS=(--agents-json "$(dirname "$OUT")/agents.json")
fi
[[ "$ONLY" != agents ]] || exit 0

# Then workflow graphs (bench/workflows.py: save+publish of 250/500/1,000 steps and the
# workflow list's statements), then the dashboard. Each runs in the background and is
# waited for, so that a signal to this script runs the clean-up at once instead of
# after the load generator finishes. BENCH_WORKFLOWS=0 or BENCH_DASHBOARD=0 skip one.
if [[ "${BENCH_WORKFLOWS:-1}" != 0 ]]; then
    python3 "$ROOT/bench/workflows.py" --url "$URL" --out "$(dirname "$OUT")/workflows.json" &
    BENCH_PID=$!
    wait "$BENCH_PID"
fi
# Runs (bench/runs.py): the runs dashboard against bench/dashboard_runs.sql through
# pgbench, a run's detail page, and runner ingestion with the PostgreSQL log store and
# (BENCH_MONGO, default auto) the MongoDB one on a second server. BENCH_RUNS_BENCH=0
# skips it.
if [[ "${BENCH_RUNS_BENCH:-1}" != 0 ]]; then
    python3 "$ROOT/bench/runs.py" --url "$URL" --pid "$SERVER_PID" --bin "$BIN" \
        --pg-pidfile "$DATA_DIR/pg/postmaster.pid" --out "$(dirname "$OUT")/runs.json" &
    BENCH_PID=$!
    wait "$BENCH_PID"
fi
# Live events (bench/live.py): startRun to the run's event on a graphql-ws socket.
# BENCH_LIVE=0 skips it.
if [[ "${BENCH_LIVE:-1}" != 0 ]]; then
    python3 "$ROOT/bench/live.py" --url "$URL" --out "$(dirname "$OUT")/live.json" &
    BENCH_PID=$!
    wait "$BENCH_PID"
fi
[[ "${BENCH_DASHBOARD:-1}" != 0 ]] || exit 0
python3 "$ROOT/bench/bench.py" --url "$URL" --pid "$SERVER_PID" \
    --pg-pidfile "$DATA_DIR/pg/postmaster.pid" --out "$OUT" ${SECRETS_ARGS[@]+"${SECRETS_ARGS[@]}"} \
    ${PROCESSES_ARGS[@]+"${PROCESSES_ARGS[@]}"} ${AGENTS_ARGS[@]+"${AGENTS_ARGS[@]}"} "$@" &
BENCH_PID=$!
wait "$BENCH_PID"
