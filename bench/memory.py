"""memory: peak RSS of the devices process while it consumes 500 heartbeats of ~1 MB each
(the largest legal body: just under HEARTBEAT_MAX_BYTES), against the same process
consuming 500 heartbeats of ~2 KB in the same run.

The heartbeats are queued with the service stopped (the worst case: the broker can deliver
the whole prefetch at once); each ~1 MB heartbeat carries a changed inventory (~7,600
packages; a machine's first one is its initial record, the next are diffs against it), so
every one is parsed, canonicalised, hashed, diffed and stored. RSS (with any children) is
sampled every 20 ms by psutil from the process's start; a process passing 4 GB is killed
and reported.
"""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

from common.contracts.devices import HEARTBEAT_MAX_BYTES, HEARTBEAT_QUEUE

from bench.core import Stack, log, median, ratio, target
from bench.drains import devices_drain, purge
from bench.fleet import fit_packages, heartbeats, interleaved, publish, seed_machines

NAME = "memory"
SUMMARY = "peak RSS of the devices process consuming 500 heartbeats of ~1 MB vs 500 of ~2 KB"
FULL = {"n": 500, "machines": 100, "small_n": 500, "stall_seconds": 60, "deadline_seconds": 900,
        "kill_above_mb": 4096}
SMOKE = {"n": 6, "machines": 3, "small_n": 30, "stall_seconds": 20, "deadline_seconds": 60,
         "kill_above_mb": 4096}
GOAL_MB = 300
MB = 2 ** 20


def large_heartbeats(machines, count: int, start: datetime, seed: int):
    rnd = random.Random(seed)
    per_machine = max(1, count // len(machines))
    for machine, sent_at in interleaved(machines, per_machine, start, timedelta(minutes=5)):
        machine.change(rnd)
        body = machine.heartbeat(rnd, sent_at, full=True)
        if len(body) > HEARTBEAT_MAX_BYTES:
            raise RuntimeError(f"a heartbeat of {len(body)} bytes is over the limit")
        yield machine.token, body


def run(params: dict, reps: int, workdir) -> dict:
    p = params
    packages = fit_packages()
    runs = []
    with Stack(NAME, workdir) as stack:
        machines = seed_machines(stack, p["machines"], packages=packages)
        clock = datetime.now(timezone.utc) - timedelta(days=30)
        sizes = []
        for rep in range(reps):
            record = {"rep": rep}
            for kind in (("small", "large") if rep % 2 == 0 else ("large", "small")):
                count = p["n"] if kind == "large" else p["small_n"]
                total = max(1, count // len(machines)) * len(machines)
                if kind == "large":
                    messages = large_heartbeats(machines, total, clock, seed=rep)

                    def measured(messages=messages):
                        for token, body in messages:
                            sizes.append(len(body))
                            yield token, body
                    messages = measured()
                else:
                    messages = heartbeats(machines, total, change_rate=0.0, full=False, start=clock,
                                          interval=timedelta(minutes=5), seed=rep)
                clock += timedelta(minutes=5) * (total // len(machines) + 1)
                publish(stack.amqp_uri, messages)
                summary = devices_drain(stack, total, stall_seconds=p["stall_seconds"],
                                        deadline_seconds=p["deadline_seconds"],
                                        rss_kill_above=p["kill_above_mb"] * MB)
                summary.pop("_samples")
                summary["peak_rss_mb"] = round(summary.get("peak_rss_bytes", 0) / MB, 1)
                record[kind] = summary
                log(NAME, f"rep {rep + 1}/{reps}, {total} {kind} heartbeats: {summary['status']}, "
                          f"peak RSS {summary['peak_rss_mb']} MB")
                if summary["status"] != "done":  # leftovers would spoil the next measurement
                    purge(stack, HEARTBEAT_QUEUE)
            runs.append(record)
    large_done = [r for r in runs if r["large"]["status"] == "done"]
    all_large = [r["large"]["peak_rss_mb"] for r in runs]
    lines = [
        target("peak_rss_1mb_heartbeats", "<", GOAL_MB, median(all_large), "MB"),
        target("peak_rss_2kb_heartbeats (baseline)", None, None, median([r["small"]["peak_rss_mb"] for r in runs]), "MB"),
        target("large_vs_small_peak", None, None, median([ratio(r["large"]["peak_rss_mb"], r["small"]["peak_rss_mb"])
                                                          for r in runs]), "ratio"),
    ]
    if len(large_done) < len(runs):
        lines[0]["met"] = False
    result = {"targets": lines, "runs": runs, "packages_per_inventory": packages,
              "body_bytes": {"min": min(sizes, default=None), "max": max(sizes, default=None),
                             "limit": HEARTBEAT_MAX_BYTES},
              "max_peak_rss_mb": max(all_large, default=None)}
    failures = [f"rep {r['rep']} {k}: {r[k]['status']} ({r[k]['detail']})" for r in runs
                for k in ("small", "large") if r[k]["status"] != "done"]
    if failures:
        result["failure"] = "; ".join(failures)
    return result
