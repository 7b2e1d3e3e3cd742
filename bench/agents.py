#!/usr/bin/env python3
"""Agents dashboard benchmark (issue 18 §6): a tenant's agents page against its SQL twin.

Runs against a server that bench/run.sh started (release build, embedded PostgreSQL),
or alone: `bench/agents.py --url http://127.0.0.1:PORT --pid PID --pg-pidfile
DATA_DIR/pg/postmaster.pid`. Python 3.11 standard library only; reuses bench.py's,
runs.py's and matrix.py's client, seeding, twin and measuring helpers. See
bench/README.md ("Agents").

1. Seeding, through the public GraphQL API only (BENCH_SEED_WORKERS threads): an owner
   and a tenant; a RUNNER API key; a workflow of one DELAY step, published and active
   (the agents' flow); three tenant-private skills, PUBLISHED, compatible with CUSTOM
   agents; BENCH_AGENTS_COUNT (20) agents, each with version 1 pointing at the flow and
   activated, 2 or 3 of the skills installed, BENCH_AGENTS_ACTIVITIES (12) activities
   (recordAgentActivity with the RUNNER key) and BENCH_AGENTS_RUNS (3) runs (runAgent;
   the executor is off, so they stay PENDING) with one usage report each (reportUsage
   with the RUNNER key and the run's ID; one in three an error), which fills today's
   DAY bucket of agent_metrics.
2. The query, at N = BENCH_AGENTS_SIZES (`5,20`):

     agents(first: N) { edges { node { id slug name status activeVersion { id number }
       skills { skillVersion skill { key name } }
       activities(first: 10) { edges { node { type summary at } } }
       metrics(period: DAY, from: <day of the reports>, to: <the next day>) { periodStart
         runs failedRuns: errors inputTokens outputTokens costMicros p50LatencyMs p95LatencyMs } } } }

   Before load, per N: one response checked against what was seeded; the twin
   (bench/agents.sql) run once through psql as the application role and its rows
   compared value by value with the response; a one-second pgbench check; BENCH_PROBE
   requests one at a time with /metrics read around each (statements per request).
3. Load, like matrix.py: round after round (BENCH_RUNS, 3), per N and concurrency
   (BENCH_AGENTS_CONCURRENCY, `8,32`), a trellis-loadgen run (every 25th response must
   equal the checked one) and right after it the twin through pgbench at the same
   concurrency; medians: req/s, p50/p99, statements per request, server and PostgreSQL
   CPU per request, the twin's tps and CPU, the ratio (median of paired req/s / tps).

Exit status 1 when a request or pgbench run failed, the twin did not return the data
the GraphQL response holds, or the statements per request (one at a time) differ
between the page sizes (even with BENCH_REPORT_ONLY=1: that is a bug, never noise); and,
unless BENCH_REPORT_ONLY=1, when req/s is below BENCH_AGENTS_MIN_RATIO (0.5) x the
twin's tps at BENCH_AGENTS_RATIO_CONCURRENCY (8) clients for the dashboard's page,
BENCH_AGENTS_RATIO_SIZES (20 agents: the issue's "a tenant's 20 agents"); the other
sizes are reported.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import (  # noqa: E402
    CREATE_KEY,
    Client,
    GraphQLError,
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
    thread_client,
    verdict,
    write_results,
)
from matrix import psql_twin, twin_statements  # noqa: E402
from runs import (  # noqa: E402
    ACTIVATE,
    CREATE_WORKFLOW,
    PUBLISH,
    SAVE,
    chain,
    fmt,
    owner_tenant,
    psql_path,
    summarize,
    table,
)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# `failedRuns: errors`: trellis-loadgen and probe_statements take `"errors":` anywhere in a
# body for a GraphQL error, so the bucket's field goes by an alias.
QUERY = (
    "query AgentsDash($n:Int!,$from:DateTime!,$to:DateTime!){ agents(first:$n){ edges { node { id slug name "
    "status activeVersion { id number } skills { skillVersion skill { key name } } "
    "activities(first:10){ edges { node { type summary at } } } "
    "metrics(period:DAY, from:$from, to:$to){ periodStart runs failedRuns: errors inputTokens outputTokens costMicros "
    "p50LatencyMs p95LatencyMs } } } } }"
)
OPERATION = "AgentsDash"
PREFIX = b'{"data":{"agents":{'

CREATE_AGENT = "mutation($i:CreateAgentInput!){ createAgent(input:$i){ agent{ id slug } userErrors{ field message } } }"
CREATE_VERSION = ("mutation($i:CreateAgentVersionInput!){ createAgentVersion(input:$i){ version{ id number } "
                  "userErrors{ field message } } }")
ACTIVATE_VERSION = ("mutation($i:IdInput!){ activateAgentVersion(input:$i){ version{ status } "
                    "agent{ activeVersion{ id } } userErrors{ field message } } }")
CREATE_SKILL = ("mutation($i:CreateSkillInput!){ createSkill(input:$i){ skill{ id key status } "
                "userErrors{ field message } } }")
INSTALL_SKILL = ("mutation($i:InstallSkillInput!){ installSkill(input:$i){ installation{ id skillVersion } "
                 "userErrors{ field message } } }")
RECORD_ACTIVITY = ("mutation($i:RecordAgentActivityInput!){ recordAgentActivity(input:$i){ activity{ id } "
                   "userErrors{ field message } } }")
RUN_AGENT = "mutation($i:RunAgentInput!){ runAgent(input:$i){ run{ id } userErrors{ field message } } }"
REPORT_USAGE = ("mutation($i:ReportUsageInput!){ reportUsage(input:$i){ usage{ id at } "
                "userErrors{ field message } } }")

# The tenant's private skills (key, name, category); agent i installs 2 + i % 2 of them,
# starting at SKILLS[i % 3].
SKILLS = [("bench-inbox", "Inbox triage", "COMMUNICATION"),
          ("bench-reports", "Weekly reports", "ANALYTICS"),
          ("bench-reviews", "Code reviews", "ENGINEERING")]
ACTIVITY_TYPES = ["TASK", "MESSAGE", "ALERT"]


# --------------------------------------------------------------------------- seeding

def flow_version(c: Client, token: str) -> str:
    """An active workflow of one DELAY step; the ID of its published version 1."""
    created = c.gql(CREATE_WORKFLOW, {"i": {"key": "agents-flow", "name": "Agents flow"}},
                    token)["createWorkflow"]["workflow"]
    version = created["versions"][0]["id"]
    nodes, edges = chain(1)
    c.gql(SAVE, {"i": {"versionId": version, "steps": nodes, "transitions": edges}}, token)
    c.gql(PUBLISH, {"i": {"id": version}}, token)
    c.gql(ACTIVATE, {"i": {"id": version}}, token)
    return version


def seed(cfg: argparse.Namespace) -> dict:
    """The tenant, its agents and everything the query reads (see the docstring)."""
    url = cfg.url
    t0 = time.perf_counter()
    c = Client(url, timeout=120)
    try:
        tenant_id, token = owner_tenant(c, "agents", "Agents Bench")
        runner = c.gql(CREATE_KEY, {"i": {"name": "agents-runner", "scopes": ["RUNNER"]}},
                       token)["createApiKey"]["secret"]
        flow = flow_version(c, token)
        skills = []
        for key, name, category in SKILLS:
            skill = c.gql(CREATE_SKILL, {"i": {"key": key, "name": name, "category": category,
                                               "compatibleRoles": ["CUSTOM"], "status": "PUBLISHED",
                                               "version": "1.2.0"}}, token)["createSkill"]["skill"]
            skills.append({"id": skill["id"], "key": key, "name": name})
    finally:
        c.close()
    requests = 3 + 1 + 4 + len(SKILLS)

    def agent(i: int) -> dict:
        c = thread_client(url)
        slug = f"bench-agent-{i:02d}"
        a = c.gql(CREATE_AGENT, {"i": {"slug": slug, "name": f"Bench Agent {i:02d}",
                                       "description": "Seeded by bench/agents.py"}}, token)["createAgent"]["agent"]
        v = c.gql(CREATE_VERSION, {"i": {"agentId": a["id"], "flowVersionId": flow,
                                         "specMarkdown": f"# {slug}\n\nAnswers tickets."}},
                  token)["createAgentVersion"]["version"]
        c.gql(ACTIVATE_VERSION, {"i": {"id": v["id"]}}, token)
        return {"index": i, "id": a["id"], "slug": slug, "version": v["id"]}

    agents = run_pool(cfg.seed_workers, [(agent, (i,)) for i in range(cfg.agents)])
    requests += 3 * cfg.agents
    t1 = time.perf_counter()

    def install(a: dict, skill: dict) -> None:
        thread_client(url).gql(INSTALL_SKILL, {"i": {"agentId": a["id"], "skillId": skill["id"],
                                                     "config": {"agent": a["slug"]}}}, token)

    def record(a: dict, k: int) -> None:
        thread_client(url).gql(RECORD_ACTIVITY, {"i": {
            "agentId": a["id"], "type": ACTIVITY_TYPES[k % 3],
            "summary": f"{a['slug']}: handled ticket {1000 + 37 * k + a['index']} in {3 + k % 7} steps",
            "details": {"k": k}}}, runner)

    def run_and_report(a: dict, k: int) -> str:
        c = thread_client(url)
        run = c.gql(RUN_AGENT, {"i": {"agentId": a["id"], "input": {"ticket": k}}}, token)["runAgent"]["run"]["id"]
        usage = c.gql(REPORT_USAGE, {"i": {
            "agentId": a["id"], "runId": run, "inputTokens": 800 + 10 * k + a["index"],
            "outputTokens": 200 + k, "costMicros": 1500 + 250 * k + a["index"],
            "latencyMs": 400 + 130 * k + 7 * a["index"], "error": k % 3 == 2}}, runner)["reportUsage"]["usage"]
        return usage["at"]

    jobs = []
    for a in agents:
        a["skills"] = [SKILLS[(a["index"] + s) % len(SKILLS)][0] for s in range(2 + a["index"] % 2)]
        jobs += [(install, (a, next(s for s in skills if s["key"] == key))) for key in a["skills"]]
    run_pool(cfg.seed_workers, jobs)
    requests += len(jobs)
    run_pool(cfg.seed_workers, [(record, (a, k)) for k in range(cfg.activities) for a in agents])
    requests += cfg.activities * cfg.agents
    ats = run_pool(cfg.seed_workers, [(run_and_report, (a, k)) for k in range(cfg.runs_per_agent) for a in agents])
    requests += 2 * cfg.runs_per_agent * cfg.agents
    t2 = time.perf_counter()

    # The metrics range: the UTC day(s) the reports fell in (one, unless seeding crossed
    # midnight), fixed now so that the query's data cannot change under the load.
    days = sorted({datetime.datetime.fromisoformat(at).astimezone(datetime.timezone.utc).date() for at in ats})
    start = datetime.datetime.combine(days[0], datetime.time(), datetime.timezone.utc)
    end = datetime.datetime.combine(days[-1], datetime.time(), datetime.timezone.utc) + datetime.timedelta(days=1)
    fmt_at = lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    log(f"[agents] seeded a tenant, {cfg.agents} agents with an active version, "
        f"{sum(len(a['skills']) for a in agents)} skill installations, {cfg.activities * cfg.agents} activities, "
        f"{cfg.runs_per_agent * cfg.agents} runs with their usage reports in {t2 - t0:.1f}s "
        f"({requests} GraphQL requests, {cfg.seed_workers} threads)")
    return {"tenant_id": tenant_id, "token": token, "agents": agents, "from": fmt_at(start), "to": fmt_at(end),
            "timing": {"seconds": round(t2 - t0, 2), "agents_seconds": round(t1 - t0, 2),
                       "rest_seconds": round(t2 - t1, 2), "graphql_requests": requests}}


# --------------------------------------------------------------------------- checks

def expected_errors(runs: int) -> int:
    return sum(1 for k in range(runs) if k % 3 == 2)


def check_seeded(cfg: argparse.Namespace, seeded: dict, doc: dict, n: int) -> str | None:
    """One response against what was seeded."""
    if "errors" in doc:
        return f"errors: {json.dumps(doc['errors'])[:500]}"
    edges = ((doc.get("data") or {}).get("agents") or {}).get("edges")
    if edges is None:
        return "data.agents is null"
    if len(edges) != min(n, cfg.agents):
        return f"{len(edges)} agents, expected {min(n, cfg.agents)}"
    by_slug = {a["slug"]: a for a in seeded["agents"]}
    for e in edges:
        node = e["node"]
        a = by_slug.get(node["slug"])
        if a is None:
            return f"agent {node['slug']} was not seeded"
        if not node["activeVersion"] or node["activeVersion"]["id"] != a["version"] \
                or node["activeVersion"]["number"] != 1:
            return f"agent {a['slug']}: active version {node['activeVersion']}"
        if sorted(s["skill"]["key"] for s in node["skills"]) != sorted(a["skills"]):
            return f"agent {a['slug']}: skills {node['skills']}, expected {a['skills']}"
        if len(node["activities"]["edges"]) != min(10, cfg.activities):
            return f"agent {a['slug']}: {len(node['activities']['edges'])} activities"
        runs = sum(b["runs"] for b in node["metrics"])
        errors = sum(b["failedRuns"] for b in node["metrics"])
        if runs != cfg.runs_per_agent or errors != expected_errors(cfg.runs_per_agent):
            return f"agent {a['slug']}: metrics {node['metrics']}, expected {cfg.runs_per_agent} runs"
    return None


def instant(s: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(s)


def graphql_values(doc: dict) -> list[dict]:
    """The response's data in the twin's terms (UUIDs, lower-case enums, instants)."""
    out = []
    for e in doc["data"]["agents"]["edges"]:
        node = e["node"]
        version = node["activeVersion"]
        out.append({
            "id": prefixed_uuid(node["id"], "agt"), "slug": node["slug"], "name": node["name"],
            "status": node["status"].lower(),
            "version": [prefixed_uuid(version["id"], "agv"), version["number"]] if version else None,
            "skills": [[s["skillVersion"], s["skill"]["key"], s["skill"]["name"]] for s in node["skills"]],
            "activities": [[a["node"]["type"].lower(), a["node"]["summary"], instant(a["node"]["at"])]
                           for a in node["activities"]["edges"]],
            "metrics": [[instant(b["periodStart"]), b["runs"], b["failedRuns"], b["inputTokens"], b["outputTokens"],
                         b["costMicros"], b["p50LatencyMs"], b["p95LatencyMs"]] for b in node["metrics"]],
        })
    return out


def twin_values(block: tuple[list[str], list[str]]) -> list[dict]:
    """The twin's main result set (psql -A: `|`-separated, the lists as JSON)."""
    header, rows = block
    out = []
    for row in rows:
        cells = row.split("|")
        if len(cells) != len(header):
            raise RuntimeError(f"a twin row does not split into its {len(header)} columns: {row[:300]}")
        r = dict(zip(header, cells))
        out.append({
            "id": r["id"], "slug": r["slug"], "name": r["name"], "status": r["status"],
            "version": [r["version_id"], int(r["version_number"])] if r["version_id"] else None,
            "skills": json.loads(r["skills"]),
            "activities": [[t, s, instant(at)] for t, s, at in json.loads(r["activities"])],
            "metrics": [[instant(m[0]), *m[1:]] for m in json.loads(r["metrics"])],
        })
    return out


def compare(doc: dict, blocks: list) -> str | None:
    want, got = graphql_values(doc), twin_values(blocks[1])
    if len(want) != len(got):
        return f"{len(got)} agents from the twin, {len(want)} in the response"
    for w, g in zip(want, got):
        for k in w:
            if w[k] != g[k]:
                return f"agent {w['slug']}: {k}: twin {str(g[k])[:300]}, GraphQL {str(w[k])[:300]}"
    return None


# --------------------------------------------------------------------------- measuring

def prepare(cfg: argparse.Namespace, seeded: dict, n: int, psql: str, db: dict, pgbench: str | None,
            postmaster: int | None) -> dict:
    """The shape at page size n: checked response, twin compared, pgbench check, probe."""
    variables = {"n": n, "from": seeded["from"], "to": seeded["to"]}
    token = seeded["token"]
    tenant, user = jwt_claims(token)["tid"], jwt_claims(token)["sub"]
    c = Client(cfg.url)
    try:
        status, data = c.request("POST", "/graphql", json.dumps({
            "query": QUERY, "operationName": OPERATION, "variables": variables}).encode(),
            {"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    finally:
        c.close()
    if status != 200:
        raise GraphQLError(f"agents@{n}: HTTP {status}: {data[:500]!r}")
    doc = json.loads(data)
    if (problem := check_seeded(cfg, seeded, doc, n)):
        raise GraphQLError(f"agents@{n}: {problem}")
    defines = {"from": seeded["from"], "to": seeded["to"]}
    blocks = psql_twin(psql, db, cfg.sql_script, {"n": n, "tenant": tenant, "user": user, **defines})
    rows = [len(r) for _, r in blocks]
    if rows != [1, len(doc["data"]["agents"]["edges"])]:
        raise RuntimeError(f"agents@{n}: the twin returned {rows} rows per statement, expected "
                           f"[1, {len(doc['data']['agents']['edges'])}]")
    if (problem := compare(doc, blocks)):
        raise RuntimeError(f"agents@{n}: the twin's data differ: {problem}")
    if pgbench:
        first = pgbench_run(pgbench, db, cfg.sql_script, tenant, user, n, 1, 1, 1, postmaster, defines)
        if first["problems"]:
            raise RuntimeError(f"agents@{n}: pgbench check run: {first['problems']}")
    probe = probe_statements(cfg.url, token, n, cfg.probe, QUERY, variables)
    reference = doc["data"]

    def check(d: dict, _n: int) -> str | None:
        if "errors" in d:
            return f"errors: {json.dumps(d['errors'])[:500]}"
        return None if d.get("data") == reference else "the response differs from the checked one"

    log(f"[agents] N={n}: response checked, twin rows {rows} and values OK, statements one at a time {probe}")
    return {"n": n, "variables": variables, "tenant": tenant, "user": user, "defines": defines,
            "check": check, "probe": probe, "twin_rows": rows}


def mode(probe: dict[str, int]) -> int:
    """The statement count most requests of a probe took (a background job's statement
    may land in one window)."""
    return int(max(probe.items(), key=lambda kv: (kv[1], -int(kv[0])))[0])


def main() -> int:
    env = os.environ.get
    ints = lambda s: [int(x) for x in s.split(",") if x.strip()]  # noqa: E731
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True)
    p.add_argument("--pid", type=int, required=True, help="PID of the trellis process (RSS, CPU)")
    p.add_argument("--pg-pidfile", required=True, help="postmaster.pid of the server's embedded cluster")
    p.add_argument("--out", default=os.path.join(HERE, "out", "agents.json"))
    p.add_argument("--agents", type=int, default=int(env("BENCH_AGENTS_COUNT", "20")))
    p.add_argument("--activities", type=int, default=int(env("BENCH_AGENTS_ACTIVITIES", "12")),
                   help="activities per agent (the query shows the 10 newest)")
    p.add_argument("--runs-per-agent", type=int, default=int(env("BENCH_AGENTS_RUNS", "3")),
                   help="runs (runAgent) per agent, each with one usage report")
    p.add_argument("--sizes", default=env("BENCH_AGENTS_SIZES", "5,20"))
    p.add_argument("--concurrency", default=env("BENCH_AGENTS_CONCURRENCY", "8,32"))
    p.add_argument("--seed-workers", type=int, default=int(env("BENCH_SEED_WORKERS", "8")))
    p.add_argument("--runs", type=int, default=int(env("BENCH_RUNS", "3")))
    p.add_argument("--duration", type=float, default=float(env("BENCH_DURATION", "10")))
    p.add_argument("--warmup", type=int, default=int(env("BENCH_WARMUP", "5")))
    p.add_argument("--probe", type=int, default=int(env("BENCH_PROBE", "20")))
    p.add_argument("--pgbench", default=env("BENCH_PGBENCH_RUN", "1") != "0", action=argparse.BooleanOptionalAction)
    p.add_argument("--pgbench-jobs", type=int, default=int(env("BENCH_PGBENCH_JOBS", "2")))
    p.add_argument("--sql-script", default=os.path.join(HERE, "agents.sql"))
    p.add_argument("--min-ratio", type=float, default=float(env("BENCH_AGENTS_MIN_RATIO", "0.5")))
    p.add_argument("--ratio-concurrency", default=env("BENCH_AGENTS_RATIO_CONCURRENCY", "8"),
                   help="the concurrencies the ratio budget holds at")
    p.add_argument("--ratio-sizes", default=env("BENCH_AGENTS_RATIO_SIZES", "20"),
                   help="the page sizes the ratio budget holds at (the issue's dashboard: 20 agents)")
    p.add_argument("--report-only", default=env("BENCH_REPORT_ONLY", "0") == "1", action=argparse.BooleanOptionalAction)
    cfg = p.parse_args()
    cfg.sizes = ints(cfg.sizes)
    cfg.concurrency = ints(cfg.concurrency)
    cfg.ratio_concurrency = ints(cfg.ratio_concurrency)
    cfg.ratio_sizes = ints(cfg.ratio_sizes)
    if cfg.agents < max(cfg.sizes):
        log(f"note: {cfg.agents} agents: pages of {max(cfg.sizes)} will not be full")
    if cfg.activities < 10:
        log(f"note: {cfg.activities} activities per agent: the pages of 10 will not be full")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    pg = postmaster_info(cfg.pg_pidfile)
    postmaster = pg["pid"]
    db = {"host": pg["host"], "port": pg["port"], "database": env("TRELLIS_DB_NAME", "trellis"),
          "user": env("TRELLIS_DB_APP_ROLE", "trellis_app"), "password": env("TRELLIS_DB_APP_PASSWORD", "trellis_app")}
    pgbench = find_pgbench(postmaster) if cfg.pgbench else None
    psql = psql_path(find_pgbench(postmaster))
    if psql is None:
        log("FAIL: the agents phase needs psql (the twin check; next to pgbench, on PATH, or BENCH_PSQL)")
        return 1
    if cfg.pgbench and pgbench is None:
        log("FAIL: the twin needs pgbench (BENCH_PGBENCH); BENCH_PGBENCH_RUN=0 skips it")
        return 1
    rss_start = rss_kb(cfg.pid)

    try:
        seeded = seed(cfg)
    except GraphQLError as e:
        log(f"FAIL: seeding: {e}")
        return 1
    shapes = [prepare(cfg, seeded, n, psql, db, pgbench, postmaster) for n in cfg.sizes]
    twin_stmts = twin_statements(cfg.sql_script)
    time.sleep(1)
    rss_idle = rss_kb(cfg.pid)

    # Interleaved: round after round, every page size and concurrency, the GraphQL run
    # and right after it the twin.
    gql_runs, sql_runs = [], []
    for rep in range(1, cfg.runs + 1):
        for shape in shapes:
            for conc in cfg.concurrency:
                n = shape["n"]
                r = load_run(cfg.url, cfg.pid, postmaster, seeded["token"], n, conc, cfg.duration, cfg.warmup, {},
                             query=QUERY, operation=OPERATION, prefix=PREFIX, check=shape["check"],
                             variables=shape["variables"])
                r["rep"] = rep
                gql_runs.append(r)
                msg = (f"[agents] {rep}/{cfg.runs} N={n} c={conc}: {r['rps']:.1f} req/s, p50 {r['p50_ms']} ms, "
                       f"p99 {r['p99_ms']} ms, {r['statements_per_request']} stmts/req, "
                       f"srv {r['server_cpu_ms_per_request']} pg {r['postgres_cpu_ms_per_request']} ms/req, "
                       f"failures {r['failures']}")
                if pgbench:
                    b = pgbench_run(pgbench, db, cfg.sql_script, shape["tenant"], shape["user"], n, conc,
                                    cfg.duration, cfg.pgbench_jobs, postmaster, shape["defines"])
                    b["rep"] = rep
                    sql_runs.append(b)
                    msg += (f"; twin {b['tps']:.1f} tps, pg {b['postgres_cpu_ms_per_txn']} ms/txn, ratio "
                            f"{r['rps'] / b['tps'] if b['tps'] else float('nan'):.3f}"
                            + (f", problems {b['problems']}" if b["problems"] else ""))
                log(msg)
                for f in r["first_failures"]:
                    log(f"    failure: {f}")

    # Medians per (N, concurrency), the paired ratios, the budgets.
    rows, misses, hard = [], [], []
    for shape in shapes:
        for conc in cfg.concurrency:
            rs = [r for r in gql_runs if r["n"] == shape["n"] and r["concurrency"] == conc]
            if not rs:  # BENCH_RUNS=0: the checks and probes only
                continue
            row = summarize(rs, conc)
            row.update({"probe": shape["probe"], "twin_statements": twin_stmts,
                        "client_cpu_ms_per_request": statistics.median(r["client_cpu_ms_per_request"] or 0
                                                                       for r in rs)})
            sql = [b for b in sql_runs if b["n"] == shape["n"] and b["concurrency"] == conc]
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
                if row["sql_postgres_cpu_ms_per_txn"]:
                    row["pg_cpu_over_twin"] = round(row["postgres_cpu_ms_per_request"]
                                                    / row["sql_postgres_cpu_ms_per_txn"], 2)
                if (conc in cfg.ratio_concurrency and shape["n"] in cfg.ratio_sizes
                        and row["ratio"] is not None):
                    row["ratio_ok"] = row["ratio"] >= cfg.min_ratio
                    if not row["ratio_ok"]:
                        misses.append(f"agents N={shape['n']} c={conc}: GraphQL/twin {row['ratio']:.3f} "
                                      f"(budget >= {cfg.min_ratio:g})")
            rows.append(row)

    # Statements must not depend on the page size: the one-at-a-time counts are exact
    # (the mode, in case a background job's statement landed in a window).
    per_size = {s["n"]: mode(s["probe"]) for s in shapes}
    statements_constant = len(set(per_size.values())) <= 1
    if not statements_constant:
        hard.append(f"statements per request depend on the page size: {per_size} "
                    f"(one at a time: {({s['n']: s['probe'] for s in shapes})})")

    failures = sum(r["failures"] for r in gql_runs)
    sql_failed = [b for b in sql_runs if b["problems"]]
    rss_peak = max([r["rss_peak_kb"] for r in gql_runs] or [rss_idle])

    main_table = table(
        ["N", "conc", "req/s", "p50 ms", "p99 ms", "p99/p50", "stmts/req", "stmts one at a time", "twin stmts",
         "srv CPU ms/req", "pg CPU ms/req", "twin pg CPU ms/txn", "pg x twin", "twin tps", "twin p50 ms",
         "twin p99 ms", "ratio", "budget", "failures"],
        [[str(r["n"]), str(r["concurrency"]), f"{r['rps']:.1f}", f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}",
          f"{r['p99_over_p50']:.2f}", f"{r['statements_per_request']:.2f}", str(mode(r["probe"])),
          str(r["twin_statements"]), f"{r['server_cpu_ms_per_request']:.2f}",
          f"{r['postgres_cpu_ms_per_request']:.2f}", fmt(r.get("sql_postgres_cpu_ms_per_txn"), ".2f"),
          fmt(r.get("pg_cpu_over_twin"), ".2f"), fmt(r.get("sql_tps"), ".1f"), fmt(r.get("sql_p50_ms"), ".2f"),
          fmt(r.get("sql_p99_ms"), ".2f"), fmt(r.get("ratio"), ".3f"),
          "-" if "ratio_ok" not in r else (f">= {cfg.min_ratio:g} " + ("OK" if r["ratio_ok"] else "FAIL")),
          str(r["failures"])] for r in rows])
    t = seeded["timing"]
    print()
    print(f"Agents dashboard (issue 18 §6): {cfg.agents} agents, each with an active version, 2-3 skills, "
          f"{cfg.activities} activities and {cfg.runs_per_agent} runs with usage reports; "
          f"agents(first: N) with activeVersion, skills, activities(first: 10) and metrics(DAY, "
          f"{seeded['from']}..{seeded['to']}); medians of {cfg.runs} interleaved rounds of {cfg.duration:g}s, "
          f"each GraphQL run (trellis-loadgen) followed by the twin (bench/agents.sql, pgbench -M prepared "
          f"-j {cfg.pgbench_jobs}, as the app role under RLS); ratio = median of paired GraphQL req/s / twin tps. "
          f"Statements leave out BEGIN/COMMIT on both sides")
    print(main_table)
    print()
    print(f"statements per request one at a time (statements: requests): "
          + "; ".join(f"N={s['n']}: {s['probe']}" for s in shapes)
          + f" ({'constant' if statements_constant else 'DEPEND ON N: FAIL'}); twin {twin_stmts}")
    print(f"seeding: {t['seconds']:.1f}s ({t['graphql_requests']} GraphQL requests)")
    print(f"server RSS: {rss_start / 1024:.1f} MB before seeding, {rss_idle / 1024:.1f} MB idle after, "
          f"{rss_peak / 1024:.1f} MB peak under load")
    print(f"failed requests: {failures}; failed pgbench runs: {len(sql_failed)}")

    result = {
        "machine": machine(),
        "config": {k: v for k, v in vars(cfg).items() if k not in ("url", "pid", "out")},
        "query": QUERY,
        "variables": {"from": seeded["from"], "to": seeded["to"]},
        "twin": {"script": os.path.relpath(cfg.sql_script, ROOT), "statements": twin_stmts,
                 "rows": {s["n"]: s["twin_rows"] for s in shapes}},
        "database": {k: v for k, v in db.items() if k != "password"},
        "seeding": t,
        "statements_one_at_a_time": {s["n"]: s["probe"] for s in shapes},
        "statements_constant": statements_constant,
        "rss_start_kb": rss_start,
        "rss_idle_kb": rss_idle,
        "rss_peak_kb": rss_peak,
        "summary": rows,
        "runs": gql_runs,
        "sql_runs": sql_runs,
        "table": main_table,
        "budgets": {"min_ratio": cfg.min_ratio, "ratio_concurrency": cfg.ratio_concurrency,
                    "ratio_sizes": cfg.ratio_sizes, "missed": misses,
                    "report_only": cfg.report_only},
        "problems": hard,
        "failures": failures,
        "failed_pgbench_runs": len(sql_failed),
    }
    write_results(result, cfg.out)
    # Statement growth (in `hard`) is a bug, never a noisy measurement: it fails even in
    # report-only.
    problems = ([f"{failures} request(s) failed"] if failures else []) \
        + ([f"{len(sql_failed)} pgbench run(s) failed: {sql_failed[0]['problems']}"] if sql_failed else []) \
        + hard
    return verdict(problems, misses, cfg.report_only)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
