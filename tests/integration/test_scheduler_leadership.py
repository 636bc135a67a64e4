"""Two scheduler replicas against a database of their own (no other scheduler may hold its
lock): every tick of a job runs exactly once, a killed leader hands over within a tick, a
slow job is never overlapped. Real processes, the real PostgreSQL advisory lock, a real
counting service on the bus."""
import json
import re
import signal
import time
from datetime import datetime

import pytest
import requests
from nameko.containers import ServiceContainer
from nameko.standalone.rpc import ClusterRpcProxy

from tests.harness import RabbitVhost, System
from tests.support.counter import CounterService

ALL_DEFAULTS_OFF = {name: {"enabled": False} for name in (
    "chat-cleanup", "usb-cleanup", "offline-sweep", "report-export-runner", "lunch-pause",
    "retention-sweep", "storage-maintenance")}


@pytest.fixture
def bus():
    vhost = RabbitVhost.create()
    CounterService.calls.clear()
    CounterService.in_flight.update(now=0, max=0)
    container = ServiceContainer(CounterService, {"AMQP_URI": vhost.amqp_uri})
    container.start()
    yield vhost
    container.stop()
    vhost.delete()


def schedulers(database_url, amqp_uri, tmp_path, jobs, count=2):
    replicas = []
    for index in range(count):
        replica = System(database_url=database_url, amqp_uri=amqp_uri, workdir=tmp_path / f"s{index}",
                         services=("scheduler",),
                         extra_env={"SCHEDULER_JOBS": json.dumps({**ALL_DEFAULTS_OFF, **jobs})})
        replica.workdir.mkdir(parents=True, exist_ok=True)
        replica.start_service("scheduler")
        replica.wait_ready(60)
        replicas.append(replica)
    return replicas


def leads(replica) -> bool:
    text = requests.get(replica.metrics_url("scheduler"), timeout=5).text
    return re.search(r"^chamados_scheduler_leader 1\.0$", text, re.M) is not None


def recorded(amqp_uri):
    with ClusterRpcProxy({"AMQP_URI": amqp_uri}, timeout=10) as rpc:
        return rpc.counter.ticks()


def test_each_tick_runs_once_and_a_killed_leader_hands_over(private_database, bus, tmp_path):
    replicas = schedulers(private_database, bus.amqp_uri, tmp_path,
                          {"count": {"interval_seconds": 1, "targets": ["counter.count"]}})
    try:
        time.sleep(5)
        leaders = [r for r in replicas if leads(r)]
        assert len(leaders) == 1, "exactly one replica leads"
        before = recorded(bus.amqp_uri)["calls"]
        ticks = [tick for tick, _, _ in before]
        assert len(ticks) >= 3
        assert len(ticks) == len(set(ticks)), f"a tick ran twice: {ticks}"

        killed_at = time.time()
        leaders[0].processes["scheduler"].send_signal(signal.SIGKILL)
        leaders[0].processes["scheduler"].wait(10)
        survivor = next(r for r in replicas if r is not leaders[0])
        time.sleep(4)
        assert leads(survivor)
        after = recorded(bus.amqp_uri)["calls"]
        ticks = [tick for tick, _, _ in after]
        assert len(ticks) == len(set(ticks)), f"a tick ran twice across the handover: {ticks}"
        resumed = [started for _, started, _ in after if started > killed_at]
        assert resumed, "nobody took over"
        assert min(resumed) - killed_at < 2.5, "the handover took longer than a tick or two"
        seconds = sorted(datetime.fromisoformat(t).timestamp() for t in ticks)
        assert all(b - a >= 1 for a, b in zip(seconds, seconds[1:])), "ticks are one second apart"
    finally:
        for replica in replicas:
            replica.stop()


def test_a_slow_job_is_not_overlapped(private_database, bus, tmp_path):
    replicas = schedulers(private_database, bus.amqp_uri, tmp_path,
                          {"slow": {"interval_seconds": 1, "targets": ["counter.slow"],
                                    "timeout_seconds": 10}}, count=1)
    try:
        time.sleep(7)
        seen = recorded(bus.amqp_uri)
        metrics = requests.get(replicas[0].metrics_url("scheduler"), timeout=5).text
    finally:
        replicas[0].stop()
    assert seen["max_in_flight"] == 1
    assert 1 <= len(seen["calls"]) <= 3  # 2.5 s each, back to back at most, within 7 s
    assert re.search(r'chamados_job_runs_total\{job="slow",outcome="overlap_skipped"\} [1-9]', metrics)
    assert re.search(r'chamados_job_runs_total\{job="slow",outcome="success"\} [1-9]', metrics)
