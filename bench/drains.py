"""Draining a pre-filled queue: the devices service (one or more processes) and the raw
baseline consumer, each timed by polling what it has applied in the database."""
from __future__ import annotations

import subprocess
import sys
import time

from sqlalchemy.engine import make_url

from common.config import ROOT
from common.contracts.devices import HEARTBEAT_QUEUE

from bench.core import CpuMeter, PeakRss, counters, log, watch_drain
from bench.fleet import applied_count, queue_ready
from bench.raw_consumer import ensure_schema

RAW_QUEUE = "bench.raw-heartbeats"


def outcome_counters(urls) -> dict:
    """chamados_heartbeats_total by outcome, summed over the replicas' metrics URLs."""
    total: dict = {}
    for url in urls:
        for outcome, value in counters(url, "chamados_heartbeats_total", "outcome").items():
            total[outcome] = total.get(outcome, 0) + int(value)
    return total


def devices_drain(stack, expected: int, *, replicas: int = 1, stall_seconds: float = 30,
                  deadline_seconds: float = 900, rss_kill_above: int | None = None,
                  settle_when_empty: bool = False) -> dict:
    """Start `replicas` devices processes on the pre-filled queue; time until `expected`
    more heartbeats are applied; stop them. Returns the drain summary with the processes'
    outcome counters, the queue left behind and (one replica) the peak RSS."""
    before = applied_count(stack)
    started = time.monotonic()
    processes, urls = [], []
    sampler = None
    for index in range(replicas):
        if index == 0:
            stack.system.start_service("devices")
            key, process, url = "devices", stack.system.processes["devices"], stack.system.metrics_url("devices")
        else:
            key, process, url = stack.start_replica("devices")
        processes.append((key, process))
        urls.append(url)
        if index == 0 and replicas == 1:
            sampler = PeakRss(process.pid, kill_above=rss_kill_above)
            sampler.start()
    # CPU of each part while the queue drains (the consumers' start-up, ~1 s, included)
    meter = CpuMeter({key: process.pid for key, process in processes}, make_url(stack.dsn).database)
    cpu_before = meter.reading()
    try:
        def alive():
            return all(p.poll() is None for _, p in processes)

        def settle():
            return queue_ready(stack.amqp_uri) == 0

        drain = watch_drain(lambda: applied_count(stack) - before, expected, started=started,
                            alive=alive, stall_seconds=stall_seconds, deadline_seconds=deadline_seconds,
                            settle=settle if settle_when_empty else None)
        summary = drain.summary()
        summary["cpu_percent"] = CpuMeter.percent(cpu_before, meter.reading())
        summary["outcomes"] = outcome_counters(urls)
        summary["queue_ready_after"] = queue_ready(stack.amqp_uri)
        if sampler is not None:
            summary["peak_rss_bytes"] = sampler.stop()
            summary["start_rss_bytes"] = sampler.first
            if sampler.killed:
                summary["status"] = "killed"
                summary["detail"] = f"RSS passed {rss_kill_above} bytes: killed"
        if drain.status != "done":
            summary["log_tail"] = "\n".join(stack.log_tail(k, 1500) for k, _ in processes)
        summary["_samples"] = drain.samples
        return summary
    finally:
        if sampler is not None:
            sampler.stop()
        stack.stop(*[key for key, _ in processes])


def prepare_raw(stack) -> None:
    """The baseline's state table and its own durable queue, bound like the devices queue so
    every heartbeat published lands in both."""
    from bench.fleet import channel
    from common.contracts.devices import HEARTBEAT_EXCHANGE, HEARTBEAT_ROUTING_KEY

    ensure_schema(stack.dsn)
    connection, ch = channel(stack.amqp_uri)
    try:
        ch.queue_declare(RAW_QUEUE, durable=True)
        ch.queue_bind(RAW_QUEUE, HEARTBEAT_EXCHANGE, routing_key=HEARTBEAT_ROUTING_KEY)
    finally:
        connection.close()


def raw_count(stack) -> int:
    return int(stack.scalar("SELECT coalesce(sum(heartbeats), 0) FROM bench_raw.state"))


def raw_drain(stack, expected: int, *, stall_seconds: float = 30, deadline_seconds: float = 900) -> dict:
    before = raw_count(stack)
    log_file = open(stack.workdir / "raw.log", "ab")
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", "bench.raw_consumer", stack.amqp_uri, stack.dsn,
                                RAW_QUEUE], cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL)
    log_file.close()
    stack.system.processes["raw"] = process
    try:
        drain = watch_drain(lambda: raw_count(stack) - before, expected, started=started,
                            alive=lambda: process.poll() is None, stall_seconds=stall_seconds,
                            deadline_seconds=deadline_seconds)
        summary = drain.summary()
        summary["queue_ready_after"] = queue_ready(stack.amqp_uri, RAW_QUEUE)
        if drain.status != "done":
            summary["log_tail"] = stack.log_tail("raw")
        summary["_samples"] = drain.samples
        return summary
    finally:
        stack.stop("raw")


def purge(stack, queue: str) -> None:
    from bench.fleet import channel
    connection, ch = channel(stack.amqp_uri)
    try:
        ch.queue_purge(queue)
    finally:
        connection.close()


def warm_up(stack, machines, *, stall_seconds: float, deadline_seconds: float, start, bench: str) -> dict:
    """Every machine's first heartbeat with its full inventory, applied by the service, so
    the measured heartbeats meet a fleet in its steady state (inventories stored)."""
    import random

    from bench.fleet import publish

    rnd = random.Random(7)
    published = publish(stack.amqp_uri, ((m.token, m.heartbeat(rnd, start, full=True)) for m in machines),
                        expect_in=(HEARTBEAT_QUEUE,))
    summary = devices_drain(stack, published, stall_seconds=stall_seconds, deadline_seconds=deadline_seconds)
    log(bench, f"warm-up: {published} first inventories, {summary['status']} in {summary['seconds']}s")
    return summary


def downsample(samples, points: int = 300) -> list:
    if len(samples) <= points:
        return [[round(t, 3), c] for t, c in samples]
    step = len(samples) / points
    picked = [samples[int(i * step)] for i in range(points)] + [samples[-1]]
    return [[round(t, 3), c] for t, c in picked]
