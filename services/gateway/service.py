"""gateway: the HTTP API. It authenticates, validates shapes, calls services over RPC with
a deadline, and maps errors; it holds no business rule."""
from __future__ import annotations

import logging
import time
import uuid
from datetime import datetime
from urllib.parse import quote

import eventlet
import requests
from kombu import Connection
from kombu.pools import producers
from werkzeug.wrappers import Request, Response
from nameko.extensions import DependencyProvider
from nameko.rpc import RpcProxy

from common import idempotency, outages, rpc
from common.config import Settings
from common.contracts import accounts as people
from common.contracts import devices as fleet
from common.contracts import load
from common.contracts import tickets as helpdesk
from common.errors import BadRequest, Forbidden, NotFound, ServiceTimeout, Unauthorized, ValidationFailed
from common.events import SUBSCRIPTIONS
from common.messaging import (HEARTBEAT_EXCHANGE, HEARTBEAT_QUEUE, queue_depth_families,
                              subscription_queue_name)
from common.metrics import EntrypointMetrics, metrics_response, register_collector
from common.tokens import same_secret
from services.gateway import openapi
from services.gateway.auth_cache import TokenCacheProvider
from services.gateway.console.lookups import LookupsProvider, changes_what_pages_show
from services.gateway.console import web as console_web
from services.gateway.console.views import ConsoleViews
from services.gateway.deadletters import DeadLetterRoutes
from services.gateway.http import (ARRIVED_AT_ENVIRON_KEY, OPERATIONS, ROUTES, NoQuery,
                                   answer_console_errors_with, check_role, client_address, error_response,
                                   json_response, liveness, observe, parse_json_body, parse_query, route)
from services.gateway.schemas import HealthSnapshot, Readiness

log = logging.getLogger(__name__)

answer_console_errors_with(console_web.ERROR_PAGES)  # people get pages, the API JSON

STAFF = people.STAFF_ROLES
USER_ADMINS = frozenset({"admin", "manager"})
ADMIN = frozenset({"admin"})
BACKENDS = ("accounts", "tickets", "devices", "scheduler", "notifications")
ARCHIVE_TIMEOUT_SECONDS = 600.0
CRON_TIMEOUT_SECONDS = 660.0  # the longest job's own deadline, plus a margin
READYZ_SECONDS = 0.8  # /readyz answers within a second, whatever is down
# accounts operations after which a verified token may mean something else (another role,
# company, or nobody): the gateway's token cache is emptied when one succeeds
CHANGES_WHO_MAY_DO_WHAT = frozenset({"update_user", "merge_users", "change_password"})


class SettingsProvider(DependencyProvider):
    def setup(self):
        self.settings = Settings.from_mapping(self.container.config)

    def get_dependency(self, worker_ctx):
        return self.settings


def bearer_token(request) -> str:
    header = request.headers.get("Authorization", "")
    if not header:
        raise Unauthorized("sign in first: send Authorization: Bearer <token>", code="missing_token")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 256:
        raise Unauthorized("invalid or expired token", code="invalid_token")
    return token


class WorkerData(DependencyProvider):
    """The worker context's data: nameko sends it along as the headers of every RPC the
    worker makes (the callee finds it in its own worker context)."""

    def get_dependency(self, worker_ctx):
        return worker_ctx.data


class RequestArrival(DependencyProvider):
    """When the HTTP request this worker answers was read whole (time.monotonic()), or None
    outside a request: its calls share one deadline from then, so the time it waited for a
    free worker counts too (issue 26: answers came 15–27 s late after a broker outage)."""

    def get_dependency(self, worker_ctx):
        request = next((arg for arg in worker_ctx.args if isinstance(arg, Request)), None)
        return None if request is None else request.environ.get(ARRIVED_AT_ENVIRON_KEY)


def idempotency_key(request) -> str | None:
    """The request's Idempotency-Key header, if any: 1–255 visible ASCII characters."""
    key = request.headers.get(idempotency.HEADER)
    if key is not None and not idempotency.valid_key(key):
        raise BadRequest(f"{idempotency.HEADER} must be 1 to {idempotency.MAX_KEY_LENGTH} visible "
                         "ASCII characters", code="invalid_idempotency_key")
    return key


class BusGauges(DependencyProvider):
    """Queue depths on the gateway's /metrics (the gateway already talks to the broker)."""

    def setup(self):
        amqp_uri = Settings.from_mapping(self.container.config).amqp_uri
        register_collector("bus:queues", lambda: queue_depth_families(amqp_uri))


class HeartbeatPublisher(DependencyProvider):
    """Publishes agents' HTTP heartbeats to the same durable exchange AMQP agents use,
    persistent and confirmed by the broker before the route answers 202."""

    def setup(self):
        self.amqp_uri = Settings.from_mapping(self.container.config).amqp_uri

    def get_dependency(self, worker_ctx):
        return self.publish

    def publish(self, body: bytes, token: str, message_id: str) -> None:
        # known down: fail at once rather than hold a worker through retries (common/rpc.py)
        if rpc.broker_circuit.is_open():
            raise rpc.BROKER_DOWN
        try:
            self._publish(body, token, message_id)
        except Exception:
            if not outages.broker_accepts_connections(self.amqp_uri, timeout=0.5):
                rpc.broker_circuit.trip(self.amqp_uri)
            raise

    def _publish(self, body: bytes, token: str, message_id: str) -> None:
        with Connection(self.amqp_uri, connect_timeout=2,
                        transport_options={"confirm_publish": True}) as connection:
            with producers[connection].acquire(block=True, timeout=5) as producer:
                producer.publish(body, exchange=HEARTBEAT_EXCHANGE, routing_key=HEARTBEAT_QUEUE.routing_key,
                                 content_type="application/json", content_encoding="utf-8",
                                 delivery_mode=2, message_id=message_id,
                                 timestamp=int(time.time()),  # the queue's age: /readyz
                                 headers={"authorization": token}, declare=[HEARTBEAT_QUEUE],
                                 retry=True, retry_policy={"max_retries": 1, "interval_start": 0.2})


class Service(ConsoleViews, DeadLetterRoutes):
    """The JSON API at /api/, operations routes, and the console for people at /."""
    name = "gateway"
    settings = SettingsProvider()
    publish_heartbeat = HeartbeatPublisher()
    bus_gauges = BusGauges()
    worker_data = WorkerData()
    arrived_at = RequestArrival()
    entrypoint_metrics = EntrypointMetrics()
    verified_tokens = TokenCacheProvider()
    console_lookups = LookupsProvider()
    accounts = RpcProxy("accounts")
    tickets = RpcProxy("tickets")
    devices = RpcProxy("devices")
    scheduler = RpcProxy("scheduler")
    notifications = RpcProxy("notifications")  # /readyz pings it

    # plumbing ------------------------------------------------------------------------

    def operation(self, name: str, principal: dict, *, body=None, query=None, **path_values):
        """An API operation without HTTP, for the console: the route's own role check and
        schemas, then its handler (so roles and validation live in one place)."""
        spec, handler = OPERATIONS[name]
        check_role(spec, principal)
        kwargs = dict(path_values)
        if spec.body is not None:
            kwargs["body"] = body = {} if body is None else body
            load(spec.body, body)
        if spec.query is not None:
            kwargs["query"] = query = {} if query is None else query
            load(spec.query, query)
        if spec.raw:
            kwargs["request"] = None
        return handler(self, principal, **kwargs)

    def call(self, service: str, method: str, *args, timeout: float | None = None):
        """Every RPC has a deadline (the in-service proxy has none, pitfall 10), and all the
        calls of one HTTP request share RPC_TIMEOUT_SECONDS (or a longer `timeout` its route
        asks for: an archive, a cron job) from the request's arrival."""
        request_limit = max(timeout or 0, self.settings.rpc_timeout_seconds)
        timeout = timeout or self.settings.rpc_timeout_seconds
        if self.arrived_at is not None:
            left = self.arrived_at + request_limit - time.monotonic()
            if left <= 0:
                raise ServiceTimeout(f"the request waited past its {request_limit:g} s deadline",
                                     details={"service": service})
            timeout = min(timeout, left)
        answer = rpc.call(getattr(self, service), service, method, *args, timeout=timeout,
                          broker_uri=self.settings.amqp_uri)
        if service == "accounts" and method in CHANGES_WHO_MAY_DO_WHAT:
            self.verified_tokens.clear()
        return answer

    def authenticate(self, token: str) -> dict:
        """Whose token this is, from accounts, or from the last second's answer for it
        (auth_cache.py: a revoked token is refused within AUTH_CACHE_SECONDS)."""
        return self.verified_tokens.verified(token, lambda: self.call("accounts", "authenticate", token))

    def end_session(self, token: str) -> None:
        """Sign-out: revoked in accounts, forgotten here at once."""
        self.verified_tokens.forget(token)
        self.call("accounts", "sign_out", token)

    def handle_route(self, spec, handler, request, path_values):
        started = time.perf_counter()
        try:
            principal = None
            if spec.machine:  # before the body: anonymous callers learn nothing of it
                principal = self.call("devices", "heartbeat_hint", bearer_token(request))
            elif spec.roles is not None:
                principal = self.authenticate(bearer_token(request))
                check_role(spec, principal)
            kwargs = dict(path_values)
            # every state-changing request of a person is idempotent: the client's
            # Idempotency-Key, or one of our own for this HTTP request, so an RPC that nameko
            # redelivers after a broker outage replays its first answer (common/idempotency.py)
            key = (idempotency_key(request) or idempotency.fresh_key()) \
                if spec.method != "GET" and principal is not None and not spec.machine else None
            if spec.body is not None:
                kwargs["body"] = parse_json_body(request, spec.body, self.settings.max_body_bytes)
            query = parse_query(request, spec.query or NoQuery)
            if key is not None:
                self.worker_data.update({
                    idempotency.KEY_DATA: key,
                    idempotency.REQUEST_DATA: idempotency.request_fingerprint(
                        spec.method, request.full_path,
                        request.environ.get("chamados.raw_body", b""))})
            if spec.query is not None:
                kwargs["query"] = query
            try:
                result = handler(self, principal, request=request, **kwargs) if spec.raw else \
                    handler(self, principal, **kwargs)
            finally:
                if changes_what_pages_show(spec.method, principal, spec.machine):
                    self.console_lookups.clear()
            response = result if spec.raw else json_response(spec.status, result)
        except Exception as exc:
            response = error_response(exc)
        observe(spec, started, response.status_code)
        return response

    # operations ----------------------------------------------------------------------

    @route("GET", "/healthz", summary="The gateway process is alive", tag="operations",
           roles=None, raw=True)
    def healthz(self, principal, request):
        return liveness()  # answered before any worker in fact (http.answer_without_a_worker)

    @route("GET", "/readyz", summary="Broker and every service (with its database) reachable",
           tag="operations", roles=None, raw=True, response=Readiness)
    def readyz(self, principal, request):
        pool = eventlet.GreenPool()
        bus = pool.spawn(self._bus_checks)
        checks = {}
        for service, ok in zip(BACKENDS, pool.imap(self._pings, BACKENDS)):
            checks[service] = ok
        try:  # an orchestrator's probe gives up after about a second: answer within it
            with eventlet.Timeout(READYZ_SECONDS):
                checks.update(bus.wait())
        except eventlet.Timeout:
            bus.kill()
            checks.update({"broker": "unknown: no answer in time", "heartbeats": "unknown",
                           "events": "unknown"})
        ready = all(value == "ok" for value in checks.values())
        return json_response(200 if ready else 503,
                             {"status": "ready" if ready else "not_ready", "checks": checks})

    def _pings(self, service):
        try:
            self.call(service, "ping", timeout=min(READYZ_SECONDS, self.settings.rpc_timeout_seconds))
            return "ok"
        except Exception as exc:
            return getattr(exc, "code", exc.__class__.__name__)

    def _bus_checks(self) -> dict:
        """`broker`: reachable; `heartbeats`: ok, or why they are not flowing (see
        `_heartbeat_queue`); `events`: ok, or the subscriptions nobody consumes (a service
        whose consumers are down answers no event, even while its RPCs are answered by
        another replica). One connection answers all three."""
        if rpc.broker_circuit.is_open():  # answer at once while it is known to be down
            return {"broker": "unreachable: known down",
                    "heartbeats": "unknown: the broker is unreachable",
                    "events": "unknown: the broker is unreachable"}
        try:
            with Connection(self.settings.amqp_uri, connect_timeout=0.5) as connection:
                connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0.1)
                try:
                    _, waiting, consumers = connection.channel().queue_declare(
                        queue=HEARTBEAT_QUEUE.name, passive=True)
                    heartbeats = self._heartbeat_queue(waiting, consumers)
                except Exception as exc:
                    heartbeats = f"unknown: {exc.__class__.__name__}"
                events = self._event_consumers(connection)
        except Exception as exc:
            if not outages.broker_accepts_connections(self.settings.amqp_uri, timeout=0.3):
                rpc.broker_circuit.trip(self.settings.amqp_uri)
            return {"broker": f"unreachable: {exc.__class__.__name__}",
                    "heartbeats": "unknown: the broker is unreachable",
                    "events": "unknown: the broker is unreachable"}
        return {"broker": "ok", "heartbeats": heartbeats, "events": events}

    @staticmethod
    def _event_consumers(connection) -> str:
        """ok, or `no_consumer: <service.handler>, ...` for subscription queues without one."""
        idle = []
        channel = connection.channel()
        for consumer, source, event_type, method in SUBSCRIPTIONS:
            queue = subscription_queue_name(consumer, source, event_type, method)
            try:
                _, _, consumers = channel.queue_declare(queue=queue, passive=True)
            except Exception:  # not declared (never migrated): nobody consumes it either
                channel, consumers = connection.channel(), 0
            if not consumers:
                idle.append(f"{consumer}.{method}")
        return "ok" if not idle else "no_consumer: " + ", ".join(sorted(set(idle)))

    def _heartbeat_queue(self, waiting: int, consumers: int) -> str:
        """ok, or why heartbeats are not flowing: nobody consumes their queue, or its oldest
        message has waited longer than HEARTBEAT_QUEUE_MAX_AGE_SECONDS (publishers stamp
        `timestamp`; the management API knows the head's)."""
        if not consumers:
            return "no_consumer"
        if not waiting:
            return "ok"
        base, vhost, credentials = self.settings.management_api
        try:
            queue = requests.get(f"{base}/queues/{quote(vhost, safe='')}/{quote(HEARTBEAT_QUEUE.name, safe='')}",
                                 auth=credentials, timeout=2).json()
            head = queue.get("head_message_timestamp")
        except (requests.RequestException, ValueError, AttributeError):
            return "ok"  # without the management API only the consumer can be checked
        age = time.time() - head if isinstance(head, (int, float)) else 0
        limit = self.settings.heartbeat_queue_max_age_seconds
        return "ok" if age <= limit else f"stalled: the oldest heartbeat has waited {age:.0f} s (limit {limit} s)"

    @route("GET", "/metrics", summary="Prometheus metrics of the gateway process",
           tag="operations", roles=None, raw=True)
    def serve_metrics(self, principal, request):
        return metrics_response()

    @route("GET", "/api/openapi.json", summary="This API, as OpenAPI 3", tag="operations",
           roles=None, raw=True)
    def openapi_document(self, principal, request):
        return json_response(200, openapi.document(ROUTES))

    # people: sessions ----------------------------------------------------------------

    @route("POST", "/api/auth/sign-in", summary="Sign in with email and password", tag="people",
           roles=None, body=people.SignIn, response=people.Session, raw=True)
    def sign_in(self, principal, body, request, client=None):
        """The client's address goes along: accounts limits failed sign-ins per account and
        per address (429 with Retry-After). The console calls this with `client` and no
        request, and gets the session itself."""
        if request is not None:
            client = client_address(request, self.settings.trusted_proxies)
        session = self.call("accounts", "sign_in", body, client)
        return session if request is None else json_response(200, session)

    @route("POST", "/api/auth/sign-out", summary="Revoke the bearer token", tag="people",
           raw=True, status=204)
    def sign_out(self, principal, request):
        self.end_session(bearer_token(request))
        return json_response(204)

    @route("GET", "/api/me", summary="Who the bearer token belongs to", tag="people",
           response=people.User)
    def me(self, principal):
        return self.call("accounts", "get_user", principal, principal["user_id"])

    @route("POST", "/api/me/password",
           summary="Change my password (the current one first); my other sessions end",
           tag="people", body=people.PasswordChange, status=204, raw=True)
    def change_password(self, principal, body, request, client=None):
        """The client's address goes along, as for a sign-in: wrong current passwords are
        counted per account and per address."""
        if request is not None:
            client = client_address(request, self.settings.trusted_proxies)
        self.call("accounts", "change_password", principal, body, client)
        return json_response(204) if request is not None else None

    # people: companies ---------------------------------------------------------------

    @route("GET", "/api/admin/companies", summary="Every company of the tenant", tag="people",
           roles=STAFF, query=people.CompanyQuery, response=people.CompanyList)
    def list_companies(self, principal, query):
        return self.call("accounts", "list_companies", principal, query)

    @route("POST", "/api/admin/companies", summary="Create a company", tag="people",
           roles=USER_ADMINS, body=people.CompanyCreate, response=people.Company, status=201)
    def create_company(self, principal, body):
        return self.call("accounts", "create_company", principal, body)

    @route("GET", "/api/admin/companies/<company_id>", summary="One company", tag="people",
           roles=STAFF, response=people.Company)
    def get_company(self, principal, company_id):
        return self.call("accounts", "get_company", principal, company_id)

    @route("PATCH", "/api/admin/companies/<company_id>", summary="Rename a company or change its apelido",
           tag="people", roles=USER_ADMINS, body=people.CompanyUpdate, response=people.Company)
    def update_company(self, principal, company_id, body):
        return self.call("accounts", "update_company", principal, company_id, body)

    @route("GET", "/api/admin/companies/<company_id>/provisioning-code",
           summary="The company's provisioning code (admin and manager)", tag="people",
           roles=people.PROVISIONING_ROLES, response=people.ProvisioningCode)
    def get_provisioning_code(self, principal, company_id):
        return self.call("accounts", "get_provisioning_code", principal, company_id)

    @route("POST", "/api/admin/companies/<company_id>/provisioning-code",
           summary="Rotate the company's provisioning code", tag="people",
           roles=people.PROVISIONING_ROLES, response=people.Company)
    def rotate_provisioning_code(self, principal, company_id):
        return self.call("accounts", "rotate_provisioning_code", principal, company_id)

    # people: users -------------------------------------------------------------------

    @route("GET", "/api/admin/users", summary="Users of the tenant (people, machines or all)",
           tag="people", roles=STAFF, query=people.UserQuery, response=people.UserList)
    def list_users(self, principal, query):
        return self.call("accounts", "list_users", principal, query)

    @route("POST", "/api/admin/users", summary="Create a user", tag="people", roles=USER_ADMINS,
           body=people.UserCreate, response=people.User, status=201)
    def create_user(self, principal, body):
        return self.call("accounts", "create_user", principal, body)

    @route("POST", "/api/admin/users/merge", summary="Merge one account into another",
           tag="people", roles=ADMIN, body=people.UserMerge, response=people.MergeResult)
    def merge_users(self, principal, body):
        return self.call("accounts", "merge_users", principal, body)

    @route("GET", "/api/admin/users/<user_id>", summary="One user", tag="people", roles=STAFF,
           response=people.User)
    def get_user(self, principal, user_id):
        return self.call("accounts", "get_user", principal, user_id)

    @route("PATCH", "/api/admin/users/<user_id>", summary="Change a user; the id stays",
           tag="people", roles=USER_ADMINS, body=people.UserUpdate, response=people.User)
    def update_user(self, principal, user_id, body):
        return self.call("accounts", "update_user", principal, user_id, body)

    # tickets: queues -----------------------------------------------------------------

    @route("GET", "/api/queues", summary="Queues of the tenant", tag="tickets",
           response=helpdesk.QueueList)
    def list_queues(self, principal):
        return self.call("tickets", "list_queues", principal)

    @route("POST", "/api/queues", summary="Create a queue", tag="tickets", roles=USER_ADMINS,
           body=helpdesk.QueueCreate, response=helpdesk.Queue, status=201)
    def create_queue(self, principal, body):
        return self.call("tickets", "create_queue", principal, body)

    # tickets -------------------------------------------------------------------------

    @route("POST", "/api/tickets", summary="Open a ticket (queue \"Chamados\" when none given)",
           tag="tickets", body=helpdesk.TicketCreate, response=helpdesk.Ticket, status=201)
    def create_ticket(self, principal, body):
        return self.call("tickets", "create_ticket", principal, body)

    @route("GET", "/api/tickets", summary="Tickets, filtered, newest first, keyset pages",
           tag="tickets", query=helpdesk.TicketQuery, response=helpdesk.TicketList)
    def list_tickets(self, principal, query):
        return self.call("tickets", "list_tickets", principal, query)

    @route("GET", "/api/tickets/recent",
           summary="Dashboard: unassigned oldest first, then the rest newest-updated first",
           tag="tickets", query=helpdesk.RecentQuery, response=helpdesk.RecentList)
    def recent_tickets(self, principal, query):
        return self.call("tickets", "recent_tickets", principal, query)

    @route("GET", "/api/assignees", summary="Who can be responsible for a ticket (the tenant's staff)",
           tag="tickets", roles=STAFF, response=helpdesk.PersonList)
    def list_assignees(self, principal):
        return self.call("tickets", "list_assignees", principal)

    @route("GET", "/api/me/ticket-filter", summary="My default ticket-list filter (empty when none)",
           tag="tickets", response=helpdesk.SavedFilter)
    def get_saved_filter(self, principal):
        return self.call("tickets", "get_saved_filter", principal)

    @route("PUT", "/api/me/ticket-filter", summary="Save my default ticket-list filter",
           tag="tickets", body=helpdesk.SavedFilterUpdate, response=helpdesk.SavedFilter)
    def save_filter(self, principal, body):
        return self.call("tickets", "save_filter", principal, body)

    @route("DELETE", "/api/me/ticket-filter", summary="Forget my default ticket-list filter",
           tag="tickets", raw=True, status=204)
    def clear_saved_filter(self, principal, request):
        self.call("tickets", "clear_saved_filter", principal)
        return json_response(204)

    @route("GET", "/api/tickets/<ticket_id>", summary="One ticket, with worked seconds by type",
           tag="tickets", response=helpdesk.Ticket)
    def get_ticket(self, principal, ticket_id):
        return self.call("tickets", "get_ticket", principal, ticket_id)

    @route("PATCH", "/api/tickets/<ticket_id>", summary="Edit subject, description, priority, queue…",
           tag="tickets", roles=STAFF, body=helpdesk.TicketUpdate, response=helpdesk.Ticket)
    def update_ticket(self, principal, ticket_id, body):
        return self.call("tickets", "update_ticket", principal, ticket_id, body)

    @route("POST", "/api/tickets/<ticket_id>/assign", summary="Assign (or unassign with null)",
           tag="tickets", roles=STAFF, body=helpdesk.Assign, response=helpdesk.Ticket)
    def assign_ticket(self, principal, ticket_id, body):
        return self.call("tickets", "assign", principal, ticket_id, body)

    @route("POST", "/api/tickets/<ticket_id>/start", summary="Start work (opens a work session)",
           tag="tickets", roles=STAFF, body=helpdesk.Start, response=helpdesk.Ticket)
    def start_ticket(self, principal, ticket_id, body):
        return self.call("tickets", "start", principal, ticket_id, body)

    @route("POST", "/api/tickets/<ticket_id>/pause", summary="Pause work, with a reason",
           tag="tickets", roles=STAFF, body=helpdesk.Pause, response=helpdesk.Ticket)
    def pause_ticket(self, principal, ticket_id, body):
        return self.call("tickets", "pause", principal, ticket_id, body)

    @route("POST", "/api/tickets/<ticket_id>/resolve", summary="Resolve (Encerrar), optional message",
           tag="tickets", roles=STAFF, body=helpdesk.Resolve, response=helpdesk.Ticket)
    def resolve_ticket(self, principal, ticket_id, body):
        return self.call("tickets", "resolve", principal, ticket_id, body)

    @route("POST", "/api/tickets/<ticket_id>/reopen", summary="Reopen a resolved ticket",
           tag="tickets", roles=STAFF, body=helpdesk.Empty, response=helpdesk.Ticket)
    def reopen_ticket(self, principal, ticket_id, body):
        return self.call("tickets", "reopen", principal, ticket_id)

    @route("GET", "/api/tickets/<ticket_id>/comments", summary="Comments (collaborators: public only)",
           tag="tickets", response=helpdesk.CommentList)
    def list_comments(self, principal, ticket_id):
        return self.call("tickets", "list_comments", principal, ticket_id)

    @route("POST", "/api/tickets/<ticket_id>/comments", summary="Comment (staff: once assigned)",
           tag="tickets", body=helpdesk.CommentCreate, response=helpdesk.Comment, status=201)
    def add_comment(self, principal, ticket_id, body):
        return self.call("tickets", "add_comment", principal, ticket_id, body)

    @route("GET", "/api/tickets/<ticket_id>/events", summary="The ticket's timeline",
           tag="tickets", response=helpdesk.Timeline)
    def ticket_timeline(self, principal, ticket_id):
        return self.call("tickets", "timeline", principal, ticket_id)

    # live chat -----------------------------------------------------------------------

    @route("POST", "/api/tickets/<ticket_id>/chat", summary="Start a live chat on the ticket",
           tag="chat", roles=STAFF, body=helpdesk.Empty, response=helpdesk.Chat, status=201)
    def start_chat(self, principal, ticket_id, body):
        return self.call("tickets", "start_chat", principal, ticket_id)

    @route("GET", "/api/chats/<chat_id>", summary="A chat with its messages", tag="chat",
           response=helpdesk.Chat)
    def get_chat(self, principal, chat_id):
        return self.call("tickets", "get_chat", principal, chat_id)

    @route("POST", "/api/chats/<chat_id>/messages", summary="Send a chat message", tag="chat",
           body=helpdesk.ChatMessageCreate, response=helpdesk.Chat, status=201)
    def post_chat_message(self, principal, chat_id, body):
        return self.call("tickets", "post_chat_message", principal, chat_id, body)

    @route("POST", "/api/chats/<chat_id>/end", summary="End the chat (pauses with END_LIVE_CHAT)",
           tag="chat", body=helpdesk.Empty, response=helpdesk.Chat)
    def end_chat(self, principal, chat_id, body):
        return self.call("tickets", "end_chat", principal, chat_id)

    # devices: agents -------------------------------------------------------------------

    @route("POST", "/api/machines/register", summary="Enrol a machine with a provisioning code",
           tag="devices", roles=None, body=fleet.Registration, response=fleet.Enrolment, status=201)
    def register_machine(self, principal, body):
        return self.call("devices", "register", body)

    @route("POST", "/api/machines/heartbeat",
           summary="An agent's heartbeat (Bearer machine token), queued like AMQP ones",
           tag="devices", machine=True, raw=True, body=fleet.Heartbeat,
           response=fleet.HeartbeatAnswer, status=202)
    def machine_heartbeat(self, principal, request, body):
        hint = principal
        # the body as received (validated, not loaded): marshmallow parses dates the same way
        implausible = fleet.registration_problem(datetime.fromisoformat(body["sent_at"]),
                                                 datetime.fromisoformat(hint["registered_at"]))
        if implausible:  # refused here, as the consumer would dead-letter it
            raise ValidationFailed(implausible, details={"fields": {"sent_at": [implausible]}})
        message_id = request.headers.get("X-Message-Id") or str(uuid.uuid4())
        if len(message_id) > 128:
            raise ValidationFailed("X-Message-Id is too long", details={"fields": {"X-Message-Id": ["max 128"]}})
        try:
            # the bytes received, not a re-serialisation (which could outgrow the size limit)
            self.publish_heartbeat(request.environ["chamados.raw_body"], bearer_token(request),
                                   message_id)
        except Exception as exc:  # unreachable, or did not confirm: the agent sends it again
            raise outages.unavailable("the message broker", exc, log) from None
        need_inventory = body.get("inventory") is None and body.get("inventory_hash") != hint["inventory_hash"]
        return json_response(202, {"need_inventory": need_inventory, "usb_policy": hint["usb_policy"]})

    # devices: admin --------------------------------------------------------------------

    @route("GET", "/api/admin/machines", summary="Machines, by company, hostname text and status",
           tag="devices", roles=STAFF, query=fleet.MachineQuery, response=fleet.MachineList)
    def list_machines(self, principal, query):
        return self.call("devices", "list_machines", principal, query)

    @route("GET", "/api/admin/software",
           summary="Which machines have a package, at which versions (e.g. name=firefox&version_lt=128): "
                   "from the fleet's software index", tag="devices", roles=STAFF,
           query=fleet.SoftwareQuery, response=fleet.SoftwareSearch)
    def search_software(self, principal, query):
        return self.call("devices", "search_software", principal, query)

    @route("GET", "/api/admin/users/<user_id>/machines",
           summary="Machines the user is assigned to or linked with", tag="devices", roles=STAFF,
           response=fleet.UserMachines)
    def user_machines(self, principal, user_id):
        self.call("accounts", "get_user", principal, user_id)  # an unknown user is a 404, not []
        return self.call("devices", "user_machines", principal, user_id)

    @route("GET", "/api/admin/machines/<machine_id>", summary="One machine, with users, alerts, USB policy",
           tag="devices", roles=STAFF, response=fleet.Machine)
    def get_machine(self, principal, machine_id):
        return self.call("devices", "get_machine", principal, machine_id)

    @route("GET", "/api/admin/machines/<machine_id>/inventory/changes",
           summary="The machine's inventory change history, newest first: added, removed and "
                   "changed paths with their old and new values", tag="devices", roles=STAFF,
           query=fleet.InventoryChangesQuery, response=fleet.InventoryChanges)
    def inventory_changes(self, principal, machine_id, query):
        return self.call("devices", "inventory_changes", principal, machine_id, query)

    @route("GET", "/api/admin/machines/<machine_id>/inventory",
           summary="The machine's current inventory (canonical), its hash and when it last changed",
           tag="devices", roles=STAFF, response=fleet.CurrentInventory)
    def machine_inventory(self, principal, machine_id):
        return self.call("devices", "current_inventory", principal, machine_id)

    @route("GET", "/api/admin/machines/<machine_id>/metrics",
           summary="Hourly CPU and memory of the last `hours` hours (1–168, default 24)",
           tag="devices", roles=STAFF, query=fleet.MetricsQuery, response=fleet.MachineMetrics)
    def machine_metrics(self, principal, machine_id, query):
        return self.call("devices", "machine_metrics", principal, machine_id, query)

    @route("POST", "/api/admin/machines/<machine_id>/reset-agent",
           summary="Revoke every token of the machine; the agent must re-register", tag="devices",
           roles=USER_ADMINS, body=helpdesk.Empty)
    def reset_agent(self, principal, machine_id, body):
        return self.call("devices", "reset_agent", principal, machine_id)

    @route("POST", "/api/admin/machines/<machine_id>/access",
           summary="Change the assigned user (by email) and persona", tag="devices",
           roles=USER_ADMINS, body=fleet.Access, response=fleet.Machine)
    def adjust_access(self, principal, machine_id, body):
        return self.call("devices", "adjust_access", principal, machine_id, body)

    @route("PUT", "/api/admin/machines/<machine_id>/usb-policy",
           summary="Ask the agent to apply a USB mode (PENDING until acknowledged)", tag="devices",
           roles=USER_ADMINS, body=fleet.UsbPolicyRequest, response=fleet.UsbPolicy)
    def set_usb_policy(self, principal, machine_id, body):
        return self.call("devices", "set_usb_policy", principal, machine_id, body)

    @route("POST", "/api/admin/devices/links", summary="Link a user (by email) to a machine",
           tag="devices", roles=USER_ADMINS, body=fleet.LinkCreate, response=fleet.Machine, status=201)
    def add_link(self, principal, body):
        return self.call("devices", "add_link", principal, body)

    @route("DELETE", "/api/admin/devices/links", summary="Unlink a user from a machine",
           tag="devices", roles=USER_ADMINS, query=fleet.LinkQuery, response=fleet.Machine)
    def remove_link(self, principal, query):
        return self.call("devices", "remove_link", principal, query)

    # reports and archives ----------------------------------------------------------------

    @route("POST", "/api/reports/exports",
           summary="Ask for a CSV export of tickets: made at once; poll its status_url after "
                   "Retry-After seconds", tag="reports", roles=STAFF, body=helpdesk.ExportRequest,
           response=helpdesk.ExportRun, status=202, raw=True)
    def request_export(self, principal, body, request=None):
        export = self._export_links(self.call("tickets", "request_export", principal, body))
        if request is None:  # the console's call (Service.operation): the view alone
            return export
        headers = {"Location": export["status_url"]}
        if export["poll_after_seconds"] is not None:
            headers["Retry-After"] = str(export["poll_after_seconds"])
        return json_response(202, export, headers)

    @route("GET", "/api/reports/exports", summary="The tenant's recent exports, newest first",
           tag="reports", roles=STAFF, query=helpdesk.ExportQuery, response=helpdesk.ExportList)
    def list_exports(self, principal, query):
        listed = self.call("tickets", "list_exports", principal, query)
        return {**listed, "items": [self._export_links(export) for export in listed["items"]]}

    @route("GET", "/api/reports/exports/<export_id>", summary="An export's status", tag="reports",
           roles=STAFF, response=helpdesk.ExportRun)
    def get_export(self, principal, export_id):
        return self._export_links(self.call("tickets", "get_export", principal, export_id))

    @staticmethod
    def _export_links(export: dict) -> dict:
        """Where to follow an export and fetch its file (the API's paths are the gateway's)."""
        status_url = f"/api/reports/exports/{export['id']}"
        return {**export, "status_url": status_url, "download_url": f"{status_url}/download"}

    @route("GET", "/api/reports/exports/<export_id>/download", summary="The export's CSV",
           tag="reports", roles=STAFF, raw=True)
    def download_export(self, principal, request, export_id):
        export = self.call("tickets", "download_export", principal, export_id)
        return Response(export["content"], status=200, content_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{export["filename"]}"'})

    @route("POST", "/api/admin/tickets/archive-local",
           summary="Write resolved tickets older than N days to ARCHIVE_DIR (JSON lines), once",
           tag="reports", roles=ADMIN, body=helpdesk.ArchiveRequest, response=helpdesk.ArchiveResult)
    def archive_local(self, principal, body):
        return self.call("tickets", "archive_resolved", principal, body, timeout=ARCHIVE_TIMEOUT_SECONDS)

    # cron --------------------------------------------------------------------------------

    @route("POST", "/api/cron/<job>", summary="Run a scheduler job now (header x-cron-secret)",
           tag="operations", roles=None, query=helpdesk.CronQuery, raw=True)
    def run_cron_job(self, principal, request, job, query):
        """For an external crontab. Disabled (404 `cron_disabled`) unless CRON_SECRET is
        set; the secret is compared in constant time."""
        if not self.settings.cron_secret:
            # 404: this deployment has no cron route to run, and retrying will not change
            # that (503 would invite retries); not 401/403 either, which would send the
            # operator hunting for a wrong secret when none is configured. The code and the
            # message say why, and which setting turns the routes on.
            raise NotFound("cron routes are disabled: set CRON_SECRET on the gateway to enable "
                           "POST /api/cron/<job> (header x-cron-secret)", code="cron_disabled",
                           details={"setting": "CRON_SECRET"})
        if not same_secret(request.headers.get("x-cron-secret"), self.settings.cron_secret):
            raise Unauthorized("wrong or missing x-cron-secret", code="invalid_cron_secret")
        options = {"dry_run": True} if load(helpdesk.CronQuery, query)["dry_run"] else {}
        return json_response(200, self.call("scheduler", "run_job_now", job, options,
                                            timeout=CRON_TIMEOUT_SECONDS))

    # health snapshot -----------------------------------------------------------------------

    @route("GET", "/api/admin/health",
           summary="Tickets, registrations, heartbeat buckets, retention, jobs (staff or x-internal-token)",
           tag="operations", roles=None, raw=True, response=HealthSnapshot)
    def health_snapshot(self, principal, request):
        """Staff see their tenant; the internal token (INTERNAL_HEALTH_TOKEN) sees all."""
        presented = request.headers.get("x-internal-token")
        if presented is not None:
            if not same_secret(presented, self.settings.internal_health_token):
                raise Unauthorized("wrong internal token", code="invalid_internal_token")
            tenant_id, scope = None, "all"
        else:
            principal = self.authenticate(bearer_token(request))
            if principal["role"] not in STAFF:
                raise Forbidden("your role may not do this", code="forbidden_role",
                                details={"role": principal["role"]})
            tenant_id, scope = principal["tenant_id"], "tenant"
        sections = self.health_sections(tenant_id)
        failed = next((answer for answer in sections.values() if isinstance(answer, Exception)), None)
        if failed is not None:
            raise failed
        return json_response(200, {"scope": scope, **sections})

    def health_sections(self, tenant_id: str | None) -> dict:
        """The health snapshot's sections (tickets, registrations, heartbeats, retention,
        jobs), asked in parallel; a section whose service did not answer holds the error,
        so the console can still show the others."""
        def answer(service, method, *args):
            def ask():
                try:
                    return self.call(service, method, *args)
                except Exception as exc:  # a section's error is its answer
                    return exc
            return ask

        answers = rpc.together(
            tickets=answer("tickets", "ticket_counts", tenant_id),
            registrations=answer("accounts", "registration_counts", tenant_id),
            heartbeats=answer("devices", "health_buckets", tenant_id),
            jobs=answer("scheduler", "list_jobs"),
            **{f"retention:{service}": answer(service, "apply_retention", None, True, tenant_id)
               for service in ("accounts", "tickets", "devices")})
        retention = {}
        for key in [key for key in answers if key.startswith("retention:")]:
            answer = answers.pop(key)
            if isinstance(answer, Exception):
                retention = answer
            elif isinstance(retention, dict):
                retention.update(answer["kinds"])
        jobs = answers["jobs"]
        if not isinstance(jobs, Exception):
            jobs = [{key: job[key] for key in ("name", "enabled", "interval_seconds", "cron", "running",
                                                "last_run")} for job in jobs]
        return {"tickets": answers["tickets"], "registrations": answers["registrations"],
                "heartbeats": answers["heartbeats"], "retention": retention, "jobs": jobs}
