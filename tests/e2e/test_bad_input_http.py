"""Slow and broken HTTP clients, over raw sockets, against a gateway of this module's own.

Ten connections that sent their headers and part of a body used to hold the gateway's ten
workers for as long as they stayed open: the API, the console and /healthz stopped answering
before any authentication (issue 26). Now a body is read before a worker is taken, within a
deadline; the request line and headers have a deadline of their own; and one client address
may hold only so many connections at once.

Attackers connect from other loopback addresses (127.0.0.2 and up: the whole 127/8 is this
machine) so that the per-address cap is about them, not about the test's own requests.
"""
from __future__ import annotations

import socket
import time
from contextlib import ExitStack

import orjson
import pytest
import requests

from tests.harness import Client, System, new_tenant, private_system

pytestmark = pytest.mark.e2e

HEADER_SECONDS, BODY_SECONDS, PER_CLIENT = 3, 3, 30
SLOW_CONNECTIONS = 500


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, postgres):
    with private_system(postgres, tmp_path_factory.mktemp("slow-clients"), extra_env={
            "HTTP_HEADER_TIMEOUT_SECONDS": str(HEADER_SECONDS), "HTTP_BODY_TIMEOUT_SECONDS": str(BODY_SECONDS),
            "HTTP_CONNECTIONS_PER_CLIENT": str(PER_CLIENT)}) as (system, rpc):
        yield system, new_tenant(system, rpc)


def connect(system: System, source: str) -> socket.socket:
    sock = socket.socket()
    sock.bind((source, 0))
    sock.settimeout(5)
    sock.connect(("127.0.0.1", system.gateway_port))
    return sock


def slow_body(sock: socket.socket) -> None:
    """Headers in full, then 10 of the 1,000 bytes the body is said to have."""
    sock.sendall(b"POST /api/auth/sign-in HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 1000\r\n\r\n" + b'{"email": ')


def slow_headers(sock: socket.socket) -> None:
    """A request line and one header, and never the blank line that ends them."""
    sock.sendall(b"GET /api/me HTTP/1.1\r\nHost: x\r\n")


def answer_of(sock: socket.socket, wait: float) -> bytes:
    """What the server sent before closing, or before `wait` seconds passed."""
    sock.settimeout(wait)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except (socket.timeout, ConnectionResetError):
        pass
    return received


def timed(call) -> tuple[float, int]:
    started = time.monotonic()
    response = call()
    return time.monotonic() - started, response.status_code


def test_500_slow_clients_hold_no_worker_and_everyone_else_is_answered_within_a_second(gateway):
    system, tenant = gateway
    person = Client(system.base_url, tenant.admin.token)
    with ExitStack() as stack:
        slow = []
        for index in range(SLOW_CONNECTIONS):
            # 25 addresses of 20 connections each: under the per-address cap
            sock = stack.enter_context(connect(system, f"127.0.0.{2 + index // 20}"))
            (slow_body if index % 2 else slow_headers)(sock)
            slow.append(sock)
        opened = time.monotonic()
        answers = []
        while time.monotonic() - opened < HEADER_SECONDS - 1:
            answers.append(("/healthz",) + timed(lambda: requests.get(f"{system.base_url}/healthz", timeout=10)))
            answers.append(("/api/me",) + timed(lambda: person.get("/api/me")))
            answers.append(("console /",) + timed(lambda: requests.get(f"{system.base_url}/", timeout=10,
                                                                        allow_redirects=False)))
            answers.append(("sign-in",) + timed(lambda: Client(system.base_url).post("/api/auth/sign-in", json={
                "email": tenant.admin_email, "password": tenant.admin_password, "tenant": tenant.slug})))
        assert len(answers) >= 8, answers
        assert all(status == 200 for _, _, status in answers), answers
        slowest = max(answers, key=lambda answer: answer[1])
        assert slowest[1] < 1.0, f"the slowest answer took {slowest[1]:.2f} s ({slowest[0]})"
        # and every slow client is cut off once its deadline passed (the body's after its headers')
        cut = [answer_of(sock, HEADER_SECONDS + BODY_SECONDS + 5) for sock in slow]
    bodies = [answer for index, answer in enumerate(cut) if index % 2]
    assert all(b" 408 " in answer.split(b"\r\n", 1)[0] for answer in bodies), set(
        answer[:40] for answer in bodies)
    assert all(b'"request_timeout"' in answer for answer in bodies)
    headers = [answer for index, answer in enumerate(cut) if not index % 2]
    assert all(answer.startswith(b"HTTP/1.1 408 ") for answer in headers), set(answer[:40] for answer in headers)


def test_a_client_trickling_its_headers_is_cut_at_the_deadline(gateway):
    system, _ = gateway
    with connect(system, "127.0.0.200") as sock:
        started = time.monotonic()
        for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 40:
            try:
                sock.sendall(bytes([byte]))
            except OSError:  # closed on us: the deadline passed
                break
            time.sleep(0.2)
        answer = answer_of(sock, 5)
        took = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert HEADER_SECONDS - 0.5 < took < HEADER_SECONDS + 3, took
    error = orjson.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]
    assert error["code"] == "request_timeout" and error["details"]["seconds"] == HEADER_SECONDS


def test_connections_past_the_cap_of_one_address_are_refused_at_once(gateway):
    system, _ = gateway
    with ExitStack() as stack:
        held = [stack.enter_context(connect(system, "127.0.1.1")) for _ in range(PER_CLIENT)]
        for sock in held:
            slow_headers(sock)
        time.sleep(0.5)  # every one of them accepted and counted
        one_more = stack.enter_context(connect(system, "127.0.1.1"))
        started = time.monotonic()
        answer = answer_of(one_more, 5)
        assert time.monotonic() - started < 1.5
        assert answer.startswith(b"HTTP/1.1 429 "), answer
        assert b"Retry-After: " in answer and b'"too_many_connections"' in answer
        # another address is not held back by that one
        assert requests.get(f"{system.base_url}/healthz", timeout=5).status_code == 200


@pytest.mark.parametrize("chunks", [b"ZZ\r\nabc\r\n0\r\n\r\n", b"3\r\nabc\r\nXYZ\r\nabc\r\n0\r\n\r\n",
                                    b"3\r\nabc\r\n0x\r\n\r\n"])
def test_a_malformed_chunked_body_is_400(gateway, chunks):
    system, _ = gateway
    with connect(system, "127.0.0.1") as sock:
        sock.sendall(b"POST /api/auth/sign-in HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n" + chunks)
        answer = answer_of(sock, 5)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), answer
    assert b"Traceback" not in answer
    assert orjson.loads(body)["error"]["code"] == "malformed_chunked_body"


def test_a_well_formed_chunked_body_still_reaches_its_route(gateway):
    system, tenant = gateway
    body = orjson.dumps({"email": tenant.admin_email, "password": tenant.admin_password,
                         "tenant": tenant.slug})
    with connect(system, "127.0.0.1") as sock:
        sock.sendall(b"POST /api/auth/sign-in HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                     + b"%x\r\n" % 10 + body[:10] + b"\r\n" + b"%x\r\n" % (len(body) - 10) + body[10:]
                     + b"\r\n0\r\n\r\n")
        answer = answer_of(sock, 10)
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:300]
    assert b'"token"' in answer
