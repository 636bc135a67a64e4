"""drain: how fast ONE devices process empties a pre-filled heartbeat queue, against a
minimal raw consumer (bench/raw_consumer.py) draining the same messages in the same run.

N heartbeats (~2 KB) of a fleet in steady state (every machine's inventory already stored)
are published with the service stopped, into the devices queue and — same exchange, same
routing key — the baseline's own queue. Then, one after the other (the order alternates
between repetitions), each consumer is started alone and timed until all N are applied
(`sum(heartbeat_state.heartbeats)`, resp. `sum(bench_raw.state.heartbeats)`), polled every
50 ms. The rate runs from the first commit seen to the last (process start-up and the first
batch count for neither). Modes: `delta` — 2 % of the heartbeats carry a changed ~92 KB
inventory, the rest its hash; `full` — every heartbeat carries the full inventory (2 % of
them changed), as an agent that never sends the hash would. The CPU of the devices process,
PostgreSQL's backends, the broker and the machine is measured over each drain: a goal not
met names what limited it (`saturated`).
"""
from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

from common.contracts.devices import HEARTBEAT_QUEUE

from bench.core import Stack, log, mean_percent, median, ratio, saturated, target
from bench.drains import (RAW_QUEUE, devices_drain, downsample, prepare_raw, purge, raw_drain,
                          warm_up)
from bench.fleet import fleet_size, heartbeats, publish, seed_machines

NAME = "drain"
SUMMARY = "one devices process draining a pre-filled queue, vs a raw pika+psycopg consumer (delta and full-inventory modes)"
FULL = {"n": 50_000, "full_n": 3_000, "machines": 1_000, "change_rate": 0.02,
        "interval_seconds": 300, "stall_seconds": 30, "deadline_seconds": 900}
SMOKE = {"n": 600, "full_n": 60, "machines": 20, "change_rate": 0.02,
         "interval_seconds": 300, "stall_seconds": 15, "deadline_seconds": 60}
GOALS = {"delta_rate": 3_333, "delta_vs_raw": 0.5, "full_rate": 333}


def run(params: dict, reps: int, workdir) -> dict:
    p = params
    runs, curves = [], {}
    with Stack(NAME, workdir) as stack:
        prepare_raw(stack)
        machines = seed_machines(stack, p["machines"])
        interval = timedelta(seconds=p["interval_seconds"])
        clock = datetime.now(timezone.utc) - timedelta(days=60)
        warm = warm_up(stack, machines, stall_seconds=p["stall_seconds"],
                       deadline_seconds=p["deadline_seconds"], start=clock, bench=NAME)
        purge(stack, RAW_QUEUE)
        if warm["status"] != "done":
            return {"failure": f"warm-up {warm['status']}: {warm['detail']}", "warm_up": _public(warm),
                    "targets": _targets([])}
        for mode, count in (("delta", p["n"]), ("full", p["full_n"])):
            for rep in range(reps):
                clock += interval
                total = fleet_size(count, len(machines))
                messages = heartbeats(machines, total, change_rate=p["change_rate"], full=mode == "full",
                                      start=clock, interval=interval, seed=1000 * rep + len(mode))
                clock += interval * (total // len(machines))
                publish(stack.amqp_uri, messages, expect_in=(HEARTBEAT_QUEUE, RAW_QUEUE))
                order = ("raw", "devices") if rep % 2 == 0 else ("devices", "raw")
                record = {"mode": mode, "rep": rep, "n": total, "order": list(order)}
                for who in order:
                    if who == "raw":
                        record["raw"] = raw_drain(stack, total, stall_seconds=p["stall_seconds"],
                                                  deadline_seconds=p["deadline_seconds"])
                    else:
                        record["devices"] = devices_drain(stack, total, stall_seconds=p["stall_seconds"],
                                                          deadline_seconds=p["deadline_seconds"])
                if rep == 0:
                    curves[f"{mode}: devices"] = downsample(record["devices"].pop("_samples"))
                    curves[f"{mode}: raw"] = downsample(record["raw"].pop("_samples"))
                record["devices"].pop("_samples", None)
                record["raw"].pop("_samples", None)
                record["devices_vs_raw"] = ratio(record["devices"]["rate_per_s"], record["raw"]["rate_per_s"])
                log(NAME, f"{mode} rep {rep + 1}/{reps}: devices {record['devices']['status']} "
                          f"{record['devices']['rate_per_s']}/s, raw {record['raw']['status']} "
                          f"{record['raw']['rate_per_s']}/s (n={total})")
                runs.append(record)
                if record["devices"]["status"] not in ("done",) and rep + 1 < reps:
                    # a stalled consumer leaves the queue full: the next repetition would measure
                    # the leftovers; purge them and go on (the failure is already recorded)
                    purge(stack, HEARTBEAT_QUEUE)
                    purge(stack, RAW_QUEUE)
    failures = [f"{r['mode']} rep {r['rep']}: {who} {r[who]['status']} ({r[who]['detail']})"
                for r in runs for who in ("devices", "raw") if r[who]["status"] != "done"]
    result = {"targets": _targets(runs), "runs": runs, "series": curves,
              "series_axes": ["seconds since the consumer was started", "heartbeats applied"],
              "warm_up": _public(warm)}
    if failures:
        result["failure"] = "; ".join(failures)
    return result


def _public(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if not k.startswith("_")}


def _rates(runs, mode, who):
    return [r[who]["rate_per_s"] for r in runs if r["mode"] == mode and r[who]["status"] == "done"]


def _all_done(runs, mode, who) -> bool:
    selected = [r for r in runs if r["mode"] == mode]
    return bool(selected) and all(r[who]["status"] == "done" for r in selected)


def _targets(runs) -> list:
    def checked(line, *conditions):
        if not all(conditions):
            line["met"] = False
        return line

    delta_ok, full_ok = _all_done(runs, "delta", "devices"), _all_done(runs, "full", "devices")
    delta_ratios = [r["devices_vs_raw"] for r in runs if r["mode"] == "delta"
                    and r["devices"]["status"] == "done" and r["raw"]["status"] == "done"]
    full_ratios = [r["devices_vs_raw"] for r in runs if r["mode"] == "full"
                   and r["devices"]["status"] == "done" and r["raw"]["status"] == "done"]
    def limited(line, mode):
        """An unmet goal names what limited the devices drain (CPU by part, over the reps)."""
        done = [r["devices"] for r in runs if r["mode"] == mode and r["devices"]["status"] == "done"
                and r["devices"].get("cpu_percent")]
        if line["met"] is False and done:
            line["saturated"] = saturated(mean_percent([d["cpu_percent"] for d in done]), os.cpu_count() or 1,
                                          median([d["rate_per_s"] for d in done]), per="heartbeat")
        return line

    return [
        limited(checked(target("delta_drain_rate", ">=", GOALS["delta_rate"],
                               median(_rates(runs, "delta", "devices")), "heartbeats/s"), delta_ok), "delta"),
        limited(checked(target("delta_drain_vs_raw", ">=", GOALS["delta_vs_raw"], median(delta_ratios), "ratio"),
                        delta_ok, _all_done(runs, "delta", "raw")), "delta"),
        limited(checked(target("full_drain_rate", ">=", GOALS["full_rate"],
                               median(_rates(runs, "full", "devices")), "heartbeats/s"), full_ok), "full"),
        target("raw_delta_drain_rate (baseline)", None, None, median(_rates(runs, "delta", "raw")), "heartbeats/s"),
        target("raw_full_drain_rate (baseline)", None, None, median(_rates(runs, "full", "raw")), "heartbeats/s"),
        target("full_drain_vs_raw", None, None, median(full_ratios), "ratio"),
    ]
