"""common/outages.py and common/nameko_outages.py: which errors are outages, one warning per
interval, and a reply the broker cannot take not killing the service."""
import logging
import time

import pytest
from kombu.exceptions import OperationalError as KombuOperationalError
from nameko.rpc import RpcConsumer
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from common import nameko_outages, outages
from common.errors import ServiceUnavailable


def sqlalchemy_error(cls, invalidated=False):
    return cls("SELECT 1", {}, Exception("boom"), connection_invalidated=invalidated)


def test_unreachable_database_is_an_outage_and_a_refusal_is_not():
    assert outages.is_database_outage(sqlalchemy_error(OperationalError))
    assert outages.is_database_outage(sqlalchemy_error(ProgrammingError, invalidated=True))
    assert not outages.is_database_outage(sqlalchemy_error(IntegrityError))
    assert not outages.is_database_outage(ValueError("bad payload"))


def test_broker_errors_are_outages():
    assert outages.is_outage(KombuOperationalError("[Errno 111] ECONNREFUSED"))
    assert outages.is_outage(ConnectionResetError())
    assert not outages.is_outage(KeyError("user_id"))


def test_unavailable_names_the_dependency_and_when_to_retry():
    error = outages.unavailable("the tickets database", sqlalchemy_error(OperationalError))
    assert isinstance(error, ServiceUnavailable)
    assert error.code == "service_unavailable"
    assert error.details == {"dependency": "the tickets database",
                             "retry_after_seconds": outages.RETRY_AFTER_SECONDS}


def test_one_warning_per_interval_then_a_count_of_the_rest(monkeypatch, caplog):
    clock = {"now": 1000.0}
    monkeypatch.setattr(outages.time, "monotonic", lambda: clock["now"])
    throttle = outages._Throttle(every=30)
    logger = logging.getLogger("test.outages")
    with caplog.at_level(logging.WARNING, logger="test.outages"):
        for _ in range(5):
            throttle.warn(logger, "db", "down: %s", "x")
        clock["now"] += 31
        throttle.warn(logger, "db", "down: %s", "x")
        throttle.warn(logger, "broker", "broker down")
    messages = [record.getMessage() for record in caplog.records]
    assert messages == ["down: x", "down: x (4 more like it in the last 30 s)", "broker down"]


def test_a_reply_the_broker_cannot_take_does_not_escape_the_worker(monkeypatch):
    """nameko let it kill the container (the process exited in 9 of 10 broker outages)."""
    assert RpcConsumer.handle_result.__name__ == "handle_result_riding_out_outages"

    def failing(self, message, result, exc_info):
        raise KombuOperationalError("[Errno 111] ECONNREFUSED")

    guarded = nameko_outages._reply_or_forget(failing)
    assert guarded(object(), "message", {"ok": True}, None) == ({"ok": True}, None)

    def buggy(self, message, result, exc_info):
        raise RuntimeError("a defect")

    with pytest.raises(RuntimeError):
        nameko_outages._reply_or_forget(buggy)(object(), "message", None, None)


def test_a_known_down_broker_fails_calls_at_once_until_its_port_accepts_again():
    import socket as socket_module

    import eventlet as eventlet_module

    from common import rpc as rpc_module
    from common.errors import ServiceUnavailable as Unavailable

    listener = socket_module.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    uri = f"amqp://guest:guest@127.0.0.1:{port}//"
    circuit = rpc_module.broker_circuit

    class NeverCalled:
        def __getattr__(self, name):
            raise AssertionError("a call reached the proxy while the broker was known down")

    try:
        circuit.trip(uri)  # nothing listens yet: the probe keeps it open
        eventlet_module.sleep(circuit.PROBE_EVERY_SECONDS * 2)
        started = time.monotonic()
        with pytest.raises(Unavailable):
            rpc_module.call(NeverCalled(), "tickets", "create", timeout=5, broker_uri=uri)
        assert time.monotonic() - started < 0.1
        listener.listen()
        eventlet_module.sleep(circuit.PROBE_EVERY_SECONDS * 3)
        assert not circuit.is_open()
    finally:
        circuit.reset()
        listener.close()


def test_kombu_connection_lost_is_one_line_without_traceback(caplog):
    import kombu.mixins

    # kombu.mixins.warn is common.nameko_outages' since common.bootstrap (tests/conftest.py)
    from common.outages import throttle

    throttle.last.pop("consumer-connection-lost", None)
    try:
        raise ConnectionResetError(104, "Connection reset by peer")
    except ConnectionResetError:
        kombu.mixins.warn("Connection to broker lost, trying to re-establish connection...", exc_info=1)
    records = [r for r in caplog.records if "Connection to broker lost" in r.getMessage()]
    assert len(records) == 1 and records[0].exc_info is None
    assert "ConnectionResetError" in records[0].getMessage()
