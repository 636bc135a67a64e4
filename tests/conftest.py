"""Test harness: a fresh PostgreSQL database and RabbitMQ vhost per run, and the six
services started as real processes against them (tests/e2e, tests/integration)."""
import warnings

warnings.filterwarnings("ignore", message="(?s).*Eventlet is deprecated")
warnings.filterwarnings("ignore", message="pkg_resources is deprecated")

import eventlet  # noqa: E402

eventlet.monkey_patch()  # first thing (ENGINEERING.md pitfall 4)

from common import bootstrap  # noqa: E402

bootstrap.install()  # as every process of the project (common/bootstrap.py)

import pytest  # noqa: E402

collect_ignore = ["browser"]  # its own pytest run, without eventlet (tests/browser/conftest.py)

from tests.harness import (Client, PostgresServer, RabbitVhost, System,  # noqa: E402
                           new_tenant)


@pytest.fixture(scope="session")
def postgres():
    return PostgresServer.find()


@pytest.fixture(scope="session")
def database_url(postgres):
    """A database of this run's own, migrated; dropped at the end."""
    name, url = postgres.create_database()
    yield url
    postgres.drop_database(name)


@pytest.fixture(scope="session")
def amqp_uri():
    """A vhost of this run's own, so runs never see each other's messages."""
    vhost = RabbitVhost.create()
    yield vhost.amqp_uri
    vhost.delete()


@pytest.fixture(scope="session")
def smtp_server(tmp_path_factory):
    """A real SMTP server (aiosmtpd) the session's system mails through; tests read what it
    received (tests/support/smtp.py)."""
    from tests.support.smtp import SmtpServerProcess

    server = SmtpServerProcess(tmp_path_factory.mktemp("mails"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def system(database_url, amqp_uri, smtp_server, tmp_path_factory):
    """All six services running as processes, as `chamados up` runs them."""
    running = System(database_url=database_url, amqp_uri=amqp_uri,
                     workdir=tmp_path_factory.mktemp("system"),
                     extra_env={"SMTP_URL": smtp_server.url, "MAIL_FROM": "Chamados <chamados@empresa.test>"})
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def rpc(system):
    from nameko.standalone.rpc import ClusterRpcProxy

    with ClusterRpcProxy({"AMQP_URI": system.amqp_uri}, timeout=30) as proxy:
        yield proxy


@pytest.fixture
def tenant(system, rpc):
    """A tenant of the test's own with a signed-in admin: tests never see each other's rows."""
    return new_tenant(system, rpc)


@pytest.fixture
def anonymous(system):
    return Client(system.base_url)


@pytest.fixture(scope="module")
def private_database(postgres):
    """A migrated database no running service touches (for tests that drive the outbox
    relay or the engine themselves)."""
    from common.config import Settings
    from common.migrate import upgrade

    name, url = postgres.create_database()
    upgrade(Settings(database_url=url))
    yield url
    postgres.drop_database(name)
