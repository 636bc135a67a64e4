"""console: the web console's list pages over a tenant of 100,000 tickets, server-side p99
(the gateway's own histogram) and req/s at 8 connections, against `GET /healthz` and the JSON
API's `GET /api/tickets?limit=25` on the same gateway in the same run.

Every service runs as a process (Stack); the first admin is created as `chamados up` does and
signs in (the console's session cookie `chamados_sessao` is the API token). The tickets (a
year of them, newest references last, ~92 % resolved, four queues, a few hundred requesters
in a few dozen companies, a few dozen agents, ~1 % of subjects carrying each topic word)
are written straight into the `tickets` schema with one INSERT … SELECT over
generate_series, with the matching `people`/`companies` snapshots, the same people and
companies in the `accounts` schema (so the pages' pickers list a realistic directory), the
tenant's reference counter, then VACUUM ANALYZE (what autovacuum would have done by then).

Pages: `/` (the dashboard), `/chamados`, `?status=PAUSED`, `?assignee_id=unassigned`,
`?q=<a topic word>` and page 2 (the `rel=next` cursor of page 1). Each is loaded by wrk for
`seconds` (after an unrecorded warm-up of each), the order reversed every other repetition;
then each again at one connection for `serial_seconds` (the page's own latency, nothing
queued behind it: what the serial chain of RPCs costs).
Around each run the gateway's `/metrics` is scraped: the delta of
`chamados_http_request_duration_seconds{route}` gives the server-side p50/p99 of that page
(interpolated inside Prometheus buckets 5/10/25/50/100/250 ms… as `histogram_quantile` does;
the 100 ms goal is a bucket edge, so met/not met is exact), and the delta of accounts' and
tickets' `chamados_entrypoint_duration_seconds` says which RPCs the page made, how many per
request and how long each took (`rpc_breakdown`).
"""
from __future__ import annotations

import html
import math
import re
import time
import uuid
from datetime import datetime, timedelta, timezone
from urllib.parse import quote, unquote

import psycopg
import requests

from bench.core import BenchFailure, Stack, log, median, ratio, target
from bench.httpload import LUA_DONE, load_generator, run_python, run_wrk
from common.config import SERVICE_NAMES
from services.tickets.listing import sql_fold

NAME = "console"
SUMMARY = ("console pages (dashboard, /chamados and its filters, page 2) over N tickets at 8 connections: "
           "server p99 (gateway histogram), req/s vs /healthz and vs GET /api/tickets")
# settle_seconds: after each run, how long the gateway's request count must stand still (the
# requests wrk left in flight answered) before the scrape that closes the run
FULL = {"tickets": 100_000, "requesters": 300, "agents": 20, "companies": 40, "queues": 4,
        "connections": 8, "seconds": 10, "serial_seconds": 5, "settle_seconds": 1.0, "warmup_seconds": 2,
        "wrk_threads": 2, "install_wrk": 1, "load_generator": "auto"}
SMOKE = {"tickets": 300, "requesters": 12, "agents": 3, "companies": 4, "queues": 2,
         "connections": 4, "seconds": 1, "serial_seconds": 1, "settle_seconds": 0.2, "warmup_seconds": 0,
         "wrk_threads": 2, "install_wrk": 0, "load_generator": "auto"}
GOALS = {"server_p99_ms": 100}
ADMIN_EMAIL, ADMIN_PASSWORD = "admin@bench-console.test", "bench-console-pass-1"
SEARCH_WORD = "vpn"
HEALTHZ, API_LIST = "healthz", "api_list"
BACKENDS = ("accounts", "tickets")

# subjects: "<verb> <topic> <place>"; each topic is in ~1 / len(TOPICS) of them
VERBS = ("Problema com", "Erro ao usar", "Solicitação:", "Dúvida sobre", "Falha em", "Configurar",
         "Não funciona:", "Trocar", "Lentidão em", "Pedido de")
PLACES = ("- sala 12", "(filial Centro)", "- recepção", "(matriz)", "- financeiro", "- RH",
          "(home office)", "- diretoria", "- almoxarifado", "- loja 3")
_WORDS = """impressora vpn outlook teams planilha scanner notebook monitor teclado mouse senha wifi
roteador firewall backup antivírus certificado servidor ramal telefone headset webcam projetor
nobreak switch cabo pendrive bios licença excel powerpoint sharepoint erp crm totvs boleto catraca
biometria crachá e-mail agenda calendário zoom chrome firefox navegador java pdf compactador dns
dhcp internet fibra modem celular tablet android iphone whatsapp relatório dashboard banco sql
oracle linux windows macos toner cartucho papel etiqueta balança leitor gaveta pdv cupom fiscal tef
pinpad maquininha estoque frete portal intranet wiki jira docker kubernetes nuvem azure aws google
gmail calculadora ar-condicionado cadeira mesa tomada energia lâmpada acesso permissão pasta
arquivo compartilhamento cadastro login bloqueio token autenticação mfa""".split()
_OTHER_TEXT = " ".join(VERBS + PLACES).lower()
TOPICS = tuple(word for word in dict.fromkeys(_WORDS)  # none inside another, nor in the rest
               if not any(word in other for other in _WORDS if other != word)
               and word not in _OTHER_TEXT)[:100]
assert SEARCH_WORD in TOPICS
DESCRIPTION = ("O usuário relata que o problema começou hoje cedo e afeta o trabalho da equipe. "
               "Já reiniciou o equipamento e o problema continua. Segue o que aparece na tela, "
               "com o horário aproximado e o que estava fazendo quando aconteceu. Pede retorno "
               "por telefone assim que possível, de preferência antes do meio-dia, e avisa que "
               "fica na mesa perto da janela, ao lado da impressora do andar. Obrigado. " * 3)
FIRST_NAMES = ("Ana", "Bruno", "Carla", "Diego", "Elisa", "Fábio", "Gabriela", "Heitor", "Isabel",
               "João", "Karina", "Lucas", "Marina", "Nelson", "Olívia", "Paulo", "Renata", "Sérgio",
               "Tatiana", "Vítor")
LAST_NAMES = ("Almeida", "Barbosa", "Cardoso", "Duarte", "Esteves", "Ferreira", "Gomes", "Henriques",
              "Lima", "Martins", "Nogueira", "Oliveira", "Pereira", "Queiroz", "Ribeiro", "Santos",
              "Teixeira", "Vieira", "Xavier", "Zanetti")


def pages(word: str, cursor: str) -> dict:
    """name -> (path, route label in the gateway's metrics, auth kind)."""
    return {
        HEALTHZ: ("/healthz", "/healthz", None),
        API_LIST: ("/api/tickets?limit=25", "/api/tickets", "bearer"),
        "dashboard": ("/", "/", "cookie"),
        "list": ("/chamados", "/chamados", "cookie"),
        "list_paused": ("/chamados?status=PAUSED", "/chamados", "cookie"),
        "list_unassigned": ("/chamados?assignee_id=unassigned", "/chamados", "cookie"),
        "list_search": (f"/chamados?q={quote(word)}", "/chamados", "cookie"),
        "list_page2": (f"/chamados?cursor={quote(cursor)}", "/chamados", "cookie"),
    }


CONSOLE_PAGES = ("dashboard", "list", "list_paused", "list_unassigned", "list_search", "list_page2")


def run(params: dict, reps: int, workdir) -> dict:
    p = params
    wrk = load_generator(p)
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
        started = time.monotonic()
        seeded = seed(stack, tenant_id, p)
        seeded["seconds"] = round(time.monotonic() - started, 1)
        log(NAME, f"seeded {p['tickets']} tickets in {seeded['seconds']}s ({len(queues)} queues, "
                  f"{p['requesters']} requesters, {p['agents']} agents, {p['companies']} companies): "
                  f"{seeded['by_status']}, {seeded['unassigned']} unassigned, "
                  f"'{SEARCH_WORD}' in {seeded['search_matches']} subjects")
        headers = {"cookie": {"Cookie": f"chamados_sessao={token}"}, "bearer": auth, None: {}}
        cursor = first_cursor(base, headers["cookie"])
        targets = pages(SEARCH_WORD, cursor)
        checks = check_pages(base, targets, headers)
        metrics = {"gateway": stack.system.metrics_url("gateway"),
                   **{service: stack.system.metrics_url(service) for service in BACKENDS}}

        def load(name: str, seconds: float, connections: int | None = None) -> dict:
            path, route, kind = targets[name]
            connections = connections or p["connections"]
            before = {service: scrape(url) for service, url in metrics.items()}
            if wrk:
                measured = run_wrk(wrk, base + path, connections=connections, seconds=seconds,
                                   threads=min(p["wrk_threads"], connections), lua=LUA_DONE,
                                   headers=headers[kind])
            else:
                measured = run_python(base + path, connections=connections, seconds=seconds, feed=None,
                                      headers=headers[kind])
            settle(metrics["gateway"], p["settle_seconds"])
            after = {service: scrape(url) for service, url in metrics.items()}
            measured["server"] = server_side(before["gateway"], after["gateway"], route)
            measured["rpcs"] = {service: entrypoints(before[service], after[service]) for service in BACKENDS}
            return measured

        if p["warmup_seconds"] > 0:
            for name in targets:
                load(name, p["warmup_seconds"])
        for rep in range(reps):
            order = list(targets) if rep % 2 == 0 else list(reversed(targets))
            record = {"rep": rep, "order": order}
            for name in order:
                record[name] = load(name, p["seconds"])
            if p["serial_seconds"] > 0:  # one connection: the page's own latency, nothing queued
                record["one_connection"] = {name: load(name, p["serial_seconds"], connections=1)
                                            for name in order if name != HEALTHZ}
            for name in CONSOLE_PAGES:
                record[name]["vs_healthz"] = ratio(record[name]["req_per_s"], record[HEALTHZ]["req_per_s"])
                record[name]["vs_api_list"] = ratio(record[name]["req_per_s"], record[API_LIST]["req_per_s"])
            log(NAME, f"rep {rep + 1}/{reps} ({record[HEALTHZ]['tool']}): " + ", ".join(
                f"{name} {record[name]['req_per_s']:.0f}/s p99 {record[name]['p99_ms']:.0f} ms "
                f"(server {fmt(record[name]['server']['p99_ms'])} ms)" for name in targets))
            runs.append(record)
    return summarise(runs, seeded, checks, queues, list(targets))


def fmt(value) -> str:
    return "-" if value is None else f"{value:.0f}"


# --- the system ---------------------------------------------------------------------------

def start_everything(stack: Stack) -> None:
    for service in SERVICE_NAMES:
        stack.system.start_service(service)
    for service in SERVICE_NAMES:
        stack.wait_ready(service, stack.system.metrics_url(service), stack.system.processes[service], 90)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # every service answering its RPCs
        try:
            if requests.get(f"{stack.system.base_url}/readyz", timeout=10).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise BenchFailure("the system is not ready (/readyz) in 60 s:\n" + stack.log_tail("gateway"))


def ensure_queues(base: str, auth: dict, count: int) -> list[dict]:
    """The tenant's queues: the default "Chamados" (created on first use) and count − 1 more."""
    names = ["Infraestrutura", "Sistemas", "Atendimento externo", "Compras", "Telefonia"]
    listed = requests.get(f"{base}/api/queues", headers=auth, timeout=30)
    listed.raise_for_status()
    for name in names[:max(0, count - len(listed.json()["items"]))]:
        requests.post(f"{base}/api/queues", headers=auth, json={"name": name}, timeout=30).raise_for_status()
    listed = requests.get(f"{base}/api/queues", headers=auth, timeout=30)
    listed.raise_for_status()
    return listed.json()["items"]


# --- seeding ------------------------------------------------------------------------------

def seed(stack: Stack, tenant_id: str, p: dict) -> dict:
    """Directory rows (accounts and the tickets snapshots), then every ticket in one statement."""
    now = datetime.now(timezone.utc)
    companies = [(uuid.uuid4(), f"Empresa {n + 1:03d} Ltda", f"empresa-{n + 1:03d}") for n in range(p["companies"])]
    people = []
    for n in range(p["requesters"] + p["agents"]):
        role = "agent" if n >= p["requesters"] else "collaborator"
        first, last = FIRST_NAMES[n % len(FIRST_NAMES)], LAST_NAMES[(n // len(FIRST_NAMES)) % len(LAST_NAMES)]
        email = f"{first}.{last}.{n}@{'suporte' if role == 'agent' else 'cliente'}.test".lower()
        company = None if role == "agent" else companies[n % len(companies)][0]
        people.append((uuid.uuid4(), f"{first} {last}" + (f" {n // 400 + 1}" if n >= 400 else ""), email, role,
                       company))
    with psycopg.connect(stack.dsn) as conn, conn.cursor() as cur:
        cur.executemany("INSERT INTO accounts.companies (id, tenant_id, name, apelido, provisioning_code, "
                        "created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                        [(cid, tenant_id, name, apelido, uuid.uuid4().hex, now, now)
                         for cid, name, apelido in companies])
        cur.executemany("INSERT INTO tickets.companies (id, tenant_id, name) VALUES (%s, %s, %s)",
                        [(cid, tenant_id, name) for cid, name, _ in companies])
        cur.executemany("INSERT INTO accounts.users (id, tenant_id, email, email_normalized, name, role, "
                        "company_id, password_hash, created_at, updated_at) "
                        "VALUES (%s, %s, %s, %s, %s, %s, %s, NULL, %s, %s)",
                        [(pid, tenant_id, email, email, name, role, company, now, now)
                         for pid, name, email, role, company in people])
        cur.executemany("INSERT INTO tickets.people (id, tenant_id, name, email, role, company_id) "
                        "VALUES (%s, %s, %s, %s, %s, %s)",
                        [(pid, tenant_id, name, email, role, company) for pid, name, email, role, company in people])
        cur.execute("SELECT setseed(0.42)")
        cur.execute("CREATE TEMP TABLE seed_requesters ON COMMIT DROP AS "
                    "SELECT row_number() OVER (ORDER BY p.email) - 1 AS n, p.id, p.name, p.email, p.company_id, "
                    "c.name AS company_name FROM tickets.people p LEFT JOIN tickets.companies c ON c.id = p.company_id "
                    "WHERE p.tenant_id = %s AND p.role = 'collaborator'", (tenant_id,))
        cur.execute("CREATE TEMP TABLE seed_agents ON COMMIT DROP AS SELECT row_number() OVER (ORDER BY email) - 1 "
                    "AS n, id, name, email FROM tickets.people WHERE tenant_id = %s AND role = 'agent'", (tenant_id,))
        cur.execute("CREATE TEMP TABLE seed_queues ON COMMIT DROP AS SELECT row_number() OVER "
                    "(ORDER BY name_normalized <> 'chamados', name_normalized) - 1 AS n, id "
                    "FROM tickets.queues WHERE tenant_id = %s", (tenant_id,))
        queues = cur.execute("SELECT count(*) FROM seed_queues").fetchone()[0]
        cur.execute(SEED_TICKETS, {
            "tenant": tenant_id, "n": p["tickets"], "now": now, "start": now - timedelta(days=365),
            "step": timedelta(days=365) / p["tickets"], "verbs": list(VERBS), "topics": list(TOPICS),
            "places": list(PLACES), "description": DESCRIPTION, "requesters": p["requesters"],
            "agents": p["agents"], "queues": queues})
        cur.execute("INSERT INTO tickets.reference_counters AS counter (tenant_id, last_reference) "
                    "VALUES (%s, %s) ON CONFLICT (tenant_id) DO UPDATE SET last_reference = "
                    "greatest(counter.last_reference, excluded.last_reference)",
                    (tenant_id, p["tickets"]))
    for table in ("tickets.tickets", "tickets.people", "tickets.companies", "accounts.users", "accounts.companies"):
        stack.sql(f"VACUUM ANALYZE {table}")
    by_status = dict(stack.sql("SELECT status, count(*) FROM tickets.tickets GROUP BY status ORDER BY status"))
    return {"by_status": by_status,
            "unassigned": stack.scalar("SELECT count(*) FROM tickets.tickets WHERE assignee_id IS NULL"),
            "search_word": SEARCH_WORD,
            "search_matches": stack.scalar("SELECT count(*) FROM tickets.tickets WHERE lower(subject) LIKE %s",
                                           (f"%{SEARCH_WORD}%",)),
            "queues": queues, "topics": len(TOPICS),
            "table_mb": round(stack.scalar("SELECT pg_total_relation_size('tickets.tickets')") / 2 ** 20, 1)}


# Ages: one year, evenly (references follow creation). Older than 30 days: 97 % resolved;
# the last 30 days: 40 % resolved, 25 % pending, 20 % in attendance, 15 % paused. Half of the
# pending tickets and 2 % of the resolved ones have nobody assigned; every other one an agent.
SEED_TICKETS = """
WITH base AS (
    SELECT g, %(start)s::timestamptz + (g - 1) * %(step)s::interval + random() * %(step)s::interval AS created,
           random() AS u_status, random() AS u_assign, random() AS u_priority, random() AS u_queue,
           floor(random() * cardinality(%(verbs)s::text[]))::int + 1 AS verb,
           floor(random() * cardinality(%(topics)s::text[]))::int + 1 AS topic,
           floor(random() * cardinality(%(places)s::text[]))::int + 1 AS place,
           floor(random() * %(requesters)s)::int AS requester, floor(random() * %(agents)s)::int AS agent,
           80 + floor(random() * 500)::int AS description_length, random() * interval '5 days' AS took,
           floor(random() * 7200)::bigint AS internal, floor(random() * 3600)::bigint AS external
    FROM generate_series(1, %(n)s) AS g
), shaped AS (
    SELECT b.*,
           CASE WHEN created < %(now)s::timestamptz - interval '30 days' THEN
                    CASE WHEN u_status < 0.97 THEN 'RESOLVED' WHEN u_status < 0.98 THEN 'PENDING'
                         WHEN u_status < 0.99 THEN 'AWAITING_ATTENDANCE' ELSE 'PAUSED' END
                ELSE CASE WHEN u_status < 0.40 THEN 'RESOLVED' WHEN u_status < 0.65 THEN 'PENDING'
                          WHEN u_status < 0.85 THEN 'AWAITING_ATTENDANCE' ELSE 'PAUSED' END
           END AS status,
           CASE WHEN u_queue < 0.6 OR %(queues)s = 1 THEN 0
                ELSE 1 + floor((u_queue - 0.6) / 0.4 * (%(queues)s - 1))::int END AS queue
    FROM base b
)
INSERT INTO tickets.tickets (id, tenant_id, reference, subject, description, priority, status, queue_id,
    requester_id, requester_name, requester_email, assignee_id, assignee_name, assignee_email,
    company_id, company_name, machine_id, worked_internal_seconds, worked_external_seconds,
    created_at, updated_at, resolved_at, archived_at, search_vector)
SELECT gen_random_uuid(), %(tenant)s, s.g, s.subject, s.description,
       CASE WHEN s.u_priority < 0.2 THEN 'LOW' WHEN s.u_priority < 0.75 THEN 'MEDIUM'
            WHEN s.u_priority < 0.95 THEN 'HIGH' ELSE 'URGENT' END,
       s.status, q.id, r.id, r.name, r.email, a.id, a.name, a.email, r.company_id, r.company_name, NULL,
       CASE WHEN s.status = 'PENDING' THEN 0 ELSE s.internal END,
       CASE WHEN s.status = 'RESOLVED' THEN s.external ELSE 0 END,
       s.created,
       least(%(now)s::timestamptz, s.created + CASE WHEN s.status = 'RESOLVED' THEN s.took ELSE s.took / 5 END),
       CASE WHEN s.status = 'RESOLVED' THEN least(%(now)s::timestamptz, s.created + s.took) END,
       NULL,
       -- what the tickets service writes for `q` (services/tickets/storage.py, index_ticket; the folding in listing.py)
       to_tsvector('portuguese'::regconfig, SEARCH_FOLD)
FROM (SELECT sh.*, (%(verbs)s::text[])[sh.verb] || ' ' || (%(topics)s::text[])[sh.topic] || ' '
             || (%(places)s::text[])[sh.place] AS subject,
             left(%(description)s, sh.description_length) AS description
      FROM shaped sh) s
JOIN seed_requesters r ON r.n = s.requester
JOIN seed_queues q ON q.n = s.queue
LEFT JOIN seed_agents a ON a.n = s.agent
    AND NOT ((s.status = 'PENDING' AND s.u_assign < 0.5) OR (s.status = 'RESOLVED' AND s.u_assign < 0.02))
""".replace("SEARCH_FOLD", sql_fold("s.subject || chr(10) || s.description"))


# --- the pages ----------------------------------------------------------------------------

def first_cursor(base: str, cookie: dict) -> str:
    """The cursor of page 1's `rel=next` link, as a person clicking "next" would follow it."""
    answer = requests.get(f"{base}/chamados", headers=cookie, timeout=30, allow_redirects=False)
    if answer.status_code != 200:
        raise BenchFailure(f"/chamados answered {answer.status_code}: {answer.text[:500]}")
    link = re.search(r'<a href="([^"]*)" rel="next"', answer.text)
    if not link:
        raise BenchFailure("no rel=next link on /chamados (fewer than one page of tickets?)")
    cursor = re.search(r"[?&]cursor=([^&]*)", html.unescape(link.group(1)))
    return unquote(cursor.group(1))


def check_pages(base: str, targets: dict, headers: dict) -> dict:
    """Each page answers 200 with what it should show (wrk counts a 3xx as a success: a
    redirect to the sign-in form must not pass for a fast list). {name: ticket rows seen}."""
    rows = {}
    for name, (path, _route, kind) in targets.items():
        answer = requests.get(base + path, headers=headers[kind], timeout=30, allow_redirects=False)
        if answer.status_code != 200:
            raise BenchFailure(f"{path} answered {answer.status_code}: {answer.text[:500]}")
        if kind == "bearer":
            rows[name] = len(answer.json()["items"])
        elif kind == "cookie":
            if 'name="password"' in answer.text:
                raise BenchFailure(f"{path} shows the sign-in form: the session cookie was not accepted")
            rows[name] = len(re.findall(r'href="/chamados/\d+"', answer.text))
    return rows


# --- Prometheus scrapes ---------------------------------------------------------------------

LINE = re.compile(r'^([a-zA-Z_:][\w:]*)\{([^}]*)\}\s+(\S+)')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def scrape(url: str) -> list[tuple[str, dict, float]]:
    text = requests.get(url, timeout=30).text
    samples = []
    for line in text.splitlines():
        match = LINE.match(line)
        if match:
            samples.append((match.group(1), dict(LABEL.findall(match.group(2))), float(match.group(3))))
    return samples


def settle(gateway_metrics: str, quiet_seconds: float = 1.0, deadline_seconds: float = 15) -> None:
    """Until the requests wrk left in flight are answered (the gateway's request count has not
    moved for `quiet_seconds`), so none of them is counted in the next page's figures."""
    deadline, last, since = time.monotonic() + deadline_seconds, None, time.monotonic()
    while time.monotonic() < deadline:
        total = sum(value for name, labels, value in scrape(gateway_metrics)
                    if name == "chamados_http_requests_total" and labels.get("route") != "/metrics")
        if total != last:
            last, since = total, time.monotonic()
        elif time.monotonic() - since >= quiet_seconds:
            return
        time.sleep(0.2)


def histogram(samples, metric: str, **labels) -> dict:
    """{"buckets": {le: cumulative}, "count", "sum"} of one histogram, summed over the label
    sets that match `labels`."""
    found = {"buckets": {}, "count": 0.0, "sum": 0.0}
    for name, sample_labels, value in samples:
        if any(sample_labels.get(key) != wanted for key, wanted in labels.items()):
            continue
        if name == metric + "_bucket":
            le = float(sample_labels["le"])
            found["buckets"][le] = found["buckets"].get(le, 0.0) + value
        elif name == metric + "_count":
            found["count"] += value
        elif name == metric + "_sum":
            found["sum"] += value
    return found


def delta(before: dict, after: dict) -> dict:
    return {"buckets": {le: count - before["buckets"].get(le, 0.0) for le, count in after["buckets"].items()},
            "count": after["count"] - before["count"], "sum": after["sum"] - before["sum"]}


def quantile(q: float, hist: dict) -> float | None:
    """As PromQL's histogram_quantile: linear inside the bucket that holds the rank; the
    highest finite bound when the rank falls in +Inf. Seconds."""
    buckets = sorted(hist["buckets"].items())
    total = buckets[-1][1] if buckets else 0
    if total <= 0:
        return None
    rank, lower, below = q * total, 0.0, 0.0
    for upper, cumulative in buckets:
        if cumulative >= rank:
            if math.isinf(upper):
                return lower
            inside = cumulative - below
            return lower + (upper - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = upper, cumulative
    return lower


def server_side(before, after, route: str, method: str = "GET", ok_status: str = "200") -> dict:
    """`status_200`: the requests answered `ok_status` (201 for a create)."""
    hist = delta(histogram(before, "chamados_http_request_duration_seconds", route=route, method=method),
                 histogram(after, "chamados_http_request_duration_seconds", route=route, method=method))
    ok = (sum(v for n, l, v in after if n == "chamados_http_requests_total" and l.get("route") == route
              and l.get("method", method) == method and l.get("status") == ok_status)
          - sum(v for n, l, v in before if n == "chamados_http_requests_total" and l.get("route") == route
                and l.get("method", method) == method and l.get("status") == ok_status))
    count = hist["count"]
    at_most_100ms = hist["buckets"].get(0.1, 0.0)
    return {"requests": int(count), "status_200": int(ok),
            "p50_ms": _ms(quantile(0.5, hist)), "p99_ms": _ms(quantile(0.99, hist)),
            "mean_ms": _ms(hist["sum"] / count) if count else None,
            "share_within_100ms": at_most_100ms / count if count else None,
            "buckets": {("+Inf" if math.isinf(le) else f"{le:g}"): int(c) for le, c in sorted(hist["buckets"].items())}}


def entrypoints(before, after) -> dict:
    """{entrypoint: {"count", "sum", "buckets"}} of a service's entrypoint histogram, deltas."""
    names = {labels["entrypoint"] for name, labels, _ in after
             if name == "chamados_entrypoint_duration_seconds_count"} - {"serve_metrics"}  # our scrapes
    found = {}
    for entrypoint in sorted(names):
        hist = delta(histogram(before, "chamados_entrypoint_duration_seconds", entrypoint=entrypoint),
                     histogram(after, "chamados_entrypoint_duration_seconds", entrypoint=entrypoint))
        if hist["count"] > 0:
            found[entrypoint] = hist
    return found


def _ms(seconds):
    return None if seconds is None else seconds * 1000


# --- the result -----------------------------------------------------------------------------

def rpc_breakdown(measured: list) -> dict:
    """Over every repetition of one page (its measurements): each RPC it made, calls per page
    request, mean and p99 in the service (ms)."""
    requests_total = sum(m["server"]["requests"] for m in measured)
    pooled: dict = {}
    for m in measured:
        for service, found in m["rpcs"].items():
            for entrypoint, hist in found.items():
                into = pooled.setdefault(f"{service}.{entrypoint}", {"buckets": {}, "count": 0.0, "sum": 0.0})
                into["count"] += hist["count"]
                into["sum"] += hist["sum"]
                for le, count in hist["buckets"].items():
                    into["buckets"][le] = into["buckets"].get(le, 0.0) + count
    return {key: {"per_request": round(hist["count"] / requests_total, 2) if requests_total else None,
                  "mean_ms": round(hist["sum"] / hist["count"] * 1000, 1),
                  "p99_ms": round(_ms(quantile(0.99, hist)), 1)}
            for key, hist in sorted(pooled.items(), key=lambda item: -item[1]["sum"])
            if not requests_total or hist["count"] / requests_total >= 0.05}


def figures(measured: list) -> dict:
    """Medians over the repetitions of one page's measurements."""
    def med(*path):
        values = []
        for m in measured:
            for key in path:
                m = m[key]
            values.append(m)
        return _r(median(values))
    return {"rate_req_per_s": med("req_per_s"), "wrk_p50_ms": med("p50_ms"), "wrk_p99_ms": med("p99_ms"),
            "server_p50_ms": med("server", "p50_ms"), "server_p99_ms": med("server", "p99_ms"),
            "server_mean_ms": med("server", "mean_ms"),
            "server_share_within_100ms": med("server", "share_within_100ms")}


def summarise(runs: list, seeded: dict, checks: dict, queues: list, names: list) -> dict:
    loaded = {name: [record[name] for record in runs] for name in names}
    single = {name: [record["one_connection"][name] for record in runs if "one_connection" in record]
              for name in names if name != HEALTHZ}
    single = {name: measured for name, measured in single.items() if measured}
    pages_ = {name: dict(figures(loaded[name]), rows_shown=checks.get(name),
                         vs_healthz=_r(median([m.get("vs_healthz") for m in loaded[name]]), 3),
                         vs_api_list=_r(median([m.get("vs_api_list") for m in loaded[name]]), 3))
              for name in names}
    for name, measured in single.items():
        pages_[name]["one_connection"] = figures(measured)
    lines = [target(f"{name} server p99", "<", GOALS["server_p99_ms"], pages_[name]["server_p99_ms"], "ms")
             for name in CONSOLE_PAGES]
    for name in CONSOLE_PAGES:
        figure = pages_[name]
        lines += [target(f"{name} rate", None, None, figure["rate_req_per_s"], "req/s"),
                  target(f"{name} wrk p99", None, None, figure["wrk_p99_ms"], "ms"),
                  target(f"{name} vs healthz", None, None, figure["vs_healthz"], "ratio"),
                  target(f"{name} vs api list", None, None, figure["vs_api_list"], "ratio")]
        if "one_connection" in figure:
            lines.append(target(f"{name} server p99, 1 connection", None, None,
                                figure["one_connection"]["server_p99_ms"], "ms"))
    for name in (HEALTHZ, API_LIST):
        figure = pages_[name]
        lines += [target(f"{name} rate (baseline)", None, None, figure["rate_req_per_s"], "req/s"),
                  target(f"{name} wrk p99 (baseline)", None, None, figure["wrk_p99_ms"], "ms"),
                  target(f"{name} server p99 (baseline)", None, None, figure["server_p99_ms"], "ms")]
        if "one_connection" in figure:
            lines.append(target(f"{name} server p99, 1 connection (baseline)", None, None,
                                figure["one_connection"]["server_p99_ms"], "ms"))
    failures = []
    for record in runs:
        measured = [(name, record[name]) for name in names] + \
            [(f"{name} (1 connection)", m) for name, m in record.get("one_connection", {}).items()]
        for name, r in measured:
            bad = r["non_2xx_3xx"] + r["socket_errors"]
            if bad > 0.01 * max(1, r["requests"]):
                failures.append(f"rep {record['rep']} {name}: {bad} of {r['requests']} failed")
            server = r["server"]
            if server["requests"] and server["status_200"] < 0.99 * server["requests"]:
                failures.append(f"rep {record['rep']} {name}: {server['requests'] - server['status_200']} "
                                f"of {server['requests']} answered other than 200 (server side)")
    bars = {"req/s, 8 connections (median)": {name: pages_[name]["rate_req_per_s"] for name in names},
            "server p99 ms, 8 connections (goal < 100 for console pages)":
                {name: pages_[name]["server_p99_ms"] for name in names}}
    if single:
        bars["server p99 ms, 1 connection"] = {name: pages_[name]["one_connection"]["server_p99_ms"]
                                               for name in single}
    breakdown = {name: rpc_breakdown(loaded[name]) for name in names if name != HEALTHZ}
    breakdown_single = {name: rpc_breakdown(measured) for name, measured in single.items()}
    for measured in [m for ms in loaded.values() for m in ms] + [m for ms in single.values() for m in ms]:
        measured["rpcs"] = {f"{service}.{entrypoint}": {"calls": int(hist["count"]),
                                                        "mean_ms": round(hist["sum"] / hist["count"] * 1000, 1)}
                            for service, found in measured["rpcs"].items() for entrypoint, hist in found.items()}
    result = {
        "targets": lines,
        "pages": pages_,
        "rpc_breakdown": breakdown,
        "rpc_breakdown_one_connection": breakdown_single,
        "bars": bars,
        "seeded": seeded,
        "queues": [queue["name"] for queue in queues],
        "runs": runs,
        "load_generator": runs[0][HEALTHZ]["tool"] if runs else None,
    }
    if failures:
        result["failure"] = "; ".join(failures)
        for line in result["targets"][:len(CONSOLE_PAGES)]:
            line["met"] = False
    return result


def _r(value, digits: int = 1):
    return None if value is None else round(value, digits)
