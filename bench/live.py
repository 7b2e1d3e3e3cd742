#!/usr/bin/env python3
"""Live-event latency: how long a run's event takes to reach a graphql-ws subscriber.

Seeds one tenant with an active workflow, then runs `trellis-live-latency` (crates/loadgen,
src/bin/live.rs): one socket subscribed to `runsUpdated`, `startRun` after `startRun` over
one HTTP connection, the time from each request (and from its response, the commit) to the
new run's event on the socket. Writes bench/out/live.json and prints a table. Fails when
the median event arrives more than --max-p50-ms after its commit (unless
BENCH_REPORT_ONLY=1): delivery is a NOTIFY, a read of the run and one WebSocket frame,
a few milliseconds; Nagle's algorithm on the socket once made it 25-40 ms.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import log, thread_client  # noqa: E402
from runs import active_workflow, owner_tenant  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def main() -> int:
    env = os.environ.get
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True)
    p.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "trellis-live-latency"))
    p.add_argument("--out", default=os.path.join(HERE, "out", "live.json"))
    p.add_argument("--count", type=int, default=int(env("BENCH_LIVE_EVENTS", "300")))
    p.add_argument("--max-p50-ms", type=float, default=float(env("BENCH_LIVE_MAX_P50_MS", "10")))
    p.add_argument("--report-only", default=env("BENCH_REPORT_ONLY", "0") == "1",
                   action=argparse.BooleanOptionalAction)
    cfg = p.parse_args()

    client = thread_client(cfg.url)
    _, token = owner_tenant(client, "live", "Live Events")
    workflow = active_workflow(client, token, "live", 1)
    log(f"==> live events: {cfg.count} runs started, each watched over graphql-ws")
    out = subprocess.run(
        [cfg.bin, "--url", cfg.url, "--token", token, "--workflow", workflow, "--count", str(cfg.count)],
        check=True, capture_output=True, text=True,
    ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    os.makedirs(os.path.dirname(cfg.out), exist_ok=True)
    with open(cfg.out, "w") as f:
        json.dump(result, f, indent=2)

    rows = [("startRun response", result["start_run_ms"]),
            ("event after request", result["event_after_request_ms"]),
            ("event after response", result["event_after_response_ms"])]
    print(f"\nLive events ({result['events']} on one socket), ms")
    print(f"{'':22} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}")
    for name, q in rows:
        print(f"{name:22} {q['p50']:8.2f} {q['p90']:8.2f} {q['p99']:8.2f} {q['max']:8.2f}")
    p50 = result["event_after_response_ms"]["p50"]
    if p50 > cfg.max_p50_ms:
        log(f"{'NOTE' if cfg.report_only else 'FAIL'}: the median event came {p50} ms after its commit "
            f"(budget {cfg.max_p50_ms} ms)")
        return 0 if cfg.report_only else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
