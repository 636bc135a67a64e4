"""replicas: drain rate of a pre-filled heartbeat queue with 2 devices processes against 1,
in the same run, and how many heartbeats were not applied (lost) with each.

As `drain` (a fleet in steady state, 2 % changed inventories, the rest hashes), the same N
heartbeats per configuration; the order of the configurations alternates between
repetitions. A drain ends when N more heartbeats are applied, or when the queue is empty and
nothing more is applied (then N − applied were lost: skipped as out of order, dead-lettered
or vanished — the processes' `chamados_heartbeats_total` by outcome says which).
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from bench.core import Stack, log, median, ratio, target
from bench.drains import devices_drain, downsample, warm_up
from bench.fleet import fleet_size, heartbeats, publish, seed_machines

NAME = "replicas"
SUMMARY = "drain rate with 2 devices processes vs 1, and heartbeats lost"
FULL = {"n": 10_000, "machines": 1_000, "change_rate": 0.02, "interval_seconds": 300,
        "stall_seconds": 30, "deadline_seconds": 900}
SMOKE = {"n": 400, "machines": 20, "change_rate": 0.02, "interval_seconds": 300,
         "stall_seconds": 15, "deadline_seconds": 60}


def run(params: dict, reps: int, workdir) -> dict:
    p = params
    runs, curves = [], {}
    with Stack(NAME, workdir) as stack:
        machines = seed_machines(stack, p["machines"])
        interval = timedelta(seconds=p["interval_seconds"])
        clock = datetime.now(timezone.utc) - timedelta(days=60)
        warm = warm_up(stack, machines, stall_seconds=p["stall_seconds"],
                       deadline_seconds=p["deadline_seconds"], start=clock, bench=NAME)
        if warm["status"] != "done":
            return {"failure": f"warm-up {warm['status']}: {warm['detail']}", "targets": _targets([])}
        for rep in range(reps):
            record = {"rep": rep}
            for replicas in ((1, 2) if rep % 2 == 0 else (2, 1)):
                clock += interval
                total = fleet_size(p["n"], len(machines))
                messages = heartbeats(machines, total, change_rate=p["change_rate"], full=False,
                                      start=clock, interval=interval, seed=100 * rep + replicas)
                clock += interval * (total // len(machines))
                publish(stack.amqp_uri, messages)
                summary = devices_drain(stack, total, replicas=replicas, stall_seconds=p["stall_seconds"],
                                        deadline_seconds=p["deadline_seconds"], settle_when_empty=True)
                samples = summary.pop("_samples")
                if rep == 0:
                    curves[f"{replicas} replica{'s' if replicas > 1 else ''}"] = downsample(samples)
                summary["lost"] = total - summary["applied"]
                record[str(replicas)] = summary
                log(NAME, f"rep {rep + 1}/{reps}, {replicas} replica(s): {summary['status']} "
                          f"{summary['rate_per_s']}/s, lost {summary['lost']} of {total} {summary['outcomes']}")
            record["speedup"] = ratio(record["2"]["rate_per_s"], record["1"]["rate_per_s"])
            runs.append(record)
    failures = [f"rep {r['rep']}, {k} replica(s): {r[k]['status']} ({r[k]['detail']})"
                for r in runs for k in ("1", "2") if r[k]["status"] not in ("done", "settled")]
    result = {"targets": _targets(runs), "runs": runs, "series": curves,
              "series_axes": ["seconds since the consumers were started", "heartbeats applied"]}
    if failures:
        result["failure"] = "; ".join(failures)
    return result


def _targets(runs) -> list:
    finished = [r for r in runs if all(r[k]["status"] in ("done", "settled") for k in ("1", "2"))]
    lost_two = sum(r["2"]["lost"] for r in runs) if runs else None
    lost_one = sum(r["1"]["lost"] for r in runs) if runs else None
    lines = [
        target("speedup_2_vs_1", None, None, median([r["speedup"] for r in finished]), "ratio"),
        target("lost_with_2_replicas", "==", 0, lost_two, "heartbeats"),
        target("lost_with_1_replica", "==", 0, lost_one, "heartbeats"),
        target("drain_rate_1_replica", None, None, median([r["1"]["rate_per_s"] for r in finished]), "heartbeats/s"),
        target("drain_rate_2_replicas", None, None, median([r["2"]["rate_per_s"] for r in finished]), "heartbeats/s"),
    ]
    if len(finished) < len(runs) or not runs:
        for line in lines:
            if line["met"] is not None:
                line["met"] = False
    return lines
