#!/usr/bin/env python3
"""Engine benchmark: workflow runs executed end to end by `trellis worker` processes.

Starts its own release server (fresh embedded PostgreSQL in a temporary folder,
TRELLIS_EXECUTOR=false so that only the measured workers execute, the egress guard
admitting 127.0.0.1) and a loopback JSON server for the HTTP step, seeds
BENCH_ENGINE_TENANTS tenants (maxConcurrentRuns 1000, so the per-tenant cap does not
throttle), then, for 1, 2 and 4 workers (BENCH_ENGINE_WORKERS), in interleaved rounds:

1. End to end: BENCH_ENGINE_RUNS runs of a 5-step workflow (HTTP GET of the loopback
   server -> CONDITION on its status -> TRANSFORM -> TRANSFORM -> in-app NOTIFICATION) are queued with startRun, then the
   workers start: runs/s from the first claim (min startedAt) to the last finish (max
   finishedAt), SQL statements per step (trellis_sql_statements_total of the workers'
   /metrics, on TRELLIS_METRICS_LISTEN, over runs x 5), CPU per step.
2. Pure queue: BENCH_ENGINE_NOOP_RUNS runs of a 1-step TRANSFORM workflow, the same
   way: no-op steps/s, to compare with pg-boss's published ~2,400 jobs/s.
3. Latency: with the workers already running, runs of the 5-step workflow started at
   BENCH_ENGINE_PACE_RATE runs/s for BENCH_ENGINE_PACE_SECONDS: p50/p99 of finishedAt -
   createdAt (startRun to SUCCEEDED).

Python 3.11 standard library only (bench.py's client). Writes bench/out/engine.json and
prints a table. Exit 1 when a run does not succeed or a worker dies, and (unless
BENCH_REPORT_ONLY=1) when a budget is missed: no-op steps/s below
BENCH_ENGINE_MIN_NOOP_STEPS (500) at the best worker count, SQL statements per step
above BENCH_ENGINE_MAX_STATEMENTS (10), end-to-end runs/s at 2 workers not above 1
worker's x BENCH_ENGINE_MIN_GROWTH (1.0). See bench/README.md ("Engine").
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.server
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import (  # noqa: E402
    UPDATE_TENANT,
    Client,
    GraphQLError,
    cpu_seconds,
    log,
    machine,
    metrics,
    percentile,
    pg_cpu_seconds,
    postmaster_info,
    thread_client,
    verdict,
    write_results,
)
from runs import (  # noqa: E402
    ACTIVATE,
    CREATE_WORKFLOW,
    PUBLISH,
    SAVE,
    START_RUN,
    fmt,
    free_port,
    owner_tenant,
    stop,
    table,
    wait_port,
    wait_ready,
)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

E2E_STEPS = 5
PG_BOSS_JOBS_PER_S = 2400
RUNS_PAGE = ("query($n:Int!,$a:String){ runs(first:$n, after:$a){ pageInfo{ hasNextPage endCursor } "
             "edges{ node{ id status createdAt startedAt finishedAt output } } } }")

FINISHED = 'trellis_executor_runs_finished_total{status="succeeded"}'
FAILED = 'trellis_executor_runs_finished_total{status="failed"}'
STATEMENTS = "trellis_sql_statements_total"


# --------------------------------------------------------------------------- loopback API

class Loopback(http.server.BaseHTTPRequestHandler):
    """Answers every GET with a small JSON document, at once, over keep-alive."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802
        body = json.dumps({"ok": True, "path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.server.calls += 1  # type: ignore[attr-defined]

    def log_message(self, format, *args) -> None:  # noqa: A002
        pass


def start_loopback() -> tuple[http.server.ThreadingHTTPServer, str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Loopback)
    server.daemon_threads = True
    server.calls = 0  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


# --------------------------------------------------------------------------- workflows

def transform(key: str, mapping: dict) -> dict:
    return {"key": key, "name": key, "type": "TRANSFORM", "config": {"mapping": mapping}}


def e2e_graph(api: str) -> tuple[list, list]:
    """fetch (HTTP) -> route (CONDITION on the status) -> shape -> enrich -> notify (an
    in-app NOTIFICATION to the tenant's owner: one inbox row per run)."""
    steps = [
        {"key": "fetch", "name": "fetch", "type": "HTTP",
         "config": {"url": api + "/items/{{ input.n }}", "timeoutMs": 10000}},
        {"key": "route", "name": "route", "type": "CONDITION"},
        transform("shape", {"path": "{{ steps.fetch.output.body.path }}", "status": "{{ steps.fetch.output.status }}"}),
        transform("enrich", {"label": "item {{ input.n }} at {{ steps.shape.output.path }}"}),
        {"key": "notify", "name": "notify", "type": "NOTIFICATION",
         "config": {"channel": "in_app", "to": "OWNER", "title": "Item {{ input.n }} ready",
                    "message": "{{ steps.enrich.output.label }}"}},
    ]
    transitions = [
        {"from": "fetch", "to": "route"},
        {"from": "route", "to": "shape",
         "condition": {"field": "steps.fetch.output.status", "operator": "eq", "value": 200}},
        {"from": "shape", "to": "enrich"},
        {"from": "enrich", "to": "notify"},
    ]
    return steps, transitions


def noop_graph() -> tuple[list, list]:
    return [transform("noop", {"ok": True})], []


def active_workflow(c: Client, token: str, key: str, steps: list, transitions: list) -> str:
    created = c.gql(CREATE_WORKFLOW, {"i": {"key": key, "name": key}}, token)["createWorkflow"]["workflow"]
    version = created["versions"][0]["id"]
    saved = c.gql(SAVE, {"i": {"versionId": version, "steps": steps, "transitions": transitions}}, token)
    if saved["saveWorkflowGraph"]["version"]["stepCount"] != len(steps):
        raise GraphQLError(f"{key}: saved {saved}")
    c.gql(PUBLISH, {"i": {"id": version}}, token)
    status = c.gql(ACTIVATE, {"i": {"id": version}}, token)["activateVersion"]["workflow"]["status"]
    if status != "ACTIVE":
        raise GraphQLError(f"{key}: status {status} after activateVersion")
    return created["id"]


def seed(url: str, tenants: int, api: str) -> list[dict]:
    out = []
    for t in range(tenants):
        c = thread_client(url)
        tenant_id, token = owner_tenant(c, f"engine-{t:02d}", f"Engine Tenant {t:02d}")
        c.gql(UPDATE_TENANT, {"i": {"settings": {"maxConcurrentRuns": 1000}}}, token)
        e2e = active_workflow(c, token, "e2e", *e2e_graph(api))
        noop = active_workflow(c, token, "noop", *noop_graph())
        out.append({"id": tenant_id, "token": token, "e2e": e2e, "noop": noop})
    return out


# --------------------------------------------------------------------------- runs

def start_one(url: str, tenant: dict, workflow: str, n: int) -> tuple[int, str]:
    data = thread_client(url).gql(START_RUN, {"i": {"workflowId": tenant[workflow], "input": {"n": n}}},
                                  tenant["token"])
    return n, data["startRun"]["run"]["id"]


def queue_runs(url: str, tenants: list[dict], workflow: str, count: int, threads: int) -> dict[int, list[str]]:
    """Starts `count` runs round-robin over the tenants; their ids by tenant index."""
    ids: dict[int, list[str]] = {i: [] for i in range(len(tenants))}
    with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as pool:
        futures = [pool.submit(start_one, url, tenants[k % len(tenants)], workflow, k) for k in range(count)]
        for f in futures:
            k, run_id = f.result()
            ids[k % len(tenants)].append(run_id)
    return ids


def paced_runs(url: str, tenants: list[dict], rate: float, seconds: float, threads: int) -> tuple[dict, float]:
    """Starts runs of the e2e workflow at `rate` per second for `seconds`, each at its
    slot (k / rate after the start) from a pool of client threads; the ids by tenant and
    the achieved arrival rate."""
    count = max(1, int(rate * seconds))
    ids: dict[int, list[str]] = {i: [] for i in range(len(tenants))}
    t0 = time.monotonic() + 0.05

    def at_slot(k: int) -> tuple[int, str]:
        delay = t0 + k / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        return start_one(url, tenants[k % len(tenants)], "e2e", k)

    with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as pool:
        futures = [pool.submit(at_slot, k) for k in range(count)]
        for f in futures:
            k, run_id = f.result()
            ids[k % len(tenants)].append(run_id)
    elapsed = time.monotonic() - t0
    return ids, count / elapsed if elapsed > 0 else float("nan")


def ts(value: str | None) -> float | None:
    return None if value is None else datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def fetch_runs(url: str, tenants: list[dict], ids: dict[int, list[str]]) -> list[dict]:
    """The runs named in `ids`, read back newest first page by page (they are the newest
    runs of their tenants)."""
    c = thread_client(url)
    found = []
    for i, tenant in enumerate(tenants):
        want = set(ids[i])
        after = None
        while want:
            page = c.gql(RUNS_PAGE, {"n": 100, "a": after}, tenant["token"])["runs"]
            for edge in page["edges"]:
                node = edge["node"]
                if node["id"] in want:
                    want.discard(node["id"])
                    found.append(node)
            if not page["pageInfo"]["hasNextPage"]:
                break
            after = page["pageInfo"]["endCursor"]
        if want:
            raise RuntimeError(f"{len(want)} run(s) of tenant {i} not found in its run list")
    return found


def check_runs(runs: list[dict], workflow: str) -> list[str]:
    problems = []
    for r in runs:
        if r["status"] != "SUCCEEDED":
            problems.append(f"run {r['id']} is {r['status']}")
        elif workflow == "e2e" and "notify" not in (r.get("output") or {}):
            problems.append(f"run {r['id']} succeeded without its notify step: {r.get('output')}")
    return problems


# --------------------------------------------------------------------------- workers

class Workers:
    """`trellis worker` processes on the bench database, each serving /metrics."""

    def __init__(self, cfg: argparse.Namespace, data_dir: str, app_url: str, count: int, tmp: str):
        self.procs: list[subprocess.Popen] = []
        self.ports: list[int] = []
        self.logs = []
        for w in range(count):
            port = free_port()
            env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL",)}
            env.update({
                "TRELLIS_APP_DATABASE_URL": app_url,
                "TRELLIS_DATA_DIR": data_dir,
                "TRELLIS_MIGRATE_ON_START": "false",
                "TRELLIS_SCHEDULER": "false",
                "TRELLIS_EGRESS_ALLOW": "127.0.0.1",
                "TRELLIS_METRICS_LISTEN": f"127.0.0.1:{port}",
                "RUST_LOG": os.environ.get("BENCH_RUST_LOG", "warn"),
            })
            for knob, name in (("concurrency", "TRELLIS_EXECUTOR_CONCURRENCY"),
                               ("runs_per_tenant", "TRELLIS_EXECUTOR_RUNS_PER_TENANT"),
                               ("poll_ms", "TRELLIS_EXECUTOR_POLL_MS"),
                               ("pool_size", "TRELLIS_DB_POOL_SIZE")):
                value = getattr(cfg, knob)
                if value:
                    env[name] = str(value)
                else:
                    env.pop(name, None)
            f = open(os.path.join(tmp, f"worker-{len(os.listdir(tmp))}.log"), "ab")
            self.logs.append(f)
            self.procs.append(subprocess.Popen([cfg.bin, "worker"], stdout=f, stderr=subprocess.STDOUT, env=env))
            self.ports.append(port)

    def wait_listening(self, timeout: float = 60) -> None:
        for proc, port in zip(self.procs, self.ports):
            wait_port(port, proc, timeout, "trellis worker")

    def check_alive(self) -> None:
        for proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"a worker exited ({proc.returncode})")

    def scrape(self) -> list[dict[str, float]]:
        out = []
        for port in self.ports:
            try:
                out.append(metrics(f"http://127.0.0.1:{port}"))
            except OSError:
                out.append({})
        return out

    def cpu(self) -> float:
        return sum(cpu_seconds(p.pid) for p in self.procs if p.poll() is None)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            stop(proc, "trellis worker", 30)
        for f in self.logs:
            f.close()


def total(scrapes: list[dict[str, float]], name: str) -> float:
    return sum(s.get(name, 0.0) for s in scrapes)


def steps_total(scrapes: list[dict[str, float]]) -> float:
    return sum(v for s in scrapes for k, v in s.items() if k.startswith("trellis_executor_steps_total"))


def wait_finished(workers: Workers, expected: int, timeout: float) -> list[dict[str, float]]:
    """Polls the workers' /metrics (no database load) until `expected` runs ended."""
    deadline = time.monotonic() + timeout
    while True:
        workers.check_alive()
        scrapes = workers.scrape()
        done = total(scrapes, FINISHED) + total(scrapes, FAILED)
        if done >= expected:
            return scrapes
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {done:.0f} of {expected} runs ended within {timeout:.0f}s")
        time.sleep(0.05)


# --------------------------------------------------------------------------- measurements

def throughput(cfg, url, tenants, data_dir, app_url, tmp, postmaster, server_pid, workflow, count, n) -> dict:
    steps_per_run = E2E_STEPS if workflow == "e2e" else 1
    ids = queue_runs(url, tenants, workflow, count, cfg.seed_workers)
    pg0, srv0 = pg_cpu_seconds(postmaster), cpu_seconds(server_pid)
    workers = Workers(cfg, data_dir, app_url, n, tmp)
    try:
        t_spawn = time.monotonic()
        scrapes = wait_finished(workers, count, cfg.timeout)
        t_seen = time.monotonic()
        worker_cpu = workers.cpu()
        pg1, srv1 = pg_cpu_seconds(postmaster), cpu_seconds(server_pid)
    finally:
        workers.stop()
    runs = fetch_runs(url, tenants, ids)
    problems = check_runs(runs, workflow)
    first = min(ts(r["startedAt"]) for r in runs if r["startedAt"])
    last = max(ts(r["finishedAt"]) for r in runs if r["finishedAt"])
    window = max(last - first, 1e-6)
    steps = count * steps_per_run
    executed = steps_total(scrapes)
    if executed != steps:
        problems.append(f"the workers counted {executed:.0f} steps, expected {steps}")
    statements = total(scrapes, STATEMENTS)
    return {
        "workflow": workflow, "workers": n, "runs": count, "steps": steps,
        "window_s": window, "runs_per_s": count / window, "steps_per_s": steps / window,
        "wall_from_spawn_s": t_seen - t_spawn,
        "statements": statements, "statements_per_step": statements / steps,
        "statements_per_run": statements / count,
        "worker_cpu_ms_per_step": worker_cpu * 1000 / steps,
        "postgres_cpu_ms_per_step": None if pg0 is None else (pg1 - pg0) * 1000 / steps,
        "server_cpu_ms_per_step": (srv1 - srv0) * 1000 / steps,
        "failed_runs": int(total(scrapes, FAILED)),
        "problems": problems[:10], "problem_count": len(problems),
    }


def paced(cfg, url, tenants, data_dir, app_url, tmp, n) -> dict:
    workers = Workers(cfg, data_dir, app_url, n, tmp)
    try:
        workers.wait_listening()
        base = workers.scrape()
        ids, rate = paced_runs(url, tenants, cfg.pace_rate, cfg.pace_seconds, cfg.pace_threads)
        count = sum(len(v) for v in ids.values())
        done0 = total(base, FINISHED) + total(base, FAILED)
        scrapes = wait_finished(workers, int(done0) + count, cfg.timeout)
    finally:
        workers.stop()
    runs = fetch_runs(url, tenants, ids)
    problems = check_runs(runs, "e2e")
    lat = sorted((ts(r["finishedAt"]) - ts(r["createdAt"])) * 1000 for r in runs if r["finishedAt"])
    queued = sorted((ts(r["startedAt"]) - ts(r["createdAt"])) * 1000 for r in runs if r["startedAt"])
    statements = total(scrapes, STATEMENTS) - total(base, STATEMENTS)
    return {
        "workflow": "e2e", "workers": n, "runs": count, "target_rate": cfg.pace_rate, "achieved_rate": rate,
        "p50_ms": percentile(lat, 0.50), "p99_ms": percentile(lat, 0.99), "max_ms": lat[-1] if lat else None,
        "claim_p50_ms": percentile(queued, 0.50), "claim_p99_ms": percentile(queued, 0.99),
        "statements_per_step": statements / (count * E2E_STEPS),
        "problems": problems[:10], "problem_count": len(problems),
    }


def median_of(rows: list[dict], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(values) if values else None


# --------------------------------------------------------------------------- main

def main() -> int:
    env = os.environ.get
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "trellis"))
    p.add_argument("--out", default=os.path.join(HERE, "out", "engine.json"))
    p.add_argument("--tenants", type=int, default=int(env("BENCH_ENGINE_TENANTS", "4")))
    p.add_argument("--workers", default=env("BENCH_ENGINE_WORKERS", "1,2,4"))
    p.add_argument("--runs", type=int, default=int(env("BENCH_ENGINE_RUNS", "500")), dest="e2e_runs")
    p.add_argument("--noop-runs", type=int, default=int(env("BENCH_ENGINE_NOOP_RUNS", "2000")))
    p.add_argument("--rounds", type=int, default=int(env("BENCH_ENGINE_ROUNDS", "3")))
    p.add_argument("--pace-rate", type=float, default=float(env("BENCH_ENGINE_PACE_RATE", "50")))
    p.add_argument("--pace-seconds", type=float, default=float(env("BENCH_ENGINE_PACE_SECONDS", "10")))
    p.add_argument("--pace-threads", type=int, default=int(env("BENCH_ENGINE_PACE_THREADS", "8")))
    p.add_argument("--seed-workers", type=int, default=int(env("BENCH_SEED_WORKERS", "8")))
    p.add_argument("--concurrency", type=int, default=int(env("BENCH_ENGINE_CONCURRENCY", "0")),
                   help="TRELLIS_EXECUTOR_CONCURRENCY of each worker (0: the server's default)")
    p.add_argument("--runs-per-tenant", type=int, default=int(env("BENCH_ENGINE_RUNS_PER_TENANT", "0")),
                   help="TRELLIS_EXECUTOR_RUNS_PER_TENANT (0: the server's default)")
    p.add_argument("--poll-ms", type=int, default=int(env("BENCH_ENGINE_POLL_MS", "0")),
                   help="TRELLIS_EXECUTOR_POLL_MS (0: the server's default)")
    p.add_argument("--pool-size", type=int, default=int(env("BENCH_ENGINE_POOL_SIZE", "0")),
                   help="TRELLIS_DB_POOL_SIZE of each worker (0: the server's default)")
    p.add_argument("--timeout", type=float, default=float(env("BENCH_ENGINE_TIMEOUT", "600")))
    p.add_argument("--ready-timeout", type=float, default=float(env("BENCH_READY_TIMEOUT", "180")))
    p.add_argument("--min-noop-steps", type=float, default=float(env("BENCH_ENGINE_MIN_NOOP_STEPS", "500")))
    p.add_argument("--max-statements", type=float, default=float(env("BENCH_ENGINE_MAX_STATEMENTS", "10")))
    p.add_argument("--min-growth", type=float, default=float(env("BENCH_ENGINE_MIN_GROWTH", "1.0")))
    p.add_argument("--report-only", default=env("BENCH_REPORT_ONLY", "0") == "1",
                   action=argparse.BooleanOptionalAction)
    cfg = p.parse_args()
    # run.sh's clean-up sends SIGTERM: unwind through the finally below, which stops the
    # workers, the server and its PostgreSQL.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    worker_counts = [int(x) for x in cfg.workers.split(",") if x.strip()]

    tmp = tempfile.mkdtemp(prefix="trellis-bench-engine-")
    os.chmod(tmp, 0o755)
    data_dir = os.path.join(tmp, "data")
    os.makedirs(data_dir)
    os.chmod(data_dir, 0o755)
    logs_dir = os.path.join(tmp, "logs")
    os.makedirs(logs_dir)
    server = None
    server_log = open(os.path.join(tmp, "server.log"), "wb")
    loopback, api = start_loopback()
    failed = False
    try:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        senv = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "TRELLIS_APP_DATABASE_URL")}
        senv.update({
            "TRELLIS_DATA_DIR": data_dir, "TRELLIS_LISTEN": f"127.0.0.1:{port}", "TRELLIS_ENV": "development",
            "TRELLIS_ACCESS_TOKEN_TTL": "3600", "TRELLIS_ANONYMOUS_MUTATIONS_PER_MINUTE": "0",
            "TRELLIS_MAX_MUTATION_COST": "1000000", "TRELLIS_EXECUTOR": "false", "TRELLIS_SCHEDULER": "false",
            "TRELLIS_EGRESS_ALLOW": "127.0.0.1", "RUST_LOG": env("BENCH_RUST_LOG", "warn"),
        })
        server = subprocess.Popen([cfg.bin, "serve"], stdout=server_log, stderr=subprocess.STDOUT, env=senv)
        t0 = time.time()
        wait_ready(url, server, cfg.ready_timeout)
        pg = postmaster_info(os.path.join(data_dir, "pg", "postmaster.pid"))
        app_url = f"postgres://trellis_app:trellis_app@127.0.0.1:{pg['port']}/trellis"
        log(f"[engine] server {url} ready after {time.time() - t0:.0f}s (executor off); PostgreSQL on "
            f"{pg['port']}; loopback API {api}")
        tenants = seed(url, cfg.tenants, api)
        log(f"[engine] seeded {len(tenants)} tenants, each with the 5-step and the no-op workflow")

        e2e_rows, noop_rows, paced_rows = [], [], []
        for r in range(cfg.rounds):
            for n in worker_counts:
                row = throughput(cfg, url, tenants, data_dir, app_url, logs_dir, pg["pid"], server.pid,
                                 "e2e", cfg.e2e_runs, n)
                row["round"] = r
                e2e_rows.append(row)
                log(f"[engine] round {r + 1} workers={n} e2e: {row['runs_per_s']:.1f} runs/s, "
                    f"{row['statements_per_step']:.2f} stmts/step")
                row = throughput(cfg, url, tenants, data_dir, app_url, logs_dir, pg["pid"], server.pid,
                                 "noop", cfg.noop_runs, n)
                row["round"] = r
                noop_rows.append(row)
                log(f"[engine] round {r + 1} workers={n} no-op: {row['steps_per_s']:.1f} steps/s, "
                    f"{row['statements_per_step']:.2f} stmts/step")
                if cfg.pace_seconds > 0 and cfg.pace_rate > 0:
                    row = paced(cfg, url, tenants, data_dir, app_url, logs_dir, n)
                    row["round"] = r
                    paced_rows.append(row)
                    log(f"[engine] round {r + 1} workers={n} paced {row['achieved_rate']:.1f} runs/s: "
                        f"p50 {row['p50_ms']:.0f} ms, p99 {row['p99_ms']:.0f} ms")
        loopback_calls = loopback.calls  # type: ignore[attr-defined]

        summary = []
        for n in worker_counts:
            e = [x for x in e2e_rows if x["workers"] == n]
            q = [x for x in noop_rows if x["workers"] == n]
            pc = [x for x in paced_rows if x["workers"] == n]
            summary.append({
                "workers": n,
                "e2e_runs_per_s": median_of(e, "runs_per_s"),
                "e2e_steps_per_s": median_of(e, "steps_per_s"),
                "e2e_statements_per_step": median_of(e, "statements_per_step"),
                "e2e_worker_cpu_ms_per_step": median_of(e, "worker_cpu_ms_per_step"),
                "e2e_postgres_cpu_ms_per_step": median_of(e, "postgres_cpu_ms_per_step"),
                "noop_steps_per_s": median_of(q, "steps_per_s"),
                "noop_statements_per_step": median_of(q, "statements_per_step"),
                "noop_worker_cpu_ms_per_step": median_of(q, "worker_cpu_ms_per_step"),
                "noop_postgres_cpu_ms_per_step": median_of(q, "postgres_cpu_ms_per_step"),
                "paced_rate": median_of(pc, "achieved_rate"),
                "paced_p50_ms": median_of(pc, "p50_ms"),
                "paced_p99_ms": median_of(pc, "p99_ms"),
            })

        head = ["workers", "e2e runs/s", "e2e steps/s", "stmts/step", "worker CPU ms/step", "pg CPU ms/step",
                "no-op steps/s", "no-op stmts/step", "paced runs/s", "p50 ms", "p99 ms"]
        rows = [[str(s["workers"]), fmt(s["e2e_runs_per_s"], ".1f"), fmt(s["e2e_steps_per_s"], ".1f"),
                 fmt(s["e2e_statements_per_step"], ".2f"), fmt(s["e2e_worker_cpu_ms_per_step"], ".2f"),
                 fmt(s["e2e_postgres_cpu_ms_per_step"], ".2f"), fmt(s["noop_steps_per_s"], ".1f"),
                 fmt(s["noop_statements_per_step"], ".2f"), fmt(s["paced_rate"], ".1f"),
                 fmt(s["paced_p50_ms"], ".0f"), fmt(s["paced_p99_ms"], ".0f")] for s in summary]
        engine_table = table(head, rows)

        misses, problems = [], []
        for x in e2e_rows + noop_rows + paced_rows:
            problems.extend(x["problems"])
        best_noop = max((s["noop_steps_per_s"] or 0.0, s["workers"]) for s in summary)
        if best_noop[0] < cfg.min_noop_steps:
            misses.append(f"no-op steps/s {best_noop[0]:.1f} (best, {best_noop[1]} workers) below "
                          f"{cfg.min_noop_steps:g}")
        for s in summary:
            for key, what in (("e2e_statements_per_step", "end-to-end"), ("noop_statements_per_step", "no-op")):
                if s[key] is not None and s[key] > cfg.max_statements:
                    misses.append(f"{what} SQL statements per step {s[key]:.2f} at {s['workers']} worker(s) above "
                                  f"{cfg.max_statements:g}")
        by_n = {s["workers"]: s for s in summary}
        growth = None
        if 1 in by_n and 2 in by_n and by_n[1]["e2e_runs_per_s"]:
            growth = by_n[2]["e2e_runs_per_s"] / by_n[1]["e2e_runs_per_s"]
            if not growth > cfg.min_growth:
                misses.append(f"end-to-end runs/s at 2 workers {by_n[2]['e2e_runs_per_s']:.1f} is "
                              f"{growth:.2f}x 1 worker's {by_n[1]['e2e_runs_per_s']:.1f} (must exceed "
                              f"{cfg.min_growth:g}x)")

        print()
        print(f"Engine: `trellis worker` processes on one database ({cfg.tenants} tenants, maxConcurrentRuns 1000); "
              f"end to end: {cfg.e2e_runs} queued runs of HTTP (loopback) -> CONDITION -> TRANSFORM x 2 "
              f"-> NOTIFICATION (in app); no-op: {cfg.noop_runs} queued runs of one TRANSFORM; "
              f"paced: {cfg.pace_rate:g} runs/s for {cfg.pace_seconds:g}s with the workers running, "
              f"latency createdAt -> finishedAt; medians of {cfg.rounds} interleaved round(s)")
        print(engine_table)
        print(f"no-op queue: {best_noop[0]:.1f} steps/s at {best_noop[1]} worker(s) (budget >= "
              f"{cfg.min_noop_steps:g}); pg-boss publishes ~{PG_BOSS_JOBS_PER_S:,} jobs/s "
              f"({best_noop[0] / PG_BOSS_JOBS_PER_S:.2f}x)")
        if growth is not None:
            print(f"end-to-end runs/s, 2 workers / 1 worker: {growth:.2f} (budget > {cfg.min_growth:g})")
        print(f"SQL statements per step (workers' trellis_sql_statements_total / steps, budget <= "
              f"{cfg.max_statements:g}): " + ", ".join(
                  f"{s['workers']}w e2e {fmt(s['e2e_statements_per_step'], '.2f')} no-op "
                  f"{fmt(s['noop_statements_per_step'], '.2f')}" for s in summary))
        print(f"loopback API calls: {loopback_calls}")

        result = {
            "machine": machine(),
            "config": {k: v for k, v in vars(cfg).items() if k not in ("out",)},
            "workflows": {"e2e": dict(zip(("steps", "transitions"), e2e_graph("http://127.0.0.1:PORT"))),
                          "noop": dict(zip(("steps", "transitions"), noop_graph()))},
            "summary": summary,
            "e2e": e2e_rows, "noop": noop_rows, "paced": paced_rows,
            "growth_2_over_1": growth,
            "pg_boss_jobs_per_s": PG_BOSS_JOBS_PER_S,
            "loopback_calls": loopback_calls,
            "table": engine_table,
            "budgets": {"missed": misses, "report_only": cfg.report_only},
            "problems": problems,
        }
        write_results(result, cfg.out)
        summary_of_problems = [f"{len(problems)} problem(s), e.g. {problems[:3]}"] if problems else []
        status = verdict(summary_of_problems, misses, cfg.report_only)
        failed = status != 0
        return status
    except BaseException:
        failed = True
        raise
    finally:
        loopback.shutdown()
        stop(server, "the engine bench server")
        pidfile = os.path.join(data_dir, "pg", "postmaster.pid")
        if os.path.isfile(pidfile):
            try:
                pg_pid = postmaster_info(pidfile)["pid"]
                os.kill(pg_pid, signal.SIGINT)
                for _ in range(300):
                    os.kill(pg_pid, 0)
                    time.sleep(0.1)
            except (OSError, ValueError, IndexError):
                pass
        server_log.close()
        if failed:
            for name in sorted(os.listdir(logs_dir)) + ["../server.log"]:
                path = os.path.join(logs_dir, name)
                try:
                    with open(path, "rb") as f:
                        tail = b"".join(f.readlines()[-20:]).decode(errors="replace")
                    if tail.strip():
                        log(f"[engine] last lines of {os.path.basename(path)}:\n{tail}")
                except OSError:
                    pass
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
