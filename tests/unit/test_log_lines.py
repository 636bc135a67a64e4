"""What a service writes when an RPC fails (issue 13, item 8): a request refused with a 4xx
domain error is one INFO line without a traceback; a real error keeps its traceback. The
records are nameko's own, from a real container running the worker, formatted by the JSON
formatter every service installs with `configure_logging`."""
import io
import logging

import eventlet
import orjson
import pytest
from nameko.containers import ServiceContainer
from nameko.extensions import Entrypoint
from nameko.testing.utils import get_extension

from sqlalchemy.exc import OperationalError

from common.errors import Conflict, NotFound, ServiceTimeout, ServiceUnavailable, Unauthorized
from common.logs import configure_logging
from common.service_base import rpc


class Sample:
    name = "sample"

    @rpc
    def transition(self):
        raise Conflict("cannot pause a PENDING ticket", code="invalid_transition",
                       details={"current_status": "PENDING"})

    @rpc
    def sign_in(self):
        raise Unauthorized("wrong email or password", code="invalid_credentials")

    @rpc
    def lookup(self):
        raise NotFound("ticket not found", code="ticket_not_found")

    @rpc
    def crash(self):
        return {}["email"]

    @rpc
    def database_down(self):
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    @rpc
    def late(self):
        raise ServiceTimeout("accounts did not answer within 10s", details={"service": "accounts"})


@pytest.fixture
def service_log():
    """configure_logging as a service runs it, writing into a buffer; the logging set-up of
    the test run is put back afterwards."""
    root = logging.getLogger()
    names = ("nameko", "nameko.containers", "kombu", "amqp", "eventlet.wsgi.server")
    saved = (root.handlers[:], root.level,
             {name: (logging.getLogger(name).level, logging.getLogger(name).filters[:]) for name in names})
    buffer = io.StringIO()

    def configure(level="INFO"):
        configure_logging("sample", level)
        (handler,) = root.handlers
        handler.setStream(buffer)  # its stdout, which pytest captures
        return buffer

    yield configure
    root.handlers[:], level, loggers = saved
    root.setLevel(level)
    for name, (logger_level, filters) in loggers.items():
        logging.getLogger(name).setLevel(logger_level)
        logging.getLogger(name).filters[:] = filters


def run_worker(method: str) -> BaseException:
    """Run one RPC worker of `Sample` in a real container (not started: no broker needed);
    the exception it ended with."""
    container = ServiceContainer(Sample, {"AMQP_URI": "memory://"})
    entrypoint = get_extension(container, Entrypoint, method_name=method)
    done = eventlet.event.Event()

    def handle_result(worker_ctx, result, exc_info):
        done.send(exc_info)
        return result, exc_info

    container.spawn_worker(entrypoint, (), {}, handle_result=handle_result)
    exc_info = done.wait(10)
    assert exc_info is not None
    return exc_info[1]


def lines(buffer: io.StringIO) -> list[dict]:
    return [orjson.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


@pytest.mark.parametrize("method, code", [
    ("transition", "invalid_transition"), ("sign_in", "invalid_credentials"), ("lookup", "ticket_not_found"),
])
def test_a_refused_request_is_one_info_line_without_a_traceback(service_log, method, code):
    buffer = service_log()
    assert getattr(run_worker(method), "code", None) == code
    written = lines(buffer)
    assert len(written) == 1, written
    (entry,) = written
    assert entry["level"] == "INFO" and entry["service"] == "sample", entry
    assert entry["message"].startswith(f"sample.{method} refused: {code}: "), entry
    assert "exception" not in entry and "Traceback" not in buffer.getvalue()


def test_a_refusal_is_not_written_when_the_level_is_warning(service_log):
    buffer = service_log("WARNING")
    run_worker("transition")
    assert buffer.getvalue() == ""


def test_a_real_error_keeps_its_traceback(service_log):
    buffer = service_log()
    assert isinstance(run_worker("crash"), KeyError)
    (entry,) = lines(buffer)
    assert entry["level"] == "ERROR" and "error handling worker" in entry["message"]
    assert entry["exception"].startswith("Traceback") and "KeyError: 'email'" in entry["exception"]


def test_a_service_that_did_not_answer_keeps_its_traceback(service_log):
    """A 5xx domain error is not the caller's mistake: where the call was made matters."""
    buffer = service_log()
    assert isinstance(run_worker("late"), ServiceTimeout)
    (entry,) = lines(buffer)
    assert entry["level"] == "WARNING" and entry["exception"].startswith("Traceback")


def test_an_unreachable_database_is_one_warning_then_info_lines(service_log, monkeypatch):
    """An outage fails every request: one WARNING per interval names it (common/outages.py),
    each request is an INFO line without a traceback, and the caller gets a 503."""
    from common import outages

    monkeypatch.setattr(outages, "throttle", outages._Throttle())
    buffer = service_log()
    errors = [run_worker("database_down") for _ in range(3)]
    assert all(isinstance(error, ServiceUnavailable) for error in errors)
    written = lines(buffer)
    assert [entry["level"] for entry in written] == ["WARNING", "INFO", "INFO", "INFO"], written
    assert "the sample database unreachable" in written[0]["message"]
    assert all("not done during an outage" in entry["message"] for entry in written[1:])
    assert "Traceback" not in buffer.getvalue()
