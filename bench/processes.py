#!/usr/bin/env python3
"""Processes benchmark (issue 17): cache-hit invocations against their SQL through
pgbench, and the latency a call adds to its model provider on a miss.

Runs against a server that bench/run.sh started (release build, embedded PostgreSQL,
TRELLIS_EGRESS_ALLOW=127.0.0.1 so that it may call a loopback provider), or alone:
`bench/processes.py --url http://127.0.0.1:PORT --pid PID --pg-pidfile
DATA_DIR/pg/postmaster.pid`. Python 3.11 standard library only; reuses bench.py's
client and measuring helpers. See bench/README.md ("Processes").

1. Seeding (GraphQL): a tenant; a process with a small input schema and a published
   TEMPLATE version promoted to PRODUCTION; a second process whose version calls an
   OPENAI_COMPATIBLE provider through an `http` connection (with an authorization
   secret); an API key with only the INVOKE scope, held to PRODUCTION and those two
   processes. Then BENCH_PROC_INPUTS (1,000) distinct inputs are invoked once each
   over REST, which primes the response cache.
2. Statements: BENCH_PROBE cached calls one at a time, `/metrics` read around each.
3. Cache hits: `POST /v1/processes/{key}/invoke` with the primed inputs in turn, from
   trellis-loadgen at each concurrency (BENCH_PROC_CONCURRENCY, `8,32`) for
   BENCH_DURATION seconds after a warm-up, BENCH_RUNS interleaved rounds: req/s,
   p50/p99, SQL statements per call (`trellis_sql_statements_total` delta / calls),
   server, PostgreSQL and client CPU per call. Every response must be a 200 cache hit.
   Right after each run, bench/processes.sql (the same statements) through pgbench at
   the same concurrency, as the application role, on the same cluster.
4. Miss latency: a loopback provider that answers at once (trellis-chat-provider);
   BENCH_PROC_MISS_REQUESTS calls with `cache: "bypass"`, one at a time, in
   BENCH_PROC_MISS_ROUNDS rounds, each after the same number of direct calls of the
   provider with the body the server sent it (same client, same connection reuse):
   added latency = p50 through the server - p50 of the provider alone.

Exit status 1 when a request or pgbench run failed, when cached calls took more than
BENCH_PROC_MAX_STATEMENTS SQL statements (the count most calls one at a time took, or
the average under load), and
(unless BENCH_REPORT_ONLY=1) when a budget is missed: cache-hit req/s below
BENCH_PROC_MIN_RATIO (0.5) x pgbench tps at any concurrency, added latency p50 above
BENCH_PROC_MAX_ADDED_MS (2 ms).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import (  # noqa: E402
    CREATE_KEY,
    CREATE_TENANT,
    LOADGEN,
    SWITCH_TENANT,
    Client,
    GraphQLError,
    RssPeak,
    cpu_seconds,
    find_pgbench,
    log,
    machine,
    metrics,
    percentile,
    pg_cpu_seconds,
    pgbench_run,
    postmaster_info,
    prefixed_uuid,
    rss_kb,
    sign_up,
    thread_client,
    verdict,
    write_results,
)
from runs import fmt, psql_path, table  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PROVIDER = os.environ.get("BENCH_CHAT_PROVIDER") or os.path.join(ROOT, "target", "release", "trellis-chat-provider")

STATEMENTS = "trellis_sql_statements_total"
HIT_KEY = "bench-summarise"
MISS_KEY = "bench-miss"
# The primed inputs: {"text": INPUT_TEXT.format(k=k)} for k < --inputs. bench/processes.sql
# builds the same text (and its hash) in SQL: change both together.
INPUT_TEXT = "ticket {k}: the printer jams on double-sided pages"
INPUT_SCHEMA = {
    "type": "object",
    "properties": {"text": {"type": "string", "minLength": 1, "maxLength": 500}},
    "required": ["text"],
    "additionalProperties": False,
}
CONFIG = {"audience": "support engineers"}
PROMPT = "Summarise for {{ config.audience }}: {{ input.text }}"

CREATE_PROCESS = ("mutation($i:CreateProcessInput!){ createProcess(input:$i){ process{ id key } "
                  "userErrors{ field message } } }")
CREATE_VERSION = ("mutation($i:CreateProcessVersionInput!){ createProcessVersion(input:$i){ version{ id number } "
                  "userErrors{ field message } } }")
PUBLISH = "mutation($id:ID!){ publishProcessVersion(input:{id:$id}){ version{ id } userErrors{ field message } } }"
PROMOTE = ("mutation($id:ID!){ promoteProcessVersion(input:{versionId:$id, environment:PRODUCTION}){ "
           "version{ id environment } userErrors{ field message } } }")
CREATE_SECRET = "mutation($i:CreateSecretInput!){ createSecret(input:$i){ secret{ id } userErrors{ field message } } }"
CREATE_CONNECTION = ("mutation($i:CreateConnectionInput!){ createConnection(input:$i){ connection{ id } "
                     "userErrors{ field message } } }")
HTTP_APP = "query { app(key: \"http\") { latestVersion { id } } }"


# --------------------------------------------------------------------------- seeding

def body(k: int, cache: str | None = None) -> bytes:
    doc: dict = {"input": {"text": INPUT_TEXT.format(k=k)}}
    if cache:
        doc["cache"] = cache
    return json.dumps(doc, separators=(",", ":")).encode()


def published(c: Client, token: str, version_input: dict) -> str:
    """Creates, publishes and promotes a version; its ID."""
    version = c.gql(CREATE_VERSION, {"i": version_input}, token)["createProcessVersion"]["version"]["id"]
    c.gql(PUBLISH, {"id": version}, token)
    c.gql(PROMOTE, {"id": version}, token)
    return version


def seed(url: str, provider_base: str) -> dict:
    """The tenant, both processes and the INVOKE key (see the module's docstring)."""
    c = Client(url)
    try:
        user = sign_up(c, f"processes-owner-{os.getpid()}@bench.trellis.test", "Processes Owner")
        tenant_id = c.gql(CREATE_TENANT, {"i": {"slug": f"bench-processes-{os.getpid()}", "name": "Bench Processes"}},
                          user)["createTenant"]["tenant"]["id"]
        token = c.gql(SWITCH_TENANT, {"i": {"tenantId": tenant_id}}, user)["switchTenant"]["accessToken"]
        hit = c.gql(CREATE_PROCESS, {"i": {"key": HIT_KEY, "name": "Summarise", "inputSchema": INPUT_SCHEMA,
                                           "config": CONFIG}}, token)["createProcess"]["process"]["id"]
        hit_version = published(c, token, {"processId": hit, "userPrompt": PROMPT})
        # The miss process: the same schema and prompt, answered by the loopback provider.
        secret = c.gql(CREATE_SECRET, {"i": {"name": "bench-provider", "value": "Bearer sk-bench-0123456789"}},
                       token)["createSecret"]["secret"]["id"]
        http_version = c.gql(HTTP_APP, {}, token)["app"]["latestVersion"]["id"]
        connection = c.gql(CREATE_CONNECTION, {"i": {
            "appVersionId": http_version, "name": "bench-provider",
            "config": {"baseUrl": provider_base, "timeoutMs": 5000},
            "secrets": [{"field": "authorization", "secretId": secret}],
        }}, token)["createConnection"]["connection"]["id"]
        miss = c.gql(CREATE_PROCESS, {"i": {"key": MISS_KEY, "name": "Summarise (model)",
                                            "inputSchema": INPUT_SCHEMA, "config": CONFIG}},
                     token)["createProcess"]["process"]["id"]
        miss_version = published(c, token, {
            "processId": miss, "userPrompt": PROMPT, "provider": "OPENAI_COMPATIBLE", "connectionId": connection,
            "model": "bench-model", "maxAttempts": 1, "timeoutMs": 5000,
        })
        created = c.gql(CREATE_KEY, {"i": {"name": "bench-invoke", "scopes": ["INVOKE"],
                                           "processEnvironment": "PRODUCTION", "processKeys": [HIT_KEY, MISS_KEY]}},
                        token)["createApiKey"]
    finally:
        c.close()
    return {"tenant_id": tenant_id, "token": token, "hit_process": hit, "hit_version": hit_version,
            "miss_process": miss, "miss_version": miss_version, "connection": connection,
            "key_id": created["apiKey"]["id"], "key": created["secret"]}


def invoke(url: str, key: str, process: str, payload: bytes) -> tuple[int, dict]:
    c = thread_client(url)
    status, data = c.request("POST", f"/v1/processes/{process}/invoke", payload,
                             {"Content-Type": "application/json", "Authorization": f"Bearer {key}"})
    try:
        return status, json.loads(data)
    except ValueError:
        return status, {"error": {"message": f"non-JSON body {data[:300]!r}"}}


def expected_output(k: int) -> str:
    return f"Summarise for {CONFIG['audience']}: {INPUT_TEXT.format(k=k)}"


def prime(url: str, key: str, inputs: int, workers: int) -> tuple[float, list[str]]:
    """Invokes every input once (a miss that fills the cache); seconds and problems."""
    def one(k: int) -> str | None:
        status, doc = invoke(url, key, HIT_KEY, body(k))
        if status != 200:
            return f"input {k}: HTTP {status}: {json.dumps(doc)[:300]}"
        if doc.get("output") != expected_output(k):
            return f"input {k}: output {doc.get('output')!r}"
        return None

    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        problems = [p for p in pool.map(one, range(inputs)) if p]
    return time.perf_counter() - t0, problems


def check_primed_sql(psql: str, db: dict, tenant: str, inputs: int) -> int:
    """How many of the inputs' hashes, as bench/processes.sql computes them, find a ready
    cache entry (as the application role, the tenant set as the server sets it)."""
    text = INPUT_TEXT.replace("'", "''").replace("{k}", "' || k || '")
    sql = (f"BEGIN;\nSELECT set_config('app.tenant_id', '{tenant}', true);\n"
           f"SELECT count(*) FROM response_cache c WHERE c.state = 'ready' AND c.input_hash IN "
           f"(SELECT sha256(convert_to('{{\"text\":\"{text}\"}}', 'UTF8')) FROM generate_series(0, {inputs - 1}) k);\n"
           "COMMIT;\n")
    proc = subprocess.run([psql, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", db["host"], "-p",
                           str(db["port"]), "-U", db["user"], "-d", db["database"], "-f", "-"],
                          input=sql, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PGPASSWORD=db["password"], PGAPPNAME="trellis-bench-check"))
    if proc.returncode != 0:
        raise RuntimeError(f"psql: {proc.stderr.strip()[-500:]}")
    return int(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- measuring

def probe(url: str, key: str, count: int, inputs: int) -> dict[str, int]:
    """Statements of `count` cached calls sent one at a time (the server is otherwise
    idle, so the deltas of /metrics around each are exact): calls per statement count."""
    hist: dict[int, int] = {}
    for i in range(count):
        before = metrics(url)[STATEMENTS]
        status, doc = invoke(url, key, HIT_KEY, body(i % inputs))
        after = metrics(url)[STATEMENTS]
        if status != 200 or doc.get("cacheHit") is not True:
            raise GraphQLError(f"probe: HTTP {status}: {json.dumps(doc)[:300]}")
        k = int(after - before)
        hist[k] = hist.get(k, 0) + 1
    return {str(k): v for k, v in sorted(hist.items())}


def loadgen(url: str, key: str, bodies: str, conc: int, *, duration: float | None = None,
            requests: int | None = None, warmup: int, prefix: str, contains: list[str],
            latencies: str | None = None, samples: str | None = None, authorization: bool = True,
            on_ready=None) -> tuple[dict, float, dict]:
    """One trellis-loadgen run POSTing `bodies` (one per line, in turn) to `url`;
    `on_ready()` is called after the warm-up and returns the caller's "before" figures,
    which the result carries. Returns (report, client CPU seconds, before)."""
    cmd = [LOADGEN, "--url", url, "--bodies", bodies, "--concurrency", str(conc), "--warmup", str(warmup),
           "--prefix", prefix]
    if authorization:
        cmd += ["--header", f"Authorization: Bearer {key}"]
    for needle in contains:
        cmd += ["--contains", needle]
    if requests is not None:
        cmd += ["--requests", str(requests)]
    else:
        cmd += ["--duration", str(duration)]
    if latencies:
        cmd += ["--latencies", latencies]
    if samples:
        cmd += ["--samples", samples, "--sample-every", "25"]
    gen = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        ready = gen.stdout.readline().strip()
        if ready != "ready":
            raise RuntimeError(f"trellis-loadgen did not get ready: {ready!r}")
        before = on_ready() if on_ready else {}
        client_before = cpu_seconds(gen.pid)
        gen.stdin.write("go\n")
        gen.stdin.flush()
        report = json.loads(gen.stdout.readline())
        client_cpu = cpu_seconds(gen.pid) - client_before
        gen.stdin.close()
        gen.wait(timeout=30)
    finally:
        if gen.poll() is None:
            gen.kill()
            gen.wait()
    return report, client_cpu, before


def hit_run(cfg: argparse.Namespace, seeded: dict, postmaster: int | None, conc: int, tmp: str) -> dict:
    """One measured cache-hit run at `conc` clients."""
    samples = os.path.join(tmp, f"samples-{conc}.jsonl")
    rss = RssPeak(cfg.pid)

    def before() -> dict:
        figures = {"metrics": metrics(cfg.url), "cpu": cpu_seconds(cfg.pid), "pg": pg_cpu_seconds(postmaster)}
        rss.start()
        return figures

    report, client_cpu, b = loadgen(
        f"{cfg.url}/v1/processes/{HIT_KEY}/invoke", seeded["key"], cfg.bodies_file, conc,
        duration=cfg.duration, warmup=cfg.warmup, prefix='{"output":', contains=['"cacheHit":true'],
        samples=samples, on_ready=before)
    peak_kb = max(rss.stop(), rss_kb(cfg.pid))
    after, cpu_after, pg_after = metrics(cfg.url), cpu_seconds(cfg.pid), pg_cpu_seconds(postmaster)
    sample_problems = []
    with open(samples) as f:
        for line in f:
            doc = json.loads(line)
            if doc.get("cacheHit") is not True or not str(doc.get("output", "")).startswith("Summarise for "):
                sample_problems.append(f"sample: {line[:300]}")
    calls = report["requests"]
    d_stmt = after[STATEMENTS] - b["metrics"][STATEMENTS]
    return {
        "concurrency": conc,
        "requests": calls,
        "seconds": round(report["seconds"], 3),
        "rps": round(report["rps"], 1),
        "p50_ms": report["p50_ms"],
        "p99_ms": report["p99_ms"],
        "max_ms": report["max_ms"],
        "sql_statements": int(d_stmt),
        "statements_per_call": round(d_stmt / calls, 4) if calls else None,
        "server_cpu_ms_per_call": round((cpu_after - b["cpu"]) * 1000 / calls, 3) if calls else None,
        "postgres_cpu_ms_per_call": (round((pg_after - b["pg"]) * 1000 / calls, 3)
                                     if calls and b["pg"] is not None else None),
        "client_cpu_ms_per_call": round(client_cpu * 1000 / calls, 3) if calls else None,
        "rss_peak_kb": peak_kb,
        "failures": report["failures"] + len(sample_problems),
        "first_failures": (report["first_failures"] + sample_problems)[:3],
    }


def provider_get(base: str, path: str) -> bytes:
    c = Client(base, timeout=10)
    try:
        status, data = c.request("GET", path, None, {})
    finally:
        c.close()
    if status != 200:
        raise RuntimeError(f"provider {path}: HTTP {status}")
    return data


def read_latencies(path: str) -> list[float]:
    with open(path) as f:
        return [int(line) / 1000.0 for line in f if line.strip()]


def miss_phase(cfg: argparse.Namespace, seeded: dict, postmaster: int | None, provider_base: str, tmp: str) -> dict:
    """Calls with cache: bypass through the server, one at a time, against the same
    body sent straight to the provider, in interleaved rounds; and, for reference, as
    many cache hits one at a time."""
    miss_body = os.path.join(tmp, "miss.jsonl")
    with open(miss_body, "wb") as f:
        f.write(body(7, cache="bypass") + b"\n")
    origin = provider_base.rsplit("/v1", 1)[0]
    # One call first: it must answer, and it leaves the body the server sends.
    status, doc = invoke(cfg.url, seeded["key"], MISS_KEY, body(7, cache="bypass"))
    if status != 200 or doc.get("cacheHit") is not False or doc.get("output") != "ok":
        raise RuntimeError(f"the miss process did not answer: HTTP {status}: {json.dumps(doc)[:500]}")
    direct_body = os.path.join(tmp, "direct.jsonl")
    sent = provider_get(origin, "/last-body")
    if b"\n" in sent:
        raise RuntimeError("the server's provider request has a newline; cannot replay it line by line")
    with open(direct_body, "wb") as f:
        f.write(sent + b"\n")
    per_round = max(1, cfg.miss_requests // max(1, cfg.miss_rounds))
    server_lat: list[float] = []
    direct_lat: list[float] = []
    hit_lat: list[float] = []
    rounds = []
    problems: list[str] = []
    failures = 0
    statements = calls = 0
    server_cpu = pg_cpu = 0.0
    for r in range(cfg.miss_rounds):
        lat_file = os.path.join(tmp, f"direct-{r}.txt")
        # The provider's JSON keys come in either order (serde_json's preserve_order
        # depends on the features the workspace build unifies).
        report, _, _ = loadgen(f"{origin}/v1/chat/completions", "", direct_body, 1, requests=per_round,
                               warmup=cfg.miss_warmup, prefix="{", contains=['"chat.completion"', '"usage"'],
                               latencies=lat_file, authorization=False)
        failures += report["failures"]
        problems += report["first_failures"]
        d = read_latencies(lat_file)
        lat_file = os.path.join(tmp, f"server-{r}.txt")
        stats_before: dict = {}

        def before() -> dict:
            stats_before.update(json.loads(provider_get(origin, "/stats")))
            return {"metrics": metrics(cfg.url), "cpu": cpu_seconds(cfg.pid), "pg": pg_cpu_seconds(postmaster)}

        report, _, b = loadgen(f"{cfg.url}/v1/processes/{MISS_KEY}/invoke", seeded["key"], miss_body, 1,
                               requests=per_round, warmup=cfg.miss_warmup, prefix='{"output":"ok"',
                               contains=['"cacheHit":false'], latencies=lat_file, on_ready=before)
        after, cpu_after, pg_after = metrics(cfg.url), cpu_seconds(cfg.pid), pg_cpu_seconds(postmaster)
        stats_after = json.loads(provider_get(origin, "/stats"))
        failures += report["failures"]
        problems += report["first_failures"]
        s = read_latencies(lat_file)
        reached = stats_after["requests"] - stats_before["requests"]
        if reached != report["requests"]:
            failures += 1
            problems.append(f"round {r + 1}: {report['requests']} calls reached the provider {reached} times")
        statements += after[STATEMENTS] - b["metrics"][STATEMENTS]
        server_cpu += cpu_after - b["cpu"]
        pg_cpu += (pg_after - b["pg"]) if b["pg"] is not None and pg_after is not None else 0.0
        calls += report["requests"]
        lat_file = os.path.join(tmp, f"hit-{r}.txt")
        report, _, _ = loadgen(f"{cfg.url}/v1/processes/{HIT_KEY}/invoke", seeded["key"], cfg.bodies_file, 1,
                               requests=per_round, warmup=cfg.miss_warmup, prefix='{"output":',
                               contains=['"cacheHit":true'], latencies=lat_file)
        failures += report["failures"]
        problems += report["first_failures"]
        h = read_latencies(lat_file)
        d.sort()
        s.sort()
        h.sort()
        rounds.append({
            "round": r + 1, "requests": len(s),
            "direct_p50_ms": percentile(d, 0.5), "direct_p99_ms": percentile(d, 0.99),
            "server_p50_ms": percentile(s, 0.5), "server_p99_ms": percentile(s, 0.99),
            "added_p50_ms": round(percentile(s, 0.5) - percentile(d, 0.5), 3),
            "hit_p50_ms": percentile(h, 0.5), "hit_p99_ms": percentile(h, 0.99),
            "provider_handling_us_per_call": round((stats_after["handling_us"] - stats_before["handling_us"])
                                                   / max(1, reached), 1),
        })
        direct_lat += d
        server_lat += s
        hit_lat += h
        log(f"[processes] miss round {r + 1}: direct p50 {rounds[-1]['direct_p50_ms']:.3f} ms, through the "
            f"server p50 {rounds[-1]['server_p50_ms']:.3f} ms, added {rounds[-1]['added_p50_ms']:.3f} ms")
    direct_lat.sort()
    server_lat.sort()
    hit_lat.sort()
    q = lambda xs, p: round(percentile(xs, p), 3)  # noqa: E731
    return {
        "requests": len(server_lat),
        "rounds": rounds,
        "direct_p50_ms": q(direct_lat, 0.5), "direct_p90_ms": q(direct_lat, 0.9), "direct_p99_ms": q(direct_lat, 0.99),
        "server_p50_ms": q(server_lat, 0.5), "server_p90_ms": q(server_lat, 0.9), "server_p99_ms": q(server_lat, 0.99),
        "added_p50_ms": round(q(server_lat, 0.5) - q(direct_lat, 0.5), 3),
        "added_p99_ms": round(q(server_lat, 0.99) - q(direct_lat, 0.99), 3),
        "hit_p50_ms": q(hit_lat, 0.5), "hit_p90_ms": q(hit_lat, 0.9), "hit_p99_ms": q(hit_lat, 0.99),
        "statements_per_call": round(statements / calls, 3) if calls else None,
        "server_cpu_ms_per_call": round(server_cpu * 1000 / calls, 3) if calls else None,
        "postgres_cpu_ms_per_call": round(pg_cpu * 1000 / calls, 3) if calls and postmaster else None,
        "provider_body_bytes": len(sent),
        "failures": failures,
        "first_failures": problems[:3],
    }


def start_provider(tmp: str) -> tuple[subprocess.Popen, str]:
    """trellis-chat-provider on a free loopback port; it exits when its stdin closes."""
    log_file = open(os.path.join(tmp, "provider.log"), "wb")
    proc = subprocess.Popen([PROVIDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log_file)
    log_file.close()
    line = proc.stdout.readline().decode().strip()
    if not line.startswith("listening http://"):
        proc.kill()
        proc.wait()
        raise RuntimeError(f"trellis-chat-provider did not start: {line!r}")
    return proc, line.split(" ", 1)[1] + "/v1"


# --------------------------------------------------------------------------- main

def main() -> int:
    env = os.environ.get
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True)
    p.add_argument("--pid", type=int, required=True, help="PID of the trellis process (CPU, RSS)")
    p.add_argument("--pg-pidfile", required=True, help="postmaster.pid of the server's embedded cluster")
    p.add_argument("--out", default=os.path.join(HERE, "out", "processes.json"))
    p.add_argument("--inputs", type=int, default=int(env("BENCH_PROC_INPUTS", "1000")),
                   help="distinct inputs primed into the cache and invoked in turn")
    p.add_argument("--seed-workers", type=int, default=int(env("BENCH_SEED_WORKERS", "8")))
    p.add_argument("--concurrency", default=env("BENCH_PROC_CONCURRENCY", "8,32"))
    p.add_argument("--runs", type=int, default=int(env("BENCH_RUNS", "3")))
    p.add_argument("--duration", type=float, default=float(env("BENCH_DURATION", "10")))
    p.add_argument("--warmup", type=int, default=int(env("BENCH_WARMUP", "5")))
    p.add_argument("--probe", type=int, default=int(env("BENCH_PROBE", "50")))
    p.add_argument("--max-statements", type=float, default=float(env("BENCH_PROC_MAX_STATEMENTS", "5")),
                   help="most SQL statements a cached call may take (one at a time, and on average under load)")
    p.add_argument("--pgbench", default=env("BENCH_PGBENCH_RUN", "1") != "0", action=argparse.BooleanOptionalAction)
    p.add_argument("--pgbench-jobs", type=int, default=int(env("BENCH_PGBENCH_JOBS", "2")))
    p.add_argument("--sql-script", default=os.path.join(HERE, "processes.sql"))
    p.add_argument("--min-ratio", type=float, default=float(env("BENCH_PROC_MIN_RATIO", env("BENCH_MIN_RATIO", "0.5"))))
    p.add_argument("--miss", default=env("BENCH_PROC_MISS", "1") != "0", action=argparse.BooleanOptionalAction,
                   help="measure the latency added on a miss (BENCH_PROC_MISS=0 skips it)")
    p.add_argument("--miss-requests", type=int, default=int(env("BENCH_PROC_MISS_REQUESTS", "2000")))
    p.add_argument("--miss-rounds", type=int, default=int(env("BENCH_PROC_MISS_ROUNDS", "2")))
    p.add_argument("--miss-warmup", type=int, default=int(env("BENCH_PROC_MISS_WARMUP", "200")))
    p.add_argument("--max-added-ms", type=float, default=float(env("BENCH_PROC_MAX_ADDED_MS", "2")))
    p.add_argument("--report-only", default=env("BENCH_REPORT_ONLY", "0") == "1", action=argparse.BooleanOptionalAction)
    cfg = p.parse_args()
    concs = [int(x) for x in cfg.concurrency.split(",") if x.strip()]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    pg = postmaster_info(cfg.pg_pidfile)
    postmaster = pg["pid"]
    db = {"host": pg["host"], "port": pg["port"], "database": env("TRELLIS_DB_NAME", "trellis"),
          "user": env("TRELLIS_DB_APP_ROLE", "trellis_app"), "password": env("TRELLIS_DB_APP_PASSWORD", "trellis_app")}
    pgbench = find_pgbench(postmaster) if cfg.pgbench else None
    if cfg.pgbench and pgbench is None:
        log("FAIL: the SQL twin needs pgbench (BENCH_PGBENCH); BENCH_PGBENCH_RUN=0 skips it")
        return 1
    psql = psql_path(pgbench) if cfg.pgbench else None
    if cfg.pgbench and psql is None:
        log("FAIL: checking the SQL twin's hashes needs psql (BENCH_PSQL)")
        return 1
    for binary in [LOADGEN] + ([PROVIDER] if cfg.miss else []):
        if not os.access(binary, os.X_OK):
            log(f"FAIL: {binary} is missing: cargo build --release -p trellis-loadgen")
            return 1

    tmp = tempfile.mkdtemp(prefix="trellis-bench-processes-")
    provider = None
    try:
        provider, provider_base = start_provider(tmp)
        return measure(cfg, concs, postmaster, db, pgbench, psql, provider_base, tmp)
    finally:
        # The provider exits when its stdin closes.
        if provider is not None:
            provider.stdin.close()
            try:
                provider.wait(timeout=10)
            except subprocess.TimeoutExpired:
                provider.kill()
                provider.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def measure(cfg: argparse.Namespace, concs: list[int], postmaster: int, db: dict, pgbench: str | None,
            psql: str | None, provider_base: str, tmp: str) -> int:
    t0 = time.perf_counter()
    try:
        seeded = seed(cfg.url, provider_base)
    except GraphQLError as e:
        log(f"FAIL: seeding: {e}")
        return 1
    seconds, problems = prime(cfg.url, seeded["key"], cfg.inputs, cfg.seed_workers)
    if problems:
        log(f"FAIL: priming the cache: {len(problems)} problem(s), e.g. {problems[:3]}")
        return 1
    log(f"[processes] seeded a tenant, 2 processes and an INVOKE key in "
        f"{time.perf_counter() - t0 - seconds:.1f}s; primed {cfg.inputs} inputs in {seconds:.1f}s "
        f"({cfg.inputs / seconds:.0f} misses/s, {cfg.seed_workers} threads)")
    tenant = prefixed_uuid(seeded["tenant_id"], "ten")
    key_id = prefixed_uuid(seeded["key_id"], "key")
    cfg.bodies_file = os.path.join(tmp, "bodies.jsonl")
    with open(cfg.bodies_file, "wb") as f:
        for k in range(cfg.inputs):
            f.write(body(k) + b"\n")

    probes = probe(cfg.url, seeded["key"], cfg.probe, cfg.inputs)
    # What most calls took: a single call's window can also hold the server's periodic
    # work (an API key re-verified every 30 s, a maintenance pass), which under load is
    # averaged in instead.
    most = int(max(probes.items(), key=lambda kv: (kv[1], -int(kv[0])))[0])
    log(f"[processes] statements per cached call, one at a time (statements: calls): {probes}")

    defines = None
    if pgbench:
        found = check_primed_sql(psql, db, tenant, cfg.inputs)
        if found != cfg.inputs:
            log(f"FAIL: the SQL twin's input hashes find {found} of the {cfg.inputs} primed cache entries "
                f"(bench/processes.sql and INPUT_TEXT disagree with the server's canonical JSON)")
            return 1
        defines = {"key": key_id, "prefix": seeded["key"][4:16], "process": HIT_KEY, "env": "production",
                   "use_cache": "true", "absent": "-"}
        check = pgbench_run(pgbench, db, cfg.sql_script, tenant, "-", cfg.inputs, 1, 1, 1, postmaster, defines)
        if check["problems"]:
            log(f"FAIL: pgbench check run: {check['problems']}")
            return 1
        log(f"[processes] SQL twin: {check['tps']:.0f} tps on one connection (check run)")

    runs: list[dict] = []
    sql_runs: list[dict] = []
    for rep in range(cfg.runs):
        for conc in concs:
            r = hit_run(cfg, seeded, postmaster, conc, tmp)
            r["rep"] = rep + 1
            runs.append(r)
            log(f"[processes] run {rep + 1}/{cfg.runs} c={conc:<2}: {r['requests']} calls, {r['rps']:.1f} req/s, "
                f"p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, {r['statements_per_call']} stmts/call, "
                f"CPU ms/call server {r['server_cpu_ms_per_call']} pg {r['postgres_cpu_ms_per_call']} "
                f"client {r['client_cpu_ms_per_call']}, failures {r['failures']}")
            for f in r["first_failures"]:
                log(f"    failure: {f}")
            if pgbench:
                b = pgbench_run(pgbench, db, cfg.sql_script, tenant, "-", cfg.inputs, conc, cfg.duration,
                                cfg.pgbench_jobs, postmaster, defines)
                b["rep"] = rep + 1
                sql_runs.append(b)
                log(f"[processes] run {rep + 1}/{cfg.runs} c={conc:<2}: pgbench {b['transactions']} txn, "
                    f"{b['tps']:.1f} tps, p50 {b['p50_ms']} ms, p99 {b['p99_ms']} ms, CPU ms/txn pg "
                    f"{b['postgres_cpu_ms_per_txn']} pgbench {b['pgbench_cpu_ms_per_txn']}; server/SQL "
                    f"{r['rps'] / b['tps'] if b['tps'] else float('nan'):.3f}"
                    + (f"; problems: {b['problems']}" if b["problems"] else ""))

    miss = None
    if cfg.miss:
        try:
            miss = miss_phase(cfg, seeded, postmaster, provider_base, tmp)
        except (RuntimeError, GraphQLError, OSError) as e:
            log(f"FAIL: miss latency: {e}")
            return 1

    summary = []
    for conc in concs:
        rs = [r for r in runs if r["concurrency"] == conc]
        bs = [b for b in sql_runs if b["concurrency"] == conc]
        by_rep = {b["rep"]: b for b in bs}
        paired = [r["rps"] / by_rep[r["rep"]]["tps"] for r in rs if r["rep"] in by_rep and by_rep[r["rep"]]["tps"]]
        pg_cpu = [b["postgres_cpu_ms_per_txn"] for b in bs if b["postgres_cpu_ms_per_txn"] is not None]
        row = {
            "concurrency": conc,
            "runs": len(rs),
            "rps": statistics.median(r["rps"] for r in rs),
            "p50_ms": statistics.median(r["p50_ms"] for r in rs),
            "p99_ms": statistics.median(r["p99_ms"] for r in rs),
            "statements_per_call": statistics.median(r["statements_per_call"] for r in rs),
            "statements_per_call_all_runs": [r["statements_per_call"] for r in rs],
            "server_cpu_ms_per_call": statistics.median(r["server_cpu_ms_per_call"] for r in rs),
            "postgres_cpu_ms_per_call": statistics.median(r["postgres_cpu_ms_per_call"] or 0 for r in rs),
            "client_cpu_ms_per_call": statistics.median(r["client_cpu_ms_per_call"] for r in rs),
            "rss_peak_kb": max(r["rss_peak_kb"] for r in rs),
            "failures": sum(r["failures"] for r in rs),
            "requests": sum(r["requests"] for r in rs),
        }
        if bs:
            row.update({
                "sql_tps": round(statistics.median(b["tps"] for b in bs), 1),
                "sql_tps_all_runs": [round(b["tps"], 1) for b in bs],
                "sql_p50_ms": statistics.median(b["p50_ms"] or 0 for b in bs),
                "sql_p99_ms": statistics.median(b["p99_ms"] or 0 for b in bs),
                "sql_postgres_cpu_ms_per_txn": statistics.median(pg_cpu) if pg_cpu else None,
                "sql_pgbench_cpu_ms_per_txn": statistics.median(b["pgbench_cpu_ms_per_txn"] or 0 for b in bs),
                "ratio_all_runs": [round(x, 3) for x in paired],
                "ratio": round(statistics.median(paired), 3) if paired else None,
            })
            row["ratio_ok"] = row["ratio"] is not None and row["ratio"] >= cfg.min_ratio
        summary.append(row)

    head = ["conc", "req/s", "p50 ms", "p99 ms", "stmts/call", "CPU ms/call srv+pg+client", "pgbench tps",
            "pgbench p50 ms", "pgbench p99 ms", "SQL CPU ms/txn pg+pgbench", "ratio", f">= {cfg.min_ratio:g}",
            "failures"]
    rows = [[str(s["concurrency"]), f"{s['rps']:.1f}", f"{s['p50_ms']:.2f}", f"{s['p99_ms']:.2f}",
             f"{s['statements_per_call']:.2f}",
             f"{s['server_cpu_ms_per_call']:.2f}+{s['postgres_cpu_ms_per_call']:.2f}+{s['client_cpu_ms_per_call']:.2f}",
             fmt(s.get("sql_tps"), ".1f"), fmt(s.get("sql_p50_ms"), ".2f"), fmt(s.get("sql_p99_ms"), ".2f"),
             "-" if s.get("sql_postgres_cpu_ms_per_txn") is None else
             f"{s['sql_postgres_cpu_ms_per_txn']:.2f}+{s['sql_pgbench_cpu_ms_per_txn']:.2f}",
             fmt(s.get("ratio"), ".3f"), "-" if "ratio_ok" not in s else ("OK" if s["ratio_ok"] else "FAIL"),
             str(s["failures"])] for s in summary]
    hits_table = table(head, rows)
    miss_table = ""
    if miss:
        miss_table = table(
            ["", "p50 ms", "p90 ms", "p99 ms"],
            [["provider alone", f"{miss['direct_p50_ms']:.3f}", f"{miss['direct_p90_ms']:.3f}",
              f"{miss['direct_p99_ms']:.3f}"],
             ["through the server", f"{miss['server_p50_ms']:.3f}", f"{miss['server_p90_ms']:.3f}",
              f"{miss['server_p99_ms']:.3f}"],
             ["added", f"{miss['added_p50_ms']:.3f}", "", f"{miss['added_p99_ms']:.3f}"],
             ["(a cache hit, for reference)", f"{miss['hit_p50_ms']:.3f}", f"{miss['hit_p90_ms']:.3f}",
              f"{miss['hit_p99_ms']:.3f}"]])

    failures = sum(r["failures"] for r in runs) + (miss["failures"] if miss else 0)
    sql_failed = [b for b in sql_runs if b["problems"]]
    # Under load, to two decimals: the server's maintenance passes (a few statements a
    # minute) land in the window too.
    load_most = round(max((r["statements_per_call"] or 0) for r in runs), 2) if runs else 0
    statements_ok = most <= cfg.max_statements and load_most <= cfg.max_statements
    misses = []
    for s in summary:
        if s.get("ratio_ok") is False:
            misses.append(f"cache-hit req/s below {cfg.min_ratio:g} x pgbench tps at c={s['concurrency']} "
                          f"({s['ratio']})")
    if miss and miss["added_p50_ms"] > cfg.max_added_ms:
        misses.append(f"added latency p50 on a miss {miss['added_p50_ms']:.3f} ms above {cfg.max_added_ms:g} ms")

    print()
    print(f"Processes: cache hits of `POST /v1/processes/{HIT_KEY}/invoke` over {cfg.inputs} primed inputs "
          f"(trellis-loadgen, one API key with the INVOKE scope), medians of {cfg.runs} runs of {cfg.duration:g}s; "
          f"pgbench: bench/processes.sql -M prepared -j {cfg.pgbench_jobs} right after each run; ratio = median "
          f"over rounds of req/s / pgbench tps")
    print(hits_table)
    print(f"SQL statements per cached call, one at a time (statements: calls): {probes}; under load: "
          + ", ".join(f"c={s['concurrency']}: {s['statements_per_call']:.2f}" for s in summary)
          + f" (at most {cfg.max_statements:g}: {'OK' if statements_ok else 'FAIL'})")
    if miss:
        print()
        print(f"Miss latency: {miss['requests']} calls with cache: bypass, one at a time, in {cfg.miss_rounds} "
              f"round(s), each after as many direct calls of the loopback provider with the body the server sent "
              f"it and followed by as many cache hits; per miss call {miss['statements_per_call']} SQL statements, "
              f"CPU ms server {miss['server_cpu_ms_per_call']} PostgreSQL {miss['postgres_cpu_ms_per_call']}")
        print(miss_table)
        print(f"added latency p50 (budget <= {cfg.max_added_ms:g} ms): {miss['added_p50_ms']:.3f} ms "
              f"{'OK' if miss['added_p50_ms'] <= cfg.max_added_ms else 'FAIL'}; per round: "
              + ", ".join(f"{r['added_p50_ms']:.3f}" for r in miss["rounds"]))

    result = {
        "machine": machine(),
        "config": {k: v for k, v in vars(cfg).items() if k not in ("url", "pid", "out", "bodies_file")},
        "process": {"key": HIT_KEY, "input_schema": INPUT_SCHEMA, "config": CONFIG, "user_prompt": PROMPT,
                    "input_text": INPUT_TEXT},
        "statements_probe_histogram": probes,
        "statements_ok": statements_ok,
        "summary": summary,
        "runs": runs,
        "sql_twin": {"script": cfg.sql_script, "pgbench": pgbench, "runs": sql_runs,
                     "failed_runs": len(sql_failed)} if pgbench else None,
        "miss": miss,
        "table": hits_table,
        "miss_table": miss_table,
        "budgets": {"min_ratio": cfg.min_ratio, "max_added_ms": cfg.max_added_ms, "missed": misses,
                    "report_only": cfg.report_only},
        "failures": failures,
    }
    write_results(result, cfg.out)
    problems = ([f"{failures} call(s) failed or were not what was expected"] if failures else []) \
        + ([f"{len(sql_failed)} pgbench run(s) failed: {sql_failed[0]['problems']}"] if sql_failed else []) \
        + ([f"a cached call took more than {cfg.max_statements:g} SQL statements: one at a time {probes}, "
             f"under load up to {load_most}"] if not statements_ok else [])
    return verdict(problems, misses, cfg.report_only)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
