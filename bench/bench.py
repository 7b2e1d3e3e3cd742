#!/usr/bin/env python3
"""Trellis tenant-dashboard benchmark: seeds a running server over GraphQL, drives
bounded load with persistent HTTP/1.1 connections, and writes a summary.

Python 3.11 standard library only. `bench/run.sh` builds and starts the server and
calls this with its URL and PID; see bench/README.md.

Exit status: 0 when every request succeeded and SQL statements per request are the
same at every page size; 1 otherwise (results are still printed and written).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse

DASHBOARD = (
    "query Dash($n:Int!){ tenant { id name "
    "members(first:$n){ totalCount edges { node { role user { id email name } } } } "
    "apiKeys(first:10){ edges { node { name prefix lastUsedAt } } } "
    "auditEvents(first:$n){ edges { node { action seq createdAt actor { email } } } } } }"
)

PASSWORD = "bench-password-123"
ROLES = ["VIEWER", "BUILDER", "OPERATOR", "ADMIN"]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


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
        CREATE_TENANT, {"i": {"slug": f"bench-{t:02d}", "name": f"Bench Tenant {t:02d}"}}, user_token
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


def pg_cpu_seconds(postmaster: int | None) -> float | None:
    """CPU time of the postmaster and its children (backends of the pooled
    connections live for the whole run, so their deltas are complete)."""
    if postmaster is None:
        return None
    total = cpu_seconds(postmaster)
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


def load_run(url: str, pid: int, postmaster: int | None, token: str, n: int, conc: int,
             duration: float, warmup: int, expect: dict) -> dict:
    body = json.dumps({"query": DASHBOARD, "variables": {"n": n}, "operationName": "Dash"}).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    ready = threading.Barrier(conc + 1)
    go = threading.Event()
    stop_at = [0.0]
    lat: list[list[float]] = [[] for _ in range(conc)]
    failures: list[str] = []
    fail_lock = threading.Lock()

    def fail(msg: str) -> None:
        with fail_lock:
            failures.append(msg)

    def one(client: Client, i: int, full_check: bool) -> None:
        status, data = client.request("POST", "/graphql", body, headers)
        # Every response: status 200, no top-level "errors" key (async-graphql writes
        # it after "data"; none of the selected fields can contain that text) and a
        # tenant. Every 25th response, and the first of each thread, is parsed in full.
        if status != 200 or b'"errors":' in data or not data.startswith(b'{"data":{"tenant":{'):
            fail(f"HTTP {status}: {data[:500]!r}")
        elif full_check:
            problem = check_shape(json.loads(data), n, expect)
            if problem:
                fail(problem)

    def worker(i: int) -> None:
        client = Client(url, timeout=30)
        try:
            for w in range(warmup):
                one(client, i, w == 0)
        except Exception as e:  # noqa: BLE001
            fail(f"warm-up: {e!r}")
        ready.wait()
        go.wait()
        mine = lat[i]
        k = 0
        end = stop_at[0]
        while True:
            t = time.perf_counter()
            if t >= end:
                break
            try:
                one(client, i, k % 25 == 0)
            except Exception as e:  # noqa: BLE001
                fail(repr(e))
                client.close()
            mine.append(time.perf_counter() - t)
            k += 1
        client.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(conc)]
    for th in threads:
        th.start()
    ready.wait()
    before = metrics(url)
    rss_before = rss_kb(pid)
    cpu_before, pg_before = cpu_seconds(pid), pg_cpu_seconds(postmaster)
    peak = [rss_before]
    sampling = threading.Event()

    def sampler() -> None:
        while not sampling.is_set():
            peak[0] = max(peak[0], rss_kb(pid))
            sampling.wait(0.1)

    sampler_thread = threading.Thread(target=sampler, daemon=True)
    sampler_thread.start()
    start = time.perf_counter()
    stop_at[0] = start + duration
    go.set()
    for th in threads:
        th.join()
    elapsed = time.perf_counter() - start
    sampling.set()
    sampler_thread.join()
    peak[0] = max(peak[0], rss_kb(pid))
    after = metrics(url)
    cpu_after, pg_after = cpu_seconds(pid), pg_cpu_seconds(postmaster)
    all_lat = sorted(x for per in lat for x in per)
    d_stmt = after["trellis_sql_statements_total"] - before["trellis_sql_statements_total"]
    d_req = after["trellis_graphql_requests_total"] - before["trellis_graphql_requests_total"]
    return {
        "n": n,
        "concurrency": conc,
        "requests": len(all_lat),
        "seconds": round(elapsed, 3),
        "rps": round(len(all_lat) / elapsed, 1),
        "p50_ms": round(percentile(all_lat, 0.50) * 1000, 2),
        "p99_ms": round(percentile(all_lat, 0.99) * 1000, 2),
        "max_ms": round(all_lat[-1] * 1000, 2) if all_lat else None,
        "sql_statements": int(d_stmt),
        "graphql_requests": int(d_req),
        "statements_per_request": round(d_stmt / d_req, 4) if d_req else None,
        "server_cpu_ms_per_request": round((cpu_after - cpu_before) * 1000 / d_req, 2) if d_req else None,
        "postgres_cpu_ms_per_request": (
            round((pg_after - pg_before) * 1000 / d_req, 2) if d_req and pg_before is not None else None
        ),
        "rss_start_kb": rss_before,
        "rss_peak_kb": peak[0],
        "failures": len(failures),
        "first_failures": failures[:3],
    }


def probe_statements(url: str, token: str, n: int, count: int) -> dict[str, int]:
    """Statements of `count` single requests sent one at a time: how many requests
    took how many statements, read from /metrics around each one (the server is
    otherwise idle, so the deltas are exact)."""
    c = Client(url)
    body = json.dumps({"query": DASHBOARD, "variables": {"n": n}}).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    hist: dict[int, int] = {}
    try:
        for _ in range(count):
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
    cfg = p.parse_args()
    sizes = [int(x) for x in cfg.sizes.split(",")]
    concs = [int(x) for x in cfg.concurrency.split(",")]

    postmaster = None
    if cfg.pg_pidfile:
        try:
            with open(cfg.pg_pidfile) as f:
                postmaster = int(f.readline())
        except (OSError, ValueError):
            log(f"note: no PostgreSQL PID in {cfg.pg_pidfile}; its CPU time is not reported")
    rss_startup = rss_kb(cfg.pid)
    log(f"seed: {cfg.tenants} tenants x ({cfg.members} members + owner, {cfg.api_keys} API keys), "
        f"{cfg.seed_workers} client threads")
    try:
        tenants, seeding = seed(cfg.url, cfg)
    except GraphQLError as e:
        log(f"FAIL: seeding: {e}")
        return 1
    log(f"seed: done in {seeding['seconds']:.1f}s ({seeding['graphql_requests']} GraphQL requests)")

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

    probes = {}
    for n in sizes:
        probes[str(n)] = probe_statements(cfg.url, target["token"], n, cfg.probe)
        log(f"probe: N={n}: statements per request, one request at a time -> requests: {probes[str(n)]}")

    time.sleep(1)
    rss_idle = rss_kb(cfg.pid)
    runs = []
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

    table = fmt_table(summary)
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
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
