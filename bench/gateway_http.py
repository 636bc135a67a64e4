"""http: the gateway's `POST /api/machines/heartbeat` (Bearer machine token, ~2 KB body) at
8 concurrent connections, against `GET /healthz` of the same gateway in the same run.

The gateway and devices run as processes (devices answers the token check
`devices.heartbeat_hint` and consumes what the gateway queues, as in production); machines
and tokens are written to the database. Each repetition runs healthz then heartbeat (the
order alternates) for `seconds` each, after a short unrecorded warm-up. Heartbeats rotate
over the machines, `sent_at` strictly increasing per machine. Load generator: wrk + Lua
(bench/httpload.py), or a multi-process Python client where wrk is absent. The CPU of each
process, PostgreSQL's backends, the broker and the machine is measured over each run: a
goal not met names what limited it (`saturated`).
"""
from __future__ import annotations

import os
import random
import time
from datetime import datetime, timedelta, timezone

from sqlalchemy.engine import make_url

from bench.core import BenchFailure, CpuMeter, Stack, log, mean_percent, median, ratio, saturated, target
from bench.fleet import seed_machines
from bench.httpload import (HEARTBEAT_PATH, LUA_DONE, HeartbeatFeed, heartbeat_lua, load_generator,
                            run_python, run_wrk)

NAME = "http"
SUMMARY = "POST /api/machines/heartbeat at 8 connections vs GET /healthz on the same gateway (req/s, p99)"
# load_generator: auto (wrk when present — installed from Debian's packages when install_wrk and
# root —, else Python), wrk, or python
FULL = {"connections": 8, "seconds": 10, "warmup_seconds": 3, "machines": 200, "wrk_threads": 2,
        "install_wrk": 1, "load_generator": "auto"}
SMOKE = {"connections": 8, "seconds": 1, "warmup_seconds": 1, "machines": 16, "wrk_threads": 2,
         "install_wrk": 0, "load_generator": "auto"}
GOALS = {"rate": 1_000, "p99_ms": 100, "vs_healthz": 0.3}
ROUND_SPACING = 100_000  # seconds of sent_at reserved per run: runs never reuse a sent_at
WARMUP_DEADLINE_SECONDS = 30


def run(params: dict, reps: int, workdir) -> dict:
    p = params
    wrk = load_generator(p)
    runs = []
    with Stack(NAME, workdir) as stack:
        machines = seed_machines(stack, p["machines"])
        stack.start("devices")
        stack.system.start_service("gateway")
        stack.wait_ready("gateway", f"{stack.system.base_url}/healthz", stack.system.processes["gateway"], 60)
        probe = machines[0]
        sample = probe.heartbeat(random.Random(1), datetime(2000, 1, 1, tzinfo=timezone.utc), full=False).decode()
        marker = '"2000-01-01T00:00:00+00:00"'
        if marker not in sample:
            raise RuntimeError("could not find sent_at in the heartbeat body")
        head, tail = sample.split(marker)
        head, tail = head + '"', '"' + tail
        tokens = [m.token for m in machines]
        base = datetime.now(timezone.utc) - timedelta(days=30)
        run_index = 0
        meter = CpuMeter({name: process.pid for name, process in stack.system.processes.items()},
                         make_url(stack.dsn).database)

        def load(kind: str, seconds: float) -> dict:
            nonlocal run_index
            feed = HeartbeatFeed(tokens, head, tail, base + timedelta(seconds=run_index * ROUND_SPACING))
            run_index += 1
            url = stack.system.base_url + (HEARTBEAT_PATH if kind == "heartbeat" else "/healthz")
            cpu_before = meter.reading()
            if wrk:
                lua = heartbeat_lua(feed, p["wrk_threads"]) if kind == "heartbeat" else LUA_DONE
                measured = run_wrk(wrk, url, connections=p["connections"], seconds=seconds,
                                   threads=min(p["wrk_threads"], p["connections"]), lua=lua)
            else:
                measured = run_python(url, connections=p["connections"], seconds=seconds,
                                      feed=feed if kind == "heartbeat" else None)
            measured["cpu_percent"] = CpuMeter.percent(cpu_before, meter.reading())
            return measured

        # warm until a heartbeat is accepted: on a busy machine (the test suite runs every
        # bench's smoke at once) the first second may see none yet
        deadline = time.monotonic() + WARMUP_DEADLINE_SECONDS
        warm = load("heartbeat", p["warmup_seconds"])
        while not warm["ok"] and time.monotonic() < deadline:
            warm = load("heartbeat", p["warmup_seconds"])
        if not warm["ok"]:
            raise BenchFailure(f"no heartbeat accepted in {WARMUP_DEADLINE_SECONDS} s of warm-up: {warm}\n"
                               f"{stack.log_tail('gateway')}")
        load("healthz", p["warmup_seconds"])
        for rep in range(reps):
            order = ("healthz", "heartbeat") if rep % 2 == 0 else ("heartbeat", "healthz")
            record = {"rep": rep, "order": list(order)}
            for kind in order:
                record[kind] = load(kind, p["seconds"])
            record["heartbeat_vs_healthz"] = ratio(record["heartbeat"]["req_per_s"], record["healthz"]["req_per_s"])
            log(NAME, f"rep {rep + 1}/{reps}: heartbeat {record['heartbeat']['req_per_s']:.0f}/s p99 "
                      f"{record['heartbeat']['p99_ms']:.1f} ms, healthz {record['healthz']['req_per_s']:.0f}/s "
                      f"p99 {record['healthz']['p99_ms']:.1f} ms ({record['heartbeat']['tool']})")
            runs.append(record)
        applied = int(stack.scalar("SELECT coalesce(sum(heartbeats), 0) FROM devices.heartbeat_state"))
    failures = []
    for record in runs:
        for kind in ("heartbeat", "healthz"):
            r = record[kind]
            bad = r["non_2xx_3xx"] + r["socket_errors"]
            if bad > 0.01 * max(1, r["requests"]):
                failures.append(f"rep {record['rep']} {kind}: {bad} of {r['requests']} failed")
    rates = [r["heartbeat"]["req_per_s"] for r in runs]
    limit = saturated(mean_percent([r["heartbeat"]["cpu_percent"] for r in runs]), os.cpu_count() or 1,
                      median(rates)) if runs else None
    result = {
        "targets": [
            target("heartbeat_rate", ">=", GOALS["rate"], median(rates), "req/s"),
            target("heartbeat_p99", "<", GOALS["p99_ms"], median([r["heartbeat"]["p99_ms"] for r in runs]), "ms"),
            target("heartbeat_vs_healthz", ">=", GOALS["vs_healthz"],
                   median([r["heartbeat_vs_healthz"] for r in runs]), "ratio"),
            target("healthz_rate (baseline)", None, None, median([r["healthz"]["req_per_s"] for r in runs]), "req/s"),
            target("healthz_p99 (baseline)", None, None, median([r["healthz"]["p99_ms"] for r in runs]), "ms"),
        ],
        "runs": runs,
        "heartbeat_cpu_percent": mean_percent([r["heartbeat"]["cpu_percent"] for r in runs]),
        "load_generator": runs[0]["heartbeat"]["tool"] if runs else None,
        "heartbeats_applied_by_devices_meanwhile": applied,
    }
    for line in result["targets"][:3]:
        if line["met"] is False and limit:
            line["saturated"] = limit
    if failures:
        result["failure"] = "; ".join(failures)
        for line in result["targets"][:3]:
            line["met"] = False if line["met"] is not None else None
    return result
