"""Talking to the server: registration over HTTP, heartbeats over AMQP (pika, persistent,
publisher confirms, mandatory) or the gateway's HTTP route, and the spool replay.

Every answer that crosses in is validated against chamados_protocol.heartbeat before it is
believed; extra fields are ignored (the API may add fields, API.md).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import orjson
import requests
from marshmallow import EXCLUDE, ValidationError

from chamados_agent.errors import AgentError, CredentialsRejected, MessageRejected, Unavailable
from chamados_agent.spool import Spool
from chamados_protocol import heartbeat as contract

log = logging.getLogger("chamados-agent")

HTTP_TIMEOUT = (5, 30)  # connect, read
REPLY_TIMEOUT = 5.0
CONNECT_TIMEOUT = 5.0
DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"  # RabbitMQ's pseudo-queue for answers to this channel


# --- small helpers ---------------------------------------------------------------------

def amqp_uri_problem(value: str) -> str | None:
    """Why `value` is not a broker URI the agent can use (one typed after --amqp, or the one
    the server names at registration), or None."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018
    except ValueError as exc:
        return f"not a valid URI ({exc})"
    if parts.scheme not in ("amqp", "amqps") or not parts.hostname:
        return "must be an amqp:// or amqps:// URI with a host, e.g. amqp://user:password@broker:5672/"
    return None


def mask(uri: str) -> str:
    """The URI without its password, for messages and `status`."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return "<invalid URI>"
    if parts.password is None:
        return uri
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def error_of(response: requests.Response) -> tuple[str, str, dict]:
    """(code, message, details) from the API's error shape, tolerating any other body."""
    try:
        error = response.json().get("error") or {}
        return (str(error.get("code") or f"http_{response.status_code}"),
                str(error.get("message") or response.reason or ""),
                error.get("details") if isinstance(error.get("details"), dict) else {})
    except (ValueError, AttributeError):
        return f"http_{response.status_code}", response.reason or "", {}


def field_problems(details: dict) -> str:
    fields = details.get("fields") if isinstance(details, dict) else None
    if not isinstance(fields, dict) or not fields:
        return ""
    return "; ".join(f"{name}: {problems}" for name, problems in sorted(fields.items()))


def token_rejected(code: str, message: str) -> CredentialsRejected:
    return CredentialsRejected(f"the server no longer accepts this machine's token ({code}: "
                               f"{message}); it was revoked or expired — register again with "
                               "`chamados-agent register`")


def load_answer(data) -> dict:
    """A heartbeat answer ({need_inventory, usb_policy}) or ValueError saying what is wrong."""
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    try:
        answer = contract.HeartbeatAnswer(unknown=EXCLUDE).load(data)
    except ValidationError as exc:
        raise ValueError(orjson.dumps(exc.messages).decode()) from None
    policy = answer.get("usb_policy")
    if policy is not None and policy not in contract.USB_MODES:
        raise ValueError(f"unknown usb_policy {policy!r}")
    return answer


# --- registration ----------------------------------------------------------------------

class NoHardwareIdentifier(AgentError):
    """The server found no physical MAC or real serial among what we sent."""


def register(gateway: str, payload: dict) -> dict:
    """POST /api/machines/register; the validated Enrolment (machine_id, token, expires_at,
    reused, inventory_hash, amqp_uri) as JSON-ready values."""
    url = f"{gateway}/api/machines/register"
    try:
        response = requests.post(url, json=payload, timeout=HTTP_TIMEOUT, allow_redirects=False)
    except requests.RequestException as exc:
        raise Unavailable(f"cannot reach the gateway at {gateway}: {describe(exc)}") from None
    if response.status_code == 201:
        try:
            enrolment = contract.Enrolment(unknown=EXCLUDE).load(response.json())
        except (ValueError, ValidationError) as exc:
            raise AgentError(f"the gateway's registration answer is not valid: {exc}") from None
        token = enrolment["token"]
        if not token or len(token) > 256 or any(c.isspace() or ord(c) < 32 for c in token):
            raise AgentError("the gateway returned an unusable machine token")
        held, broker = enrolment.get("inventory_hash"), enrolment.get("amqp_uri")
        return {"machine_id": str(enrolment["machine_id"]), "token": token,
                "expires_at": enrolment["expires_at"].isoformat(), "reused": enrolment["reused"],
                "inventory_hash": held if isinstance(held, str) and len(held) == 64 else None,
                "amqp_uri": broker if isinstance(broker, str) and amqp_uri_problem(broker) is None else None}
    code, message, details = error_of(response)
    if response.status_code == 401:
        if code == "invalid_provisioning_code":
            raise CredentialsRejected("the provisioning code was not accepted "
                                      "(invalid_provisioning_code): check it with your administrator; "
                                      "it changes when they rotate it")
        raise CredentialsRejected(f"the gateway refused the registration ({code}): {message}")
    if response.status_code == 422:
        fields = details.get("fields") if isinstance(details.get("fields"), dict) else {}
        if set(fields) == {"mac_addresses", "serial_numbers"} and "no physical MAC" in str(fields):
            raise NoHardwareIdentifier("no hardware identifier the server accepts")
        raise AgentError(f"the gateway rejected the registration ({code}): {message}"
                         + (f" — {field_problems(details)}" if field_problems(details) else ""))
    if response.status_code in (502, 503, 504):
        raise Unavailable(f"the gateway is up but the server is not ready ({response.status_code} {code}); "
                          "try again in a minute")
    raise AgentError(f"the gateway answered {response.status_code} ({code}): {message}"
                     + ("; is --gateway the Chamados gateway's base URL?" if response.status_code in (404, 405) else ""))


def describe(exc: BaseException) -> str:
    """A connection error in a few words: requests' and pika's messages nest deeply."""
    text = f"{exc} {exc!r}"  # pika's str() is often just the class name; repr has the cause
    for hint in ("Connection refused", "Name or service not known", "timed out", "No route to host",
                 "Temporary failure in name resolution", "certificate verify failed",
                 "Network is unreachable"):
        if hint.lower() in text.lower():
            return hint
    return repr(exc)[:300]


# --- heartbeat transports --------------------------------------------------------------

class HttpTransport:
    """POST /api/machines/heartbeat: the fallback where AMQP (5672) is blocked."""

    via = "http"

    def __init__(self, gateway: str):
        self.gateway = gateway
        self.session = requests.Session()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.session.close()

    def send(self, message_id: str, body: bytes, token: str, want_reply: bool) -> dict | None:
        try:
            response = self.session.post(
                f"{self.gateway}/api/machines/heartbeat", data=body, timeout=HTTP_TIMEOUT,
                allow_redirects=False,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                         "X-Message-Id": message_id})
        except requests.RequestException as exc:
            raise Unavailable(f"cannot reach the gateway at {self.gateway}: {describe(exc)}") from None
        if response.status_code == 202:
            try:
                return load_answer(response.json())
            except ValueError as exc:  # taken all the same: only the advice is unusable
                log.warning("the gateway's heartbeat answer is not valid (%s); ignored", exc)
                return None
        code, message, details = error_of(response)
        if response.status_code == 401:
            raise token_rejected(code, message)
        if response.status_code in (400, 413, 422):
            raise MessageRejected(f"{response.status_code} {code}: {message} {field_problems(details)}".strip())
        raise Unavailable(f"the gateway did not take the heartbeat ({response.status_code} {code})")


class AmqpTransport:
    """Publishes to the heartbeat exchange, persistent, mandatory, with publisher confirms;
    the live heartbeat carries reply_to and waits a few seconds for the server's answer, which
    comes after the heartbeat was committed. The answer comes by RabbitMQ's direct reply-to
    (`amq.rabbitmq.reply-to`): the broker routes it to this channel and nowhere else, and the
    agents' broker user needs no queue of its own (it may declare none).

    One connection per cycle: at a 5-minute interval the handshake is negligible and nothing
    long-lived can go stale behind a NAT or a laptop's sleep."""

    via = "amqp"

    def __init__(self, uri: str, reply_timeout: float = REPLY_TIMEOUT):
        import pika  # here, not at the top: `status` and `--http` never need it

        self.pika = pika
        self.uri, self.reply_timeout = uri, reply_timeout
        self.connection = self.channel = self.reply_queue = None
        self.replies: dict[str, bytes] = {}

    def __enter__(self):
        pika = self.pika
        try:
            params = pika.URLParameters(self.uri)
        except Exception as exc:  # pika raises plain ValueError/TypeError variants for bad URIs
            raise AgentError(f"invalid AMQP URI {mask(self.uri)}: {exc}") from None
        params.connection_attempts, params.retry_delay = 1, 0
        params.socket_timeout, params.stack_timeout = CONNECT_TIMEOUT, CONNECT_TIMEOUT * 2
        params.blocked_connection_timeout = 15  # a broker out of disk blocks publishers: give up, spool
        try:
            self.connection = pika.BlockingConnection(params)
            self.channel = self.connection.channel()
            self.channel.confirm_delivery()
        except pika.exceptions.ProbableAuthenticationError:
            self._close()
            raise Unavailable(f"the broker at {mask(self.uri)} refused the credentials in the AMQP URI") from None
        except pika.exceptions.ProbableAccessDeniedError:
            self._close()
            raise Unavailable(f"the broker at {mask(self.uri)} refused access to the URI's virtual host") from None
        except (pika.exceptions.AMQPError, OSError) as exc:
            self._close()
            raise Unavailable(f"broker unreachable at {mask(self.uri)}: {describe(exc)}") from None
        return self

    def __exit__(self, *exc):
        self._close()

    def _close(self):
        if self.connection is not None:
            try:
                if self.connection.is_open:
                    self.connection.close()
            except Exception:  # closing a dead connection: nothing left to save
                pass
        self.connection = self.channel = None

    def _ensure_reply_queue(self) -> str:
        if self.reply_queue is None:
            # direct reply-to: consumed without acks on the channel that publishes, before it does
            self.channel.basic_consume(DIRECT_REPLY_TO, self._on_reply, auto_ack=True)
            self.reply_queue = DIRECT_REPLY_TO
        return self.reply_queue

    def _on_reply(self, channel, method, properties, body):
        if properties.correlation_id:
            self.replies[properties.correlation_id] = body

    def send(self, message_id: str, body: bytes, token: str, want_reply: bool) -> dict | None:
        pika = self.pika
        try:
            reply_to = self._ensure_reply_queue() if want_reply else None
            self.channel.basic_publish(
                contract.HEARTBEAT_EXCHANGE, contract.HEARTBEAT_ROUTING_KEY, body,
                pika.BasicProperties(content_type="application/json", delivery_mode=2,
                                     message_id=message_id, headers={"authorization": token},
                                     reply_to=reply_to, correlation_id=message_id if want_reply else None,
                                     timestamp=int(time.time())),
                mandatory=True)  # no queue bound = not delivered (a silent drop otherwise)
        except pika.exceptions.UnroutableError:
            raise Unavailable("the broker has no queue for heartbeats (is the devices service deployed?)") from None
        except pika.exceptions.NackError:
            raise Unavailable("the broker did not confirm the heartbeat (nack)") from None
        except (pika.exceptions.AMQPError, OSError) as exc:
            raise Unavailable(f"lost the broker at {mask(self.uri)}: {describe(exc)}") from None
        if not want_reply:
            return None
        return self._await_reply(message_id)

    def _await_reply(self, message_id: str) -> dict | None:
        deadline = time.monotonic() + self.reply_timeout
        try:
            while message_id not in self.replies:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.connection.process_data_events(time_limit=min(left, 0.5))
        except (self.pika.exceptions.AMQPError, OSError) as exc:  # confirmed already: only the advice is lost
            log.warning("the broker connection closed while waiting for the answer: %s", describe(exc))
            return None
        try:
            reply = orjson.loads(self.replies.pop(message_id))
            if isinstance(reply, dict) and reply.get("error") == "invalid_token":
                # confirmed, then refused: it stays in the spool for after re-registering
                raise token_rejected("invalid_token", reply.get("message") or "unknown, revoked or expired token")
            return load_answer(reply)
        except ValueError as exc:
            log.warning("the server's reply is not valid (%s); ignored", exc)
            return None


# --- replay ----------------------------------------------------------------------------

@dataclass
class FlushResult:
    delivered: int = 0
    rejected: int = 0
    live_delivered: bool = False
    live_rejected: str | None = None  # why the server refused this cycle's own heartbeat
    answer: dict | None = None
    error: Unavailable | None = None  # set when the spool could not be emptied


def flush(spool: Spool, transport, token: str, live_message_id: str | None) -> FlushResult:
    """Send the spool oldest-first, deleting each message once it is taken; stop at the first
    that is not (order matters: the server drops a heartbeat older than one it has). Only the
    live heartbeat asks for an answer: replies to replays would be stale advice.
    CredentialsRejected propagates: nothing more can be sent with this token."""
    result = FlushResult()
    spool.trim()
    while True:
        batch = spool.pending(100)
        if not batch:
            return result
        for item in batch:
            live = item.message_id == live_message_id
            try:
                answer = transport.send(item.message_id, item.body, token, want_reply=live)
            except MessageRejected as exc:
                log.warning("the server rejected spooled heartbeat %s (%s); dropped", item.message_id, exc)
                spool.reject(item.seq)
                result.rejected += 1
                if live:
                    result.live_rejected = exc.message
                continue
            except Unavailable as exc:
                result.error = exc
                return result
            spool.remove(item.seq)
            result.delivered += 1
            if live:
                result.live_delivered, result.answer = True, answer
