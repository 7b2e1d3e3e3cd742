#!/usr/bin/env python3
"""Trellis tenant-dashboard benchmark: seeds a running server over GraphQL, drives
bounded load with persistent HTTP/1.1 connections, and writes a summary.

Python 3.11 standard library only. `bench/run.sh` builds and starts the server and
calls this with its URL and PID; see bench/README.md.

Also runs the same reads as hand-written SQL (bench/dashboard.sql) through pgbench
against the server's embedded cluster, as the application role, and compares; measures
a connector-catalog page (apps with versions and actions) the same way as the
dashboard; and reports the seal/open figures of `cargo bench -p trellis-core --bench
secrets` that run.sh passes in.

Exit status: 1 when a request or a pgbench run failed, when SQL statements per request
differ between page sizes, or (unless BENCH_REPORT_ONLY=1) when a budget of DESIGN.md
§6 is missed: GraphQL req/s below half the pgbench tps, or p99 above 5x p50 at 32
clients; also 1 when the catalog page's statements per request depend on its page
size; 0 otherwise. Results are printed and written either way.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import http.client
import json
import math
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid

DASHBOARD = (
    "query Dash($n:Int!){ tenant { id name "
    "members(first:$n){ totalCount edges { node { role user { id email name } } } } "
    "apiKeys(first:10){ edges { node { name prefix lastUsedAt } } } "
    "auditEvents(first:$n){ edges { node { action seq createdAt actor { email } } } } } }"
)

# A connector-catalog page as a dashboard's app picker asks for it: apps with every
# version and each version's triggers and actions.
CATALOG = (
    "query Catalog($n:Int!){ apps(first:$n){ totalCount pageInfo { hasNextPage endCursor } "
    "edges { node { id key name category isPublic latestVersion { version } "
    "versions { id version isPublished actions { key name kind } } } } } }"
)

PASSWORD = "bench-password-123"
ROLES = ["VIEWER", "BUILDER", "OPERATOR", "ADMIN"]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def write_results(result: dict, out: str) -> None:
    """Writes a phase's `result` to `out` as indented JSON and says where."""
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(result, f, indent=2, default=str)
        f.write("\n")
    print(f"results: {out}")


def verdict(problems: list[str], misses: list[str], report_only: bool) -> int:
    """A phase's exit status, each reason logged: 1 for any of `problems` (failed
    requests or pgbench runs, wrong data: they fail even with BENCH_REPORT_ONLY=1) and,
    unless `report_only`, for any budget in `misses`."""
    ok = not problems
    for problem in problems:
        log(f"FAIL: {problem}")
    for m in misses:
        if report_only:
            log(f"budget missed (reported only, BENCH_REPORT_ONLY=1): {m}")
        else:
            log(f"FAIL: budget missed: {m}")
            ok = False
    return 0 if ok else 1


class GraphQLError(RuntimeError):
    pass


class Client:
    """One persistent HTTP/1.1 connection (not thread-safe: one per thread)."""

    def __init__(self, url: str, timeout: float = 60.0):
        parsed = urllib.parse.urlsplit(url)
        self.host = parsed.hostname or "127.0.0.1"
        self.port = parsed.port or 80
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return self.conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def request(self, method: str, path: str, body: bytes | None, headers: dict) -> tuple[int, bytes]:
        """Sends one request, reconnecting once if the kept-alive connection was closed."""
        for attempt in (0, 1):
            conn = self._connection()
            try:
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                if resp.getheader("connection", "").lower() == "close":
                    self.close()
                return resp.status, data
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")

    def gql(self, query: str, variables: dict | None = None, token: str | None = None) -> dict:
        """Runs an operation; raises on HTTP errors, GraphQL errors or userErrors."""
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        status, data = self.request("POST", "/graphql", body, headers)
        try:
            doc = json.loads(data)
        except ValueError:
            raise GraphQLError(f"HTTP {status}: non-JSON body {data[:300]!r}") from None
        if status != 200 or doc.get("errors"):
            raise GraphQLError(f"HTTP {status}: {json.dumps(doc)[:1000]}\n  query: {query[:200]}")
        for payload in (doc.get("data") or {}).values():
            if isinstance(payload, dict) and payload.get("userErrors"):
                raise GraphQLError(f"userErrors: {payload['userErrors']}\n  query: {query[:200]}")
        return doc["data"]


_local = threading.local()


def thread_client(url: str) -> Client:
    client = getattr(_local, "client", None)
    if client is None:
        client = _local.client = Client(url)
    return client


# --------------------------------------------------------------------------- seeding

SIGN_UP = "mutation($i:SignUpInput!){ signUp(input:$i){ session{ accessToken user{ id } } userErrors{ field message } } }"
CREATE_TENANT = "mutation($i:CreateTenantInput!){ createTenant(input:$i){ tenant{ id } userErrors{ field message } } }"
SWITCH_TENANT = "mutation($i:SwitchTenantInput!){ switchTenant(input:$i){ accessToken userErrors{ field message } } }"
CREATE_KEY = "mutation($i:CreateApiKeyInput!){ createApiKey(input:$i){ apiKey{ id } secret userErrors{ field message } } }"
INVITE = "mutation($i:InviteMemberInput!){ inviteMember(input:$i){ token userErrors{ field message } } }"
ACCEPT = "mutation($i:AcceptInvitationInput!){ acceptInvitation(input:$i){ membership{ id } userErrors{ field message } } }"
UPDATE_TENANT = "mutation($i:UpdateTenantInput!){ updateTenant(input:$i){ tenant{ name } userErrors{ field message } } }"


def sign_up(c: Client, email: str, name: str) -> str:
    data = c.gql(SIGN_UP, {"i": {"email": email, "name": name, "password": PASSWORD}})
    return data["signUp"]["session"]["accessToken"]


def seed_tenant_head(url: str, t: int, api_keys: int) -> dict:
    """Owner, tenant, tenant token and API keys of tenant `t`."""
    c = thread_client(url)
    owner_email = f"owner-{t:02d}@bench.trellis.test"
    user_token = sign_up(c, owner_email, f"Owner {t:02d}")
    tenant_id = c.gql(
        CREATE_TENANT, {"i": {"slug": f"bench-{t:02d}", "name": f"Bench Tenant {t:02d}", "plan": "enterprise"}},
        user_token
    )["createTenant"]["tenant"]["id"]
    token = c.gql(SWITCH_TENANT, {"i": {"tenantId": tenant_id}}, user_token)["switchTenant"]["accessToken"]
    for k in range(api_keys):
        c.gql(CREATE_KEY, {"i": {"name": f"key-{k}", "scopes": ["READ"]}}, token)
    return {"index": t, "id": tenant_id, "owner_email": owner_email, "token": token}


def seed_member(url: str, tenant: dict, m: int) -> None:
    """Signs a user up, invites them into the tenant and accepts as them."""
    c = thread_client(url)
    t = tenant["index"]
    email = f"t{t:02d}-m{m:03d}@bench.trellis.test"
    member_token = sign_up(c, email, f"Member {t:02d}-{m:03d}")
    invite_token = c.gql(
        INVITE, {"i": {"email": email, "role": ROLES[m % len(ROLES)]}}, tenant["token"]
    )["inviteMember"]["token"]
    c.gql(ACCEPT, {"i": {"token": invite_token}}, member_token)


def seed_renames(url: str, tenant: dict, renames: int) -> None:
    c = thread_client(url)
    for r in range(renames):
        c.gql(UPDATE_TENANT, {"i": {"name": f"Bench Tenant {tenant['index']:02d} r{r}"}}, tenant["token"])


CREATE_APP = "mutation($i:CreateAppInput!){ createApp(input:$i){ app{ id } userErrors{ field message } } }"
CREATE_APP_VERSION = ("mutation($i:CreateAppVersionInput!){ createAppVersion(input:$i){ appVersion{ id } "
                      "userErrors{ field message } } }")
PUBLISH_APP_VERSION = ("mutation($i:IdInput!){ publishAppVersion(input:$i){ appVersion{ id } "
                       "userErrors{ field message } } }")
APP_CATEGORIES = ["CORE", "COMMUNICATION", "DEVELOPER", "PRODUCTIVITY", "EMAIL"]


def seed_catalog(url: str, apps: int, actions: int, slug: str = "bench-catalog") -> dict:
    """A tenant of its own (so the dashboard tenants' audit logs stay as they were)
    with `apps` private apps, each with one published version of `actions` actions;
    the public built-in catalog comes on top. Returns the owner's token, the number
    of apps the tenant sees and the seeding time. `slug` names the tenant and its
    owner (`<slug minus "bench-">-owner@…`), so that other phases on the same server
    can seed a catalog of their own."""
    t0 = time.perf_counter()
    c = Client(url)
    try:
        owner = slug.removeprefix("bench-")
        user_token = sign_up(c, f"{owner}-owner@bench.trellis.test", "Catalog Owner")
        tenant_id = c.gql(CREATE_TENANT, {"i": {"slug": slug, "name": "Bench Catalog"}},
                          user_token)["createTenant"]["tenant"]["id"]
        token = c.gql(SWITCH_TENANT, {"i": {"tenantId": tenant_id}}, user_token)["switchTenant"]["accessToken"]
        manifest = {
            "auth": "apiKey",
            "configSchema": {
                "type": "object",
                "properties": {"baseUrl": {"type": "string", "pattern": "^https://"},
                               "region": {"type": "string", "enum": ["eu", "us"]}},
                "required": ["baseUrl"],
                "additionalProperties": False,
            },
            "secretFields": ["apiKey"],
        }
        schema = {"type": "object", "properties": {"id": {"type": "string"}, "count": {"type": "integer"}}}
        for a in range(apps):
            app_id = c.gql(CREATE_APP, {"i": {
                "key": f"bench-app-{a:03d}", "name": f"Bench App {a:03d}",
                "description": "A private connector seeded by the benchmark",
                "category": APP_CATEGORIES[a % len(APP_CATEGORIES)],
            }}, token)["createApp"]["app"]["id"]
            version_id = c.gql(CREATE_APP_VERSION, {"i": {
                "appId": app_id, "version": "1.0.0", "manifest": manifest,
                "actions": [{"key": f"action{k}", "name": f"Action {k}",
                             "kind": "TRIGGER" if k == 0 else "ACTION",
                             "inputSchema": schema, "outputSchema": schema} for k in range(actions)],
            }}, token)["createAppVersion"]["appVersion"]["id"]
            c.gql(PUBLISH_APP_VERSION, {"i": {"id": version_id}}, token)
        total = c.gql("{ apps { totalCount } }", {}, token)["apps"]["totalCount"]
    finally:
        c.close()
    return {"token": token, "tenant_id": tenant_id, "apps": total, "private_apps": apps,
            "actions_per_version": actions, "seconds": round(time.perf_counter() - t0, 2),
            "graphql_requests": 3 + 3 * apps + 1}


def check_catalog(doc: dict, n: int, total: int) -> str | None:
    """Full check of one parsed catalog response; returns a problem or None."""
    if "errors" in doc:
        return f"errors: {json.dumps(doc['errors'])[:500]}"
    page = (doc.get("data") or {}).get("apps")
    if not page:
        return "data.apps is null"
    if page["totalCount"] != total:
        return f"apps.totalCount {page['totalCount']} != {total}"
    if len(page["edges"]) != min(n, total):
        return f"{len(page['edges'])} app edges, expected {min(n, total)}"
    for edge in page["edges"]:
        node = edge["node"]
        published = [v for v in node["versions"] if v["isPublished"]]
        if not published or node["latestVersion"] is None:
            return f"app {node['key']} has no published version"
        if any(not v["actions"] for v in published):
            return f"a published version of {node['key']} has no actions"
    return None


def run_pool(workers: int, jobs: list) -> list:
    """Runs (fn, args) jobs on a thread pool; the first failure cancels the rest."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(fn, *args) for fn, args in jobs]
        try:
            return [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()
            raise


def seed(url: str, cfg: argparse.Namespace) -> tuple[list[dict], dict]:
    t0 = time.perf_counter()
    tenants = run_pool(
        cfg.seed_workers, [(seed_tenant_head, (url, t, cfg.api_keys)) for t in range(cfg.tenants)]
    )
    t1 = time.perf_counter()
    log(f"seed: {cfg.tenants} owners, tenants and {cfg.tenants * cfg.api_keys} API keys in {t1 - t0:.1f}s")
    # Interleave tenants so that the pool works on many audit chains at once.
    jobs = [(seed_member, (url, tenant, m)) for m in range(cfg.members) for tenant in tenants]
    done = 0
    step = max(1, len(jobs) // 10)
    with concurrent.futures.ThreadPoolExecutor(max_workers=cfg.seed_workers) as pool:
        futures = [pool.submit(fn, *args) for fn, args in jobs]
        try:
            for f in concurrent.futures.as_completed(futures):
                f.result()
                done += 1
                if done % step == 0:
                    log(f"seed: members {done}/{len(jobs)} ({time.perf_counter() - t1:.1f}s)")
        except BaseException:
            for f in futures:
                f.cancel()
            raise
    t2 = time.perf_counter()
    run_pool(cfg.seed_workers, [(seed_renames, (url, tenant, cfg.renames)) for tenant in tenants])
    t3 = time.perf_counter()
    requests = cfg.tenants * (3 + cfg.api_keys + cfg.renames + 3 * cfg.members)
    timing = {
        "seconds": round(t3 - t0, 2),
        "tenants_seconds": round(t1 - t0, 2),
        "members_seconds": round(t2 - t1, 2),
        "renames_seconds": round(t3 - t2, 2),
        "graphql_requests": requests,
        "users": cfg.tenants * (1 + cfg.members),
        "audit_events_per_tenant": 2 + cfg.api_keys + 2 * cfg.members + cfg.renames,
    }
    return tenants, timing


# --------------------------------------------------------------------------- measuring

def metrics(url: str) -> dict[str, float]:
    c = Client(url, timeout=10)
    try:
        status, body = c.request("GET", "/metrics", None, {})
    finally:
        c.close()
    if status != 200:
        raise RuntimeError(f"/metrics answered {status}")
    values = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of one process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class RssPeak:
    """The highest VmRSS (kB) of process `pid`: read once when made, then sampled every
    100 ms from `start()` until `stop()`, which returns it."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_kb = rss_kb(pid)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.is_set():
            self.peak_kb = max(self.peak_kb, rss_kb(self.pid))
            self._done.wait(0.1)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> int:
        self._done.set()
        self._thread.join()
        return self.peak_kb


def pg_cpu_seconds(postmaster: int | None) -> float | None:
    """CPU time of the postmaster, its live children (backends of the pooled
    connections live for the whole run, so their deltas are complete) and the children
    it has reaped (pgbench's backends, which exit at the end of their run)."""
    if postmaster is None:
        return None
    with open(f"/proc/{postmaster}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    total = sum(int(x) for x in fields[11:15]) / CLK_TCK  # utime stime cutime cstime
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) == postmaster:
                total += (int(fields[11]) + int(fields[12])) / CLK_TCK
        except (OSError, IndexError, ValueError):
            pass
    return total


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[k]


def check_shape(doc: dict, n: int, expect: dict) -> str | None:
    """Full check of one parsed dashboard response; returns a problem or None."""
    if "errors" in doc:
        return f"errors: {json.dumps(doc['errors'])[:500]}"
    tenant = (doc.get("data") or {}).get("tenant")
    if not tenant:
        return "data.tenant is null"
    members = tenant["members"]
    if members["totalCount"] != expect["members"]:
        return f"members.totalCount {members['totalCount']} != {expect['members']}"
    if len(members["edges"]) != min(n, expect["members"]):
        return f"{len(members['edges'])} member edges, expected {min(n, expect['members'])}"
    if any(e["node"]["user"] is None for e in members["edges"]):
        return "a member's user is null"
    if len(tenant["apiKeys"]["edges"]) != min(10, expect["api_keys"]):
        return f"{len(tenant['apiKeys']['edges'])} API keys, expected {min(10, expect['api_keys'])}"
    events = tenant["auditEvents"]["edges"]
    if len(events) != min(n, expect["audit_events"]):
        return f"{len(events)} audit events, expected {min(n, expect['audit_events'])}"
    return None


# The compiled load generator (crates/loadgen), built by run.sh next to the server.
LOADGEN = os.environ.get("BENCH_LOADGEN") or os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "target", "release", "trellis-loadgen")


def load_run(url: str, pid: int, postmaster: int | None, token: str, n: int, conc: int,
             duration: float, warmup: int, expect: dict, query: str = DASHBOARD,
             operation: str = "Dash", prefix: bytes = b'{"data":{"tenant":{', check=None,
             variables: dict | None = None, bodies: list[bytes] | None = None) -> dict:
    """Load of one query at page size `n` through `trellis-loadgen` (persistent
    connections, one thread, like pgbench's client); the dashboard unless `query` says
    otherwise (then `prefix` is what every response starts with and `check(doc, n)` the
    full check). `variables` replace the default `{"n": n}`; `bodies` (one JSON request
    body each, sent in turn by all connections: `--bodies`) replace the one body
    altogether, e.g. for mutations that need a fresh idempotency key per request.
    Every response is checked for its status, prefix and the absence of "errors"; the
    first of each connection and every 25th are parsed in full here."""
    body = json.dumps({"query": query, "variables": {"n": n} if variables is None else variables,
                       "operationName": operation}).encode()
    sample_problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="trellis-load-") as tmp:
        body_file = os.path.join(tmp, "body.json")
        samples_file = os.path.join(tmp, "samples.jsonl")
        with open(body_file, "wb") as f:
            if bodies is None:
                f.write(body)
            else:
                f.write(b"\n".join(bodies) + b"\n")
        gen = subprocess.Popen(
            [LOADGEN, "--url", f"{url}/graphql", "--bodies" if bodies is not None else "--body", body_file,
             "--header", f"Authorization: Bearer {token}", "--concurrency", str(conc),
             "--duration", str(duration), "--warmup", str(warmup),
             "--prefix", prefix.decode(), "--samples", samples_file, "--sample-every", "25"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            ready = gen.stdout.readline().strip()
            if ready != "ready":
                raise RuntimeError(f"trellis-loadgen did not get ready: {ready!r}")
            before = metrics(url)
            rss = RssPeak(pid)
            rss_before = rss.peak_kb
            cpu_before, pg_before = cpu_seconds(pid), pg_cpu_seconds(postmaster)
            client_before = cpu_seconds(gen.pid)
            rss.start()
            gen.stdin.write("go\n")
            gen.stdin.flush()
            report = json.loads(gen.stdout.readline())
            client_cpu = cpu_seconds(gen.pid) - client_before
            peak_kb = max(rss.stop(), rss_kb(pid))
            after = metrics(url)
            cpu_after, pg_after = cpu_seconds(pid), pg_cpu_seconds(postmaster)
            gen.stdin.close()
            gen.wait(timeout=30)
        finally:
            if gen.poll() is None:
                gen.kill()
                gen.wait()
        with open(samples_file) as f:
            for line in f:
                problem = (check(json.loads(line), n) if check
                           else check_shape(json.loads(line), n, expect))
                if problem:
                    sample_problems.append(problem)
    d_stmt = after["trellis_sql_statements_total"] - before["trellis_sql_statements_total"]
    d_req = after["trellis_graphql_requests_total"] - before["trellis_graphql_requests_total"]
    requests = report["requests"]
    return {
        "n": n,
        "concurrency": conc,
        "requests": requests,
        "seconds": round(report["seconds"], 3),
        "rps": round(report["rps"], 1),
        "p50_ms": round(report["p50_ms"], 2) if report["p50_ms"] is not None else None,
        "p99_ms": round(report["p99_ms"], 2) if report["p99_ms"] is not None else None,
        "max_ms": report["max_ms"],
        "sql_statements": int(d_stmt),
        "graphql_requests": int(d_req),
        "statements_per_request": round(d_stmt / d_req, 4) if d_req else None,
        "server_cpu_ms_per_request": round((cpu_after - cpu_before) * 1000 / d_req, 2) if d_req else None,
        "postgres_cpu_ms_per_request": (
            round((pg_after - pg_before) * 1000 / d_req, 2) if d_req and pg_before is not None else None
        ),
        # The load generator's own cost (trellis-loadgen's CPU time), to set beside
        # pgbench's client cost.
        "client_cpu_ms_per_request": round(client_cpu * 1000 / requests, 3) if requests else None,
        "rss_start_kb": rss_before,
        "rss_peak_kb": peak_kb,
        "failures": report["failures"] + len(sample_problems),
        "first_failures": (report["first_failures"] + sample_problems)[:3],
    }


def probe_statements(url: str, token: str, n: int, count: int, query: str = DASHBOARD,
                     variables: dict | None = None, bodies: list[bytes] | None = None) -> dict[str, int]:
    """Statements of `count` single requests sent one at a time: how many requests
    took how many statements, read from /metrics around each one (the server is
    otherwise idle, so the deltas are exact). `variables` and `bodies` as for
    `load_run` (bodies are sent in turn)."""
    c = Client(url)
    body = json.dumps({"query": query, "variables": {"n": n} if variables is None else variables}).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    hist: dict[int, int] = {}
    try:
        for i in range(count):
            if bodies is not None:
                body = bodies[i % len(bodies)]
            before = metrics(url)["trellis_sql_statements_total"]
            status, data = c.request("POST", "/graphql", body, headers)
            after = metrics(url)["trellis_sql_statements_total"]
            if status != 200 or b'"errors":' in data:
                raise GraphQLError(f"probe N={n}: HTTP {status}: {data[:500]!r}")
            k = int(after - before)
            hist[k] = hist.get(k, 0) + 1
    finally:
        c.close()
    return {str(k): v for k, v in sorted(hist.items())}


# --------------------------------------------------------------------------- SQL baseline

def postmaster_info(pidfile: str) -> dict:
    """PID, port and listen address of a cluster from its postmaster.pid (lines: PID,
    data directory, start time, port, socket directory, listen address, ...)."""
    with open(pidfile) as f:
        lines = f.read().splitlines()
    info = {"pid": int(lines[0])}
    if len(lines) > 3 and lines[3].strip().isdigit():
        info["port"] = int(lines[3])
    if len(lines) > 4 and lines[4].strip():
        info["socket_dir"] = lines[4].strip()
    host = lines[5].strip() if len(lines) > 5 else ""
    info["host"] = "127.0.0.1" if host in ("", "*", "0.0.0.0") else host
    return info


def find_pgbench(postmaster: int | None) -> str | None:
    """pgbench of the PostgreSQL that runs the cluster: next to the postmaster's own
    executable; else looked for the way the server finds its binaries
    (crates/server/src/embedded_pg.rs: `pg_ctl` on PATH, resolved, then
    /usr/lib/postgresql/<highest>/bin and a few fixed folders); else on PATH."""
    override = os.environ.get("BENCH_PGBENCH")
    if override:
        return override
    dirs = []
    if postmaster is not None:
        try:
            dirs.append(os.path.dirname(os.readlink(f"/proc/{postmaster}/exe")))
        except OSError:
            pass
    has_all = lambda d: all(os.path.isfile(os.path.join(d, b)) for b in ("initdb", "pg_ctl", "postgres"))  # noqa: E731
    for d in os.environ.get("PATH", "").split(os.pathsep):
        pg_ctl = os.path.join(d, "pg_ctl")
        if d and os.path.exists(pg_ctl):
            real = os.path.dirname(os.path.realpath(pg_ctl))
            if has_all(real):
                dirs.append(real)
                break
    try:
        versions = sorted((v for v in os.listdir("/usr/lib/postgresql") if v.isdigit()), key=int, reverse=True)
        dirs.extend(f"/usr/lib/postgresql/{v}/bin" for v in versions)
    except OSError:
        pass
    dirs.extend(["/usr/local/pgsql/bin", "/opt/homebrew/bin", "/usr/local/bin"])
    for d in dirs:
        candidate = os.path.join(d, "pgbench")
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("pgbench")


def jwt_claims(token: str) -> dict:
    """The (unverified) claims of an access token: `sub` is the user, `tid` the tenant."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def prefixed_uuid(gid: str, prefix: str) -> str:
    """`ten_<32 hex>` -> the UUID (crates/entity/src/id.rs)."""
    kind, _, hex_ = gid.partition("_")
    if kind != prefix:
        raise ValueError(f"{gid!r} is not a {prefix}_ ID")
    return str(uuid.UUID(hex=hex_))


def pgbench_run(pgbench: str, db: dict, script: str, tenant: str, user: str, n: int, conc: int,
                duration: float, jobs: int, postmaster: int | None, defines: dict | None = None) -> dict:
    """One pgbench run of a hand-written SQL script (the dashboard's unless `script`
    says otherwise; `defines` are more of its -D variables); tps as pgbench reports it
    (without connection set-up), latency percentiles from its per-transaction log."""
    logdir = tempfile.mkdtemp(prefix="trellis-pgbench-")
    seconds = max(1, math.ceil(duration))
    extra = [arg for name, value in (defines or {}).items() for arg in ("-D", f"{name}={value}")]
    cmd = [
        pgbench, "-n", "-M", "prepared", "-f", script,
        "-c", str(conc), "-j", str(max(1, min(jobs, conc))), "-T", str(seconds),
        "-D", f"n={n}", "-D", f"tenant={tenant}", "-D", f"user={user}", *extra,
        "-l", "--log-prefix", os.path.join(logdir, "tx"),
        "-h", db["host"], "-p", str(db["port"]), "-U", db["user"], db["database"],
    ]
    env = dict(os.environ, PGPASSWORD=db["password"], PGAPPNAME="trellis-bench-pgbench")
    pg_before = pg_cpu_seconds(postmaster)
    ru_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=seconds + 120)
        # Let the postmaster reap the backends, so that their CPU time is counted.
        time.sleep(0.5)
        ru_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        pg_after = pg_cpu_seconds(postmaster)
        lat = []
        for name in os.listdir(logdir):
            with open(os.path.join(logdir, name)) as f:
                for line in f:
                    parts = line.split()
                    # client_id transaction_no time script_no time_epoch time_us; `time`
                    # (latency in microseconds) is "failed" for a failed transaction.
                    if len(parts) >= 3 and parts[2].isdigit():
                        lat.append(int(parts[2]) / 1000.0)
    finally:
        shutil.rmtree(logdir, ignore_errors=True)
    lat.sort()
    out = proc.stdout

    def grab(pattern: str, cast=float):
        m = re.search(pattern, out, re.M)
        return cast(m.group(1)) if m else None

    txns = grab(r"^number of transactions actually processed: (\d+)", int) or 0
    failed = grab(r"^number of failed transactions: (\d+)", int) or 0
    problems = []
    if proc.returncode != 0:
        problems.append(f"pgbench exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
    if failed:
        problems.append(f"{failed} failed transactions")
    if not txns:
        problems.append("no transactions")
    return {
        "n": n,
        "concurrency": conc,
        "jobs": max(1, min(jobs, conc)),
        "seconds": seconds,
        "transactions": txns,
        "failed_transactions": failed,
        "tps": grab(r"^tps = ([\d.]+)") or 0.0,
        "latency_avg_ms": grab(r"^latency average = ([\d.]+) ms"),
        "p50_ms": round(percentile(lat, 0.50), 2) if lat else None,
        "p99_ms": round(percentile(lat, 0.99), 2) if lat else None,
        "postgres_cpu_ms_per_txn": (
            round((pg_after - pg_before) * 1000 / txns, 2) if txns and pg_before is not None else None
        ),
        "pgbench_cpu_ms_per_txn": (
            round(((ru_after.ru_utime + ru_after.ru_stime) - (ru_before.ru_utime + ru_before.ru_stime))
                  * 1000 / txns, 3) if txns else None
        ),
        "returncode": proc.returncode,
        "problems": problems,
    }


def machine() -> dict:
    info = {"cpus": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            info["mem_total_mb"] = int(f.readline().split()[1]) // 1024
    except OSError:
        pass
    try:
        info["git_commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return info


def fmt_table(summary: list[dict]) -> str:
    head = ["N", "conc", "req/s", "p50 ms", "p99 ms", "stmts/req", "srv CPU ms/req", "pg CPU ms/req",
            "RSS idle MB", "RSS peak MB", "failures"]
    rows = [
        [
            str(s["n"]), str(s["concurrency"]), f"{s['rps']:.1f}", f"{s['p50_ms']:.1f}", f"{s['p99_ms']:.1f}",
            f"{s['statements_per_request']:.2f}", f"{s['server_cpu_ms_per_request']:.2f}",
            "-" if s["postgres_cpu_ms_per_request"] is None else f"{s['postgres_cpu_ms_per_request']:.2f}",
            f"{s['rss_idle_kb'] / 1024:.1f}",
            f"{s['rss_peak_kb'] / 1024:.1f}", str(s["failures"]),
        ]
        for s in summary
    ]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    line = lambda cells: "| " + " | ".join(c.rjust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(head), sep, *map(line, rows)])


def fmt_catalog_table(summary: list[dict]) -> str:
    head = ["page", "conc", "req/s", "p50 ms", "p99 ms", "stmts/req", "srv CPU ms/req", "pg CPU ms/req",
            "failures"]
    rows = [
        [
            str(s["n"]), str(s["concurrency"]), f"{s['rps']:.1f}", f"{s['p50_ms']:.1f}", f"{s['p99_ms']:.1f}",
            f"{s['statements_per_request']:.2f}", f"{s['server_cpu_ms_per_request']:.2f}",
            "-" if s["postgres_cpu_ms_per_request"] is None else f"{s['postgres_cpu_ms_per_request']:.2f}",
            str(s["failures"]),
        ]
        for s in summary
    ]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    line = lambda cells: "| " + " | ".join(c.rjust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(head), sep, *map(line, rows)])


def fmt_budget_table(budgets: list[dict], cfg: argparse.Namespace) -> str:
    head = ["N", "conc", "GraphQL req/s", "pgbench tps", "ratio", f">= {cfg.min_ratio:g}", "GraphQL p99/p50",
            "pgbench p50 ms", "pgbench p99 ms", "GraphQL CPU ms/req srv+pg+client", "SQL CPU ms/txn pg+pgbench",
            "CPU ratio"]
    fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
    rows = []
    for b in budgets:
        tail = fmt(b["p99_over_p50"], ".2f")
        if "tail_ok" in b:
            tail += " OK" if b["tail_ok"] else " FAIL"
        rows.append([
            str(b["n"]), str(b["concurrency"]), f"{b['graphql_rps']:.1f}", fmt(b.get("sql_tps"), ".1f"),
            fmt(b.get("ratio"), ".3f"),
            "-" if "ratio_ok" not in b else ("OK" if b["ratio_ok"] else "FAIL"),
            tail, fmt(b.get("sql_p50_ms"), ".2f"), fmt(b.get("sql_p99_ms"), ".2f"),
            "+".join(fmt(b[k], ".2f") for k in ("graphql_server_cpu_ms_per_request",
                                                 "graphql_postgres_cpu_ms_per_request",
                                                 "graphql_client_cpu_ms_per_request")),
            "-" if b.get("sql_postgres_cpu_ms_per_txn") is None else
            f"{b['sql_postgres_cpu_ms_per_txn']:.2f}+{b['sql_pgbench_cpu_ms_per_txn']:.2f}",
            fmt(b.get("cpu_ratio"), ".3f"),
        ])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    line = lambda cells: "| " + " | ".join(c.rjust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(head), sep, *map(line, rows)])


def main() -> int:
    env = os.environ.get
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True, help="server base URL, e.g. http://127.0.0.1:8080")
    p.add_argument("--pid", type=int, required=True, help="PID of the trellis process (for VmRSS)")
    p.add_argument("--out", default="bench/out/results.json")
    p.add_argument("--pg-pidfile", help="postmaster.pid of the embedded cluster (for its CPU time)")
    p.add_argument("--tenants", type=int, default=int(env("BENCH_TENANTS", "20")))
    p.add_argument("--members", type=int, default=int(env("BENCH_MEMBERS", "120")))
    p.add_argument("--api-keys", type=int, default=int(env("BENCH_API_KEYS", "5")))
    p.add_argument("--renames", type=int, default=int(env("BENCH_RENAMES", "5")))
    p.add_argument("--seed-workers", type=int, default=int(env("BENCH_SEED_WORKERS", "8")))
    p.add_argument("--sizes", default=env("BENCH_SIZES", "10,100"))
    p.add_argument("--concurrency", default=env("BENCH_CONCURRENCY", "8,32"))
    p.add_argument("--runs", type=int, default=int(env("BENCH_RUNS", "3")))
    p.add_argument("--duration", type=float, default=float(env("BENCH_DURATION", "10")))
    p.add_argument("--statement-tolerance", type=float, default=float(env("BENCH_STMT_TOLERANCE", "0")),
                   help="largest allowed difference of statements per request between page sizes "
                        "(default 0: equal to two decimals)")
    p.add_argument("--probe", type=int, default=int(env("BENCH_PROBE", "50")),
                   help="sequential requests per page size whose statements are counted one by one")
    p.add_argument("--warmup", type=int, default=int(env("BENCH_WARMUP", "5")),
                   help="unmeasured requests per connection before each run")
    p.add_argument("--pgbench", default=env("BENCH_PGBENCH_RUN", "1") != "0", action=argparse.BooleanOptionalAction,
                   help="run the hand-written SQL baseline (bench/dashboard.sql) through pgbench after "
                        "every GraphQL run (BENCH_PGBENCH_RUN=0 turns it off)")
    p.add_argument("--pgbench-jobs", type=int, default=int(env("BENCH_PGBENCH_JOBS", "2")),
                   help="pgbench worker threads (-j)")
    p.add_argument("--sql-script", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "dashboard.sql"))
    p.add_argument("--min-ratio", type=float, default=float(env("BENCH_MIN_RATIO", "0.5")),
                   help="budget: GraphQL req/s at least this fraction of pgbench tps")
    p.add_argument("--tail-concurrency", type=int, default=int(env("BENCH_TAIL_CONCURRENCY", "32")),
                   help="concurrency at which p99 must be within --max-tail x p50")
    p.add_argument("--max-tail", type=float, default=float(env("BENCH_MAX_TAIL", "5")))
    p.add_argument("--report-only", default=env("BENCH_REPORT_ONLY", "0") == "1", action=argparse.BooleanOptionalAction,
                   help="report missed budgets (ratio, tail latency) without failing")
    p.add_argument("--catalog", default=env("BENCH_CATALOG", "1") != "0", action=argparse.BooleanOptionalAction,
                   help="measure the connector-catalog page too (BENCH_CATALOG=0 turns it off)")
    p.add_argument("--catalog-apps", type=int, default=int(env("BENCH_CATALOG_APPS", "40")),
                   help="private apps seeded into the catalog tenant, on top of the public catalog")
    p.add_argument("--catalog-actions", type=int, default=int(env("BENCH_CATALOG_ACTIONS", "3")),
                   help="triggers and actions of each seeded app's version")
    p.add_argument("--catalog-sizes", default=env("BENCH_CATALOG_SIZES", "10,50"))
    p.add_argument("--catalog-concurrency", default=env("BENCH_CATALOG_CONCURRENCY", "8"))
    p.add_argument("--catalog-duration", type=float, default=float(env("BENCH_CATALOG_DURATION", "0")) or None,
                   help="seconds per catalog run (default: --duration)")
    p.add_argument("--secrets-json", help="the JSON line of `cargo bench -p trellis-core --bench secrets`")
    p.add_argument("--processes-json", help="bench/processes.py's results, kept in the results under `processes`")
    p.add_argument("--agents-json", help="bench/agents.py's results, kept in the results under `agents`")
    cfg = p.parse_args()
    sizes = [int(x) for x in cfg.sizes.split(",")]
    concs = [int(x) for x in cfg.concurrency.split(",")]
    # A SIGTERM (run.sh's clean-up) ends a running pgbench too: subprocess.run kills its
    # child when an exception interrupts it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    postmaster = None
    pg_info: dict = {}
    if cfg.pg_pidfile:
        try:
            pg_info = postmaster_info(cfg.pg_pidfile)
            postmaster = pg_info["pid"]
        except (OSError, ValueError, IndexError):
            log(f"note: no PostgreSQL PID in {cfg.pg_pidfile}; its CPU time is not reported")
    pgbench = None
    db: dict = {}
    if cfg.pgbench:
        # The server's embedded cluster and application role (crates/server/src/config.rs
        # defaults, or the same environment variables the server read).
        db = {
            "host": pg_info.get("host", "127.0.0.1"),
            "port": pg_info.get("port"),
            "database": env("TRELLIS_DB_NAME", "trellis"),
            "user": env("TRELLIS_DB_APP_ROLE", "trellis_app"),
            "password": env("TRELLIS_DB_APP_PASSWORD", "trellis_app"),
        }
        pgbench = find_pgbench(postmaster)
        if pgbench is None or not db["port"]:
            log("FAIL: the SQL baseline needs pgbench and the embedded cluster's postmaster.pid "
                f"(pgbench: {pgbench}, pidfile: {cfg.pg_pidfile}); BENCH_PGBENCH_RUN=0 skips it")
            return 1
        if not os.path.isfile(cfg.sql_script):
            log(f"FAIL: no SQL script {cfg.sql_script}")
            return 1
        log(f"SQL baseline: {pgbench} -f {cfg.sql_script} as {db['user']}@{db['host']}:{db['port']}/{db['database']}")
    rss_startup = rss_kb(cfg.pid)
    log(f"seed: {cfg.tenants} tenants x ({cfg.members} members + owner, {cfg.api_keys} API keys), "
        f"{cfg.seed_workers} client threads")
    try:
        tenants, seeding = seed(cfg.url, cfg)
    except GraphQLError as e:
        log(f"FAIL: seeding: {e}")
        return 1
    log(f"seed: done in {seeding['seconds']:.1f}s ({seeding['graphql_requests']} GraphQL requests)")
    catalog = None
    if cfg.catalog:
        try:
            catalog = seed_catalog(cfg.url, cfg.catalog_apps, cfg.catalog_actions)
        except GraphQLError as e:
            log(f"FAIL: seeding the catalog: {e}")
            return 1
        log(f"seed: catalog tenant with {cfg.catalog_apps} private apps ({catalog['apps']} apps with the "
            f"public ones) in {catalog['seconds']:.1f}s")

    target = tenants[0]
    expect = {
        "members": cfg.members + 1,
        "api_keys": cfg.api_keys,
        "audit_events": seeding["audit_events_per_tenant"],
    }
    # One full check before measuring: the dashboard works for the owner at every size.
    c = Client(cfg.url)
    for n in sizes:
        doc = {"data": c.gql(DASHBOARD, {"n": n}, target["token"])}
        problem = check_shape(doc, n, expect)
        if problem:
            log(f"FAIL: dashboard at N={n}: {problem}")
            return 1
    c.close()

    baseline_ids: dict = {}
    if pgbench:
        # The tenant and user the owner's token names, as UUIDs, for the SQL script.
        claims = jwt_claims(target["token"])
        baseline_ids = {"tenant": claims["tid"], "user": claims["sub"]}
        if baseline_ids["tenant"] != prefixed_uuid(target["id"], "ten"):
            log(f"FAIL: the token's tenant {claims['tid']} is not {target['id']}")
            return 1
        # One transaction first: the script runs, the role may connect, the membership
        # check finds the owner.
        check = pgbench_run(pgbench, db, cfg.sql_script, baseline_ids["tenant"], baseline_ids["user"],
                            sizes[0], 1, 1, 1, postmaster)
        if check["problems"]:
            log(f"FAIL: pgbench check run: {check['problems']}")
            return 1
        log(f"SQL baseline: tenant {baseline_ids['tenant']}, user {baseline_ids['user']}: "
            f"check run {check['tps']:.0f} tps on one connection")

    probes = {}
    for n in sizes:
        probes[str(n)] = probe_statements(cfg.url, target["token"], n, cfg.probe)
        log(f"probe: N={n}: statements per request, one request at a time -> requests: {probes[str(n)]}")

    time.sleep(1)
    rss_idle = rss_kb(cfg.pid)
    runs = []
    sql_runs: list[dict] = []
    for rep in range(cfg.runs):
        for n in sizes:
            for conc in concs:
                r = load_run(cfg.url, cfg.pid, postmaster, target["token"], n, conc, cfg.duration,
                             cfg.warmup, expect)
                r["rep"] = rep + 1
                runs.append(r)
                log(f"run {rep + 1}/{cfg.runs} N={n:<3} c={conc:<2}: {r['requests']} req, {r['rps']:.1f} req/s, "
                    f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, "
                    f"{r['statements_per_request']} stmts/req, CPU ms/req server {r['server_cpu_ms_per_request']} "
                    f"pg {r['postgres_cpu_ms_per_request']}, peak RSS {r['rss_peak_kb'] / 1024:.1f} MB, "
                    f"failures {r['failures']}")
                for f in r["first_failures"]:
                    log(f"    failure: {f}")
                if pgbench:
                    b = pgbench_run(pgbench, db, cfg.sql_script, baseline_ids["tenant"], baseline_ids["user"],
                                    n, conc, cfg.duration, cfg.pgbench_jobs, postmaster)
                    b["rep"] = rep + 1
                    sql_runs.append(b)
                    log(f"run {rep + 1}/{cfg.runs} N={n:<3} c={conc:<2}: pgbench {b['transactions']} txn, "
                        f"{b['tps']:.1f} tps, p50 {b['p50_ms']} ms, p99 {b['p99_ms']} ms, "
                        f"CPU ms/txn pg {b['postgres_cpu_ms_per_txn']} pgbench {b['pgbench_cpu_ms_per_txn']}; "
                        f"GraphQL/SQL {r['rps'] / b['tps'] if b['tps'] else float('nan'):.3f}"
                        + (f"; problems: {b['problems']}" if b["problems"] else ""))

    catalog_runs: list[dict] = []
    catalog_summary: list[dict] = []
    catalog_probes: dict = {}
    catalog_constant = True
    catalog_per_conc: dict = {}
    if catalog:
        c_sizes = [int(x) for x in cfg.catalog_sizes.split(",")]
        c_concs = [int(x) for x in cfg.catalog_concurrency.split(",")]
        c_duration = cfg.catalog_duration or cfg.duration
        total = catalog["apps"]
        check = lambda doc, n: check_catalog(doc, n, total)  # noqa: E731
        c = Client(cfg.url)
        for n in c_sizes:
            problem = check({"data": c.gql(CATALOG, {"n": n}, catalog["token"])}, n)
            if problem:
                log(f"FAIL: catalog page at first={n}: {problem}")
                return 1
        c.close()
        for n in c_sizes:
            catalog_probes[str(n)] = probe_statements(cfg.url, catalog["token"], n, cfg.probe, CATALOG)
            log(f"probe: catalog first={n}: statements per request, one request at a time -> requests: "
                f"{catalog_probes[str(n)]}")
        for rep in range(cfg.runs):
            for n in c_sizes:
                for conc in c_concs:
                    r = load_run(cfg.url, cfg.pid, postmaster, catalog["token"], n, conc, c_duration,
                                 cfg.warmup, {}, query=CATALOG, operation="Catalog",
                                 prefix=b'{"data":{"apps":{', check=check)
                    r["rep"] = rep + 1
                    catalog_runs.append(r)
                    log(f"catalog run {rep + 1}/{cfg.runs} first={n:<3} c={conc:<2}: {r['requests']} req, "
                        f"{r['rps']:.1f} req/s, p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, "
                        f"{r['statements_per_request']} stmts/req, failures {r['failures']}")
                    for f in r["first_failures"]:
                        log(f"    failure: {f}")
        for n in c_sizes:
            for conc in c_concs:
                rs = [r for r in catalog_runs if r["n"] == n and r["concurrency"] == conc]
                catalog_summary.append({
                    "n": n,
                    "concurrency": conc,
                    "runs": len(rs),
                    "rps": statistics.median(r["rps"] for r in rs),
                    "p50_ms": statistics.median(r["p50_ms"] for r in rs),
                    "p99_ms": statistics.median(r["p99_ms"] for r in rs),
                    "statements_per_request": statistics.median(r["statements_per_request"] for r in rs),
                    "statements_per_request_all_runs": [r["statements_per_request"] for r in rs],
                    "server_cpu_ms_per_request": statistics.median(r["server_cpu_ms_per_request"] for r in rs),
                    "postgres_cpu_ms_per_request": (
                        statistics.median(r["postgres_cpu_ms_per_request"] for r in rs) if postmaster else None
                    ),
                    "failures": sum(r["failures"] for r in rs),
                    "requests": sum(r["requests"] for r in rs),
                })
        catalog_per_conc = {
            conc: {n: round(sum(r["sql_statements"] for r in catalog_runs if r["n"] == n and r["concurrency"] == conc)
                            / max(1, sum(r["graphql_requests"] for r in catalog_runs
                                         if r["n"] == n and r["concurrency"] == conc)), 4)
                   for n in c_sizes}
            for conc in c_concs
        }
        catalog_constant = all(
            round(max(by_n.values()) - min(by_n.values()), 2) <= cfg.statement_tolerance
            for by_n in catalog_per_conc.values()
        )

    secrets_bench = None
    if cfg.secrets_json:
        try:
            with open(cfg.secrets_json) as f:
                secrets_bench = json.loads(f.read().strip().splitlines()[-1])
        except (OSError, ValueError, IndexError) as e:
            log(f"FAIL: no JSON line from the secrets benchmark in {cfg.secrets_json}: {e!r}")
            return 1

    processes_bench = None
    if cfg.processes_json:
        try:
            with open(cfg.processes_json) as f:
                processes_bench = json.load(f)
        except (OSError, ValueError) as e:
            log(f"FAIL: no results of the processes phase in {cfg.processes_json}: {e!r}")
            return 1

    agents_bench = None
    if cfg.agents_json:
        try:
            with open(cfg.agents_json) as f:
                agents_bench = json.load(f)
        except (OSError, ValueError) as e:
            log(f"FAIL: no results of the agents phase in {cfg.agents_json}: {e!r}")
            return 1

    summary = []
    for n in sizes:
        for conc in concs:
            rs = [r for r in runs if r["n"] == n and r["concurrency"] == conc]
            summary.append({
                "n": n,
                "concurrency": conc,
                "runs": len(rs),
                "rps": statistics.median(r["rps"] for r in rs),
                "p50_ms": statistics.median(r["p50_ms"] for r in rs),
                "p99_ms": statistics.median(r["p99_ms"] for r in rs),
                "statements_per_request": statistics.median(r["statements_per_request"] for r in rs),
                "statements_per_request_all_runs": [r["statements_per_request"] for r in rs],
                "server_cpu_ms_per_request": statistics.median(r["server_cpu_ms_per_request"] for r in rs),
                "postgres_cpu_ms_per_request": (
                    statistics.median(r["postgres_cpu_ms_per_request"] for r in rs) if postmaster else None
                ),
                "client_cpu_ms_per_request": statistics.median(r["client_cpu_ms_per_request"] or 0 for r in rs),
                "rss_idle_kb": rss_idle,
                "rss_peak_kb": max(r["rss_peak_kb"] for r in rs),
                "failures": sum(r["failures"] for r in rs),
                "requests": sum(r["requests"] for r in rs),
            })

    # Statements per request over every measured request at each page size, overall
    # and per concurrency: the page size must not change them (to 2 decimals, or within
    # --statement-tolerance).
    def ratio(rs: list[dict]) -> float:
        return round(sum(r["sql_statements"] for r in rs) / sum(r["graphql_requests"] for r in rs), 4)

    per_size = {n: ratio([r for r in runs if r["n"] == n]) for n in sizes}
    per_conc = {
        c: {n: ratio([r for r in runs if r["n"] == n and r["concurrency"] == c]) for n in sizes}
        for c in concs
    }
    constant = all(
        round(max(by_n.values()) - min(by_n.values()), 2) <= cfg.statement_tolerance
        for by_n in per_conc.values()
    )
    failures = sum(r["failures"] for r in runs)

    # Budgets of DESIGN.md §6. Each GraphQL run is paired with the pgbench run right
    # after it (same N and concurrency, same round), and the checked ratio is the median
    # of the paired ratios: a slow stretch of a noisy machine hits both halves of a pair.
    budgets = []
    for s in summary:
        n, conc = s["n"], s["concurrency"]
        gql = [r for r in runs if r["n"] == n and r["concurrency"] == conc]
        row = {
            "n": n,
            "concurrency": conc,
            "graphql_rps": s["rps"],
            "graphql_p50_ms": s["p50_ms"],
            "graphql_p99_ms": s["p99_ms"],
            # p99 / p50 of each GraphQL run, median over the runs.
            "p99_over_p50": round(statistics.median(r["p99_ms"] / r["p50_ms"] for r in gql), 2),
            "graphql_postgres_cpu_ms_per_request": s["postgres_cpu_ms_per_request"],
            "graphql_server_cpu_ms_per_request": s["server_cpu_ms_per_request"],
            "graphql_client_cpu_ms_per_request": s["client_cpu_ms_per_request"],
            "graphql_statements_per_request": s["statements_per_request"],
        }
        if conc == cfg.tail_concurrency:
            row["tail_ok"] = row["p99_over_p50"] <= cfg.max_tail
        sql = [b for b in sql_runs if b["n"] == n and b["concurrency"] == conc]
        if sql:
            by_rep = {b["rep"]: b for b in sql}
            paired = [r["rps"] / by_rep[r["rep"]]["tps"] for r in gql
                      if r["rep"] in by_rep and by_rep[r["rep"]]["tps"]]
            pg_cpu = [b["postgres_cpu_ms_per_txn"] for b in sql if b["postgres_cpu_ms_per_txn"] is not None]
            row.update({
                "sql_runs": len(sql),
                "sql_tps": round(statistics.median(b["tps"] for b in sql), 1),
                "sql_tps_all_runs": [round(b["tps"], 1) for b in sql],
                "sql_p50_ms": statistics.median(b["p50_ms"] or 0 for b in sql),
                "sql_p99_ms": statistics.median(b["p99_ms"] or 0 for b in sql),
                "sql_postgres_cpu_ms_per_txn": statistics.median(pg_cpu) if pg_cpu else None,
                "sql_pgbench_cpu_ms_per_txn": statistics.median(b["pgbench_cpu_ms_per_txn"] or 0 for b in sql),
                "sql_failed_runs": sum(1 for b in sql if b["problems"]),
                "ratio_all_runs": [round(x, 3) for x in paired],
                "ratio": round(statistics.median(paired), 3) if paired else None,
            })
            row["ratio_of_medians"] = round(s["rps"] / row["sql_tps"], 3) if row["sql_tps"] else None
            # What the ratio would be if both sides were CPU-bound with pgbench's cheap
            # client: SQL (PostgreSQL + pgbench) CPU per transaction over GraphQL
            # (server + PostgreSQL + pgbench's client cost) CPU per request. Informative
            # only: it takes the Python load generator out of the comparison.
            gql_cpu = (s["server_cpu_ms_per_request"] or 0) + (s["postgres_cpu_ms_per_request"] or 0)
            if row["sql_postgres_cpu_ms_per_txn"] is not None and gql_cpu:
                client = row["sql_pgbench_cpu_ms_per_txn"]
                row["cpu_ratio"] = round((row["sql_postgres_cpu_ms_per_txn"] + client) / (gql_cpu + client), 3)
            row["ratio_ok"] = row["ratio"] is not None and row["ratio"] >= cfg.min_ratio
        budgets.append(row)
    sql_failed = [b for b in sql_runs if b["problems"]]
    ratio_misses = [b for b in budgets if b.get("ratio_ok") is False]
    tail_rows = [b for b in budgets if "tail_ok" in b]
    tail_misses = [b for b in tail_rows if not b["tail_ok"]]

    table = fmt_table(summary)
    budget_table = fmt_budget_table(budgets, cfg) if budgets else ""
    print()
    print(f"Tenant dashboard, medians of {cfg.runs} runs of {cfg.duration:g}s each "
          f"(machine: {os.cpu_count()} CPUs; client, server and PostgreSQL share them)")
    print(table)
    print()
    print(f"seeding: {seeding['seconds']:.1f}s for {cfg.tenants} tenants, {seeding['users']} users, "
          f"{seeding['graphql_requests']} GraphQL requests")
    print(f"RSS: {rss_startup / 1024:.1f} MB after start-up, {rss_idle / 1024:.1f} MB idle after seeding, "
          f"{max(s['rss_peak_kb'] for s in summary) / 1024:.1f} MB peak under load")
    for c, by_n in per_conc.items():
        print(f"SQL statements per request under load, concurrency {c}: "
              + ", ".join(f"N={n}: {v:.2f}" for n, v in by_n.items()))
    print("SQL statements per request, one request at a time (statements: requests): "
          + "; ".join(f"N={n}: {h}" for n, h in probes.items()))
    print(f"statements per request independent of N (tolerance {cfg.statement_tolerance:g}): "
          + ("OK" if constant else "FAIL"))
    print(f"failed requests: {failures}")
    print()
    if sql_runs:
        print(f"GraphQL vs hand-written SQL (bench/dashboard.sql through pgbench -M prepared -j {cfg.pgbench_jobs}, "
              f"right after each GraphQL run, on the same CPUs), medians of {cfg.runs} runs; "
              f"ratio = median over rounds of GraphQL req/s / pgbench tps")
    else:
        print("Budgets (no pgbench baseline)")
    print(budget_table)
    if sql_runs:
        print("GraphQL req/s / pgbench tps (budget >= " f"{cfg.min_ratio:g}): "
              + ", ".join(f"N={b['n']} c={b['concurrency']}: {b['ratio']:.3f} {'OK' if b['ratio_ok'] else 'FAIL'}"
                          for b in budgets if "ratio" in b))
    else:
        print("GraphQL req/s / pgbench tps: not measured (pgbench baseline off)")
    if tail_rows:
        print(f"p99 / p50 at concurrency {cfg.tail_concurrency} (budget <= {cfg.max_tail:g}): "
              + ", ".join(f"N={b['n']}: {b['p99_over_p50']:.2f} {'OK' if b['tail_ok'] else 'FAIL'}"
                          for b in tail_rows))
    else:
        print(f"p99 / p50 at concurrency {cfg.tail_concurrency}: not measured (concurrency levels {concs})")
    if sql_runs:
        print(f"failed pgbench runs: {len(sql_failed)}")
    catalog_table = fmt_catalog_table(catalog_summary) if catalog_summary else ""
    if catalog:
        print()
        print(f"Connector catalog page (apps with versions and actions; {catalog['apps']} apps, "
              f"{cfg.catalog_apps} of them private with {cfg.catalog_actions} actions each), medians of "
              f"{cfg.runs} runs of {cfg.catalog_duration or cfg.duration:g}s each")
        print(catalog_table)
        for c_, by_n in catalog_per_conc.items():
            print(f"catalog: SQL statements per request under load, concurrency {c_}: "
                  + ", ".join(f"first={n}: {v:.2f}" for n, v in by_n.items()))
        print("catalog: SQL statements per request, one request at a time (statements: requests): "
              + "; ".join(f"first={n}: {h}" for n, h in catalog_probes.items()))
        print(f"catalog: statements per request independent of the page size (tolerance "
              f"{cfg.statement_tolerance:g}): " + ("OK" if catalog_constant else "FAIL"))
    if secrets_bench:
        print()
        print(f"Secrets ({secrets_bench['value_bytes']} B values, AES-256-GCM, one core; median of "
              f"{secrets_bench['rounds']} rounds of {secrets_bench['round_seconds']}s): "
              f"seal {secrets_bench['seal_ops_per_s']:.0f} ops/s, open {secrets_bench['open_ops_per_s']:.0f} ops/s, "
              f"unwrap data key {secrets_bench['unwrap_data_key_ops_per_s']:.0f} ops/s")

    result = {
        "machine": machine(),
        "config": {k: v for k, v in vars(cfg).items() if k not in ("url", "pid", "out")},
        "query": DASHBOARD,
        "seeding": seeding,
        "rss_startup_kb": rss_startup,
        "rss_idle_kb": rss_idle,
        "statements_per_request_by_size": {str(n): v for n, v in per_size.items()},
        "statements_per_request_by_concurrency": {
            str(c): {str(n): v for n, v in by_n.items()} for c, by_n in per_conc.items()
        },
        "statements_probe_histogram": probes,
        "statements_per_request_constant": constant,
        "failures": failures,
        "summary": summary,
        "runs": runs,
        "table": table,
        "sql_baseline": {
            "script": cfg.sql_script,
            "pgbench": pgbench,
            "database": {k: v for k, v in db.items() if k != "password"},
            "tenant_id": baseline_ids.get("tenant"),
            "user_id": baseline_ids.get("user"),
            "runs": sql_runs,
            "failed_runs": len(sql_failed),
        } if pgbench else None,
        "budgets": {
            "min_ratio": cfg.min_ratio,
            "tail_concurrency": cfg.tail_concurrency,
            "max_tail": cfg.max_tail,
            "report_only": cfg.report_only,
            "ratio_ok": (not ratio_misses) if sql_runs else None,
            "tail_ok": (not tail_misses) if tail_rows else None,
            "rows": budgets,
        },
        "budget_table": budget_table,
        "catalog": {
            "query": CATALOG,
            "seeding": {k: v for k, v in catalog.items() if k != "token"},
            "statements_probe_histogram": catalog_probes,
            "statements_per_request_by_concurrency": {
                str(c_): {str(n): v for n, v in by_n.items()} for c_, by_n in catalog_per_conc.items()
            },
            "statements_per_request_constant": catalog_constant,
            "summary": catalog_summary,
            "runs": catalog_runs,
            "table": catalog_table,
        } if catalog else None,
        "secrets": secrets_bench,
        "processes": processes_bench,
        "agents": agents_bench,
    }
    os.makedirs(os.path.dirname(os.path.abspath(cfg.out)), exist_ok=True)
    with open(cfg.out, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print(f"results: {cfg.out}")

    ok = True
    if failures:
        log(f"FAIL: {failures} request(s) failed")
        ok = False
    if not constant:
        log(f"FAIL: SQL statements per request depend on page size: {per_conc}")
        ok = False
    if sql_failed:
        log(f"FAIL: {len(sql_failed)} pgbench run(s) failed: {sql_failed[0]['problems']}")
        ok = False
    catalog_failures = sum(r["failures"] for r in catalog_runs)
    if catalog_failures:
        log(f"FAIL: {catalog_failures} catalog request(s) failed")
        ok = False
    if not catalog_constant:
        log(f"FAIL: the catalog page's SQL statements per request depend on its page size: "
            f"{catalog_per_conc}, one at a time: {catalog_probes}")
        ok = False
    missed = []
    if ratio_misses:
        missed.append("GraphQL req/s below " f"{cfg.min_ratio:g} x pgbench tps at "
                      + ", ".join(f"N={b['n']} c={b['concurrency']} ({b['ratio']})" for b in ratio_misses))
    if tail_misses:
        missed.append(f"p99 above {cfg.max_tail:g} x p50 at concurrency {cfg.tail_concurrency}: "
                      + ", ".join(f"N={b['n']} ({b['p99_over_p50']})" for b in tail_misses))
    budgets = verdict([], missed, cfg.report_only)
    return 0 if ok and budgets == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
