"""Fixtures of the fault suite: ONE private RabbitMQ node and ONE private PostgreSQL cluster
per session (the machine's shared ones are never touched), the devices service running
against them, and a per-case reset to a healthy pipeline. They are package-scoped: set up by
the first fault case, torn down — on failure too — after the last one, so a whole `make test`
session does not keep them idling through the other packages. Long cases are skipped unless
CHAMADOS_FAULTS=all. Without the server binaries the cases skip with the reason, except under
CHAMADOS_FAULTS_REQUIRED=1 (`make test`, `make test-faults`), where they fail."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from tests.faults import helpers
from tests.harness import PostgresServer, System

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE not in Path(str(item.fspath)).resolve().parents:
            continue
        item.add_marker(pytest.mark.faults)
        if item.get_closest_marker("slow_fault") and not helpers.FAULTS_ALL:
            item.add_marker(pytest.mark.skip(reason=helpers.LONG_CASE_SKIP))


def pytest_terminal_summary(terminalreporter):
    if helpers.RESULTS or helpers.INFRA_NOTES:
        terminalreporter.section("heartbeat pipeline under faults")
        for line in helpers.INFRA_NOTES + helpers.RESULTS:
            terminalreporter.write_line(line)


def unavailable(reason: str) -> None:
    if helpers.REQUIRED:
        pytest.fail(f"{reason}; CHAMADOS_FAULTS_REQUIRED=1: the fault tier may not skip", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="package")
def fault_workdir():
    for leftover in helpers.reap_leftovers():
        helpers.INFRA_NOTES.append(f"removed the leftovers of a killed fault run: {leftover}")
    root = helpers.make_workdir()
    yield root
    if helpers.KEEP_WORKDIR:
        print(f"fault suite files kept in {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="package")
def private_rabbit(fault_workdir):
    missing = helpers.PrivateRabbit.missing()
    if missing:
        unavailable(missing)
    rabbit = helpers.PrivateRabbit(fault_workdir / "rabbitmq")
    try:
        seconds = rabbit.start()
        helpers.INFRA_NOTES.append(f"private RabbitMQ node {rabbit.node} on :{rabbit.port} "
                                   f"booted in {seconds:.1f}s (with its management plugin)")
        yield rabbit
    finally:
        rabbit.close()
        if len(rabbit.boots) > 1:
            helpers.INFRA_NOTES.append("RabbitMQ boots: " + ", ".join(f"{s:.1f}s" for s in rabbit.boots))


@pytest.fixture(scope="package")
def private_postgres(fault_workdir):
    missing = helpers.PrivatePostgres.missing()
    if missing:
        unavailable(missing)
    postgres = helpers.PrivatePostgres(fault_workdir / "postgres")
    try:
        started = time.monotonic()
        postgres.init()
        initialised = time.monotonic() - started
        seconds = postgres.start()
        helpers.INFRA_NOTES.append(f"private PostgreSQL on :{postgres.port}: initdb {initialised:.1f}s, "
                                   f"start {seconds:.1f}s")
        yield postgres
    finally:
        postgres.close()


@pytest.fixture(scope="package")
def fault_pipeline(private_rabbit, private_postgres, fault_workdir):
    server = PostgresServer(private_postgres.admin_url)
    _, database_url = server.create_database()
    system = System(database_url=database_url, amqp_uri=private_rabbit.amqp_uri,
                    workdir=fault_workdir / "system", services=("devices",))
    try:
        started = time.monotonic()
        system.start()
        helpers.INFRA_NOTES.append(f"migrate + devices ready in {time.monotonic() - started:.1f}s")
        pipeline = helpers.Pipeline(private_rabbit, private_postgres, system, database_url, fault_workdir)
        yield pipeline
    finally:
        system.stop()
        server.engine.dispose()


@pytest.fixture
def pipeline(fault_pipeline):
    """A healthy pipeline at the start of each case; no publisher or extra replica after it."""
    fault_pipeline.ensure_healthy()
    try:
        yield fault_pipeline
    finally:
        fault_pipeline.end_case()
