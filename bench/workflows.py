#!/usr/bin/env python3
"""Workflow graph benchmark: save and publish of graphs of 250, 500 and 1,000 steps,
and the workflow list's statements per request.

Runs against a server that bench/run.sh started (release build, embedded PostgreSQL).
Each size is saved with `saveWorkflowGraph` and published with `publishVersion` on a
fresh workflow, several times; the medians are compared in the same run. The budget
(DESIGN §6, issue 4): the 1,000-step save+publish takes at most 2.5x the 500-step one,
so validation and writing stay linear. The list of 20 workflows with their versions
and step counts must cost the same number of SQL statements at any page size.
"""

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import CREATE_TENANT, SWITCH_TENANT, Client, log, metrics, sign_up  # noqa: E402

CREATE_WORKFLOW = "mutation($i:CreateWorkflowInput!){ createWorkflow(input:$i){ workflow{ id versions{ id } } userErrors{ field message } } }"
SAVE = "mutation($i:SaveWorkflowGraphInput!){ saveWorkflowGraph(input:$i){ version{ id stepCount } userErrors{ field message } } }"
PUBLISH = "mutation($i:IdInput!){ publishVersion(input:$i){ version{ status } userErrors{ field message } } }"
DRAFT = "mutation($i:CreateDraftVersionInput!){ createDraftVersion(input:$i){ version{ id } userErrors{ field message } } }"
LIST = "query($n:Int!){ workflows(first:$n){ totalCount edges{ node{ key status activeVersion{ number } versions{ number status stepCount } } } } }"


def graph(n: int) -> tuple[list, list]:
    """A layered DAG of `n` steps with about two transitions per step: each step has a
    parent in a binary tree and, unless that is the same step, its predecessor."""
    steps = [
        {
            "key": f"s{i}",
            "name": f"Step {i}",
            "type": "HTTP" if i % 3 == 0 else "DELAY",
            "position": {"x": i % 40, "y": i // 40},
            "config": {"url": f"https://api.example.com/items/{i}", "method": "POST"} if i % 3 == 0 else {"seconds": 1 + i % 60},
        }
        for i in range(n)
    ]
    transitions = []
    for i in range(1, n):
        parent = (i - 1) // 2
        transitions.append({"from": f"s{parent}", "to": f"s{i}"})
        if i - 1 != parent:
            condition = {"all": [{"field": "input.n", "operator": "gte", "value": i}, {"not": {"field": "input.skip", "operator": "exists"}}]}
            transitions.append({"from": f"s{i - 1}", "to": f"s{i}", "condition": condition})
    return steps, transitions


def tenant_token(c: Client) -> str:
    user = sign_up(c, f"workflows-{os.getpid()}@bench.trellis.test", "Workflow Bench")
    tenant = c.gql(CREATE_TENANT, {"i": {"slug": f"wf-bench-{os.getpid()}", "name": "Workflow Bench"}}, user)
    tenant_id = tenant["createTenant"]["tenant"]["id"]
    return c.gql(SWITCH_TENANT, {"i": {"tenantId": tenant_id}}, user)["switchTenant"]["accessToken"]


def save_and_publish(c: Client, token: str, key: str, steps: list, transitions: list) -> tuple[float, float]:
    created = c.gql(CREATE_WORKFLOW, {"i": {"key": key, "name": key}}, token)["createWorkflow"]["workflow"]
    version = created["versions"][0]["id"]
    t0 = time.perf_counter()
    saved = c.gql(SAVE, {"i": {"versionId": version, "steps": steps, "transitions": transitions}}, token)
    t1 = time.perf_counter()
    published = c.gql(PUBLISH, {"i": {"id": version}}, token)
    t2 = time.perf_counter()
    if saved["saveWorkflowGraph"]["version"]["stepCount"] != len(steps):
        raise RuntimeError(f"{key}: saved {saved} of {len(steps)} steps")
    if published["publishVersion"]["version"]["status"] != "PUBLISHED":
        raise RuntimeError(f"{key}: not published: {published}")
    return (t1 - t0) * 1000, (t2 - t1) * 1000


def statements(url: str, c: Client, token: str, n: int, count: int) -> list[int]:
    counts = []
    for _ in range(count):
        before = metrics(url)["trellis_sql_statements_total"]
        data = c.gql(LIST, {"n": n}, token)
        counts.append(int(metrics(url)["trellis_sql_statements_total"] - before))
        if len(data["workflows"]["edges"]) != n:
            raise RuntimeError(f"list first={n}: {len(data['workflows']['edges'])} edges")
    return counts


def main() -> int:
    env = os.environ.get
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True)
    p.add_argument("--out", default="bench/out/workflows.json")
    p.add_argument("--sizes", default=env("BENCH_GRAPH_SIZES", "250,500,1000"))
    p.add_argument("--runs", type=int, default=int(env("BENCH_GRAPH_RUNS", "5")))
    p.add_argument("--max-growth", type=float, default=float(env("BENCH_GRAPH_MAX_GROWTH", "2.5")),
                   help="budget: time(2n) / time(n) at most this")
    p.add_argument("--report-only", default=env("BENCH_REPORT_ONLY", "0") == "1", action=argparse.BooleanOptionalAction)
    cfg = p.parse_args()

    c = Client(cfg.url, timeout=300)
    token = tenant_token(c)
    sizes = [int(s) for s in cfg.sizes.split(",")]
    # One unmeasured round warms the server's caches (schemas, plans).
    steps, transitions = graph(sizes[0])
    save_and_publish(c, token, "warm-up", steps, transitions)

    samples: dict[int, list[tuple[float, float]]] = {n: [] for n in sizes}
    for run in range(cfg.runs):
        # Interleaved, so drift on a shared machine touches every size alike.
        for n in sizes:
            steps, transitions = graph(n)
            samples[n].append(save_and_publish(c, token, f"g{n}-r{run}", steps, transitions))
    rows = []
    for n in sizes:
        save = statistics.median(s for s, _ in samples[n])
        publish = statistics.median(p for _, p in samples[n])
        total = statistics.median(s + p for s, p in samples[n])
        rows.append({"steps": n, "transitions": len(graph(n)[1]), "save_ms": round(save, 1),
                     "publish_ms": round(publish, 1), "total_ms": round(total, 1)})

    # The list: 20 workflows (the ones above plus fillers), each with a published
    # version and a draft copied from it.
    listed = c.gql(LIST, {"n": 1}, token)["workflows"]["totalCount"]
    for i in range(max(0, 20 - listed)):
        s, t = graph(5)
        save_and_publish(c, token, f"list-{i}", s, t)
    page = c.gql("query{ workflows(first:20){ edges{ node{ id versions{ id } } } } }", None, token)
    for edge in page["workflows"]["edges"]:
        node = edge["node"]
        c.gql(DRAFT, {"i": {"workflowId": node["id"], "fromVersionId": node["versions"][0]["id"]}}, token)
    per_page = {n: statements(cfg.url, c, token, n, 5) for n in (5, 20)}

    by_size = {r["steps"]: r for r in rows}
    failures = []
    growth = []
    pairs = [(small, large) for small, large in zip(sizes, sizes[1:]) if large == 2 * small]
    for small, large in pairs:
        ratio = by_size[large]["total_ms"] / by_size[small]["total_ms"]
        growth.append({"from": small, "to": large, "ratio": round(ratio, 2)})
    # The budget is the largest doubling (500 -> 1,000 steps by default): small graphs
    # are dominated by fixed costs and by noise on a shared machine.
    if growth and growth[-1]["ratio"] > cfg.max_growth:
        g = growth[-1]
        failures.append(f"save+publish {g['to']} steps took {g['ratio']:.2f}x the {g['from']}-step time (budget {cfg.max_growth}x)")
    flat = {c for counts in per_page.values() for c in counts}
    if len(flat) != 1:
        failures.append(f"workflow list statements per request vary with the page: {per_page}")

    result = {"graphs": rows, "growth": growth, "list_statements": per_page, "runs": cfg.runs}
    os.makedirs(os.path.dirname(os.path.abspath(cfg.out)), exist_ok=True)
    with open(cfg.out, "w") as f:
        json.dump(result, f, indent=2)
    log("")
    log("| steps | transitions | save ms | publish ms | save+publish ms |")
    log("|---|---|---|---|---|")
    for r in rows:
        log(f"| {r['steps']} | {r['transitions']} | {r['save_ms']} | {r['publish_ms']} | {r['total_ms']} |")
    for g in growth:
        log(f"growth {g['from']} -> {g['to']} steps: {g['ratio']}x (budget {cfg.max_growth}x)")
    log(f"workflow list (20 workflows, versions, step counts): statements per request {per_page}")
    for failure in failures:
        log(f"BUDGET MISSED: {failure}")
    # Statement growth is a bug, never a noisy measurement: it fails even in report-only.
    hard = [f for f in failures if "statements" in f]
    return 1 if hard or (failures and not cfg.report_only) else 0


if __name__ == "__main__":
    sys.exit(main())
