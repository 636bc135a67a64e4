"""The gateway's answer headers (nosniff, no-store, CORS), the CORS setting, and what
eventlet's HTTP parser refuses answered as JSON (services/gateway/http.py)."""
import socket

import eventlet
import orjson
import pytest
from eventlet import wsgi
from werkzeug.wrappers import Response

from common.config import ConfigError, Settings
from services.gateway.responses import CORS_ALLOW_HEADERS, Cors, add_answer_headers, is_api_path, json_response
from services.gateway.server import JsonErrorProtocol

ORIGIN = "https://app.example.com"


# --- the setting ---------------------------------------------------------------------------

def test_cors_is_off_by_default():
    assert Settings.from_mapping({}).cors_allowed_origins == ()
    assert Settings.from_mapping({"CORS_ALLOWED_ORIGINS": " "}).cors_allowed_origins == ()


def test_cors_origins_are_exact_and_comma_separated():
    settings = Settings.from_mapping({"CORS_ALLOWED_ORIGINS":
                                      "https://app.example.com, http://localhost:5173,,HTTPS://App.Example.com"})
    assert settings.cors_allowed_origins == ("https://app.example.com", "http://localhost:5173")


@pytest.mark.parametrize("value", ["*", "app.example.com", "https://app.example.com/", "ftp://x.com",
                                   "https://app.example.com/path", "https://", "https://x.com:0",
                                   "https://x.com:99999", "https://user@x.com", "null"])
def test_a_malformed_origin_stops_start_up_naming_the_setting(value):
    with pytest.raises(ConfigError, match="CORS_ALLOWED_ORIGINS"):
        Settings.from_mapping({"CORS_ALLOWED_ORIGINS": value})


# --- answer headers ------------------------------------------------------------------------

def test_api_paths():
    assert is_api_path("/api") and is_api_path("/api/me")
    assert not is_api_path("/apis") and not is_api_path("/healthz") and not is_api_path("/")


@pytest.mark.parametrize("path", ["/api/me", "/healthz", "/metrics"])
def test_every_answer_outside_the_console_is_nosniff_and_no_store(path):
    response = add_answer_headers(json_response(200, {"a": 1}), path, None, Cors())
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"
    assert "Access-Control-Allow-Origin" not in response.headers and "Vary" not in response.headers


def test_an_allowed_origin_gets_itself_back_on_api_answers_only():
    cors = Cors([ORIGIN])
    api = add_answer_headers(json_response(200, {}), "/api/me", ORIGIN, cors)
    assert api.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert api.headers["Vary"] == "Origin"
    assert {"Retry-After", "Location"} <= {h.strip() for h in api.headers["Access-Control-Expose-Headers"].split(",")}
    health = add_answer_headers(json_response(200, {}), "/healthz", ORIGIN, cors)
    assert "Access-Control-Allow-Origin" not in health.headers


@pytest.mark.parametrize("origin", [None, "https://evil.example.com", "https://app.example.com.evil.com",
                                    "http://app.example.com", "null"])
def test_another_origin_gets_no_cors_headers(origin):
    response = add_answer_headers(json_response(200, {}), "/api/me", origin, Cors([ORIGIN]))
    assert "Access-Control-Allow-Origin" not in response.headers
    assert response.headers["Vary"] == "Origin"  # the answer depends on it all the same


def test_vary_keeps_what_was_there():
    response = Response(b"", headers={"Vary": "Accept-Encoding"})
    add_answer_headers(response, "/api/me", ORIGIN, Cors([ORIGIN]))
    assert response.headers["Vary"] == "Accept-Encoding, Origin"


# --- preflight -----------------------------------------------------------------------------

def test_a_preflight_from_an_allowed_origin_is_204_with_the_paths_methods():
    response = Cors([ORIGIN]).preflight(ORIGIN, {"GET", "HEAD", "PATCH", "OPTIONS"})
    assert response.status_code == 204 and response.get_data() == b""
    assert response.headers["Access-Control-Allow-Methods"] == "GET, HEAD, PATCH"
    assert response.headers["Access-Control-Allow-Headers"] == CORS_ALLOW_HEADERS
    assert {"Authorization", "Content-Type", "Idempotency-Key"} <= {
        h.strip() for h in CORS_ALLOW_HEADERS.split(",")}
    assert int(response.headers["Access-Control-Max-Age"]) > 0


@pytest.mark.parametrize("cors", [Cors(), Cors([ORIGIN])], ids=["cors off", "another origin"])
def test_a_preflight_from_an_origin_not_allowed_is_403_in_the_error_shape(cors):
    response = cors.preflight("https://evil.example.com", {"GET"})
    assert response.status_code == 403
    error = orjson.loads(response.get_data())["error"]
    assert error["code"] == "cors_origin_not_allowed" and set(error) == {"code", "message", "details"}


def test_options_on_an_unknown_path_is_404_and_without_origin_answers_allow():
    assert Cors([ORIGIN]).preflight(ORIGIN, []).status_code == 404
    plain = Cors().preflight(None, {"POST"})
    assert plain.status_code == 204 and plain.headers["Allow"] == "POST, OPTIONS"


# --- eventlet's parser, answered as JSON -----------------------------------------------------

@pytest.fixture(scope="module")
def parser_server():
    """eventlet's WSGI server with the gateway's protocol and an app that answers 200."""
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b"{}"]

    sock = eventlet.listen(("127.0.0.1", 0))
    server = eventlet.spawn(wsgi.server, sock, app, protocol=JsonErrorProtocol, log_output=False)
    yield sock.getsockname()
    server.kill()
    sock.close()


def exchange(address, request: bytes) -> tuple[int, dict, bytes]:
    with socket.create_connection(address, timeout=5) as client:
        client.sendall(request)
        received = b""
        while True:
            chunk = client.recv(65536)
            if not chunk:
                break
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def assert_json_error(answer, status: int, code: str):
    got_status, headers, body = answer
    assert got_status == status, answer
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Content-Type-Options"] == "nosniff" and headers["Cache-Control"] == "no-store"
    assert int(headers["Content-Length"]) == len(body)
    error = orjson.loads(body)["error"]
    assert error["code"] == code and set(error) == {"code", "message", "details"}
    return error


def test_a_good_request_still_passes(parser_server):
    status, _, body = exchange(parser_server, b"GET /api/me HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert (status, body) == (200, b"{}")


@pytest.mark.parametrize("length", [8200, 20000, 200_000])
def test_a_url_over_8_kb_is_414_json(parser_server, length):
    request = b"GET /api/" + b"x" * length + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    assert_json_error(exchange(parser_server, request), 414, "uri_too_long")


def test_too_many_headers_is_431_json(parser_server):
    headers = b"".join(b"X-H%d: v\r\n" % i for i in range(150))
    assert_json_error(exchange(parser_server, b"GET /api/me HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n"),
                      431, "headers_too_large")


@pytest.mark.parametrize("headers", [b"X-Big: " + b"y" * 9000 + b"\r\n",
                                     b"".join(b"X-H%d: " % i + b"y" * 8000 + b"\r\n" for i in range(9))],
                         ids=["a line over 8 KB", "over 64 KB in all"])
def test_headers_too_large_are_431_json(parser_server, headers):
    assert_json_error(exchange(parser_server, b"GET /api/me HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n"),
                      431, "headers_too_large")


@pytest.mark.parametrize("request_bytes, status, code", [
    (b"GET /api/me HTTP/1.1 extra\r\n\r\n", 400, "bad_request"),
    (b"GET /api/me FTP/1.1\r\n\r\n", 400, "bad_request"),
    (b"GET /api/me HTTP/3.0\r\n\r\n", 505, "http_version_not_supported"),
    (b"POST /api/me HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400, "bad_request"),
    (b"POST /api/me HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400, "bad_request"),
    (b"POST /api/me HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n{}",
     400, "bad_request"),
], ids=["request line", "not HTTP", "HTTP/3", "negative length", "length not a number",
        "length and chunked"])
def test_other_parser_refusals_are_json(parser_server, request_bytes, status, code):
    assert_json_error(exchange(parser_server, request_bytes), status, code)
