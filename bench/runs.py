#!/usr/bin/env python3
"""Runs benchmark (issue 5): the runs dashboard against hand-written SQL, a run's
detail page, and a runner's ingestion with the PostgreSQL and the MongoDB log store.

Runs against a server that bench/run.sh started (release build, embedded PostgreSQL),
or alone: `bench/runs.py --url http://127.0.0.1:PORT --pid PID --pg-pidfile
DATA_DIR/pg/postmaster.pid`. Python 3.11 standard library only; reuses bench.py's
client and measuring helpers. See bench/README.md ("Runs").

1. Dashboard: seeds BENCH_RUN_TENANTS tenants x BENCH_RUN_WORKFLOWS workflows (through
   GraphQL: a chain of DELAY steps, published and activated), then
   BENCH_RUN_RUNS runs per workflow with BENCH_RUN_STEPS step runs each in bulk with SQL
   (psql as the cluster's superuser). Load: one tenant's workflows with their 10 newest
   runs and those runs' step runs, paired with the same data read by
   bench/dashboard_runs.sql through pgbench, at each concurrency, several rounds.
2. Run detail: one run with its step runs and first 50 of its 100 log lines.
3. Ingestion: runner workers claim runs and complete them (startStep, appendLogs,
   completeStep per step, completeRun) for a bounded time: runs/s and log lines/s. With
   the server's PostgreSQL log store, and (BENCH_MONGO) with a second server whose
   MONGODB_URL points at a mongod or SecantusDB started for the purpose.

Exit status 1 when a request or pgbench run failed, when the dashboard's statements
per request differ between page sizes, or (unless BENCH_REPORT_ONLY=1) when a budget is
missed: statements per request above BENCH_RUN_MAX_STATEMENTS (6), GraphQL req/s below
BENCH_MIN_RATIO (0.5) x pgbench tps, p99 above BENCH_MAX_TAIL (5) x p50 at 32 clients,
server RSS above BENCH_MAX_RSS_MB (150) under load.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import (  # noqa: E402
    CREATE_KEY,
    CREATE_TENANT,
    SWITCH_TENANT,
    Client,
    GraphQLError,
    RssPeak,
    cpu_seconds,
    find_pgbench,
    jwt_claims,
    load_run,
    log,
    machine,
    metrics,
    pg_cpu_seconds,
    percentile,
    pgbench_run,
    postmaster_info,
    probe_statements,
    rss_kb,
    run_pool,
    sign_up,
    thread_client,
    verdict,
    write_results,
)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

RUNS_DASHBOARD = (
    "query RunsDash($n:Int!){ workflows(first:$n){ edges { node { key status "
    "runs(first:10){ edges { node { status createdAt finishedAt stepRuns { stepKey status } } } } } } } }"
)

CREATE_WORKFLOW = "mutation($i:CreateWorkflowInput!){ createWorkflow(input:$i){ workflow{ id versions{ id } } userErrors{ field message } } }"
SAVE = "mutation($i:SaveWorkflowGraphInput!){ saveWorkflowGraph(input:$i){ version{ id stepCount } userErrors{ field message } } }"
PUBLISH = "mutation($i:IdInput!){ publishVersion(input:$i){ version{ status } userErrors{ field message } } }"
ACTIVATE = "mutation($i:IdInput!){ activateVersion(input:$i){ workflow{ status } userErrors{ field message } } }"
START_RUN = "mutation($i:StartRunInput!){ startRun(input:$i){ run{ id } userErrors{ field message } } }"
CLAIM = ("mutation($n:Int!,$s:Int!){ claimRuns(input:{limit:$n, leaseSeconds:$s}){ leases{ token run{ id } } "
         "userErrors{ field message } } }")
STEP_OP = "mutation($i:StepInput!){{ {op}(input:$i){{ stepRun{{ status }} userErrors{{ field message }} }} }}"
START_STEP = STEP_OP.format(op="startStep")
COMPLETE_STEP = STEP_OP.format(op="completeStep")
APPEND = "mutation($i:AppendLogsInput!){ appendLogs(input:$i){ appended userErrors{ field message } } }"
COMPLETE_RUN = "mutation($i:FinishRunInput!){ completeRun(input:$i){ run{ status } userErrors{ field message } } }"


def run_detail_query(run_id: str) -> str:
    return ("query RunDetail($n:Int!){ node(id:" + json.dumps(run_id) + "){ ... on WorkflowRun { status "
            "stepRuns { stepKey status } logs(first:$n){ edges { node { level message loggedAt } } } } } }")


# --------------------------------------------------------------------------- seeding

def chain(steps: int) -> tuple[list, list]:
    """s1 -> s2 -> ... -> sN, DELAY steps."""
    nodes = [{"key": f"s{k}", "name": f"Step {k}", "type": "DELAY", "position": {"x": k, "y": 0},
              "config": {"seconds": k}} for k in range(1, steps + 1)]
    edges = [{"from": f"s{k}", "to": f"s{k + 1}"} for k in range(1, steps)]
    return nodes, edges


def owner_tenant(c: Client, slug: str, name: str) -> tuple[str, str]:
    """A new owner and tenant on the `enterprise` plan; returns (tenant id,
    tenant-scoped access token). The plan sets no `monthlyRuns`: load phases start
    thousands of runs, past `free`'s 1,000 a month."""
    user = sign_up(c, f"{slug}-owner-{os.getpid()}@bench.trellis.test", f"{name} Owner")
    tenant_id = c.gql(CREATE_TENANT, {"i": {"slug": f"{slug}-{os.getpid()}", "name": name, "plan": "enterprise"}},
                      user)["createTenant"]["tenant"]["id"]
    token = c.gql(SWITCH_TENANT, {"i": {"tenantId": tenant_id}}, user)["switchTenant"]["accessToken"]
    return tenant_id, token


def active_workflow(c: Client, token: str, key: str, steps: int) -> str:
    created = c.gql(CREATE_WORKFLOW, {"i": {"key": key, "name": key}}, token)["createWorkflow"]["workflow"]
    version = created["versions"][0]["id"]
    nodes, edges = chain(steps)
    saved = c.gql(SAVE, {"i": {"versionId": version, "steps": nodes, "transitions": edges}}, token)
    if saved["saveWorkflowGraph"]["version"]["stepCount"] != steps:
        raise GraphQLError(f"{key}: saved {saved}")
    c.gql(PUBLISH, {"i": {"id": version}}, token)
    status = c.gql(ACTIVATE, {"i": {"id": version}}, token)["activateVersion"]["workflow"]["status"]
    if status != "ACTIVE":
        raise GraphQLError(f"{key}: status {status} after activateVersion")
    return created["id"]


def seed_tenant(url: str, t: int) -> dict:
    tenant_id, token = owner_tenant(thread_client(url), f"runs-{t:02d}", f"Runs Tenant {t:02d}")
    return {"index": t, "id": tenant_id, "token": token}


def seed_workflow(url: str, tenant: dict, w: int, steps: int) -> None:
    active_workflow(thread_client(url), tenant["token"], f"rb-{w:03d}", steps)


SEED_SQL = r"""
\set ON_ERROR_STOP on
-- uuidv7-like: 48 bits of milliseconds, version 7, 12 bits of `k` (the step's index
-- for step runs, so that id order is the version's order), variant, 60 random bits.
CREATE FUNCTION pg_temp.bench_uuid7(ts timestamptz, k int) RETURNS uuid LANGUAGE sql VOLATILE AS $$
    SELECT (lpad(to_hex(floor(extract(epoch FROM ts) * 1000)::bigint), 12, '0') || '7'
            || lpad(to_hex(k), 3, '0') || '8'
            || substr(md5(random()::text || clock_timestamp()::text), 1, 15))::uuid
$$;
BEGIN;
-- g = 1 is a workflow's newest run; the rest spread back over :days days.
CREATE TEMP TABLE bench_runs ON COMMIT DROP AS
SELECT x.*, pg_temp.bench_uuid7(x.created_at, (random() * 4095)::int) AS id,
       x.created_at + interval '1 second' AS started_at,
       CASE WHEN x.status = 'running' THEN NULL
            ELSE x.created_at + interval '1 second' + (5 + random() * 600) * interval '1 second' END AS finished_at
FROM (
    SELECT w.tenant_id, w.id AS workflow_id, w.active_version_id AS version_id, g,
           now() - (:days * interval '1 day') * ((g - 1) + random()) / :runs AS created_at,
           CASE WHEN g = 1 AND abs(hashtext(w.id::text)) % 4 = 0 THEN 'running'
                WHEN g % 9 = 0 THEN 'failed'
                WHEN g % 13 = 0 THEN 'cancelled'
                ELSE 'succeeded' END AS status
    FROM workflows w CROSS JOIN generate_series(1, :runs) g
    WHERE w.tenant_id = ANY (:'tenants'::uuid[]) AND w.deleted_at IS NULL AND w.active_version_id IS NOT NULL
) x;
INSERT INTO workflow_runs (id, tenant_id, workflow_id, version_id, trigger_type, status, input, output, error,
                           created_at, updated_at, started_at, finished_at, cancelled_at)
SELECT id, tenant_id, workflow_id, version_id, 'manual', status, jsonb_build_object('n', g),
       CASE WHEN status = 'succeeded' THEN '{"ok": true}'::jsonb END,
       CASE WHEN status = 'failed' THEN '{"message": "step s3 failed"}'::jsonb END,
       created_at, coalesce(finished_at, started_at), started_at, finished_at,
       CASE WHEN status = 'cancelled' THEN finished_at END
FROM bench_runs;
INSERT INTO step_runs (id, tenant_id, run_id, step_id, step_key, status, attempt, input, output, error,
                       created_at, updated_at, started_at, finished_at)
SELECT pg_temp.bench_uuid7(r.created_at, k), r.tenant_id, r.id, s.id, 's' || k, y.status,
       CASE WHEN y.status IN ('succeeded', 'failed', 'running') THEN 1 ELSE 0 END,
       CASE WHEN y.status IN ('succeeded', 'failed', 'running') THEN '{}'::jsonb END,
       CASE WHEN y.status = 'succeeded' THEN '{"ok": true}'::jsonb END,
       CASE WHEN y.status = 'failed' THEN '{"message": "failed"}'::jsonb END,
       r.created_at, r.created_at,
       CASE WHEN y.status IN ('succeeded', 'failed', 'running') THEN r.started_at + (k - 1) * interval '1 second' END,
       CASE WHEN y.status IN ('succeeded', 'failed') THEN r.started_at + k * interval '1 second' END
FROM bench_runs r
CROSS JOIN generate_series(1, :steps) k
CROSS JOIN LATERAL (SELECT CASE r.status
    WHEN 'succeeded' THEN 'succeeded'
    WHEN 'failed' THEN CASE WHEN k < 3 THEN 'succeeded' WHEN k = 3 THEN 'failed' ELSE 'cancelled' END
    WHEN 'cancelled' THEN CASE WHEN k = 1 THEN 'succeeded' ELSE 'cancelled' END
    ELSE CASE WHEN k = 1 THEN 'succeeded' WHEN k = 2 THEN 'running' ELSE 'pending' END END AS status) y
LEFT JOIN workflow_steps s ON s.tenant_id = r.tenant_id AND s.version_id = r.version_id AND s.key = 's' || k;
SELECT count(*) AS runs, count(DISTINCT workflow_id) AS workflows FROM bench_runs;
COMMIT;
ANALYZE workflow_runs;
ANALYZE step_runs;
"""


def psql_path(pgbench: str | None) -> str | None:
    override = os.environ.get("BENCH_PSQL")
    if override:
        return override
    if pgbench:
        candidate = os.path.join(os.path.dirname(pgbench), "psql")
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("psql")


def seed_runs_sql(psql: str, pg: dict, database: str, tenants: list[str], runs: int, steps: int,
                  days: float) -> str:
    """Runs and step runs of every active workflow of `tenants`, in one transaction, as
    the cluster's superuser `postgres` (initdb --auth=trust; RLS does not apply)."""
    cmd = [psql, "-X", "-q", "-A", "-t", "-h", pg["host"], "-p", str(pg["port"]),
           "-U", env_str("BENCH_PG_SUPERUSER", "postgres"), "-d", database,
           "-v", "tenants={" + ",".join(tenants) + "}", "-v", f"runs={runs}", "-v", f"steps={steps}",
           "-v", f"days={days}", "-f", "-"]
    proc = subprocess.run(cmd, input=SEED_SQL, capture_output=True, text=True, timeout=1800,
                          env=dict(os.environ, PGAPPNAME="trellis-bench-seed"))
    if proc.returncode != 0:
        raise RuntimeError(f"psql seeding failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return proc.stdout.strip()


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


# --------------------------------------------------------------------------- checks

def check_dashboard(doc: dict, n: int, expect: dict) -> str | None:
    if "errors" in doc:
        return f"errors: {json.dumps(doc['errors'])[:500]}"
    page = (doc.get("data") or {}).get("workflows")
    if not page:
        return "data.workflows is null"
    if len(page["edges"]) != min(n, expect["workflows"]):
        return f"{len(page['edges'])} workflow edges, expected {min(n, expect['workflows'])}"
    for e in page["edges"]:
        runs = e["node"]["runs"]["edges"]
        if len(runs) != min(10, expect["runs"]):
            return f"workflow {e['node']['key']}: {len(runs)} runs, expected {min(10, expect['runs'])}"
        for r in runs:
            if len(r["node"]["stepRuns"]) != expect["steps"]:
                return f"a run of {e['node']['key']} has {len(r['node']['stepRuns'])} step runs"
            keys = [s["stepKey"] for s in r["node"]["stepRuns"]]
            if keys != [f"s{k}" for k in range(1, expect["steps"] + 1)]:
                return f"step runs out of the version's order: {keys}"
    return None


def check_detail(doc: dict, n: int, expect: dict) -> str | None:
    if "errors" in doc:
        return f"errors: {json.dumps(doc['errors'])[:500]}"
    node = (doc.get("data") or {}).get("node")
    if not node:
        return "data.node is null"
    if len(node["stepRuns"]) != expect["steps"] or any(s["status"] != "SUCCEEDED" for s in node["stepRuns"]):
        return f"step runs {node['stepRuns']}"
    if len(node["logs"]["edges"]) != min(n, expect["lines"]):
        return f"{len(node['logs']['edges'])} log lines, expected {min(n, expect['lines'])}"
    return None


# --------------------------------------------------------------------------- runner

def log_lines(run_no: int, step_key: str, count: int) -> list[dict]:
    return [{"level": "WARN" if j % 10 == 9 else "INFO", "stepKey": step_key,
             "message": f"{step_key}: processed item {j} of batch {run_no} in {3 + j % 17} ms",
             "context": {"item": j, "batch": run_no}} for j in range(count)]


def execute(c: Client, runner: str, run_id: str, token: str, steps: int, lines: int, run_no: int) -> int:
    """Runs every step of a leased run with `lines` log lines each, then completes the
    run; returns the log lines the server stored."""
    appended = 0
    for k in range(1, steps + 1):
        key = f"s{k}"
        step = {"runId": run_id, "token": token, "stepKey": key}
        c.gql(START_STEP, {"i": {**step, "payload": {"item": run_no}}}, runner)
        if lines:
            got = c.gql(APPEND, {"i": {"runId": run_id, "token": token, "entries": log_lines(run_no, key, lines)}},
                        runner)["appendLogs"]["appended"]
            if got != lines:
                raise GraphQLError(f"appendLogs stored {got} of {lines} lines")
            appended += got
        c.gql(COMPLETE_STEP, {"i": {**step, "payload": {"ok": True, "step": k}}}, runner)
    status = c.gql(COMPLETE_RUN, {"i": {"runId": run_id, "token": token, "payload": {"done": run_no}}},
                   runner)["completeRun"]["run"]["status"]
    if status != "SUCCEEDED":
        raise GraphQLError(f"run {run_id} is {status} after completeRun")
    return appended


def claim(c: Client, runner: str, limit: int = 1) -> list[dict]:
    return c.gql(CLAIM, {"n": limit, "s": 120}, runner)["claimRuns"]["leases"] or []


def start_runs(url: str, token: str, workflow: str, count: int, workers: int) -> float:
    """Starts `count` runs (operator calls) on a thread pool; returns the seconds taken."""
    t0 = time.perf_counter()

    def one(i: int) -> None:
        thread_client(url).gql(START_RUN, {"i": {"workflowId": workflow, "input": {"n": i}}}, token)

    run_pool(workers, [(one, (i,)) for i in range(count)])
    return time.perf_counter() - t0


def ingest_run(url: str, pid: int, postmaster: int | None, runner: str, workers: int, duration: float,
               steps: int, lines: int, max_runs: int) -> dict:
    """`workers` runner threads claim one run at a time and complete it, until
    `duration` seconds have passed (a run in progress is finished), `max_runs` were
    claimed, or nothing is left to claim."""
    lock = threading.Lock()
    state = {"claimed": 0, "runs": 0, "lines": 0, "drained": False}
    failures: list[str] = []
    run_lat: list[float] = []
    ready = threading.Barrier(workers + 1)
    go = threading.Event()
    deadline = [0.0]

    def worker(w: int) -> None:
        c = Client(url, timeout=60)
        ready.wait()
        go.wait()
        try:
            while time.perf_counter() < deadline[0]:
                with lock:
                    if state["claimed"] >= max_runs:
                        return
                    state["claimed"] += 1
                t = time.perf_counter()
                leases = claim(c, runner)
                if not leases:
                    with lock:
                        state["drained"] = True
                    return
                lease = leases[0]
                got = execute(c, runner, lease["run"]["id"], lease["token"], steps, lines, w)
                dt = time.perf_counter() - t
                with lock:
                    state["runs"] += 1
                    state["lines"] += got
                    run_lat.append(dt)
        except Exception as e:  # noqa: BLE001
            with lock:
                failures.append(repr(e)[:500])
        finally:
            c.close()

    threads = [threading.Thread(target=worker, args=(w,), daemon=True) for w in range(workers)]
    for th in threads:
        th.start()
    ready.wait()
    before = metrics(url)
    cpu_before, pg_before = cpu_seconds(pid), pg_cpu_seconds(postmaster)
    rss = RssPeak(pid)
    rss.start()
    start = time.perf_counter()
    deadline[0] = start + duration
    go.set()
    for th in threads:
        th.join(timeout=duration + 600)
    elapsed = time.perf_counter() - start
    peak_kb = rss.stop()
    after = metrics(url)
    cpu_after, pg_after = cpu_seconds(pid), pg_cpu_seconds(postmaster)
    d_stmt = after["trellis_sql_statements_total"] - before["trellis_sql_statements_total"]
    d_req = after["trellis_graphql_requests_total"] - before["trellis_graphql_requests_total"]
    run_lat.sort()
    runs = state["runs"]
    return {
        "workers": workers,
        "seconds": round(elapsed, 3),
        "runs": runs,
        "log_lines": state["lines"],
        "runs_per_s": round(runs / elapsed, 2),
        "log_lines_per_s": round(state["lines"] / elapsed, 1),
        "run_p50_ms": round(percentile(run_lat, 0.5) * 1000, 1) if run_lat else None,
        "run_p99_ms": round(percentile(run_lat, 0.99) * 1000, 1) if run_lat else None,
        "graphql_requests": int(d_req),
        "requests_per_s": round(d_req / elapsed, 1),
        "statements_per_request": round(d_stmt / d_req, 3) if d_req else None,
        "statements_per_run": round(d_stmt / runs, 1) if runs else None,
        "server_cpu_ms_per_run": round((cpu_after - cpu_before) * 1000 / runs, 2) if runs else None,
        "postgres_cpu_ms_per_run": (round((pg_after - pg_before) * 1000 / runs, 2)
                                    if runs and pg_before is not None else None),
        "rss_peak_kb": peak_kb,
        "drained": state["drained"],
        "failures": len(failures),
        "first_failures": failures[:3],
    }


def live_phase(cfg: argparse.Namespace, url: str, pid: int, postmaster: int | None, store: str) -> dict:
    """Run detail and ingestion in a tenant of their own (so that the runner claims only
    runs it was meant to), against one server."""
    c = Client(url, timeout=120)
    tenant_id, token = owner_tenant(c, f"runs-live-{store}", f"Runs Live {store}")
    workflow = active_workflow(c, token, "ingest", cfg.steps)
    runner = c.gql(CREATE_KEY, {"i": {"name": "bench-runner", "scopes": ["RUNNER"]}},
                   token)["createApiKey"]["secret"]
    # The detail run: 5 steps, 100 log lines (20 per step), through the runner API.
    run_id = c.gql(START_RUN, {"i": {"workflowId": workflow, "input": {"detail": True}}},
                   token)["startRun"]["run"]["id"]
    leases = claim(c, runner)
    if len(leases) != 1 or leases[0]["run"]["id"] != run_id:
        raise GraphQLError(f"claimRuns returned {leases}, expected the run {run_id}")
    per_step = cfg.detail_lines // cfg.steps
    execute(c, runner, run_id, leases[0]["token"], cfg.steps, per_step, 0)
    c.close()
    expect = {"steps": cfg.steps, "lines": per_step * cfg.steps}
    query = run_detail_query(run_id)
    check = lambda doc, n: check_detail(doc, n, expect)  # noqa: E731
    c = Client(url)
    first = check({"data": c.gql(query, {"n": cfg.detail_page}, token)}, cfg.detail_page)
    c.close()
    if first:
        raise GraphQLError(f"run detail: {first}")
    detail_probe = {str(n): probe_statements(url, token, n, cfg.probe, query) for n in (10, cfg.detail_page)}
    log(f"[{store}] run detail: statements per request, one at a time: {detail_probe}")
    detail_runs = []
    for rep in range(cfg.runs):
        for conc in cfg.detail_concurrency:
            r = load_run(url, pid, postmaster, token, cfg.detail_page, conc, cfg.duration, cfg.warmup, {},
                         query=query, operation="RunDetail", prefix=b'{"data":{"node":{', check=check)
            r["rep"] = rep + 1
            detail_runs.append(r)
            log(f"[{store}] run detail {rep + 1}/{cfg.runs} c={conc}: {r['rps']:.1f} req/s, p50 {r['p50_ms']} ms, "
                f"p99 {r['p99_ms']} ms, {r['statements_per_request']} stmts/req, failures {r['failures']}")
    detail_summary = [summarize([r for r in detail_runs if r["concurrency"] == conc], conc)
                      for conc in cfg.detail_concurrency]

    # Ingestion: a backlog of started runs before each round, drained by the workers.
    ingest_runs = []
    started_s = []
    for rep in range(cfg.runs):
        secs = start_runs(url, token, workflow, cfg.ingest_backlog, cfg.seed_workers)
        started_s.append(cfg.ingest_backlog / secs)
        r = ingest_run(url, pid, postmaster, runner, cfg.ingest_workers, cfg.ingest_duration, cfg.steps,
                       cfg.ingest_lines, cfg.ingest_backlog * 2)
        r["rep"] = rep + 1
        r["backlog_started_per_s"] = round(cfg.ingest_backlog / secs, 1)
        ingest_runs.append(r)
        log(f"[{store}] ingestion {rep + 1}/{cfg.runs} ({cfg.ingest_workers} workers): {r['runs']} runs in "
            f"{r['seconds']}s = {r['runs_per_s']} runs/s, {r['log_lines_per_s']} lines/s, "
            f"{r['statements_per_request']} stmts/req, run p50 {r['run_p50_ms']} ms, "
            f"RSS peak {r['rss_peak_kb'] / 1024:.1f} MB{', DRAINED' if r['drained'] else ''}, "
            f"failures {r['failures']} {r['first_failures']}")
    ingest_summary = {
        "store": store,
        "workers": cfg.ingest_workers,
        "steps_per_run": cfg.steps,
        "log_lines_per_step": cfg.ingest_lines,
        "runs_per_s": statistics.median(r["runs_per_s"] for r in ingest_runs),
        "log_lines_per_s": statistics.median(r["log_lines_per_s"] for r in ingest_runs),
        "requests_per_s": statistics.median(r["requests_per_s"] for r in ingest_runs),
        "run_p50_ms": statistics.median(r["run_p50_ms"] or 0 for r in ingest_runs),
        "run_p99_ms": statistics.median(r["run_p99_ms"] or 0 for r in ingest_runs),
        "statements_per_request": statistics.median(r["statements_per_request"] or 0 for r in ingest_runs),
        "statements_per_run": statistics.median(r["statements_per_run"] or 0 for r in ingest_runs),
        "server_cpu_ms_per_run": statistics.median(r["server_cpu_ms_per_run"] or 0 for r in ingest_runs),
        "postgres_cpu_ms_per_run": (statistics.median(r["postgres_cpu_ms_per_run"] or 0 for r in ingest_runs)
                                    if postmaster else None),
        "rss_peak_kb": max(r["rss_peak_kb"] for r in ingest_runs),
        "started_runs_per_s": round(statistics.median(started_s), 1),
        "drained_rounds": sum(1 for r in ingest_runs if r["drained"]),
        "failures": sum(r["failures"] for r in ingest_runs),
    }
    return {"store": store, "tenant_id": tenant_id, "detail_run": run_id, "detail_probe": detail_probe,
            "detail_summary": detail_summary, "detail_runs": detail_runs,
            "ingest_summary": ingest_summary, "ingest_runs": ingest_runs,
            "rss_after_kb": rss_kb(pid)}


def summarize(rs: list[dict], conc: int) -> dict:
    return {
        "n": rs[0]["n"],
        "concurrency": conc,
        "runs": len(rs),
        "rps": statistics.median(r["rps"] for r in rs),
        "p50_ms": statistics.median(r["p50_ms"] for r in rs),
        "p99_ms": statistics.median(r["p99_ms"] for r in rs),
        "p99_over_p50": round(statistics.median(r["p99_ms"] / r["p50_ms"] for r in rs if r["p50_ms"]), 2),
        "statements_per_request": statistics.median(r["statements_per_request"] or 0 for r in rs),
        "statements_per_request_all_runs": [r["statements_per_request"] for r in rs],
        "server_cpu_ms_per_request": statistics.median(r["server_cpu_ms_per_request"] or 0 for r in rs),
        "postgres_cpu_ms_per_request": statistics.median(r["postgres_cpu_ms_per_request"] or 0 for r in rs),
        "rss_peak_kb": max(r["rss_peak_kb"] for r in rs),
        "failures": sum(r["failures"] for r in rs),
        "requests": sum(r["requests"] for r in rs),
    }


# --------------------------------------------------------------------------- MongoDB phase

def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def mongo_binary() -> tuple[str, bool] | None:
    """As crates/server/tests/it/mongo.rs: $TRELLIS_TEST_MONGOD, mongod on PATH, else
    SecantusDB from target/secantus-venv (`just mongo-test-server`)."""
    override = os.environ.get("BENCH_MONGOD") or os.environ.get("TRELLIS_TEST_MONGOD")
    if override:
        return override, os.path.basename(override).startswith("mongod")
    found = shutil.which("mongod")
    if found:
        return found, True
    venv = os.path.join(ROOT, "target", "secantus-venv", "bin", "secantusd-py")
    if os.path.isfile(venv):
        return venv, False
    return None


def wait_port(port: int, proc: subprocess.Popen, timeout: float, what: str) -> None:
    t0 = time.time()
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited ({proc.returncode}) during start-up")
        if time.time() - t0 > timeout:
            raise RuntimeError(f"{what} did not listen on {port} within {timeout:.0f}s")
        time.sleep(0.2)


def wait_ready(url: str, proc: subprocess.Popen, timeout: float) -> None:
    t0 = time.time()
    while True:
        try:
            c = Client(url, timeout=2)
            status, _ = c.request("GET", "/readyz", None, {})
            c.close()
            if status == 200:
                return
        except OSError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"the MongoDB-backed server exited ({proc.returncode}) during start-up")
        if time.time() - t0 > timeout:
            raise RuntimeError(f"the MongoDB-backed server was not ready within {timeout:.0f}s")
        time.sleep(0.25)


def stop(proc: subprocess.Popen | None, what: str, grace: float = 30) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        log(f"{what} did not stop in {grace:.0f}s; SIGKILL")
        proc.kill()
        proc.wait(timeout=10)


def mongo_phase(cfg: argparse.Namespace) -> dict:
    """A mongod/SecantusDB and a second release server with MONGODB_URL (its own
    embedded PostgreSQL in a fresh folder); run detail and ingestion against it."""
    found = mongo_binary()
    if found is None:
        raise RuntimeError("no MongoDB server: install mongod, run `just mongo-test-server` (SecantusDB), "
                           "or set BENCH_MONGOD; BENCH_MONGO=0 skips this phase")
    mongo_bin, is_mongod = found
    tmp = tempfile.mkdtemp(prefix="trellis-bench-mongo-")
    os.chmod(tmp, 0o755)
    mongo = server = None
    mongo_log = open(os.path.join(tmp, "mongo.log"), "wb")
    server_log = open(os.path.join(tmp, "server.log"), "wb")
    try:
        mport = free_port()
        if is_mongod:
            os.makedirs(os.path.join(tmp, "db"))
            args = ["--bind_ip", "127.0.0.1", "--port", str(mport), "--dbpath", os.path.join(tmp, "db"), "--quiet"]
        else:
            args = ["--host", "127.0.0.1", "--port", str(mport), "--storage-path", os.path.join(tmp, "db"),
                    "--standalone", "--log-level", "WARNING"]
        mongo = subprocess.Popen([mongo_bin, *args], stdout=mongo_log, stderr=subprocess.STDOUT)
        wait_port(mport, mongo, 60, mongo_bin)
        log(f"[mongo] {os.path.basename(mongo_bin)} on 127.0.0.1:{mport}")
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        data_dir = os.path.join(tmp, "data")
        os.makedirs(data_dir)
        os.chmod(data_dir, 0o755)
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "TRELLIS_APP_DATABASE_URL")}
        env.update({
            "TRELLIS_DATA_DIR": data_dir, "TRELLIS_LISTEN": f"127.0.0.1:{port}", "TRELLIS_ENV": "development",
            "TRELLIS_ACCESS_TOKEN_TTL": "3600", "RUST_LOG": os.environ.get("BENCH_RUST_LOG", "warn"),
            "MONGODB_URL": f"mongodb://127.0.0.1:{mport}/trellis_bench?directConnection=true",
        })
        server = subprocess.Popen([cfg.bin, "serve"], stdout=server_log, stderr=subprocess.STDOUT, env=env)
        t0 = time.time()
        wait_ready(url, server, cfg.ready_timeout)
        log(f"[mongo] second server {url} ready after {time.time() - t0:.0f}s (MONGODB_URL set)")
        pidfile = os.path.join(data_dir, "pg", "postmaster.pid")
        postmaster = postmaster_info(pidfile)["pid"] if os.path.isfile(pidfile) else None
        rss_idle = rss_kb(server.pid)
        result = live_phase(cfg, url, server.pid, postmaster, "mongodb")
        m = metrics(url)
        result["log_metrics"] = {k: v for k, v in m.items() if "log" in k or "outbox" in k or "mongo" in k}
        result["mongo_server"] = os.path.basename(mongo_bin)
        result["rss_idle_kb"] = rss_idle
        return result
    except BaseException:
        server_log.flush()
        try:
            with open(os.path.join(tmp, "server.log"), "rb") as f:
                log("[mongo] last lines of the second server's log:\n"
                    + b"".join(f.readlines()[-30:]).decode(errors="replace"))
        except OSError:
            pass
        raise
    finally:
        stop(server, "the MongoDB-backed server")
        # If the server died, stop the postmaster it left (fast shutdown).
        pidfile = os.path.join(tmp, "data", "pg", "postmaster.pid")
        if os.path.isfile(pidfile):
            try:
                pg_pid = postmaster_info(pidfile)["pid"]
                os.kill(pg_pid, signal.SIGINT)
                for _ in range(300):
                    os.kill(pg_pid, 0)
                    time.sleep(0.1)
            except (OSError, ValueError, IndexError):
                pass
        stop(mongo, "the MongoDB server", 20)
        mongo_log.close()
        server_log.close()
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- output

def table(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    line = lambda cells: "| " + " | ".join(c.rjust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(head), sep, *map(line, rows)])


def fmt(v, f: str) -> str:
    return "-" if v is None else format(v, f)


def main() -> int:
    env = os.environ.get
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True)
    p.add_argument("--pid", type=int, required=True, help="PID of the trellis process (RSS, CPU)")
    p.add_argument("--pg-pidfile", required=True, help="postmaster.pid of the server's embedded cluster")
    p.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "trellis"),
                   help="the server binary, for the MongoDB phase's second server")
    p.add_argument("--out", default=os.path.join(HERE, "out", "runs.json"))
    p.add_argument("--tenants", type=int, default=int(env("BENCH_RUN_TENANTS", "20")))
    p.add_argument("--workflows", type=int, default=int(env("BENCH_RUN_WORKFLOWS", "50")))
    p.add_argument("--runs-per-workflow", type=int, default=int(env("BENCH_RUN_RUNS", "20")))
    p.add_argument("--steps", type=int, default=int(env("BENCH_RUN_STEPS", "5")))
    p.add_argument("--days", type=float, default=float(env("BENCH_RUN_DAYS", "14")))
    p.add_argument("--seed-workers", type=int, default=int(env("BENCH_SEED_WORKERS", "8")))
    p.add_argument("--page", type=int, default=int(env("BENCH_RUN_PAGE", "20")), help="workflows per page under load")
    p.add_argument("--probe-sizes", default=env("BENCH_RUN_PROBE_SIZES", "5,20"))
    p.add_argument("--concurrency", default=env("BENCH_CONCURRENCY", "8,32"))
    p.add_argument("--detail-concurrency", default=env("BENCH_RUN_DETAIL_CONCURRENCY", "8,32"))
    p.add_argument("--detail-lines", type=int, default=int(env("BENCH_RUN_DETAIL_LINES", "100")))
    p.add_argument("--detail-page", type=int, default=int(env("BENCH_RUN_DETAIL_PAGE", "50")))
    p.add_argument("--ingest-workers", type=int, default=int(env("BENCH_INGEST_WORKERS", "4")))
    p.add_argument("--ingest-lines", type=int, default=int(env("BENCH_INGEST_LINES", "20")),
                   help="log lines per step (one appendLogs per step)")
    p.add_argument("--ingest-backlog", type=int, default=int(env("BENCH_INGEST_BACKLOG", "300")),
                   help="runs started before each ingestion round (at most twice this are claimed)")
    p.add_argument("--ingest-duration", type=float, default=float(env("BENCH_INGEST_DURATION", "0")) or None)
    p.add_argument("--runs", type=int, default=int(env("BENCH_RUNS", "3")))
    p.add_argument("--duration", type=float, default=float(env("BENCH_DURATION", "10")))
    p.add_argument("--warmup", type=int, default=int(env("BENCH_WARMUP", "5")))
    p.add_argument("--probe", type=int, default=int(env("BENCH_PROBE", "20")))
    p.add_argument("--pgbench", default=env("BENCH_PGBENCH_RUN", "1") != "0", action=argparse.BooleanOptionalAction)
    p.add_argument("--pgbench-jobs", type=int, default=int(env("BENCH_PGBENCH_JOBS", "2")))
    p.add_argument("--sql-script", default=os.path.join(HERE, "dashboard_runs.sql"))
    p.add_argument("--max-statements", type=float, default=float(env("BENCH_RUN_MAX_STATEMENTS", "6")))
    p.add_argument("--min-ratio", type=float, default=float(env("BENCH_MIN_RATIO", "0.5")))
    p.add_argument("--tail-concurrency", type=int, default=int(env("BENCH_TAIL_CONCURRENCY", "32")))
    p.add_argument("--max-tail", type=float, default=float(env("BENCH_MAX_TAIL", "5")))
    p.add_argument("--max-rss-mb", type=float, default=float(env("BENCH_MAX_RSS_MB", "150")))
    p.add_argument("--mongo", default=env("BENCH_MONGO", "auto"),
                   help="1: measure the MongoDB store too (fails without a server), 0: skip, "
                        "auto (default): when a mongod or SecantusDB is found")
    p.add_argument("--ready-timeout", type=float, default=float(env("BENCH_READY_TIMEOUT", "180")))
    p.add_argument("--report-only", default=env("BENCH_REPORT_ONLY", "0") == "1", action=argparse.BooleanOptionalAction)
    cfg = p.parse_args()
    cfg.concurrency = [int(x) for x in cfg.concurrency.split(",")]
    cfg.detail_concurrency = [int(x) for x in cfg.detail_concurrency.split(",")]
    probe_sizes = [int(x) for x in cfg.probe_sizes.split(",")]
    cfg.ingest_duration = cfg.ingest_duration or cfg.duration
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    pg = postmaster_info(cfg.pg_pidfile)
    postmaster = pg["pid"]
    db = {"host": pg["host"], "port": pg["port"], "database": env("TRELLIS_DB_NAME", "trellis"),
          "user": env("TRELLIS_DB_APP_ROLE", "trellis_app"), "password": env("TRELLIS_DB_APP_PASSWORD", "trellis_app")}
    pgbench = find_pgbench(postmaster)
    psql = psql_path(pgbench)
    if psql is None:
        log("FAIL: seeding runs needs psql (next to pgbench, on PATH, or BENCH_PSQL)")
        return 1
    if cfg.pgbench and pgbench is None:
        log("FAIL: the SQL baseline needs pgbench (BENCH_PGBENCH); BENCH_PGBENCH_RUN=0 skips it")
        return 1
    rss_start = rss_kb(cfg.pid)

    # ---- 1. Dashboard: seed.
    t0 = time.perf_counter()
    tenants = run_pool(cfg.seed_workers, [(seed_tenant, (cfg.url, t)) for t in range(cfg.tenants)])
    t1 = time.perf_counter()
    run_pool(cfg.seed_workers, [(seed_workflow, (cfg.url, tenant, w, cfg.steps))
                                for w in range(cfg.workflows) for tenant in tenants])
    t2 = time.perf_counter()
    log(f"seed: {cfg.tenants} tenants in {t1 - t0:.1f}s, {cfg.tenants * cfg.workflows} active workflows of "
        f"{cfg.steps} steps in {t2 - t1:.1f}s ({cfg.tenants * (3 + 4 * cfg.workflows)} GraphQL requests)")
    tenant_uuids = [jwt_claims(t["token"])["tid"] for t in tenants]
    out = seed_runs_sql(psql, pg, db["database"], tenant_uuids, cfg.runs_per_workflow, cfg.steps, cfg.days)
    t3 = time.perf_counter()
    log(f"seed: SQL: {out.replace(chr(10), ' ')} (runs|workflows) and {cfg.steps} step runs each in {t3 - t2:.1f}s")
    seeding = {"tenants_seconds": round(t1 - t0, 2), "workflows_seconds": round(t2 - t1, 2),
               "sql_seconds": round(t3 - t2, 2), "workflows": cfg.tenants * cfg.workflows,
               "runs": cfg.tenants * cfg.workflows * cfg.runs_per_workflow,
               "step_runs": cfg.tenants * cfg.workflows * cfg.runs_per_workflow * cfg.steps}

    target = tenants[0]
    claims = jwt_claims(target["token"])
    expect = {"workflows": cfg.workflows, "runs": cfg.runs_per_workflow, "steps": cfg.steps}
    check = lambda doc, n: check_dashboard(doc, n, expect)  # noqa: E731
    c = Client(cfg.url)
    for n in sorted(set(probe_sizes + [cfg.page])):
        problem = check({"data": c.gql(RUNS_DASHBOARD, {"n": n}, target["token"])}, n)
        if problem:
            log(f"FAIL: runs dashboard at first={n}: {problem}")
            return 1
    c.close()
    probes = {str(n): probe_statements(cfg.url, target["token"], n, cfg.probe, RUNS_DASHBOARD) for n in probe_sizes}
    log(f"runs dashboard: statements per request, one at a time (statements: requests): {probes}")
    if pgbench:
        first = pgbench_run(pgbench, db, cfg.sql_script, claims["tid"], claims["sub"], cfg.page, 1, 1, 1, postmaster)
        if first["problems"]:
            log(f"FAIL: pgbench check run: {first['problems']}")
            return 1
    time.sleep(1)
    rss_idle = rss_kb(cfg.pid)

    gql_runs, sql_runs = [], []
    for rep in range(cfg.runs):
        for conc in cfg.concurrency:
            r = load_run(cfg.url, cfg.pid, postmaster, target["token"], cfg.page, conc, cfg.duration, cfg.warmup,
                         {}, query=RUNS_DASHBOARD, operation="RunsDash", prefix=b'{"data":{"workflows":{',
                         check=check)
            r["rep"] = rep + 1
            gql_runs.append(r)
            msg = (f"runs dashboard {rep + 1}/{cfg.runs} c={conc}: {r['rps']:.1f} req/s, p50 {r['p50_ms']} ms, "
                   f"p99 {r['p99_ms']} ms, {r['statements_per_request']} stmts/req, "
                   f"RSS peak {r['rss_peak_kb'] / 1024:.1f} MB, failures {r['failures']}")
            if pgbench:
                b = pgbench_run(pgbench, db, cfg.sql_script, claims["tid"], claims["sub"], cfg.page, conc,
                                cfg.duration, cfg.pgbench_jobs, postmaster)
                b["rep"] = rep + 1
                sql_runs.append(b)
                msg += (f"; pgbench {b['tps']:.1f} tps, p50 {b['p50_ms']} ms, p99 {b['p99_ms']} ms, "
                        f"ratio {r['rps'] / b['tps'] if b['tps'] else float('nan'):.3f}"
                        + (f", problems {b['problems']}" if b["problems"] else ""))
            log(msg)
            for f in r["first_failures"]:
                log(f"    failure: {f}")

    dash = []
    for conc in cfg.concurrency:
        rs = [r for r in gql_runs if r["concurrency"] == conc]
        row = summarize(rs, conc)
        sql = [b for b in sql_runs if b["concurrency"] == conc]
        if sql:
            by_rep = {b["rep"]: b for b in sql}
            paired = [r["rps"] / by_rep[r["rep"]]["tps"] for r in rs if r["rep"] in by_rep and by_rep[r["rep"]]["tps"]]
            row.update({
                "sql_tps": round(statistics.median(b["tps"] for b in sql), 1),
                "sql_tps_all_runs": [round(b["tps"], 1) for b in sql],
                "sql_p50_ms": statistics.median(b["p50_ms"] or 0 for b in sql),
                "sql_p99_ms": statistics.median(b["p99_ms"] or 0 for b in sql),
                "ratio_all_runs": [round(x, 3) for x in paired],
                "ratio": round(statistics.median(paired), 3) if paired else None,
            })
            row["ratio_ok"] = row["ratio"] is not None and row["ratio"] >= cfg.min_ratio
        dash.append(row)

    # ---- 2 + 3. Run detail and ingestion, PostgreSQL store (this server).
    live = [live_phase(cfg, cfg.url, cfg.pid, postmaster, "postgresql")]
    mongo_note = None
    want_mongo = cfg.mongo.lower()
    if want_mongo in ("1", "true", "yes") or (want_mongo == "auto" and mongo_binary() is not None):
        try:
            live.append(mongo_phase(cfg))
        except (RuntimeError, GraphQLError, OSError) as e:
            if want_mongo == "auto":
                mongo_note = f"MongoDB phase failed: {e}"
                log(f"note: {mongo_note}")
            else:
                raise
    elif want_mongo == "auto":
        mongo_note = "no mongod or SecantusDB found (`just mongo-test-server`); MongoDB store not measured"
        log(f"note: {mongo_note}")

    # ---- verdicts.
    request_failures = (sum(r["failures"] for r in gql_runs)
                        + sum(r["failures"] for ph in live for r in ph["detail_runs"])
                        + sum(ph["ingest_summary"]["failures"] for ph in live))
    sql_failed = [b for b in sql_runs if b["problems"]]
    probe_values = {n: set(h) for n, h in probes.items()}
    flat = set().union(*probe_values.values())
    per_conc = {conc: [r["statements_per_request"] for r in gql_runs if r["concurrency"] == conc]
                for conc in cfg.concurrency}
    constant = len(flat) == 1
    max_stmts = max(max(int(k) for k in flat), max(r["statements_per_request"] or 0 for r in gql_runs))
    misses = []
    if max_stmts > cfg.max_statements:
        misses.append(f"runs dashboard: {max_stmts:g} statements per request (budget <= {cfg.max_statements:g})")
    for row in dash:
        if row.get("ratio_ok") is False:
            misses.append(f"runs dashboard c={row['concurrency']}: GraphQL/pgbench {row['ratio']} "
                          f"(budget >= {cfg.min_ratio:g})")
        if row["concurrency"] == cfg.tail_concurrency and row["p99_over_p50"] > cfg.max_tail:
            misses.append(f"runs dashboard c={row['concurrency']}: p99/p50 {row['p99_over_p50']} "
                          f"(budget <= {cfg.max_tail:g})")
    for ph in live:
        for row in ph["detail_summary"]:
            if row["concurrency"] == cfg.tail_concurrency and row["p99_over_p50"] > cfg.max_tail:
                misses.append(f"run detail [{ph['store']}] c={row['concurrency']}: p99/p50 {row['p99_over_p50']} "
                              f"(budget <= {cfg.max_tail:g})")
    rss_peak = max([r["rss_peak_kb"] for r in gql_runs] + [r["rss_peak_kb"] for r in live[0]["detail_runs"]]
                   + [live[0]["ingest_summary"]["rss_peak_kb"]])
    if rss_peak / 1024 > cfg.max_rss_mb:
        misses.append(f"server RSS peak {rss_peak / 1024:.1f} MB under load (budget <= {cfg.max_rss_mb:g} MB)")

    # ---- output.
    dash_table = table(
        ["first", "conc", "req/s", "p50 ms", "p99 ms", "p99/p50", "stmts/req", "srv CPU ms/req", "pg CPU ms/req",
         "RSS peak MB", "pgbench tps", "pgbench p50 ms", "pgbench p99 ms", "ratio", f">= {cfg.min_ratio:g}",
         "failures"],
        [[str(r["n"]), str(r["concurrency"]), f"{r['rps']:.1f}", f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}",
          f"{r['p99_over_p50']:.2f}", f"{r['statements_per_request']:.2f}", f"{r['server_cpu_ms_per_request']:.2f}",
          f"{r['postgres_cpu_ms_per_request']:.2f}", f"{r['rss_peak_kb'] / 1024:.1f}", fmt(r.get("sql_tps"), ".1f"),
          fmt(r.get("sql_p50_ms"), ".2f"), fmt(r.get("sql_p99_ms"), ".2f"), fmt(r.get("ratio"), ".3f"),
          "-" if "ratio_ok" not in r else ("OK" if r["ratio_ok"] else "FAIL"), str(r["failures"])]
         for r in dash])
    detail_table = table(
        ["store", "logs first", "conc", "req/s", "p50 ms", "p99 ms", "p99/p50", "stmts/req", "srv CPU ms/req",
         "pg CPU ms/req", "RSS peak MB", "failures"],
        [[ph["store"], str(r["n"]), str(r["concurrency"]), f"{r['rps']:.1f}", f"{r['p50_ms']:.1f}",
          f"{r['p99_ms']:.1f}", f"{r['p99_over_p50']:.2f}", f"{r['statements_per_request']:.2f}",
          f"{r['server_cpu_ms_per_request']:.2f}", f"{r['postgres_cpu_ms_per_request']:.2f}",
          f"{r['rss_peak_kb'] / 1024:.1f}", str(r["failures"])]
         for ph in live for r in ph["detail_summary"]])
    ingest_table = table(
        ["store", "workers", "runs/s", "log lines/s", "GraphQL req/s", "run p50 ms", "run p99 ms", "stmts/req",
         "stmts/run", "srv CPU ms/run", "pg CPU ms/run", "RSS peak MB", "drained rounds", "failures"],
        [[s["store"], str(s["workers"]), f"{s['runs_per_s']:.1f}", f"{s['log_lines_per_s']:.0f}",
          f"{s['requests_per_s']:.1f}", f"{s['run_p50_ms']:.0f}", f"{s['run_p99_ms']:.0f}",
          f"{s['statements_per_request']:.2f}", f"{s['statements_per_run']:.0f}", f"{s['server_cpu_ms_per_run']:.1f}",
          fmt(s["postgres_cpu_ms_per_run"], ".1f"), f"{s['rss_peak_kb'] / 1024:.1f}", str(s["drained_rounds"]),
          str(s["failures"])]
         for s in (ph["ingest_summary"] for ph in live)])

    print()
    print(f"Runs dashboard: {cfg.tenants} tenants x {cfg.workflows} workflows x {cfg.runs_per_workflow} runs x "
          f"{cfg.steps} step runs; one tenant's first {cfg.page} workflows with their 10 newest runs and step runs; "
          f"medians of {cfg.runs} runs of {cfg.duration:g}s; pgbench (bench/dashboard_runs.sql, -M prepared, "
          f"-j {cfg.pgbench_jobs}) right after each GraphQL run; ratio = median of paired GraphQL req/s / pgbench tps")
    print(dash_table)
    print(f"runs dashboard: statements per request one at a time (statements: requests): "
          + "; ".join(f"first={n}: {h}" for n, h in probes.items())
          + f" -> {'constant' if constant else 'VARIES WITH THE PAGE'}, budget <= {cfg.max_statements:g}")
    print(f"runs dashboard: statements per request under load: "
          + "; ".join(f"c={c_}: {v}" for c_, v in per_conc.items()))
    print(f"server RSS: {rss_start / 1024:.1f} MB before seeding, {rss_idle / 1024:.1f} MB idle after, "
          f"{rss_peak / 1024:.1f} MB peak under load")
    print()
    print(f"Run detail: one run with {cfg.steps} step runs and {cfg.detail_lines} log lines; "
          f"`logs(first: {cfg.detail_page})`; medians of {cfg.runs} runs of {cfg.duration:g}s")
    print(detail_table)
    for ph in live:
        print(f"run detail [{ph['store']}]: statements per request one at a time: {ph['detail_probe']}")
    print()
    print(f"Ingestion: runner API key, {cfg.ingest_workers} worker threads, runs of {cfg.steps} steps, "
          f"{cfg.ingest_lines} log lines per step (one appendLogs per step): claimRuns, then per step "
          f"startStep + appendLogs + completeStep, then completeRun; medians of {cfg.runs} rounds of "
          f"{cfg.ingest_duration:g}s, each after {cfg.ingest_backlog} runs were started")
    print(ingest_table)
    for ph in live:
        s = ph["ingest_summary"]
        print(f"ingestion [{ph['store']}]: backlog started at {s['started_runs_per_s']} runs/s (startRun, "
              f"{cfg.seed_workers} threads)"
              + (f"; log metrics: {ph['log_metrics']}" if ph.get("log_metrics") else ""))
    if mongo_note:
        print(f"note: {mongo_note}")

    result = {
        "machine": machine(),
        "config": {k: v for k, v in vars(cfg).items() if k not in ("url", "pid", "out")},
        "queries": {"dashboard": RUNS_DASHBOARD, "run_detail": run_detail_query("<run id>")},
        "seeding": seeding,
        "rss_start_kb": rss_start,
        "rss_idle_kb": rss_idle,
        "rss_peak_kb": rss_peak,
        "dashboard": {"summary": dash, "runs": gql_runs, "sql_runs": sql_runs, "statements_probe": probes,
                      "statements_constant": constant, "max_statements": max_stmts, "table": dash_table},
        "live": live,
        "detail_table": detail_table,
        "ingest_table": ingest_table,
        "mongo_note": mongo_note,
        "budgets": {"missed": misses, "report_only": cfg.report_only},
        "failures": request_failures,
        "failed_pgbench_runs": len(sql_failed),
    }
    write_results(result, cfg.out)
    problems = ([f"{request_failures} request(s) failed"] if request_failures else []) \
        + ([f"{len(sql_failed)} pgbench run(s) failed: {sql_failed[0]['problems']}"] if sql_failed else [])
    if not constant:
        # A count, never noise: fails even with BENCH_REPORT_ONLY=1.
        problems.append(f"runs dashboard statements per request depend on the page size: {probes}")
    return verdict(problems, misses, cfg.report_only)


if __name__ == "__main__":
    sys.exit(main())
