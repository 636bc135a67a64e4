"""api: the JSON API's everyday routes over a tenant of 100,000 tickets (console's seed) at 8
connections, against a bare nameko HTTP entrypoint making one RPC to an echo service
(bench/echo.py, two processes of its own on the same vhost) in the same run.

Routes: `echo` (the baseline) and the gateway's `/healthz` (reported), then
`list` (`GET /api/tickets?status=AWAITING_ATTENDANCE&queue_id=<Chamados>&limit=50`, "em
andamento" in the busiest queue), `recent` (`GET /api/tickets/recent`), `search`
(`GET /api/tickets?q=<a word in ~1 % of subjects>&limit=50`), `create` (`POST /api/tickets`),
`transition` (`POST /api/tickets/{id}/start` and `/pause` alternating on each of
`transition_tickets` tickets opened for it: each thread of wrk — each connection of the Python
client — owns its share of them and cycles through it, so a ticket's next transition is sent
only after its previous one was answered; before each run the tickets' states are read so
each run starts with the right one) and `register` (`POST /api/machines/register` with a
company's provisioning code, each request a new machine: hostname, serial number and
collaborator unique per run, thread and counter).

Each route is loaded for `seconds` (after an unrecorded warm-up of each), the order reversed
every other repetition. Goals are on the load generator's p99 (end to end); the gateway's own
p99 (its histogram, as console measures it) and the RPCs each route made (`rpc_breakdown`)
are reported beside. The peak RSS of the gateway and of each backend process is sampled
through every recorded run.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import requests
from sqlalchemy.engine import make_url

from bench.console import (ADMIN_EMAIL, ADMIN_PASSWORD, SEARCH_WORD, ensure_queues, entrypoints, figures,
                           rpc_breakdown, scrape, seed, server_side, settle, start_everything)
from bench.core import BenchFailure, CpuMeter, PeakRss, Stack, log, median, ratio, saturated, target
from bench.httpload import LUA_DONE, FixedRequest, _lua_string, load_generator, run_python, run_wrk
from common.config import ROOT, SERVICE_NAMES
from tests.harness import free_port_block

NAME = "api"
SUMMARY = ("JSON API (list, recent, search, create, start/pause, machine registration) over N tickets at "
           "8 connections vs a bare nameko HTTP->RPC echo: req/s, p99, server p99, RPCs, RSS")
FULL = {"tickets": 100_000, "requesters": 300, "agents": 20, "companies": 40, "queues": 4,
        "connections": 8, "seconds": 10, "settle_seconds": 1.0, "warmup_seconds": 2,
        "transition_tickets": 64, "wrk_threads": 2, "install_wrk": 1, "load_generator": "auto", "profile": "",
        "routes": "all"}
SMOKE = {"tickets": 300, "requesters": 12, "agents": 3, "companies": 4, "queues": 2,
         "connections": 4, "seconds": 1, "settle_seconds": 0.2, "warmup_seconds": 0,
         "transition_tickets": 16, "wrk_threads": 2, "install_wrk": 0, "load_generator": "auto", "profile": "",
         "routes": "all"}
# route: (minimum share of echo's req/s, p99 ms goal) — None: no goal of that kind
GOALS = {"list": (0.5, 100), "recent": (0.5, 100), "search": (None, 150), "create": (0.3, 150),
         "transition": (0.3, 150)}
REGISTER_RATE = 50
RSS_MB = 150
ECHO, HEALTHZ = "echo", "healthz"
ROUTES = (ECHO, HEALTHZ, "list", "recent", "search", "create", "transition", "register")
BACKENDS = tuple(name for name in SERVICE_NAMES if name != "gateway")
ECHO_PROCESSES = ("echo_service", "echo_gateway")
WINDOWS = {"name": "Windows 11 Pro", "version": "11", "build": "26100", "arch": "x86_64"}
START_BODY, PAUSE_BODY = '{"work_type": "INTERNAL"}', '{"reason": "IN_PROCEDURE"}'


@dataclass
class Route:
    name: str
    method: str
    path: str
    labels: tuple = ()  # (route label in the gateway's metrics, method, status of a success)
    headers: dict = field(default_factory=dict)
    body: str | None = None


# --- requests built per request (wrk Lua and the Python client alike) -------------------------

class TransitionFeed:
    """Connection c of C owns tickets i ≡ c (mod C) and cycles through them; ticket i's k-th
    request is start when (first[i] + k) is even, else pause."""

    def __init__(self, ids: list[str], first: list[int], auth: str):
        self.ids, self.first, self.auth = ids, first, auth

    def request(self, connection_index: int, connections: int, counter: int):
        mine = (len(self.ids) - connection_index - 1) // connections + 1
        slot, round_ = counter % mine, counter // mine
        i = connection_index + slot * connections
        action = "start" if (self.first[i] + round_) % 2 == 0 else "pause"
        return ("POST", f"/api/tickets/{self.ids[i]}/{action}",
                (START_BODY if action == "start" else PAUSE_BODY).encode(),
                {"Authorization": self.auth, "Content-Type": "application/json"})


def transition_lua(feed: TransitionFeed, threads: int) -> str:
    ids = ", ".join(_lua_string(i) for i in feed.ids)
    first = ", ".join(str(f) for f in feed.first)
    return f"""
local ids = {{ {ids} }}
local first = {{ {first} }}
local threads = {threads}
local headers = {{["Authorization"] = {_lua_string(feed.auth)}, ["Content-Type"] = "application/json"}}
local next_id = 0
setup = function(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
end
local counter = 0
local probed = true
init = function(args)
  probed = id ~= 0  -- id: set by setup() before init() runs
end
request = function()
  local mine = math.floor((#ids - id - 1) / threads) + 1
  local slot = counter % mine
  local round = math.floor(counter / mine)
  -- wrk calls the first thread's request() once before it starts (script_verify_request, to
  -- count pipelined requests) and never sends that one: it must not use up a transition
  if probed then counter = counter + 1 else probed = true end
  local i = id + slot * threads + 1
  if (first[i] + round) % 2 == 0 then
    return wrk.format("POST", "/api/tickets/" .. ids[i] .. "/start", headers, {_lua_string(START_BODY)})
  end
  return wrk.format("POST", "/api/tickets/" .. ids[i] .. "/pause", headers, {_lua_string(PAUSE_BODY)})
end
""" + LUA_DONE


class RegisterFeed:
    """A new machine each request: hostname, serial and collaborator from (run, connection, counter)."""

    def __init__(self, code: str, run: int):
        self.code, self.run = code, run

    def head(self) -> str:
        return (f'{{"provisioning_code": {json.dumps(self.code)}, "os": {json.dumps(WINDOWS)}, '
                f'"mac_addresses": [], ')

    def request(self, connection_index: int, connections: int, counter: int):
        tag = f"r{self.run}t{connection_index}n{counter}"
        body = (self.head() + f'"hostname": "pc-{tag}", "serial_numbers": ["BENCH{tag}"], '
                f'"collaborator": {{"email": "colab-{tag}@bench-api.test", "name": "Bench {tag}"}}}}')
        return "POST", "/api/machines/register", body.encode(), {"Content-Type": "application/json"}


def register_lua(feed: RegisterFeed) -> str:
    return f"""
local head = {_lua_string(feed.head())}
local run = {feed.run}
local headers = {{["Content-Type"] = "application/json"}}
local next_id = 0
setup = function(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
end
local counter = 0
request = function()
  local tag = string.format("r%dt%dn%d", run, id, counter)
  counter = counter + 1
  local body = head .. '"hostname": "pc-' .. tag .. '", "serial_numbers": ["BENCH' .. tag .. '"], ' ..
    '"collaborator": {{"email": "colab-' .. tag .. '@bench-api.test", "name": "Bench ' .. tag .. '"}}}}'
  return wrk.format("POST", "/api/machines/register", headers, body)
end
""" + LUA_DONE


def fixed_lua(route: Route) -> str:
    headers = "".join(f"wrk.headers[ {_lua_string(k)} ] = {_lua_string(v)}\n" for k, v in route.headers.items())
    return (f"wrk.method = {_lua_string(route.method)}\nwrk.body = {_lua_string(route.body or '')}\n"
            + headers + LUA_DONE)


# --- the echo baseline ------------------------------------------------------------------------

def start_echo(stack: Stack) -> str:
    """bench.echo's two services as processes on the stack's vhost; the gateway's base URL."""
    port = free_port_block(1)
    config = stack.workdir / "echo.yaml"
    config.write_text(f"AMQP_URI: {json.dumps(stack.amqp_uri)}\n"
                      f"WEB_SERVER_ADDRESS: \"127.0.0.1:{port}\"\n")
    for key, cls in zip(ECHO_PROCESSES, ("EchoService", "EchoGateway")):
        log_file = open(stack.workdir / f"{key}.log", "ab")
        stack.system.processes[key] = subprocess.Popen(
            [sys.executable, "-m", "nameko", "run", f"bench.echo:{cls}", "--config", str(config)],
            cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log_file.close()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for key in ECHO_PROCESSES:
            if stack.system.processes[key].poll() is not None:
                raise BenchFailure(f"{key} exited:\n{stack.log_tail(key)}")
        try:
            if requests.get(base + "/echo", timeout=5).status_code == 200:
                return base
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise BenchFailure("the echo baseline did not answer in 60 s:\n" +
                       "\n".join(stack.log_tail(key) for key in ECHO_PROCESSES))


# --- the run ------------------------------------------------------------------------------------

def chosen_routes(routes: str) -> tuple:
    """`all`, or some routes by name (comma-separated) to look at one closely; echo, the
    baseline, is always measured."""
    if routes == "all":
        return ROUTES
    names = {name.strip() for name in routes.split(",") if name.strip()}
    unknown = names - set(ROUTES)
    if unknown:
        raise ValueError(f"routes: no route {', '.join(sorted(unknown))} (known: {', '.join(ROUTES)})")
    return tuple(name for name in ROUTES if name in names | {ECHO})


def run(params: dict, reps: int, workdir) -> dict:
    p = params
    measured_routes = chosen_routes(p["routes"])
    if p["transition_tickets"] < 2 * p["connections"]:
        raise ValueError("transition_tickets must be at least twice the connections")
    wrk = load_generator(p)
    threads = min(p["wrk_threads"], p["connections"])
    runs = []
    with Stack(NAME, workdir, extra_env={"CHAMADOS_ADMIN_EMAIL": ADMIN_EMAIL,
                                         "CHAMADOS_ADMIN_PASSWORD": ADMIN_PASSWORD}) as stack:
        start_everything(stack)
        base = stack.system.base_url
        created = stack.system.cli("create-admin")
        if created.returncode != 0:
            raise BenchFailure(f"create-admin failed: {created.stdout[-1000:]} {created.stderr[-2000:]}")
        session = requests.post(f"{base}/api/auth/sign-in", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
                                timeout=30)
        session.raise_for_status()
        token, tenant_id = session.json()["token"], session.json()["user"]["tenant_id"]
        auth = {"Authorization": f"Bearer {token}"}
        queues = ensure_queues(base, auth, p["queues"])
        queue = next((q for q in queues if q["name"].lower() == "chamados"), queues[0])
        started = time.monotonic()
        seeded = seed(stack, tenant_id, p)
        seeded["seconds"] = round(time.monotonic() - started, 1)
        log(NAME, f"seeded {p['tickets']} tickets in {seeded['seconds']}s: {seeded['by_status']}")
        company = requests.post(f"{base}/api/admin/companies", headers=auth, timeout=30,
                                json={"name": "Bench Máquinas", "apelido": "bench-maquinas"})
        if company.status_code != 201:
            raise BenchFailure(f"creating a company answered {company.status_code}: {company.text[:500]}")
        code = company.json()["provisioning_code"]
        json_auth = dict(auth, **{"Content-Type": "application/json"})
        create_body = json.dumps({"subject": "Impressora do financeiro não imprime",
                                  "description": "Desde hoje cedo a impressora do andar não responde. " * 4,
                                  "priority": "MEDIUM", "queue_id": queue["id"]})
        transition_ids = []
        for n in range(p["transition_tickets"]):
            opened = requests.post(f"{base}/api/tickets", headers=auth, timeout=30,
                                   json={"subject": f"Bench transitions {n}", "queue_id": queue["id"]})
            if opened.status_code != 201:
                raise BenchFailure(f"POST /api/tickets answered {opened.status_code}: {opened.text[:500]}")
            transition_ids.append(str(opened.json()["id"]))
        echo_base = start_echo(stack)
        routes = {
            ECHO: Route(ECHO, "GET", "/echo"),
            HEALTHZ: Route(HEALTHZ, "GET", "/healthz", (("/healthz", "GET", "200"),)),
            "list": Route("list", "GET", f"/api/tickets?status=AWAITING_ATTENDANCE&queue_id={queue['id']}&limit=50",
                          (("/api/tickets", "GET", "200"),), auth),
            "recent": Route("recent", "GET", "/api/tickets/recent", (("/api/tickets/recent", "GET", "200"),), auth),
            "search": Route("search", "GET", f"/api/tickets?q={quote(SEARCH_WORD)}&limit=50",
                            (("/api/tickets", "GET", "200"),), auth),
            "create": Route("create", "POST", "/api/tickets", (("/api/tickets", "POST", "201"),), json_auth,
                            create_body),
            "transition": Route("transition", "POST", "/api/tickets/{id}/start|pause",
                                (("/api/tickets/<ticket_id>/start", "POST", "200"),
                                 ("/api/tickets/<ticket_id>/pause", "POST", "200")), json_auth),
            "register": Route("register", "POST", "/api/machines/register",
                              (("/api/machines/register", "POST", "201"),)),
        }
        checks = check_routes(base, echo_base, routes, code)
        metrics = {"gateway": stack.system.metrics_url("gateway"),
                   **{service: stack.system.metrics_url(service) for service in BACKENDS}}
        meter = CpuMeter({name: process.pid for name, process in stack.system.processes.items()},
                         make_url(stack.dsn).database)
        run_index = 0

        def load(name: str, seconds: float, recorded: bool = False) -> dict:
            nonlocal run_index
            run_index += 1
            route = routes[name]
            url = (echo_base if name == ECHO else base) + ("/" if name == "transition" else route.path)
            requester = lua = None
            if name == "transition":
                requester = TransitionFeed(transition_ids, first_actions(base, auth, transition_ids), auth["Authorization"])
                lua = transition_lua(requester, threads)
            elif name == "register":
                requester = RegisterFeed(code, run_index)
                lua = register_lua(requester)
            elif route.method != "GET":
                requester = FixedRequest(route.method, route.path, route.body.encode(), route.headers)
                lua = fixed_lua(route)
            before = {service: scrape(url_) for service, url_ in metrics.items()}
            cpu_before = meter.reading()
            profilers = start_profilers(p["profile"], f"{name}-{run_index}", stack, seconds) if recorded else []
            if wrk:
                measured = run_wrk(wrk, url, connections=p["connections"], seconds=seconds, threads=threads,
                                   lua=lua or LUA_DONE, headers=None if lua else route.headers)
            else:
                measured = run_python(url, connections=p["connections"], seconds=seconds, feed=None,
                                      headers=route.headers, requester=requester)
            measured["cpu_percent"] = CpuMeter.percent(cpu_before, meter.reading())
            for profiler in profilers:
                profiler.wait(timeout=seconds + 60)
            settle(metrics["gateway"], p["settle_seconds"])
            after = {service: scrape(url_) for service, url_ in metrics.items()}
            measured["server"] = combined_server_side(before["gateway"], after["gateway"], route.labels)
            measured["rpcs"] = {service: entrypoints(before[service], after[service]) for service in BACKENDS}
            return measured

        if p["warmup_seconds"] > 0:
            for name in measured_routes:
                load(name, p["warmup_seconds"])
        watched = {name: process.pid for name, process in stack.system.processes.items()}
        for rep in range(reps):
            order = list(measured_routes) if rep % 2 == 0 else list(reversed(measured_routes))
            record = {"rep": rep, "order": order}
            samplers = {name: PeakRss(pid, interval=0.25) for name, pid in watched.items()}
            for sampler in samplers.values():
                sampler.start()
            for name in order:
                record[name] = load(name, p["seconds"], recorded=True)
            record["rss_mb"] = {name: round(sampler.stop() / 2 ** 20, 1) for name, sampler in samplers.items()}
            for name in measured_routes:
                record[name]["vs_echo"] = ratio(record[name]["req_per_s"], record[ECHO]["req_per_s"])
            log(NAME, f"rep {rep + 1}/{reps} ({record[ECHO]['tool']}): " + ", ".join(
                f"{name} {record[name]['req_per_s']:.0f}/s p99 {record[name]['p99_ms']:.0f} ms"
                for name in measured_routes) + f"; RSS MB {record['rss_mb']}")
            for name in measured_routes:
                log(NAME, f"  {name} CPU % of a core: {record[name]['cpu_percent']}")
            runs.append(record)
        transitions_done = stack.scalar("SELECT count(*) FROM tickets.work_sessions WHERE ticket_id = ANY(%s::uuid[])",
                                        (transition_ids,)) if _has_table(stack, "tickets", "work_sessions") else None
        machines = stack.scalar("SELECT count(*) FROM devices.machines") if _has_table(stack, "devices", "machines") \
            else None
    result = summarise(runs, seeded, checks, p["connections"], measured_routes)
    result["work_sessions_opened_on_transition_tickets"] = transitions_done
    result["machines_registered"] = machines
    return result


def start_profilers(folder: str, tag: str, stack: Stack, seconds: float) -> list:
    """With `profile` set (a folder): py-spy records the gateway and each backend through the
    run, one collapsed-stack file per process (`<route>-<run>-<process>.txt`) to read or turn
    into a flame graph — how this bench's bottlenecks were found."""
    if not folder:
        return []
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    py_spy = Path(sys.executable).with_name("py-spy")
    if not py_spy.exists():
        raise BenchFailure(f"profile needs py-spy ({py_spy}): pip install -e '.[test]'")
    return [subprocess.Popen([str(py_spy), "record", "--pid", str(stack.system.processes[name].pid),
                              "--duration", str(max(1, round(seconds))), "--rate", "200", "--format", "raw",
                              "--nonblocking", "--output", str(out / f"{tag}-{name}.txt")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for name in ("gateway", *BACKENDS) if name in stack.system.processes]


def _has_table(stack: Stack, schema: str, table: str) -> bool:
    return bool(stack.scalar("SELECT to_regclass(%s) IS NOT NULL", (f"{schema}.{table}",)))


def first_actions(base: str, auth: dict, ids: list[str]) -> list[int]:
    """0 (start) for a ticket that is pending or paused, 1 (pause) for one in attendance."""
    actions = []
    for ticket_id in ids:
        answer = requests.get(f"{base}/api/tickets/{ticket_id}", headers=auth, timeout=30)
        answer.raise_for_status()
        status = answer.json()["status"]
        if status not in ("PENDING", "PAUSED", "AWAITING_ATTENDANCE"):
            raise BenchFailure(f"transition ticket {ticket_id} is {status}")
        actions.append(1 if status == "AWAITING_ATTENDANCE" else 0)
    return actions


def check_routes(base: str, echo_base: str, routes: dict, code: str) -> dict:
    """Each route answers what it should once (wrk counts any status below 400 as a success);
    {name: items in the answer, for the lists}."""
    found = {}
    for name, route in routes.items():
        if name in ("transition", "register"):
            continue
        answer = requests.request(route.method, (echo_base if name == ECHO else base) + route.path,
                                  headers=route.headers, data=route.body, timeout=30, allow_redirects=False)
        wanted = int(route.labels[0][2]) if route.labels else 200
        if answer.status_code != wanted:
            raise BenchFailure(f"{route.method} {route.path} answered {answer.status_code}: {answer.text[:500]}")
        if name in ("list", "recent", "search"):
            found[name] = len(answer.json()["items"])
    method, path, body, headers = RegisterFeed(code, 0).request(0, 1, 0)
    answer = requests.post(base + path, data=body, headers=headers, timeout=30)
    if answer.status_code != 201:
        raise BenchFailure(f"POST {path} answered {answer.status_code}: {answer.text[:500]}")
    return found


def combined_server_side(before, after, labels: tuple) -> dict:
    """console.server_side of the route, or of each route of a pair (start and pause):
    requests and successes summed, latencies the worse of the two."""
    if not labels:
        return {"requests": 0, "status_200": 0, "p50_ms": None, "p99_ms": None, "mean_ms": None,
                "share_within_100ms": None}
    parts = [server_side(before, after, route, method, status) for route, method, status in labels]
    statuses = {}
    for route, method, _ in labels:
        for sign, samples in ((-1, before), (1, after)):
            for name, sample_labels, value in samples:
                if name == "chamados_http_requests_total" and sample_labels.get("route") == route \
                        and sample_labels.get("method") == method:
                    key = sample_labels.get("status")
                    statuses[key] = statuses.get(key, 0) + sign * int(value)
    statuses = {key: count for key, count in sorted(statuses.items()) if count}
    if len(parts) == 1:
        return dict(parts[0], statuses=statuses)

    def worst(key):
        values = [part[key] for part in parts if part[key] is not None]
        return max(values) if values else None
    total = sum(part["requests"] for part in parts)
    return {"requests": total, "status_200": sum(part["status_200"] for part in parts),
            "p50_ms": worst("p50_ms"), "p99_ms": worst("p99_ms"),
            "mean_ms": (sum(part["mean_ms"] * part["requests"] for part in parts if part["mean_ms"] is not None)
                        / total) if total else None,
            "share_within_100ms": None, "statuses": statuses,
            "parts": {route.rsplit("/", 1)[-1]: part for (route, _, _), part in zip(labels, parts)}}


# --- the result -----------------------------------------------------------------------------------

def summarise(runs: list, seeded: dict, checks: dict, connections: int, measured_routes: tuple = ROUTES) -> dict:
    loaded = {name: [record[name] for record in runs] for name in measured_routes}
    routes = {name: dict(figures(loaded[name]), vs_echo=_r(median([m["vs_echo"] for m in loaded[name]]), 3),
                         non_2xx=sum(m["non_2xx_3xx"] for m in loaded[name]),
                         socket_errors=sum(m["socket_errors"] for m in loaded[name]),
                         rows_shown=checks.get(name))
              for name in measured_routes}
    for name in measured_routes:
        parts = loaded[name][0]["cpu_percent"] if loaded[name] else {}
        routes[name]["cpu_percent"] = {part: median([m["cpu_percent"][part] for m in loaded[name]]) for part in parts}
    rss = {name: median([record["rss_mb"][name] for record in runs]) for name in runs[0]["rss_mb"]} if runs else {}
    lines = []

    def with_bottleneck(line: dict, name: str) -> dict:
        # a goal not met names what limited the route (issue 14: process, broker or database)
        if line["met"] is False:
            line["saturated"] = saturated(routes[name]["cpu_percent"], os.cpu_count() or 1,
                                          routes[name]["rate_req_per_s"])
        return line

    for name, (share, p99) in GOALS.items():
        if name not in routes:
            continue
        figure = routes[name]
        if share is not None:
            lines.append(with_bottleneck(target(f"{name} vs echo", ">=", share, figure["vs_echo"], "ratio"), name))
        else:
            lines.append(target(f"{name} vs echo", None, None, figure["vs_echo"], "ratio"))
        lines.append(with_bottleneck(target(f"{name} p99", "<", p99, figure["wrk_p99_ms"], "ms"), name))
    if "register" in routes:
        lines.append(with_bottleneck(target("register rate", ">=", REGISTER_RATE,
                                            routes["register"]["rate_req_per_s"], "req/s"), "register"))
    for name in ("gateway", *BACKENDS):
        if name in rss:
            lines.append(target(f"{name} peak RSS", "<", RSS_MB, rss[name], "MB"))
    for name in measured_routes:
        figure = routes[name]
        suffix = " (baseline)" if name == ECHO else ""
        lines.append(target(f"{name} rate{suffix}", None, None, figure["rate_req_per_s"], "req/s"))
        if name not in GOALS:
            lines.append(target(f"{name} p99{suffix}", None, None, figure["wrk_p99_ms"], "ms"))
        if name != ECHO:
            lines.append(target(f"{name} server p99", None, None, figure["server_p99_ms"], "ms"))
        if name in ("register", HEALTHZ):
            lines.append(target(f"{name} vs echo", None, None, figure["vs_echo"], "ratio"))
    if "transition" in routes:
        lines.append(target("transition non-2xx", None, None, routes["transition"]["non_2xx"], "requests"))
    for name in ECHO_PROCESSES:
        if name in rss:
            lines.append(target(f"{name} peak RSS (baseline)", None, None, rss[name], "MB"))
    failures = []
    for record in runs:
        for name in measured_routes:
            r = record[name]
            bad = r["non_2xx_3xx"] + r["socket_errors"]
            if bad > 0.01 * max(1, r["requests"]):
                failures.append(f"rep {record['rep']} {name}: {bad} of {r['requests']} failed")
            server = r["server"]
            if server["requests"] and server["status_200"] < 0.99 * server["requests"]:
                failures.append(f"rep {record['rep']} {name}: {server['requests'] - server['status_200']} of "
                                f"{server['requests']} answered other than success (server side)")
    breakdown = {name: rpc_breakdown(loaded[name]) for name in measured_routes if name not in (ECHO, HEALTHZ)}
    for measured in [m for ms in loaded.values() for m in ms]:
        measured["rpcs"] = {f"{service}.{entrypoint}": {"calls": int(hist["count"]),
                                                        "mean_ms": round(hist["sum"] / hist["count"] * 1000, 1)}
                            for service, found in measured["rpcs"].items() for entrypoint, hist in found.items()}
    bars = {f"req/s, {connections} connections (median)": {name: routes[name]["rate_req_per_s"]
                                                            for name in measured_routes},
            "p99 ms, load generator (median)": {name: routes[name]["wrk_p99_ms"] for name in measured_routes},
            "server p99 ms (gateway histogram)": {name: routes[name]["server_p99_ms"] for name in measured_routes
                                                  if name != ECHO},
            f"peak RSS MB (goal < {RSS_MB})": rss}
    result = {
        "targets": lines,
        "routes": routes,
        "rpc_breakdown": breakdown,
        "rss_mb": rss,
        "bars": bars,
        "seeded": seeded,
        "runs": runs,
        "load_generator": runs[0][ECHO]["tool"] if runs else None,
    }
    if failures:
        result["failure"] = "; ".join(failures)
        for line in result["targets"]:
            if line["met"] is not None and not line["name"].endswith("RSS"):
                line["met"] = False
    return result


def _r(value, digits: int = 1):
    return None if value is None else round(value, digits)
