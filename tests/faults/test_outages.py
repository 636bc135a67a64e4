"""The whole system through broker and database outages (issue 12): an outage is a 503 with
Retry-After, never a 500; no service exits; /readyz is back soon after the broker; an event
consumed while the database is down is applied once it is back, never dead-lettered.

Runs all five services on a vhost of their own on the private broker node and a database of
their own on the private PostgreSQL cluster (the heartbeat pipeline's cases share both)."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
import uuid
from collections import Counter
from datetime import datetime, timezone

import pytest
import requests
from kombu import Connection
from nameko.standalone.events import get_event_exchange
from nameko.standalone.rpc import ClusterRpcProxy

from common.messaging import DEAD_LETTER_QUEUE, subscription_queue_name
from tests.faults import helpers
from tests.harness import Client, PostgresServer, System, new_tenant

VHOST = f"outages-{uuid.uuid4().hex[:6]}"
BROKER_BACK_READY_SECONDS = 10


@pytest.fixture(scope="module")
def whole_system(private_rabbit, private_postgres, fault_workdir):
    management = private_rabbit.management_url
    requests.put(f"{management}/vhosts/{VHOST}", auth=helpers.RABBIT_AUTH, timeout=10).raise_for_status()
    requests.put(f"{management}/permissions/{VHOST}/guest", auth=helpers.RABBIT_AUTH, timeout=10,
                 json={"configure": ".*", "write": ".*", "read": ".*"}).raise_for_status()
    amqp_uri = f"amqp://guest:guest@127.0.0.1:{private_rabbit.port}/{VHOST}"
    server = PostgresServer(private_postgres.admin_url)
    _, database_url = server.create_database()
    system = System(database_url=database_url, amqp_uri=amqp_uri,
                    workdir=fault_workdir / "whole-system",
                    extra_env={"RABBIT_MANAGEMENT_URL": management, "RPC_TIMEOUT_SECONDS": "5"})
    try:
        started = time.monotonic()
        system.start()
        helpers.INFRA_NOTES.append(f"whole system (5 services) ready in {time.monotonic() - started:.1f}s")
        yield system
    finally:
        system.stop()
        server.engine.dispose()


@pytest.fixture
def healthy(whole_system, private_rabbit, private_postgres):
    """Broker and database up and every service ready at the start of a case."""
    if not private_rabbit.running():
        private_rabbit.start()
    if not private_postgres.running():
        private_postgres.start()
    whole_system.wait_ready(60)
    return whole_system


def staff_client(system: System):
    with ClusterRpcProxy({"AMQP_URI": system.amqp_uri}, timeout=30) as rpc:
        tenant = new_tenant(system, rpc)
    return tenant


class Load:
    """A few clients reading and writing through the gateway until stopped; every answer's
    status (and error code) is counted, with the times of any 500."""

    def __init__(self, client: Client, queue_id: str, clients: int = 4):
        self.client, self.queue_id = client, queue_id
        self.statuses: Counter = Counter()
        self.failures: list[str] = []
        self.retry_after_missing = 0
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(index,), daemon=True)
                        for index in range(clients)]

    def _run(self, index: int) -> None:
        session = requests.Session()
        headers = {"Authorization": f"Bearer {self.client.token}"}
        while not self.stopping.is_set():
            if index % 2:
                call = ("POST", "/api/tickets", {"subject": "outage probe", "description": "x",
                                                "queue_id": self.queue_id})
            else:
                call = ("GET", "/api/tickets?limit=5", None)
            method, path, body = call
            try:
                response = session.request(method, self.client.base_url + path, json=body,
                                           headers=headers, timeout=20)
            except requests.RequestException as exc:
                self.statuses[f"no answer: {exc.__class__.__name__}"] += 1
                time.sleep(0.2)
                continue
            code = ""
            if response.status_code >= 400:
                try:
                    code = response.json()["error"]["code"]
                except (ValueError, KeyError, TypeError):
                    code = "not the JSON error shape"
                if response.status_code == 503 and "Retry-After" not in response.headers:
                    self.retry_after_missing += 1
            self.statuses[f"{response.status_code} {code}".strip()] += 1
            if response.status_code >= 500 and response.status_code not in (503, 504):
                self.failures.append(f"{method} {path} -> {response.status_code}: {response.text[:300]}")
            time.sleep(0.05)

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=30)


def queue_of(tenant) -> str:
    response = tenant.admin.get("/api/queues")
    assert response.status_code == 200, response.text
    return response.json()["items"][0]["id"]


def exits(system: System) -> dict:
    return {name: process.returncode for name, process in system.processes.items()
            if process.poll() is not None}


def seconds_until_ready(system: System, timeout: float) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if requests.get(f"{system.base_url}/readyz", timeout=3).status_code == 200:
                return time.monotonic() - started
        except requests.RequestException:
            pass
        time.sleep(0.2)
    return None


def report(case: str, load: Load, system: System, extra: str = "") -> None:
    helpers.RESULTS.append(f"{case}: answers {dict(load.statuses)}; exits {exits(system) or 'none'}"
                           + (f"; {extra}" if extra else ""))


def assert_rode_it_out(load: Load, system: System) -> None:
    assert exits(system) == {}, {name: system.log(name)[-3000:] for name in exits(system)}
    assert load.failures == [], load.failures[:5]
    assert load.retry_after_missing == 0
    assert not any(key.startswith("5") and "not the JSON" in key for key in load.statuses)
    assert load.statuses.get("200", 0) + load.statuses.get("201", 0) > 0


# a broker restart is the costliest step of the suite (an Erlang VM boot): both cases run in
# `make test-faults`; `make test` keeps the database case (tests/unit/test_outages.py guards
# the reply path that killed services when the broker went away)
@pytest.mark.slow_fault
@pytest.mark.parametrize("how", ["stop", "kill"])
def test_broker_outage_is_503s_and_no_service_exits(healthy, private_rabbit, how):
    tenant = staff_client(healthy)
    with Load(tenant.admin, queue_of(tenant)) as load:
        time.sleep(2)
        private_rabbit.stop() if how == "stop" else private_rabbit.kill()
        time.sleep(5)
        private_rabbit.start()
        back = seconds_until_ready(healthy, 60)
        time.sleep(2)
    report(f"broker {how} 5 s", load, healthy, f"/readyz back {back if back is None else round(back, 1)} s "
                                             "after the broker")
    assert_rode_it_out(load, healthy)
    assert back is not None and back <= BROKER_BACK_READY_SECONDS
    assert any(key.startswith("503") for key in load.statuses), load.statuses


def publish_user_updates(amqp_uri: str, tenant_id: str, users: list[dict], name: str) -> None:
    """user_updated events as the accounts outbox relay would publish them: each the user's
    next version (a projection applies a change only over an older one)."""
    exchange = get_event_exchange("accounts", {})
    with Connection(amqp_uri, transport_options={"confirm_publish": True}) as connection:
        producer = connection.Producer()
        for user in users:
            producer.publish({"event_id": str(uuid.uuid4()),
                              "occurred_at": datetime.now(timezone.utc).isoformat(),
                              "tenant_id": tenant_id, "user_id": user["id"], "email": user["email"],
                              "name": name, "role": user["role"], "company_id": user["company_id"],
                              "version": user["version"] + 1},
                             exchange=exchange, routing_key="user_updated", serializer="json",
                             delivery_mode=2, retry=True)


@pytest.mark.parametrize("seconds", [15, pytest.param(60, marks=pytest.mark.slow_fault)])
def test_database_outage_is_503s_and_events_wait_for_it(healthy, private_postgres, private_rabbit, seconds):
    tenant = staff_client(healthy)
    people = [tenant.person("agent")[0] for _ in range(3)]
    dead_before = (private_rabbit_queue(healthy, DEAD_LETTER_QUEUE.name) or {}).get("messages", 0)
    renamed = f"Renamed during outage {uuid.uuid4().hex[:6]}"
    with Load(tenant.admin, queue_of(tenant)) as load:
        time.sleep(2)
        private_postgres.stop(mode="immediate")
        publish_user_updates(healthy.amqp_uri, tenant.id, people, renamed)
        time.sleep(seconds)
        private_postgres.start()
        back = seconds_until_ready(healthy, 60)
        time.sleep(2)

    def applied():
        response = tenant.admin.get("/api/assignees")
        names = {person["id"]: person["name"] for person in response.json()["items"]}
        return all(names.get(person["id"]) == renamed for person in people)

    deadline = time.monotonic() + 60
    while not applied() and time.monotonic() < deadline:
        time.sleep(0.5)
    dead_after = (private_rabbit_queue(healthy, DEAD_LETTER_QUEUE.name) or {}).get("messages", 0)
    report(f"PostgreSQL down {seconds} s", load, healthy,
           f"/readyz back {back if back is None else round(back, 1)} s after; "
           f"events applied: {applied()}; dead-lettered {dead_after - dead_before}")
    assert_rode_it_out(load, healthy)
    assert applied(), "a user_updated consumed during the outage was not applied after it"
    assert dead_after == dead_before
    assert any(key.startswith("503") for key in load.statuses), load.statuses
    queue = subscription_queue_name("tickets", "accounts", "user_updated", "on_user_updated")
    assert (private_rabbit_queue(healthy, queue) or {}).get("messages", 0) == 0


def private_rabbit_queue(system: System, name: str) -> dict | None:
    base = system.env["RABBIT_MANAGEMENT_URL"]
    try:
        response = requests.get(f"{base}/queues/{VHOST}/{requests.utils.quote(name, safe='')}",
                                auth=helpers.RABBIT_AUTH, timeout=5)
    except requests.RequestException:
        return None
    return response.json() if response.status_code == 200 else None


# issue 26: outages under an open-loop load (requests on a schedule, whatever the answers).
# 2 outages in `make test`, 10 under CHAMADOS_FAULTS=all.
OUTAGES = 10 if helpers.FAULTS_ALL else 2
OPEN_LOOP_RATE = 20  # requests per second
RPC_DEADLINE_SECONDS = 5  # the whole system's RPC_TIMEOUT_SECONDS
REDELIVERY_SETTLES_SECONDS = 20  # a redelivered create ran 13-17 s after the first


class OpenLoop:
    """Creates at a fixed rate, each with a unique marker in its subject; records every
    answer's status and time, and probes /healthz and /readyz twice a second."""

    def __init__(self, client: Client, queue_id: str, rate: float = OPEN_LOOP_RATE):
        self.client, self.queue_id, self.rate = client, queue_id, rate
        self.prefix = f"ol-{uuid.uuid4().hex[:8]}"
        self.answers: list[tuple[str, int | str, float]] = []  # marker, status, seconds
        self.probes: list[tuple[str, int | str, float]] = []  # path, status, seconds
        self.retry_after_missing = 0
        self.stopping = threading.Event()
        self.pool = ThreadPoolExecutor(max_workers=200)
        self.threads = [threading.Thread(target=self._schedule, daemon=True),
                        threading.Thread(target=self._probe, daemon=True)]

    def _create(self, marker: str) -> None:
        started = time.monotonic()
        try:
            response = requests.post(
                self.client.base_url + "/api/tickets", timeout=60,
                headers={"Authorization": f"Bearer {self.client.token}"},
                json={"subject": f"{marker} outage", "description": "x", "queue_id": self.queue_id})
            status = response.status_code
            if status == 503 and "Retry-After" not in response.headers:
                self.retry_after_missing += 1
        except requests.RequestException as exc:
            status = f"no answer: {exc.__class__.__name__}"
        self.answers.append((marker, status, time.monotonic() - started))

    def _schedule(self) -> None:
        started, sent = time.monotonic(), 0
        while not self.stopping.is_set():
            self.pool.submit(self._create, f"{self.prefix}-{sent}")
            sent += 1
            time.sleep(max(0.0, started + sent / self.rate - time.monotonic()))

    def _probe(self) -> None:
        while not self.stopping.is_set():
            for path in ("/healthz", "/readyz"):
                started = time.monotonic()
                try:
                    status = requests.get(self.client.base_url + path, timeout=15).status_code
                except requests.RequestException as exc:
                    status = exc.__class__.__name__
                self.probes.append((path, status, time.monotonic() - started))
            time.sleep(0.5)

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=30)
        self.pool.shutdown(wait=True)


def tickets_per_marker(system: System, prefix: str) -> Counter:
    from sqlalchemy import create_engine, text
    engine = create_engine(system.database_url)
    try:
        with engine.connect() as connection:
            subjects = connection.execute(text("SELECT subject FROM tickets.tickets WHERE subject LIKE :p"),
                                          {"p": f"{prefix}-%"}).scalars().all()
    finally:
        engine.dispose()
    return Counter(subject.split(" ", 1)[0] for subject in subjects)


# `make test-faults` only: it times answers (probes within 1 s), and beside make test's other
# tiers on a 2-core machine /readyz took 1.2-2.8 s waiting for CPU and a worker (3 runs of 3);
# alone it passes with no slow probe. make test keeps the broker kill of the heartbeat pipeline.
@pytest.mark.slow_fault
def test_broker_outages_under_open_load_run_each_create_once_and_answer_in_time(healthy, private_rabbit):
    """Each outage: the broker killed for 5 s at 20 creates/s. Every create makes at most one
    ticket (nameko redelivers an RPC whose ack was lost); no answer comes later than the RPC
    deadline + 1 s; /healthz and /readyz answer within 1 s throughout."""
    tenant = staff_client(healthy)
    started = time.monotonic()
    with OpenLoop(tenant.admin, queue_of(tenant)) as load:
        for outage in range(OUTAGES):
            time.sleep(3)
            private_rabbit.kill() if outage % 2 else private_rabbit.stop()
            time.sleep(5)
            private_rabbit.start()
            assert seconds_until_ready(healthy, 60) is not None
        time.sleep(REDELIVERY_SETTLES_SECONDS)
    per_marker = tickets_per_marker(healthy, load.prefix)
    duplicates = {marker: count for marker, count in per_marker.items() if count > 1}
    statuses = Counter(status for _, status, _ in load.answers)
    slowest = max(seconds for _, _, seconds in load.answers)
    slow_probes = [(path, status, round(seconds, 2)) for path, status, seconds in load.probes
                   if seconds > 1.0]
    helpers.RESULTS.append(
        f"{OUTAGES} broker outages at {OPEN_LOOP_RATE} creates/s ({time.monotonic() - started:.0f} s): "
        f"{len(load.answers)} creates, {len(per_marker)} tickets, duplicates {len(duplicates)}, "
        f"slowest answer {slowest:.1f} s, probes over 1 s {len(slow_probes)}, answers {dict(statuses)}")
    assert exits(healthy) == {}
    assert duplicates == {}, duplicates
    created = {marker for marker, status, _ in load.answers if status == 201}
    assert created <= set(per_marker), "a 201 without its ticket"
    assert slowest <= RPC_DEADLINE_SECONDS + 1, sorted(s for _, _, s in load.answers)[-10:]
    assert slow_probes == [], slow_probes[:10]
    assert load.retry_after_missing == 0
    assert not any(isinstance(status, int) and status >= 500 and status not in (503, 504)
                   for status in statuses)
