#!/usr/bin/env python3
"""Request-shape matrix (issue 19 §2 and §3): every request shape against its SQL twin.

Runs against a server that bench/run.sh started (release build, embedded PostgreSQL),
or alone: `bench/matrix.py --url http://127.0.0.1:PORT --pid PID --pg-pidfile
DATA_DIR/pg/postmaster.pid`. Python 3.11 standard library only; reuses bench.py's and
runs.py's client, seeding and measuring helpers. See bench/README.md ("Matrix").

Each shape is a GraphQL request driven by trellis-loadgen (bench.load_run) and a pgbench
twin, bench/matrix/<shape>.sql, that reads (or writes) the same data with hand-written
SQL as the application role under row-level security. Interleaved: every GraphQL run
is followed by its twin at the same concurrency, shape after shape, round after round;
medians over the rounds.

  viewer          { viewer { role user { id email name } } tenant { id name slug } }
  workflows_page  20 workflows with their active version and its step count
  run_detail      a run, its step runs and its first 50 log lines (PostgreSQL store)
  runs_page       50 succeeded runs of the tenant with their step runs
  catalog         the connector catalog page (bench.py's CATALOG)
  start_run       startRun with a fresh idempotency key: run, step runs, key, audit event
  runs_dashboard  runs.py's dashboard (workflows, their 10 newest runs, step runs), at
                  20 workflows, and for §3 at 5 and 50 workflows per page

Exit status 1 when a request or a pgbench run failed, a twin did not return the rows
its GraphQL request did, or startRun's bodies ran out (an idempotent replay would have
been measured); and, unless BENCH_REPORT_ONLY=1, when a budget is missed (see
bench/README.md: ratios to the twin, PostgreSQL CPU, statements, p99/p50, RSS and the
§3 per-workflow slope).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import (  # noqa: E402
    CATALOG,
    CREATE_KEY,
    Client,
    GraphQLError,
    check_catalog,
    find_pgbench,
    jwt_claims,
    load_run,
    log,
    machine,
    pgbench_run,
    postmaster_info,
    prefixed_uuid,
    probe_statements,
    rss_kb,
    run_pool,
    seed_catalog,
    thread_client,
    verdict,
    write_results,
)
from runs import (  # noqa: E402
    RUNS_DASHBOARD,
    START_RUN,
    active_workflow,
    check_dashboard,
    check_detail,
    claim,
    execute,
    fmt,
    owner_tenant,
    psql_path,
    run_detail_query,
    seed_runs_sql,
    summarize,
    table,
)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TWINS = os.path.join(HERE, "matrix")

VIEWER = "query Viewer{ viewer { role user { id email name } } tenant { id name slug } }"
WORKFLOWS_PAGE = (
    "query WorkflowsPage($n:Int!){ workflows(first:$n){ edges { node { id key name status "
    "activeVersion { number status stepCount } } } } }"
)
RUNS_PAGE = (
    "query RunsPage($n:Int!){ runs(first:$n, filter:{status:[SUCCEEDED]}){ edges { node { id status "
    "createdAt finishedAt stepRuns { stepKey status } } } } }"
)
START = ("mutation Start($i:StartRunInput!){ startRun(input:$i){ run { id status } "
         "userErrors { field message } } }")

KINDS = ("read", "dashboard", "write")


# --------------------------------------------------------------------------- checks

def _errors(doc: dict) -> str | None:
    return f"errors: {json.dumps(doc['errors'])[:500]}" if "errors" in doc else None


def check_viewer(doc: dict, n: int) -> str | None:
    if (problem := _errors(doc)):
        return problem
    data = doc.get("data") or {}
    viewer, tenant = data.get("viewer") or {}, data.get("tenant")
    if not viewer.get("user") or not viewer["user"].get("email"):
        return "viewer.user is null"
    if viewer.get("role") != "OWNER":
        return f"viewer.role {viewer.get('role')!r}, expected OWNER"
    if not tenant or not tenant.get("slug"):
        return "tenant is null"
    return None


def check_workflows_page(doc: dict, n: int, expect: dict) -> str | None:
    if (problem := _errors(doc)):
        return problem
    edges = ((doc.get("data") or {}).get("workflows") or {}).get("edges")
    if edges is None:
        return "data.workflows is null"
    if len(edges) != min(n, expect["workflows"]):
        return f"{len(edges)} workflows, expected {min(n, expect['workflows'])}"
    for e in edges:
        version = e["node"]["activeVersion"]
        if not version or version["stepCount"] != expect["steps"] or version["status"] != "PUBLISHED":
            return f"workflow {e['node']['key']}: active version {version}"
    return None


def check_runs_page(doc: dict, n: int, expect: dict) -> str | None:
    if (problem := _errors(doc)):
        return problem
    edges = ((doc.get("data") or {}).get("runs") or {}).get("edges")
    if edges is None:
        return "data.runs is null"
    if len(edges) != expect["runs"]:
        return f"{len(edges)} runs, expected {expect['runs']}"
    for e in edges:
        node = e["node"]
        if node["status"] != "SUCCEEDED":
            return f"run {node['id']} is {node['status']} in a page filtered by SUCCEEDED"
        if len(node["stepRuns"]) != expect["steps"]:
            return f"run {node['id']} has {len(node['stepRuns'])} step runs, expected {expect['steps']}"
    return None


def check_start(doc: dict, n: int) -> str | None:
    if (problem := _errors(doc)):
        return problem
    payload = (doc.get("data") or {}).get("startRun") or {}
    if payload.get("userErrors"):
        return f"userErrors: {payload['userErrors']}"
    run = payload.get("run")
    if not run or run.get("status") != "PENDING":
        return f"startRun returned {payload}"
    return None


# Rows the twin must return, statement by statement (psql's "(N rows)" footers; the
# statements ending in \gset print none), from the GraphQL response of the same data.

def rows_flat(doc: dict) -> list[int]:
    return [1, 1]


def rows_edges(field: str):
    return lambda doc: [1, len(doc["data"][field]["edges"])]


def rows_detail(doc: dict) -> list[int]:
    node = doc["data"]["node"]
    return [1, max(1, len(node["stepRuns"])), len(node["logs"]["edges"])]


def rows_runs_page(doc: dict) -> list[int]:
    return [1, sum(max(1, len(e["node"]["stepRuns"])) for e in doc["data"]["runs"]["edges"])]


def rows_catalog(doc: dict) -> list[int]:
    total = 0
    for e in doc["data"]["apps"]["edges"]:
        versions = e["node"]["versions"]
        total += sum(max(1, len(v["actions"])) for v in versions) if versions else 1
    return [1, total]


def rows_dashboard(doc: dict) -> list[int]:
    total = 0
    for e in doc["data"]["workflows"]["edges"]:
        runs = e["node"]["runs"]["edges"]
        total += sum(max(1, len(r["node"]["stepRuns"])) for r in runs) if runs else 1
    return [1, total]


# The same data, value by value where it is cheap to compare: the twin's result sets
# (header, rows as "a|b|c") against the GraphQL response.

def _column(block: tuple[list[str], list[str]], name: str) -> list[str]:
    header, rows = block
    i = header.index(name)
    return [row.split("|")[i] for row in rows]


def _distinct(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


def same_viewer(doc: dict, blocks: list) -> str | None:
    data = doc["data"]
    want = [data["viewer"]["role"].lower(), data["viewer"]["user"]["email"], data["tenant"]["slug"]]
    got = [_column(blocks[1], c)[0] for c in ("role", "email", "slug")]
    return None if got == want else f"twin {got}, GraphQL {want}"


def same_keys(field: str, column: str = "key"):
    def same(doc: dict, blocks: list) -> str | None:
        want = [e["node"]["key"] for e in doc["data"][field]["edges"]]
        got = _distinct(_column(blocks[1], column))
        return None if got == want else f"twin keys {got[:5]}..., GraphQL {want[:5]}..."
    return same


def same_detail(doc: dict, blocks: list) -> str | None:
    node = doc["data"]["node"]
    steps = [s["stepKey"] for s in node["stepRuns"]]
    lines = [e["node"]["message"] for e in node["logs"]["edges"]]
    if _column(blocks[1], "step_key") != steps:
        return f"twin step runs {_column(blocks[1], 'step_key')}, GraphQL {steps}"
    if _column(blocks[2], "message") != lines:
        return "the twin's log lines differ from the GraphQL response's"
    return None


def same_runs_page(doc: dict, blocks: list) -> str | None:
    want = [prefixed_uuid(e["node"]["id"], "run") for e in doc["data"]["runs"]["edges"]]
    got = _distinct(_column(blocks[1], "id"))
    return None if got == want else "the twin's runs (or their order) differ from the GraphQL response's"


def same_catalog(doc: dict, blocks: list) -> str | None:
    want = [prefixed_uuid(e["node"]["id"], "app") for e in doc["data"]["apps"]["edges"]]
    got = _distinct(_column(blocks[1], "id"))
    total = {int(x) for x in _column(blocks[1], "total_count")}
    if total != {doc["data"]["apps"]["totalCount"]}:
        return f"twin total count {total}, GraphQL {doc['data']['apps']['totalCount']}"
    return None if got == want else "the twin's apps (or their order) differ from the GraphQL response's"


# --------------------------------------------------------------------------- twins

def twin_statements(path: str) -> int:
    """Statements a twin sends besides BEGIN and COMMIT (which the server's counter does
    not see either): SQL ended by `;` or by `\\gset`, comments and pgbench meta-commands
    (\\if, \\endif, ...) left out."""
    code = []
    with open(path) as f:
        for line in f:
            line = line.split("--", 1)[0].strip()
            if line and not line.startswith("\\"):
                code.append(line)
    parts = [p.strip() for p in re.split(r";|\\gset", "\n".join(code))]
    return sum(1 for p in parts if p and p.upper() not in ("BEGIN", "COMMIT"))


def psql_twin(psql: str, db: dict, script: str, defines: dict) -> list[tuple[list[str], list[str]]]:
    """Runs a twin once through psql as the application role (RLS in force) with the
    same variables pgbench gets, and returns its result sets as (header, rows), one per
    statement that printed one (statements ending in \\gset print none)."""
    args = []
    for name, value in defines.items():
        args += ["-v", f"{name}={value}" if isinstance(value, int) else f"{name}='{value}'"]
    cmd = [psql, "-X", "-q", "-A", "-v", "ON_ERROR_STOP=1", "-h", db["host"], "-p", str(db["port"]),
           "-U", db["user"], "-d", db["database"], *args, "-f", script]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PGPASSWORD=db["password"], PGAPPNAME="trellis-bench-matrix"))
    if proc.returncode != 0:
        raise RuntimeError(f"psql {os.path.basename(script)} failed ({proc.returncode}): "
                           f"{proc.stderr.strip()[-1000:]}")
    blocks, current = [], []
    for line in proc.stdout.splitlines():
        if re.fullmatch(r"\((\d+) rows?\)", line.strip()):
            blocks.append((current[:1] and current[0].split("|"), current[1:]))
            current = []
        else:
            current.append(line)
    return blocks


# --------------------------------------------------------------------------- seeding

def seed(cfg: argparse.Namespace, psql: str, pg: dict, db: dict) -> dict:
    """Tenants with active workflows (GraphQL) and their runs and step runs (bulk SQL,
    runs.py's seed); a tenant for the run detail and startRun; a catalog tenant."""
    url = cfg.url
    t0 = time.perf_counter()

    def tenant(t: int) -> dict:
        tenant_id, token = owner_tenant(thread_client(url), f"matrix-{t:02d}", f"Matrix Tenant {t:02d}")
        return {"index": t, "id": tenant_id, "token": token}

    tenants = run_pool(cfg.seed_workers, [(tenant, (t,)) for t in range(cfg.tenants)])
    run_pool(cfg.seed_workers, [
        (lambda tok, w: active_workflow(thread_client(url), tok, f"mx-{w:03d}", cfg.steps), (t["token"], w))
        for w in range(cfg.workflows) for t in tenants])
    t1 = time.perf_counter()
    log(f"matrix seed: {cfg.tenants} tenants x {cfg.workflows} active workflows of {cfg.steps} steps "
        f"in {t1 - t0:.1f}s ({cfg.tenants * (3 + 4 * cfg.workflows)} GraphQL requests)")
    out = seed_runs_sql(psql, pg, db["database"], [jwt_claims(t["token"])["tid"] for t in tenants],
                        cfg.runs_per_workflow, cfg.steps, cfg.days)
    t2 = time.perf_counter()
    log(f"matrix seed: SQL: {out.replace(chr(10), ' ')} (runs|workflows), {cfg.steps} step runs each, "
        f"in {t2 - t1:.1f}s")

    # The run detail and startRun, in a tenant of their own: the runner claims only the
    # detail run, and the runs startRun makes stay out of the read shapes' data.
    c = Client(url, timeout=120)
    try:
        live_id, live_token = owner_tenant(c, "matrix-live", "Matrix Live")
        detail_wf = active_workflow(c, live_token, "detail", cfg.steps)
        runner = c.gql(CREATE_KEY, {"i": {"name": "matrix-runner", "scopes": ["RUNNER"]}},
                       live_token)["createApiKey"]["secret"]
        run_id = c.gql(START_RUN, {"i": {"workflowId": detail_wf, "input": {"detail": True}}},
                       live_token)["startRun"]["run"]["id"]
        leases = claim(c, runner)
        if len(leases) != 1 or leases[0]["run"]["id"] != run_id:
            raise GraphQLError(f"claimRuns returned {leases}, expected the run {run_id}")
        per_step = cfg.detail_lines // cfg.steps
        execute(c, runner, run_id, leases[0]["token"], cfg.steps, per_step, 0)
        start_wf = active_workflow(c, live_token, "start", cfg.steps)
    finally:
        c.close()
    t3 = time.perf_counter()
    catalog = seed_catalog(url, cfg.catalog_apps, cfg.catalog_actions, slug=f"matrix-catalog-{os.getpid()}")
    t4 = time.perf_counter()
    log(f"matrix seed: run detail ({per_step * cfg.steps} log lines) and startRun workflow in {t3 - t2:.1f}s, "
        f"catalog ({catalog['apps']} apps) in {t4 - t3:.1f}s")
    return {
        "tenants": tenants,
        "live": {"id": live_id, "token": live_token, "detail_run": run_id, "start_workflow": start_wf,
                 "lines": per_step * cfg.steps},
        "catalog": catalog,
        "timing": {"graphql_seconds": round(t1 - t0, 2), "sql_seconds": round(t2 - t1, 2),
                   "live_seconds": round(t3 - t2, 2), "catalog_seconds": round(t4 - t3, 2),
                   "seconds": round(t4 - t0, 2), "workflows": cfg.tenants * cfg.workflows,
                   "runs": cfg.tenants * cfg.workflows * cfg.runs_per_workflow,
                   "step_runs": cfg.tenants * cfg.workflows * cfg.runs_per_workflow * cfg.steps},
    }


# --------------------------------------------------------------------------- shapes

def ids(token: str) -> tuple[str, str]:
    claims = jwt_claims(token)
    return claims["tid"], claims["sub"]


def shapes(cfg: argparse.Namespace, seeded: dict) -> list[dict]:
    """Every shape: its GraphQL request, the check of a response, the twin and its
    variables, the rows the twin must return."""
    main = seeded["tenants"][0]
    live = seeded["live"]
    cat = seeded["catalog"]
    steps = cfg.steps
    dash_expect = {"workflows": cfg.workflows, "runs": cfg.runs_per_workflow, "steps": steps}
    detail_expect = {"steps": steps, "lines": live["lines"]}
    out = [
        {"name": "viewer", "kind": "read", "query": VIEWER, "operation": "Viewer", "n": 0, "variables": {},
         "prefix": b'{"data":{"viewer":{', "check": check_viewer, "rows": rows_flat, "same": same_viewer, "token": main["token"]},
        {"name": "workflows_page", "kind": "read", "query": WORKFLOWS_PAGE, "operation": "WorkflowsPage",
         "n": cfg.workflows_page, "prefix": b'{"data":{"workflows":{',
         "check": lambda doc, n: check_workflows_page(doc, n, {"workflows": cfg.workflows, "steps": steps}),
         "rows": rows_edges("workflows"), "same": same_keys("workflows"), "token": main["token"]},
        {"name": "run_detail", "kind": "read", "query": run_detail_query(live["detail_run"]),
         "operation": "RunDetail", "n": cfg.detail_page, "prefix": b'{"data":{"node":{',
         "check": lambda doc, n: check_detail(doc, n, detail_expect), "rows": rows_detail, "same": same_detail,
         "token": live["token"], "defines": {"run": prefixed_uuid(live["detail_run"], "run")}},
        {"name": "runs_page", "kind": "read", "query": RUNS_PAGE, "operation": "RunsPage", "n": cfg.runs_page,
         "prefix": b'{"data":{"runs":{', "check": None, "rows": rows_runs_page, "same": same_runs_page,
         "token": main["token"]},
        {"name": "catalog", "kind": "read", "query": CATALOG, "operation": "Catalog", "n": cfg.catalog_page,
         "prefix": b'{"data":{"apps":{', "check": lambda doc, n: check_catalog(doc, n, cat["apps"]),
         "rows": rows_catalog, "same": same_catalog, "token": cat["token"]},
        {"name": "start_run", "kind": "write", "query": START, "operation": "Start", "n": 0,
         "prefix": b'{"data":{"startRun":{"run":{', "check": check_start, "rows": rows_flat,
         "token": live["token"], "defines": {"workflow": prefixed_uuid(live["start_workflow"], "wf")}},
    ]
    sizes = sorted(set(cfg.scale_sizes) | {cfg.dashboard_page})
    for n in sizes:
        out.append({"name": "runs_dashboard", "kind": "dashboard", "query": RUNS_DASHBOARD,
                    "operation": "RunsDash", "n": n, "prefix": b'{"data":{"workflows":{',
                    "check": lambda doc, n: check_dashboard(doc, n, dash_expect), "rows": rows_dashboard,
                    "same": same_keys("workflows"),
                    "token": main["token"], "scale": n in cfg.scale_sizes,
                    "matrix": n == cfg.dashboard_page})
    out = [s for s in out if s["name"] in cfg.shapes]
    for s in out:
        s.setdefault("variables", None)
        s.setdefault("defines", {})
        s.setdefault("same", None)
        s.setdefault("scale", False)
        s.setdefault("matrix", True)
        s["key"] = f"{s['name']}@{s['n']}" if s["name"] == "runs_dashboard" else s["name"]
        s["script"] = os.path.join(TWINS, f"{s['name']}.sql")
        s["twin_statements"] = twin_statements(s["script"])
        s["tenant"], s["user"] = ids(s["token"])
        s["concurrency"] = sorted(set((cfg.concurrency if s["matrix"] else [])
                                      + (cfg.scale_concurrency if s["scale"] else [])))
    return out


def start_bodies(workflow: str, count: int, tag: str) -> list[bytes]:
    """`count` startRun bodies, each with an idempotency key of its own."""
    return [json.dumps({"query": START, "operationName": "Start", "variables": {"i": {
        "workflowId": workflow, "input": {"n": 1}, "idempotencyKey": f"mx-{tag}-{k}"}}},
        separators=(",", ":")).encode() for k in range(count)]


def bodies_for(shape: dict, seeded: dict, count: int) -> list[bytes] | None:
    if shape["name"] != "start_run":
        return None
    return start_bodies(seeded["live"]["start_workflow"], count, f"{os.getpid()}-{time.time_ns()}")


def prepare(cfg: argparse.Namespace, shape: dict, seeded: dict, psql: str, db: dict, pgbench: str | None,
            postmaster: int | None) -> None:
    """One GraphQL request checked in full; the twin run once through psql, its rows
    compared with the response's; a one-second pgbench check; the statements of
    BENCH_PROBE requests one at a time."""
    n = shape["n"]
    c = Client(cfg.url)
    try:
        bodies = bodies_for(shape, seeded, max(1, cfg.probe) + 1)
        body = bodies[0] if bodies else json.dumps({
            "query": shape["query"], "operationName": shape["operation"],
            "variables": {"n": n} if shape["variables"] is None else shape["variables"]}).encode()
        status, data = c.request("POST", "/graphql", body, {"Content-Type": "application/json",
                                                             "Authorization": f"Bearer {shape['token']}"})
    finally:
        c.close()
    doc = json.loads(data)
    if status != 200:
        raise GraphQLError(f"{shape['key']}: HTTP {status}: {data[:500]!r}")
    if shape["name"] == "runs_page":
        # The page holds the newest succeeded runs: as many as the seed made, at most n.
        expect = {"runs": len(((doc.get("data") or {}).get("runs") or {}).get("edges") or []), "steps": cfg.steps}
        if not expect["runs"] or expect["runs"] > n:
            raise GraphQLError(f"runs_page: {expect['runs']} runs in the first response")
        shape["check"] = lambda d, n_: check_runs_page(d, n_, expect)
    problem = shape["check"](doc, n)
    if problem:
        raise GraphQLError(f"{shape['key']}: {problem}")
    defines = {"n": n, "tenant": shape["tenant"], "user": shape["user"], **shape["defines"]}
    blocks = psql_twin(psql, db, shape["script"], defines)
    got = [len(rows) for _, rows in blocks]
    want = shape["rows"](doc)
    shape["twin_check"] = {"rows": got, "expected_rows": want}
    if got != want:
        raise RuntimeError(f"{shape['key']}: the twin returned {got} rows per statement, the GraphQL "
                           f"response holds {want}")
    if shape["same"] and (problem := shape["same"](doc, blocks)):
        raise RuntimeError(f"{shape['key']}: the twin's data differ: {problem}")
    if shape["name"] == "start_run":
        row = dict(zip(blocks[-1][0], blocks[-1][1][0].split("|")))
        wrote = {k: int(row[k]) for k in ("step_runs", "keys", "audit_events")}
        if wrote != {"step_runs": cfg.steps, "keys": 1, "audit_events": 1}:
            raise RuntimeError(f"start_run: the twin wrote {wrote}")
        shape["twin_check"]["wrote"] = wrote
    if pgbench:
        first = pgbench_run(pgbench, db, shape["script"], shape["tenant"], shape["user"], n, 1, 1, 1,
                            postmaster, shape["defines"])
        if first["problems"]:
            raise RuntimeError(f"{shape['key']}: pgbench check run: {first['problems']}")
    bodies = bodies_for(shape, seeded, max(1, cfg.probe))
    shape["probe"] = probe_statements(cfg.url, shape["token"], n, cfg.probe, shape["query"],
                                      shape["variables"], bodies)
    log(f"matrix {shape['key']}: twin rows {got}{' and values' if shape['same'] else ''} OK, statements one at a time {shape['probe']}, "
        f"twin {shape['twin_statements']}")


# --------------------------------------------------------------------------- verdicts

def budgets_of(cfg: argparse.Namespace, shape: dict, row: dict) -> list[str]:
    """The budgets this row misses, as sentences."""
    misses = []
    where = f"{shape['key']} c={row['concurrency']}"
    floor = {"read": cfg.min_ratio, "dashboard": cfg.dashboard_min_ratio, "write": cfg.write_min_ratio}[shape["kind"]]
    row["min_ratio"] = floor
    if row.get("ratio") is not None:
        row["ratio_ok"] = row["ratio"] >= floor
        if not row["ratio_ok"]:
            misses.append(f"{where}: GraphQL/twin {row['ratio']:.3f} (budget >= {floor:g})")
    twin_pg = row.get("sql_postgres_cpu_ms_per_txn")
    if twin_pg:
        row["pg_cpu_over_twin"] = round(row["postgres_cpu_ms_per_request"] / twin_pg, 2)
        row["pg_cpu_ok"] = row["pg_cpu_over_twin"] <= cfg.max_pg_cpu
        if not row["pg_cpu_ok"]:
            misses.append(f"{where}: PostgreSQL CPU {row['postgres_cpu_ms_per_request']:.2f} ms/request = "
                          f"{row['pg_cpu_over_twin']:.2f} x the twin's {twin_pg:.2f} (budget <= {cfg.max_pg_cpu:g}x)")
    stmts = max([row["statements_per_request"] or 0] + [int(k) for k in shape.get("probe", {})])
    row["statements_max"] = stmts
    row["twin_statements"] = shape["twin_statements"]
    row["statements_ok"] = stmts <= shape["twin_statements"] + cfg.extra_statements + 0.005
    if not row["statements_ok"]:
        misses.append(f"{where}: {stmts:g} statements per request, twin {shape['twin_statements']} "
                      f"(budget <= twin + {cfg.extra_statements:g})")
    if row["concurrency"] == cfg.tail_concurrency:
        row["tail_ok"] = row["p99_over_p50"] <= cfg.max_tail
        if not row["tail_ok"]:
            misses.append(f"{where}: p99/p50 {row['p99_over_p50']:.2f} (budget <= {cfg.max_tail:g})")
    return misses


def slope(rows: list[dict], key: str, small: int, large: int) -> float | None:
    a = next((r for r in rows if r["n"] == small), None)
    b = next((r for r in rows if r["n"] == large), None)
    if a is None or b is None or a.get(key) is None or b.get(key) is None:
        return None
    return round((b[key] - a[key]) / (large - small), 4)


# --------------------------------------------------------------------------- main

def main() -> int:
    env = os.environ.get
    ints = lambda s: [int(x) for x in s.split(",") if x.strip()]  # noqa: E731
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True)
    p.add_argument("--pid", type=int, required=True, help="PID of the trellis process (RSS, CPU)")
    p.add_argument("--pg-pidfile", required=True, help="postmaster.pid of the server's embedded cluster")
    p.add_argument("--out", default=os.path.join(HERE, "out", "matrix.json"))
    p.add_argument("--shapes", default=env("BENCH_MATRIX_SHAPES", "viewer,workflows_page,run_detail,runs_page,"
                                                                  "catalog,start_run,runs_dashboard"))
    p.add_argument("--tenants", type=int, default=int(env("BENCH_MATRIX_TENANTS", "20")))
    p.add_argument("--workflows", type=int, default=int(env("BENCH_MATRIX_WORKFLOWS", "50")),
                   help="active workflows per tenant (at least the largest scale page size)")
    p.add_argument("--runs-per-workflow", type=int, default=int(env("BENCH_MATRIX_RUNS", "20")))
    p.add_argument("--steps", type=int, default=int(env("BENCH_MATRIX_STEPS", "5")))
    p.add_argument("--days", type=float, default=float(env("BENCH_RUN_DAYS", "14")))
    p.add_argument("--seed-workers", type=int, default=int(env("BENCH_SEED_WORKERS", "8")))
    p.add_argument("--detail-lines", type=int, default=int(env("BENCH_MATRIX_DETAIL_LINES", "100")))
    p.add_argument("--detail-page", type=int, default=int(env("BENCH_MATRIX_DETAIL_PAGE", "50")))
    p.add_argument("--workflows-page", type=int, default=int(env("BENCH_MATRIX_WORKFLOWS_PAGE", "20")))
    p.add_argument("--runs-page", type=int, default=int(env("BENCH_MATRIX_RUNS_PAGE", "50")))
    p.add_argument("--catalog-page", type=int, default=int(env("BENCH_MATRIX_CATALOG_PAGE", "50")))
    p.add_argument("--catalog-apps", type=int, default=int(env("BENCH_MATRIX_CATALOG_APPS", "40")))
    p.add_argument("--catalog-actions", type=int, default=int(env("BENCH_CATALOG_ACTIONS", "3")))
    p.add_argument("--dashboard-page", type=int, default=int(env("BENCH_MATRIX_DASHBOARD_PAGE", "20")))
    p.add_argument("--scale-sizes", default=env("BENCH_MATRIX_SCALE_SIZES", "5,20,50"))
    p.add_argument("--concurrency", default=env("BENCH_MATRIX_CONCURRENCY", "8,32"))
    p.add_argument("--scale-concurrency", default=env("BENCH_MATRIX_SCALE_CONCURRENCY", "8,32"))
    p.add_argument("--start-bodies", type=int, default=int(env("BENCH_MATRIX_START_BODIES", "0")),
                   help="startRun bodies per run, each with its own idempotency key (default: enough for "
                        "3,000 requests/s over the run plus the warm-up)")
    p.add_argument("--runs", type=int, default=int(env("BENCH_RUNS", "3")))
    p.add_argument("--duration", type=float, default=float(env("BENCH_DURATION", "10")))
    p.add_argument("--warmup", type=int, default=int(env("BENCH_WARMUP", "5")))
    p.add_argument("--probe", type=int, default=int(env("BENCH_PROBE", "20")))
    p.add_argument("--pgbench", default=env("BENCH_PGBENCH_RUN", "1") != "0", action=argparse.BooleanOptionalAction)
    p.add_argument("--pgbench-jobs", type=int, default=int(env("BENCH_PGBENCH_JOBS", "2")))
    p.add_argument("--min-ratio", type=float, default=float(env("BENCH_MATRIX_MIN_RATIO", "0.5")))
    p.add_argument("--dashboard-min-ratio", type=float, default=float(env("BENCH_MATRIX_DASHBOARD_MIN_RATIO", "0.8")))
    p.add_argument("--write-min-ratio", type=float, default=float(env("BENCH_MATRIX_WRITE_MIN_RATIO", "0.5")))
    p.add_argument("--max-pg-cpu", type=float, default=float(env("BENCH_MATRIX_MAX_PG_CPU", "1.5")))
    p.add_argument("--extra-statements", type=float, default=float(env("BENCH_MATRIX_EXTRA_STATEMENTS", "2")))
    p.add_argument("--tail-concurrency", type=int, default=int(env("BENCH_TAIL_CONCURRENCY", "32")))
    p.add_argument("--max-tail", type=float, default=float(env("BENCH_MATRIX_MAX_TAIL", "3")))
    p.add_argument("--max-rss-mb", type=float, default=float(env("BENCH_MATRIX_MAX_RSS_MB", "100")))
    p.add_argument("--max-slope", type=float, default=float(env("BENCH_MATRIX_MAX_SLOPE", "2")),
                   help="§3: server CPU per added workflow at most this times PostgreSQL's in the twin")
    p.add_argument("--report-only", default=env("BENCH_REPORT_ONLY", "0") == "1", action=argparse.BooleanOptionalAction)
    cfg = p.parse_args()
    cfg.shapes = [s.strip() for s in cfg.shapes.split(",") if s.strip()]
    unknown = set(cfg.shapes) - {"viewer", "workflows_page", "run_detail", "runs_page", "catalog", "start_run",
                                 "runs_dashboard"}
    if unknown:
        log(f"FAIL: unknown shapes {sorted(unknown)}")
        return 2
    cfg.concurrency = ints(cfg.concurrency)
    cfg.scale_concurrency = ints(cfg.scale_concurrency)
    cfg.scale_sizes = ints(cfg.scale_sizes)
    if cfg.workflows < max(cfg.scale_sizes + [cfg.dashboard_page, cfg.workflows_page]):
        log(f"note: {cfg.workflows} workflows per tenant: pages of "
            f"{max(cfg.scale_sizes + [cfg.dashboard_page, cfg.workflows_page])} will not be full")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    pg = postmaster_info(cfg.pg_pidfile)
    postmaster = pg["pid"]
    db = {"host": pg["host"], "port": pg["port"], "database": env("TRELLIS_DB_NAME", "trellis"),
          "user": env("TRELLIS_DB_APP_ROLE", "trellis_app"), "password": env("TRELLIS_DB_APP_PASSWORD", "trellis_app")}
    pgbench = find_pgbench(postmaster) if cfg.pgbench else None
    psql = psql_path(find_pgbench(postmaster))
    if psql is None:
        log("FAIL: the matrix needs psql (seeding, twin checks; next to pgbench, on PATH, or BENCH_PSQL)")
        return 1
    if cfg.pgbench and pgbench is None:
        log("FAIL: the twins need pgbench (BENCH_PGBENCH); BENCH_PGBENCH_RUN=0 skips them")
        return 1
    rss_start = rss_kb(cfg.pid)

    seeded = seed(cfg, psql, pg, db)
    matrix = shapes(cfg, seeded)
    for shape in matrix:
        prepare(cfg, shape, seeded, psql, db, pgbench, postmaster)
    time.sleep(1)
    rss_idle = rss_kb(cfg.pid)

    # Interleaved: round after round, every shape and concurrency, the GraphQL run and
    # right after it its twin.
    start_count = cfg.start_bodies or int(3000 * cfg.duration) + 64 * cfg.warmup + 1000
    gql_runs, sql_runs, hard = [], [], []
    for rep in range(1, cfg.runs + 1):
        for shape in matrix:
            for conc in shape["concurrency"]:
                bodies = bodies_for(shape, seeded, start_count)
                r = load_run(cfg.url, cfg.pid, postmaster, shape["token"], shape["n"], conc, cfg.duration,
                             cfg.warmup, {}, query=shape["query"], operation=shape["operation"],
                             prefix=shape["prefix"], check=shape["check"], variables=shape["variables"],
                             bodies=bodies)
                r.update({"rep": rep, "shape": shape["key"]})
                if bodies is not None and r["requests"] + conc * cfg.warmup > len(bodies):
                    hard.append(f"{shape['key']} c={conc}: {r['requests'] + conc * cfg.warmup} requests but "
                                f"{len(bodies)} idempotency keys (BENCH_MATRIX_START_BODIES)")
                gql_runs.append(r)
                msg = (f"matrix {rep}/{cfg.runs} {shape['key']} c={conc}: {r['rps']:.1f} req/s, p50 {r['p50_ms']} ms, "
                       f"p99 {r['p99_ms']} ms, {r['statements_per_request']} stmts/req, "
                       f"srv {r['server_cpu_ms_per_request']} pg {r['postgres_cpu_ms_per_request']} ms/req, "
                       f"failures {r['failures']}")
                if pgbench:
                    b = pgbench_run(pgbench, db, shape["script"], shape["tenant"], shape["user"], shape["n"], conc,
                                    cfg.duration, cfg.pgbench_jobs, postmaster, shape["defines"])
                    b.update({"rep": rep, "shape": shape["key"]})
                    sql_runs.append(b)
                    msg += (f"; twin {b['tps']:.1f} tps, pg {b['postgres_cpu_ms_per_txn']} ms/txn, ratio "
                            f"{r['rps'] / b['tps'] if b['tps'] else float('nan'):.3f}"
                            + (f", problems {b['problems']}" if b["problems"] else ""))
                log(msg)
                for f in r["first_failures"]:
                    log(f"    failure: {f}")

    # Medians per (shape, concurrency), the paired ratios, the budgets.
    rows, misses = [], []
    for shape in matrix:
        for conc in shape["concurrency"]:
            rs = [r for r in gql_runs if r["shape"] == shape["key"] and r["concurrency"] == conc]
            if not rs:  # BENCH_RUNS=0: the checks and probes only
                continue
            row = summarize(rs, conc)
            row.update({"shape": shape["name"], "key": shape["key"], "kind": shape["kind"],
                        "probe": shape["probe"], "twin_check": shape["twin_check"],
                        "client_cpu_ms_per_request": statistics.median(r["client_cpu_ms_per_request"] or 0
                                                                       for r in rs)})
            sql = [b for b in sql_runs if b["shape"] == shape["key"] and b["concurrency"] == conc]
            if sql:
                by_rep = {b["rep"]: b for b in sql}
                paired = [r["rps"] / by_rep[r["rep"]]["tps"] for r in rs
                          if r["rep"] in by_rep and by_rep[r["rep"]]["tps"]]
                pg_cpu = [b["postgres_cpu_ms_per_txn"] for b in sql if b["postgres_cpu_ms_per_txn"] is not None]
                row.update({
                    "sql_tps": round(statistics.median(b["tps"] for b in sql), 1),
                    "sql_tps_all_runs": [round(b["tps"], 1) for b in sql],
                    "sql_p50_ms": statistics.median(b["p50_ms"] or 0 for b in sql),
                    "sql_p99_ms": statistics.median(b["p99_ms"] or 0 for b in sql),
                    "sql_postgres_cpu_ms_per_txn": round(statistics.median(pg_cpu), 3) if pg_cpu else None,
                    "sql_pgbench_cpu_ms_per_txn": statistics.median(b["pgbench_cpu_ms_per_txn"] or 0 for b in sql),
                    "ratio_all_runs": [round(x, 3) for x in paired],
                    "ratio": round(statistics.median(paired), 3) if paired else None,
                })
            misses += budgets_of(cfg, shape, row)
            rows.append(row)

    rss_peak = max([r["rss_peak_kb"] for r in gql_runs] or [rss_idle])
    if rss_peak / 1024 > cfg.max_rss_mb:
        misses.append(f"server RSS peak {rss_peak / 1024:.1f} MB under load (budget <= {cfg.max_rss_mb:g} MB)")

    # §3: the dashboard's cost per added workflow, between the smallest and the largest
    # scale page: the server's CPU against PostgreSQL's in the twin.
    scale = []
    dash_rows = [r for r in rows if r["shape"] == "runs_dashboard"]
    if dash_rows and len(cfg.scale_sizes) >= 2:
        small, large = min(cfg.scale_sizes), max(cfg.scale_sizes)
        for conc in cfg.scale_concurrency:
            at = [r for r in dash_rows if r["concurrency"] == conc]
            s = {"concurrency": conc, "from": small, "to": large,
                 "server_cpu_ms_per_workflow": slope(at, "server_cpu_ms_per_request", small, large),
                 "postgres_cpu_ms_per_workflow": slope(at, "postgres_cpu_ms_per_request", small, large),
                 "twin_postgres_cpu_ms_per_workflow": slope(at, "sql_postgres_cpu_ms_per_txn", small, large)}
            if s["server_cpu_ms_per_workflow"] is not None and s["twin_postgres_cpu_ms_per_workflow"]:
                s["server_over_twin"] = round(s["server_cpu_ms_per_workflow"] / s["twin_postgres_cpu_ms_per_workflow"], 2)
            if s["server_cpu_ms_per_workflow"] is not None and s["twin_postgres_cpu_ms_per_workflow"] is not None:
                s["ok"] = s["server_cpu_ms_per_workflow"] <= cfg.max_slope * s["twin_postgres_cpu_ms_per_workflow"]
                if not s["ok"]:
                    misses.append(f"runs_dashboard c={conc}: server CPU {s['server_cpu_ms_per_workflow']:.4f} ms per "
                                  f"added workflow against the twin's PostgreSQL "
                                  f"{s['twin_postgres_cpu_ms_per_workflow']:.4f} (budget <= {cfg.max_slope:g}x)")
            scale.append(s)
        # Statements must not depend on the page size: the one-at-a-time counts are
        # exact (a load window may also hold a background job's statement).
        per_size = {r["n"]: sorted(int(k) for k in r["probe"]) for r in dash_rows}
        if len({tuple(v) for v in per_size.values()}) > 1:
            hard.append(f"runs_dashboard: statements per request depend on the page size: {per_size}")

    failures = sum(r["failures"] for r in gql_runs)
    sql_failed = [b for b in sql_runs if b["problems"]]

    # ---- output.
    def row_verdict(r: dict) -> str:
        keys = ["ratio_ok", "pg_cpu_ok", "statements_ok", "tail_ok"]
        bad = [k.removesuffix("_ok").replace("pg_cpu", "pg").replace("statements", "stmts")
               for k in keys if r.get(k) is False]
        return "OK" if not bad else "FAIL " + ",".join(bad)

    main_table = table(
        ["shape", "n", "conc", "req/s", "p50 ms", "p99 ms", "p99/p50", "stmts/req", "twin stmts",
         "srv CPU ms/req", "pg CPU ms/req", "twin pg CPU ms/txn", "pg x twin", "twin tps", "twin p50 ms",
         "twin p99 ms", "ratio", "min", "RSS peak MB", "budgets", "failures"],
        [[r["shape"], str(r["n"]) if r["n"] else "-", str(r["concurrency"]), f"{r['rps']:.1f}", f"{r['p50_ms']:.1f}",
          f"{r['p99_ms']:.1f}", f"{r['p99_over_p50']:.2f}", f"{r['statements_per_request']:.2f}",
          str(r["twin_statements"]), f"{r['server_cpu_ms_per_request']:.2f}",
          f"{r['postgres_cpu_ms_per_request']:.2f}", fmt(r.get("sql_postgres_cpu_ms_per_txn"), ".2f"),
          fmt(r.get("pg_cpu_over_twin"), ".2f"), fmt(r.get("sql_tps"), ".1f"), fmt(r.get("sql_p50_ms"), ".2f"),
          fmt(r.get("sql_p99_ms"), ".2f"), fmt(r.get("ratio"), ".3f"), f"{r['min_ratio']:g}",
          f"{r['rss_peak_kb'] / 1024:.1f}", row_verdict(r), str(r["failures"])]
         for r in rows])
    scale_table = table(
        ["conc", "pages", "srv CPU ms/workflow", "pg CPU ms/workflow", "twin pg CPU ms/workflow", "srv / twin pg",
         f"<= {cfg.max_slope:g}"],
        [[str(s["concurrency"]), f"{s['from']}->{s['to']}", fmt(s["server_cpu_ms_per_workflow"], ".4f"),
          fmt(s["postgres_cpu_ms_per_workflow"], ".4f"), fmt(s["twin_postgres_cpu_ms_per_workflow"], ".4f"),
          fmt(s.get("server_over_twin"), ".2f"), "-" if "ok" not in s else ("OK" if s["ok"] else "FAIL")]
         for s in scale]) if scale else ""
    t = seeded["timing"]
    print()
    print(f"Request-shape matrix (issue 19): {cfg.tenants} tenants x {cfg.workflows} workflows x "
          f"{cfg.runs_per_workflow} runs x {cfg.steps} step runs; medians of {cfg.runs} interleaved rounds of "
          f"{cfg.duration:g}s; each GraphQL run (trellis-loadgen) followed by its twin (bench/matrix/<shape>.sql, "
          f"pgbench -M prepared -j {cfg.pgbench_jobs}, as the app role under RLS); ratio = median of paired "
          f"GraphQL req/s / twin tps. stmts/req counts the server's statements without BEGIN/COMMIT (its counter "
          f"does not see them); twin stmts likewise leaves out the twin's BEGIN/COMMIT")
    print(main_table)
    if scale_table:
        print()
        print(f"§3 runs dashboard cost per added workflow (slope of CPU per request between "
              f"{min(cfg.scale_sizes)} and {max(cfg.scale_sizes)} workflows per page)")
        print(scale_table)
    print()
    print(f"seeding: {t['seconds']:.1f}s ({t['workflows']} workflows through GraphQL in {t['graphql_seconds']:.1f}s, "
          f"{t['runs']} runs and {t['step_runs']} step runs through SQL in {t['sql_seconds']:.1f}s)")
    print(f"server RSS: {rss_start / 1024:.1f} MB before seeding, {rss_idle / 1024:.1f} MB idle after, "
          f"{rss_peak / 1024:.1f} MB peak under load (budget <= {cfg.max_rss_mb:g} MB)")
    print("statements one at a time (statements: requests): "
          + "; ".join(f"{s['key']}: {s['probe']} (twin {s['twin_statements']})" for s in matrix))
    print(f"failed requests: {failures}; failed pgbench runs: {len(sql_failed)}")

    result = {
        "machine": machine(),
        "config": {k: v for k, v in vars(cfg).items() if k not in ("url", "pid", "out")},
        "queries": {s["key"]: s["query"] for s in matrix},
        "twins": {s["key"]: {"script": os.path.relpath(s["script"], ROOT), "statements": s["twin_statements"],
                             "defines": {"n": s["n"], "tenant": s["tenant"], "user": s["user"], **s["defines"]},
                             "check": s["twin_check"]} for s in matrix},
        "database": {k: v for k, v in db.items() if k != "password"},
        "seeding": t,
        "rss_start_kb": rss_start,
        "rss_idle_kb": rss_idle,
        "rss_peak_kb": rss_peak,
        "summary": rows,
        "scale": scale,
        "runs": gql_runs,
        "sql_runs": sql_runs,
        "table": main_table,
        "scale_table": scale_table,
        "budgets": {"missed": misses, "report_only": cfg.report_only},
        "problems": hard,
        "failures": failures,
        "failed_pgbench_runs": len(sql_failed),
    }
    write_results(result, cfg.out)
    problems = ([f"{failures} request(s) failed"] if failures else []) \
        + ([f"{len(sql_failed)} pgbench run(s) failed: {sql_failed[0]['problems']}"] if sql_failed else []) \
        + hard
    return verdict(problems, misses, cfg.report_only)


if __name__ == "__main__":
    sys.exit(main())
