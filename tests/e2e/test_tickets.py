"""Tickets end to end, through the gateway only (plus the scheduler's RPC for the chat
sweep): real services, real broker, real database. Every test has a tenant of its own."""
import time
import uuid
from datetime import datetime, timedelta, timezone

from sqlalchemy import create_engine, text

from tests.harness import Client, eventually, new_tenant
from tests.harness import fetch_ticket as get
from tests.harness import ticket_timeline as timeline

SAO_PAULO = timezone(timedelta(hours=-3))


# --- helpers ----------------------------------------------------------------------------

def user(tenant, role: str, name: str, *, company_id: str | None = None):
    """A user with a name of our choosing, and a client signed in as them."""
    email = f"{role}-{uuid.uuid4().hex[:8]}@{tenant.slug}.test"
    response = tenant.admin.post("/api/admin/users", json={
        "email": email, "name": name, "role": role, "company_id": company_id,
        "password": "pass-word-1"})
    assert response.status_code == 201, response.text
    client = Client(tenant.system.base_url).sign_in(email, "pass-word-1", tenant=tenant.slug)
    return response.json(), client


def me(client: Client) -> dict:
    response = client.get("/api/me")
    assert response.status_code == 200, response.text
    return response.json()


def machine(tenant, *, seen_for: timedelta = timedelta(days=1), linked_to: str | None = None) -> str:
    """A machine enrolled in the tenant (a ticket's machine must be one of its own), last
    seen by devices `seen_for` from now: the chat sweep, which asks devices, then never ends
    a chat as DEVICE_OFFLINE under a test that moves the sweep's clock forward. `linked_to`:
    an email the machine is linked with (a collaborator's ticket names only their own)."""
    company = tenant.company()
    response = Client(tenant.system.base_url).post("/api/machines/register", json={
        "provisioning_code": company["provisioning_code"], "hostname": f"pc-{uuid.uuid4().hex[:6]}",
        "os": {"name": "Windows 11 Pro", "version": "11", "build": "26100", "arch": "x86_64"},
        "mac_addresses": ["3c:52:82:" + ":".join(uuid.uuid4().hex[i:i + 2] for i in (0, 2, 4))],
        "serial_numbers": [f"BR{uuid.uuid4().hex[:10].upper()}"],
        "collaborator": {"email": f"colab-{uuid.uuid4().hex[:8]}@{tenant.slug}.test", "name": "Maria"}})
    assert response.status_code == 201, response.text
    machine_id = response.json()["machine_id"]
    if linked_to is not None:
        linked = tenant.admin.post("/api/admin/devices/links", json={"machine_id": machine_id, "email": linked_to})
        assert linked.status_code == 201, linked.text
    engine = create_engine(tenant.system.database_url)
    try:
        with engine.begin() as connection:
            connection.execute(text("UPDATE devices.heartbeat_state SET last_seen_at = :seen "
                                    "WHERE machine_id = :machine"),
                               {"seen": datetime.now(timezone.utc) + seen_for, "machine": machine_id})
    finally:
        engine.dispose()
    return machine_id


def create(client: Client, subject: str = "Impressora não imprime", **fields) -> dict:
    response = client.post("/api/tickets", json={"subject": subject, "description": "d", **fields})
    assert response.status_code == 201, response.text
    return response.json()


def act(client: Client, ticket: dict | str, action: str, expect: int = 200, **body) -> dict:
    ticket_id = ticket["id"] if isinstance(ticket, dict) else ticket
    response = client.post(f"/api/tickets/{ticket_id}/{action}", json=body)
    assert response.status_code == expect, (action, response.status_code, response.text)
    return response.json()


def kinds(client: Client, ticket: dict) -> list[str]:
    return [entry["kind"] for entry in timeline(client, ticket)]


def error(response, status: int) -> dict:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error"} and {"code", "message", "details"} <= set(body["error"]), body
    return body["error"]


def ids(client: Client, **params) -> list[str]:
    response = client.get("/api/tickets", params=params)
    assert response.status_code == 200, (params, response.text)
    return [t["id"] for t in response.json()["items"]]


def recent(client: Client, **params) -> list[str]:
    response = client.get("/api/tickets/recent", params=params)
    assert response.status_code == 200, response.text
    return [t["id"] for t in response.json()["items"]]



def chat_of(client: Client, chat_id: str) -> dict:
    response = client.get(f"/api/chats/{chat_id}")
    assert response.status_code == 200, response.text
    return response.json()


def parse(moment: str) -> datetime:
    return datetime.fromisoformat(moment.replace("Z", "+00:00"))


# --- creation ---------------------------------------------------------------------------

def test_create_defaults_queue_references_and_subject_limit(system, rpc, tenant):
    admin = tenant.admin
    admin_id = me(admin)["id"]

    first = create(admin, "Sem rede no 2º andar")
    assert first["status"] == "PENDING"
    assert (first["status_label"], first["status_colour"]) == ("Pendente", "grey")
    assert first["priority"] == "MEDIUM"
    assert first["reference"] == 1
    assert first["requester"]["id"] == admin_id and first["assignee"] is None
    assert first["worked_seconds"] == {"INTERNAL": 0, "EXTERNAL": 0, "total": 0}
    assert first["work_in_progress"] is None and first["resolved_at"] is None

    queues = admin.get("/api/queues")
    assert queues.status_code == 200, queues.text
    by_name = {q["name"]: q["id"] for q in queues.json()["items"]}
    assert set(by_name) == {"Chamados"}
    assert first["queue_id"] == by_name["Chamados"]

    made = admin.post("/api/queues", json={"name": "Redes"})
    assert made.status_code == 201, made.text
    redes = made.json()
    assert {q["name"]: q["id"] for q in admin.get("/api/queues").json()["items"]} == {
        "Chamados": by_name["Chamados"], "Redes": redes["id"]}
    assert error(admin.post("/api/queues", json={"name": "redes"}), 409)["code"] == "queue_exists"

    second = create(admin, "VPN caiu", queue_id=redes["id"], priority="HIGH")
    assert second["queue_id"] == redes["id"]
    assert second["priority"] == "HIGH"
    assert second["reference"] == 2

    too_long = admin.post("/api/tickets", json={"subject": "x" * 601, "description": ""})
    assert error(too_long, 422)["code"] == "validation_failed"
    at_limit = create(admin, "y" * 600)
    assert at_limit["reference"] == 3  # the refused one took no number
    assert len(at_limit["subject"]) == 600

    unknown_queue = admin.post("/api/tickets", json={"subject": "s", "queue_id": str(uuid.uuid4())})
    assert unknown_queue.status_code == 404, unknown_queue.text
    assert get(admin, first) == first
    assert kinds(admin, first) == ["CREATED"]

    other = new_tenant(system, rpc)  # numbers are per tenant
    assert create(other.admin, "Outro cliente")["reference"] == 1
    assert create(admin, "Mais um")["reference"] == 4


# --- the status machine -----------------------------------------------------------------

def test_status_machine_and_invalid_moves(tenant):
    admin = tenant.admin
    agent_user, agent = tenant.person("agent")
    ticket = create(admin)

    refused = error(admin.post(f"/api/tickets/{ticket['id']}/pause", json={"reason": "NO_CONTACT"}), 409)
    assert refused["code"] == "invalid_transition"
    assert refused["details"]["current_status"] == "PENDING"
    refused = error(admin.post(f"/api/tickets/{ticket['id']}/reopen", json={}), 409)
    assert (refused["code"], refused["details"]["current_status"]) == ("invalid_transition", "PENDING")

    started = act(agent, ticket, "start")
    assert started["status"] == "AWAITING_ATTENDANCE"
    assert (started["status_label"], started["status_colour"]) == ("Em andamento", "blue")
    assert started["assignee"]["id"] == agent_user["id"]
    assert started["assignee"]["email"] == agent_user["email"]
    assert started["work_in_progress"] == "INTERNAL"
    entries = timeline(admin, ticket)
    assigned = [e for e in entries if e["kind"] == "ASSIGNED"]
    assert len(assigned) == 1 and assigned[0]["data"]["automatic"] is True
    assert assigned[0]["actor"]["id"] == agent_user["id"]
    work = [e for e in entries if e["kind"] == "WORK_STARTED"]
    assert len(work) == 1 and work[0]["actor"]["id"] == agent_user["id"]

    again = error(admin.post(f"/api/tickets/{ticket['id']}/start", json={}), 409)
    assert (again["code"], again["details"]["current_status"]) == ("invalid_transition",
                                                                   "AWAITING_ATTENDANCE")
    reopen_open = error(admin.post(f"/api/tickets/{ticket['id']}/reopen", json={}), 409)
    assert reopen_open["details"]["current_status"] == "AWAITING_ATTENDANCE"

    assert error(agent.post(f"/api/tickets/{ticket['id']}/pause", json={}), 422)["code"] == "validation_failed"
    # automatic reasons are not for people
    assert agent.post(f"/api/tickets/{ticket['id']}/pause", json={"reason": "LUNCH_BREAK"}).status_code == 422
    assert get(admin, ticket)["status"] == "AWAITING_ATTENDANCE"

    paused = act(agent, ticket, "pause", reason="WAITING_THIRD_PARTY")
    assert paused["status"] == "PAUSED" and paused["status_label"] == "Pausado"
    assert paused["work_in_progress"] is None
    twice = error(agent.post(f"/api/tickets/{ticket['id']}/pause", json={"reason": "NO_CONTACT"}), 409)
    assert twice["details"]["current_status"] == "PAUSED"
    pause_entry = [e for e in timeline(admin, ticket) if e["kind"] == "PAUSED"]
    assert [e["data"]["reason"] for e in pause_entry] == ["WAITING_THIRD_PARTY"]

    resumed = act(agent, ticket, "start", work_type="EXTERNAL")
    assert resumed["status"] == "AWAITING_ATTENDANCE"
    assert resumed["work_in_progress"] == "EXTERNAL"
    assert resumed["assignee"]["id"] == agent_user["id"]

    resolved = act(admin, ticket, "resolve", message="Trocado o cabo de rede")
    assert resolved["status"] == "RESOLVED" and resolved["status_colour"] == "green"
    assert resolved["resolved_at"] is not None
    assert resolved["work_in_progress"] is None
    fetched = get(admin, ticket)
    assert fetched["work_in_progress"] is None and fetched["resolved_at"] is not None
    closing = [e for e in timeline(admin, ticket) if e["kind"] == "RESOLVED"]
    assert len(closing) == 1 and closing[0]["data"]["message"] == "Trocado o cabo de rede"

    for action, body in (("start", {}), ("pause", {"reason": "NO_CONTACT"}), ("resolve", {})):
        refused = error(admin.post(f"/api/tickets/{ticket['id']}/{action}", json=body), 409)
        assert (refused["code"], refused["details"]["current_status"]) == ("invalid_transition", "RESOLVED")

    reopened = act(agent, ticket, "reopen")
    assert reopened["status"] == "PENDING"
    assert kinds(admin, ticket) == ["CREATED", "ASSIGNED", "WORK_STARTED", "PAUSED", "WORK_STARTED",
                                    "RESOLVED", "REOPENED"]

    # resolve straight from PENDING and from PAUSED, without a message
    assert act(admin, create(admin), "resolve")["status"] == "RESOLVED"


def test_worked_seconds_by_type_and_resolve_closes_the_session(tenant):
    _, agent = tenant.person("agent")
    ticket = create(tenant.admin)

    act(agent, ticket, "start", work_type="INTERNAL")
    time.sleep(1.1)
    paused = act(agent, ticket, "pause", reason="IN_PROCEDURE")
    worked = paused["worked_seconds"]
    assert worked["INTERNAL"] >= 1 and worked["EXTERNAL"] == 0
    assert worked["total"] == worked["INTERNAL"] + worked["EXTERNAL"]
    assert get(agent, ticket)["worked_seconds"] == worked

    assert act(agent, ticket, "start", work_type="EXTERNAL")["work_in_progress"] == "EXTERNAL"
    time.sleep(1.1)
    resolved = act(agent, ticket, "resolve", message="ok")
    after = resolved["worked_seconds"]
    assert after["INTERNAL"] == worked["INTERNAL"]
    assert after["EXTERNAL"] >= 1
    assert after["total"] == after["INTERNAL"] + after["EXTERNAL"]
    fetched = get(agent, ticket)
    assert fetched["work_in_progress"] is None
    assert fetched["worked_seconds"] == after
    assert fetched["status"] == "RESOLVED"


# --- comments ---------------------------------------------------------------------------

def test_comment_rules_and_what_collaborators_see(tenant):
    admin = tenant.admin
    requester_user, requester = tenant.person("collaborator")
    agent_user, agent = tenant.person("agent")
    _, stranger = tenant.person("collaborator")
    ticket = create(requester, "Meu e-mail não sincroniza")
    path = f"/api/tickets/{ticket['id']}/comments"

    unassigned = error(agent.post(path, json={"body": "vou olhar", "visibility": "PUBLIC"}), 409)
    assert unassigned["code"] == "ticket_unassigned"
    assert error(admin.post(path, json={"body": "nota", "visibility": "INTERNAL"}), 409)["code"] == "ticket_unassigned"

    mine = requester.post(path, json={"body": "Alguém pode ajudar?", "visibility": "PUBLIC"})
    assert mine.status_code == 201, mine.text
    assert mine.json()["author"]["id"] == requester_user["id"]
    assert error(requester.post(path, json={"body": "segredo", "visibility": "INTERNAL"}), 403)

    act(admin, ticket, "assign", assignee_id=agent_user["id"])
    internal = agent.post(path, json={"body": "nota interna", "visibility": "INTERNAL"})
    assert internal.status_code == 201, internal.text
    assert internal.json()["visibility"] == "INTERNAL"
    public = agent.post(path, json={"body": "Estou verificando", "visibility": "PUBLIC"})
    assert public.status_code == 201, public.text
    assert public.json()["author"] == {"id": agent_user["id"], "name": agent_user["name"],
                                       "email": agent_user["email"]}

    assert error(agent.post(path, json={"body": "z" * 20_001, "visibility": "PUBLIC"}), 422)["code"] == "validation_failed"
    assert error(requester.post(path, json={"body": "z" * 20_001}), 422)
    assert agent.post(path, json={"body": "z" * 20_000, "visibility": "INTERNAL"}).status_code == 201
    assert error(stranger.post(path, json={"body": "oi"}), 404)

    staff_view = agent.get(path).json()["items"]
    assert [c["body"][:20] for c in staff_view] == ["Alguém pode ajudar?", "nota interna",
                                                    "Estou verificando", "z" * 20]
    collaborator_view = requester.get(path)
    assert collaborator_view.status_code == 200
    assert [c["body"] for c in collaborator_view.json()["items"]] == ["Alguém pode ajudar?",
                                                                       "Estou verificando"]
    assert all(c["visibility"] == "PUBLIC" for c in collaborator_view.json()["items"])

    staff_comments = [e["data"]["visibility"] for e in timeline(agent, ticket) if e["kind"] == "COMMENT_ADDED"]
    assert staff_comments == ["PUBLIC", "INTERNAL", "PUBLIC", "INTERNAL"]
    seen = timeline(requester, ticket)
    assert [e["data"]["visibility"] for e in seen if e["kind"] == "COMMENT_ADDED"] == ["PUBLIC", "PUBLIC"]
    internal_id = internal.json()["id"]
    assert all(e["data"].get("comment_id") != internal_id for e in seen)
    assert all(e["data"].get("visibility") != "INTERNAL" for e in seen)


# --- lists ------------------------------------------------------------------------------

def test_every_list_filter(tenant):
    admin = tenant.admin
    empresa_a, empresa_b = tenant.company("Empresa A"), tenant.company("Empresa B")
    ana, _ = tenant.person("collaborator", company_id=empresa_a["id"])
    bruno, _ = tenant.person("collaborator", company_id=empresa_b["id"])
    agent1, client1 = tenant.person("agent")
    agent2, client2 = tenant.person("agent")
    redes = admin.post("/api/queues", json={"name": "Redes"}).json()
    chamados = next(q["id"] for q in admin.get("/api/queues").json()["items"] if q["name"] == "Chamados")

    a = create(admin, "Impressora travada", requester_id=ana["id"], priority="HIGH")
    b = create(admin, "VPN caiu", requester_id=bruno["id"], priority="LOW", queue_id=redes["id"])
    c = create(admin, "IMPRESSORA sem toner", requester_id=ana["id"], priority="URGENT",
               company_id=empresa_b["id"])
    d = create(admin, "Senha expirada 100% das vezes", queue_id=redes["id"])
    assert a["company"] == {"id": empresa_a["id"], "name": "Empresa A"}  # from the requester
    assert c["company"]["id"] == empresa_b["id"]  # staff may say otherwise
    assert d["company"] is None

    act(client1, a, "start")                                   # a: AWAITING, agent1
    act(admin, b, "assign", assignee_id=agent2["id"])          # b: PENDING, agent2
    act(client2, c, "start")
    act(client2, c, "pause", reason="NO_CONTACT")              # c: PAUSED, agent2
    act(admin, d, "resolve")                                   # d: RESOLVED, unassigned

    A, B, C, D = a["id"], b["id"], c["id"], d["id"]
    assert ids(admin) == [D, C, B, A]  # newest first
    assert ids(admin, status="PENDING") == [B]
    assert ids(admin, status="AWAITING_ATTENDANCE") == [A]
    assert ids(admin, status="PAUSED") == [C]
    assert ids(admin, status="RESOLVED") == [D]
    assert ids(admin, queue_id=redes["id"]) == [D, B]
    assert ids(admin, queue_id=chamados) == [C, A]
    assert ids(admin, assignee_id=agent1["id"]) == [A]
    assert ids(admin, assignee_id=agent2["id"]) == [C, B]
    assert ids(admin, assignee_id="unassigned") == [D]
    assert ids(admin, company_id=empresa_a["id"]) == [A]
    assert ids(admin, company_id=empresa_b["id"]) == [C, B]
    assert ids(admin, requester_id=ana["id"]) == [C, A]
    assert ids(admin, requester_id=bruno["id"]) == [B]
    assert ids(admin, priority="HIGH") == [A]
    assert ids(admin, priority="MEDIUM") == [D]
    assert ids(admin, priority="URGENT") == [C]
    assert ids(admin, q="impressora") == [C, A]
    assert ids(admin, q="vPn") == [B]
    assert ids(admin, q="100%") == [D]
    assert ids(admin, q="%") == [D]   # a literal percent sign, not a wildcard
    assert ids(admin, q="_") == []    # a literal underscore, not a wildcard
    assert ids(admin, q="teclado") == []
    assert ids(admin, requester_id=ana["id"], status="PAUSED") == [C]
    assert ids(admin, assignee_id=agent2["id"], queue_id=redes["id"]) == [B]

    created = {t["id"]: parse(t["created_at"]) for t in (a, b, c, d)}
    between_a_b = created[A] + (created[B] - created[A]) / 2
    between_c_d = created[C] + (created[D] - created[C]) / 2
    assert ids(admin, created_from=between_a_b.isoformat()) == [D, C, B]
    assert ids(admin, created_to=between_c_d.isoformat()) == [C, B, A]
    assert ids(admin, created_from=between_a_b.astimezone(SAO_PAULO).isoformat(),
               created_to=between_c_d.astimezone(SAO_PAULO).isoformat()) == [C, B]
    assert ids(admin, created_from=b["created_at"], created_to=between_c_d.isoformat()) == [C, B]
    later = (created[D] + timedelta(minutes=1)).isoformat()
    assert ids(admin, created_from=later) == []

    for bad in ({"status": "OPEN"}, {"assignee_id": "nobody"}, {"priority": "low"},
                {"created_from": "2024-01-01T10:00:00"},  # no timezone
                {"queue_id": "not-a-uuid"}, {"cursor": "garbage"}, {"limit": 0}):
        assert error(admin.get("/api/tickets", params=bad), 422)["code"] == "validation_failed", bad


def test_keyset_pagination_walks_every_ticket_once_despite_new_ones(tenant):
    admin = tenant.admin
    made = [create(admin, f"Chamado {n}")["id"] for n in range(5)]

    first = admin.get("/api/tickets", params={"limit": 2}).json()
    assert [t["id"] for t in first["items"]] == [made[4], made[3]]
    assert first["next_cursor"]

    newcomers = [create(admin, f"Novo {n}")["id"] for n in range(2)]  # between page requests

    second = admin.get("/api/tickets", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [t["id"] for t in second["items"]] == [made[2], made[1]]
    newcomers.append(create(admin, "Mais um novo")["id"])
    third = admin.get("/api/tickets", params={"limit": 2, "cursor": second["next_cursor"]}).json()
    assert [t["id"] for t in third["items"]] == [made[0]]
    assert third["next_cursor"] is None
    walked = [t["id"] for page in (first, second, third) for t in page["items"]]
    assert walked == list(reversed(made))
    assert not set(walked) & set(newcomers)

    seen, cursor, pages = [], None, 0
    while True:
        page = admin.get("/api/tickets", params={"limit": 2, **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200, page.text
        seen += [t["id"] for t in page.json()["items"]]
        pages += 1
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(made + newcomers))
    assert pages == 4 and len(set(seen)) == 8

    # a filtered walk pages the same way
    filtered, cursor = [], None
    while True:
        page = admin.get("/api/tickets", params={"limit": 2, "q": "novo",
                                                 **({"cursor": cursor} if cursor else {})}).json()
        filtered += [t["id"] for t in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert filtered == list(reversed(newcomers))


def test_recent_puts_unassigned_first_then_latest_updated(tenant):
    admin = tenant.admin
    agent_user, agent = tenant.person("agent")
    x1 = create(admin, "x1")
    u1 = create(admin, "u1")
    x2 = create(admin, "x2")
    u2 = create(admin, "u2")
    x3 = create(admin, "x3")
    act(admin, x1, "assign", assignee_id=agent_user["id"])
    act(agent, x2, "start")
    act(admin, x3, "assign", assignee_id=agent_user["id"])
    U1, U2, X1, X2, X3 = (t["id"] for t in (u1, u2, x1, x2, x3))

    assert recent(admin) == [U1, U2, X3, X2, X1]
    act(agent, x1, "start")  # touched: to the front of the assigned part
    assert recent(admin) == [U1, U2, X1, X3, X2]
    act(agent, x2, "pause", reason="NO_CONTACT")
    assert recent(admin) == [U1, U2, X2, X1, X3]
    # editing an unassigned ticket does not move it: that part is by age
    assert admin.patch(f"/api/tickets/{u1['id']}", json={"priority": "URGENT"}).status_code == 200
    assert recent(admin) == [U1, U2, X2, X1, X3]
    assert recent(admin, limit=3) == [U1, U2, X2]
    assert recent(admin, limit=1) == [U1]
    act(admin, u1, "assign", assignee_id=agent_user["id"])  # leaves the unassigned part
    assert recent(admin) == [U2, U1, X2, X1, X3]
    assert error(admin.get("/api/tickets/recent", params={"limit": 0}), 422)


# --- who sees what ----------------------------------------------------------------------

def test_collaborators_see_and_do_only_what_is_theirs(tenant):
    admin = tenant.admin
    ana_user, ana = tenant.person("collaborator")
    bruno_user, bruno = tenant.person("collaborator")

    mine = create(ana, "Meu monitor piscando", requester_id=bruno_user["id"])
    assert mine["requester"]["id"] == ana_user["id"]  # a collaborator asks for themself
    theirs = create(bruno, "Teclado")
    staff = create(admin, "Servidor lento")

    assert ids(ana) == [mine["id"]]
    assert ids(ana, requester_id=bruno_user["id"]) == []
    assert ids(ana, status="PENDING") == [mine["id"]]
    assert recent(ana) == [mine["id"]]
    assert ids(bruno) == [theirs["id"]]
    assert ids(admin) == [staff["id"], theirs["id"], mine["id"]]
    assert get(ana, mine)["id"] == mine["id"]

    for path in (f"/api/tickets/{theirs['id']}", f"/api/tickets/{theirs['id']}/comments",
                 f"/api/tickets/{theirs['id']}/events", f"/api/tickets/{staff['id']}"):
        assert error(ana.get(path), 404)["code"] == "ticket_not_found", path
    assert error(ana.post(f"/api/tickets/{theirs['id']}/comments", json={"body": "oi"}), 404)

    for action, body in (("start", {}), ("pause", {"reason": "NO_CONTACT"}), ("resolve", {}),
                         ("assign", {"assignee_id": ana_user["id"]}), ("reopen", {}), ("chat", {})):
        refused = error(ana.post(f"/api/tickets/{mine['id']}/{action}", json=body), 403)
        assert refused["code"] == "forbidden_role", action
    assert error(ana.patch(f"/api/tickets/{mine['id']}", json={"priority": "URGENT"}), 403)
    assert get(admin, mine)["status"] == "PENDING"
    assert get(admin, mine)["priority"] == "MEDIUM"


def test_another_tenants_ticket_is_404(system, rpc, tenant):
    other = new_tenant(system, rpc)
    foreign = create(other.admin, "Do outro tenant")
    admin = tenant.admin
    base = f"/api/tickets/{foreign['id']}"
    assert error(admin.get(base), 404)["code"] == "ticket_not_found"
    assert error(admin.get(f"{base}/comments"), 404)["code"] == "ticket_not_found"
    assert error(admin.get(f"{base}/events"), 404)["code"] == "ticket_not_found"
    for action, body in (("start", {}), ("resolve", {}), ("assign", {"assignee_id": None}),
                         ("comments", {"body": "oi"}), ("chat", {})):
        assert error(admin.post(f"{base}/{action}", json=body), 404)["code"] == "ticket_not_found", action
    assert error(admin.patch(base, json={"subject": "meu"}), 404)
    assert foreign["id"] not in ids(admin) and foreign["id"] not in recent(admin)
    untouched = get(other.admin, foreign)
    assert untouched["status"] == "PENDING" and untouched["subject"] == "Do outro tenant"


# --- assignment -------------------------------------------------------------------------

def test_assign_rules_and_assignee_snapshot(tenant):
    admin = tenant.admin
    first, first_client = user(tenant, "agent", "Carla Técnica")
    second, _ = user(tenant, "agent", "Diego Suporte")
    collaborator, _ = tenant.person("collaborator")
    ticket = create(admin)

    not_staff = error(admin.post(f"/api/tickets/{ticket['id']}/assign",
                                 json={"assignee_id": collaborator["id"]}), 409)
    assert not_staff["code"] == "assignee_not_staff"
    assert error(admin.post(f"/api/tickets/{ticket['id']}/assign",
                            json={"assignee_id": str(uuid.uuid4())}), 404)
    assert get(admin, ticket)["assignee"] is None

    act(first_client, ticket, "start")
    busy = error(admin.post(f"/api/tickets/{ticket['id']}/assign", json={"assignee_id": None}), 409)
    assert busy["code"] == "ticket_in_progress"
    assert get(admin, ticket)["assignee"]["id"] == first["id"]

    act(first_client, ticket, "pause", reason="NO_CONTACT")
    moved = act(admin, ticket, "assign", assignee_id=second["id"])
    expected = {"id": second["id"], "name": "Diego Suporte", "email": second["email"]}
    assert moved["assignee"] == expected
    assert get(admin, ticket)["assignee"] == expected
    listed = admin.get("/api/tickets", params={"assignee_id": second["id"]}).json()["items"]
    assert [t["assignee"] for t in listed] == [expected]
    manual = [e for e in timeline(admin, ticket) if e["kind"] == "ASSIGNED"][-1]
    assert manual["data"] == {"assignee_id": second["id"], "automatic": False}

    left = act(admin, ticket, "assign", assignee_id=None)  # allowed while PAUSED
    assert left["assignee"] is None
    assert ids(admin, assignee_id="unassigned") == [ticket["id"]]

    act(admin, ticket, "resolve")
    closed = error(admin.post(f"/api/tickets/{ticket['id']}/assign",
                              json={"assignee_id": first["id"]}), 409)
    assert (closed["code"], closed["details"]["current_status"]) == ("invalid_transition", "RESOLVED")


# --- live chat --------------------------------------------------------------------------

def test_live_chat_opens_external_work_and_ending_pauses(tenant):
    admin = tenant.admin
    agent_user, agent = tenant.person("agent")
    requester_user, requester = tenant.person("collaborator")
    _, stranger = tenant.person("collaborator")
    # with a machine: the chat sweep (NO_DEVICE) must not end this chat under our feet
    ticket = create(requester, "Preciso de ajuda agora", machine_id=machine(tenant, linked_to=requester_user["email"]))
    act(admin, ticket, "assign", assignee_id=agent_user["id"])

    opened = agent.post(f"/api/tickets/{ticket['id']}/chat", json={})
    assert opened.status_code == 201, opened.text
    chat = opened.json()
    assert chat["ticket_id"] == ticket["id"] and chat["started_by"] == agent_user["id"]
    assert chat["ended_at"] is None and chat["messages"] == []
    working = get(agent, ticket)
    assert working["status"] == "AWAITING_ATTENDANCE"
    assert working["work_in_progress"] == "EXTERNAL"
    assert working["assignee"]["id"] == agent_user["id"]

    twice = error(agent.post(f"/api/tickets/{ticket['id']}/chat", json={}), 409)
    assert twice["code"] == "chat_in_progress"

    sent = agent.post(f"/api/chats/{chat['id']}/messages", json={"body": "Olá, pode me ouvir?"})
    assert sent.status_code == 201, sent.text
    reply = requester.post(f"/api/chats/{chat['id']}/messages", json={"body": "Sim!"})
    assert reply.status_code == 201, reply.text
    listed = chat_of(requester, chat["id"])["messages"]
    assert [(m["author"]["id"], m["body"]) for m in listed] == [
        (agent_user["id"], "Olá, pode me ouvir?"), (requester_user["id"], "Sim!")]
    assert error(stranger.get(f"/api/chats/{chat['id']}"), 404)
    assert error(agent.get(f"/api/chats/{uuid.uuid4()}"), 404)

    ended = agent.post(f"/api/chats/{chat['id']}/end", json={})
    assert ended.status_code == 200, ended.text
    assert ended.json()["ended_at"] is not None
    paused = get(agent, ticket)
    assert paused["status"] == "PAUSED" and paused["work_in_progress"] is None
    assert paused["worked_seconds"]["EXTERNAL"] >= 0
    assert paused["worked_seconds"]["total"] == (paused["worked_seconds"]["INTERNAL"]
                                                 + paused["worked_seconds"]["EXTERNAL"])
    entries = timeline(agent, ticket)
    names = [e["kind"] for e in entries]
    assert names[-2:] == ["PAUSED", "CHAT_ENDED"], names
    assert {"WORK_STARTED", "CHAT_STARTED"} <= set(names), names
    pause_entry = next(e for e in entries if e["kind"] == "PAUSED")
    assert pause_entry["data"]["reason"] == "END_LIVE_CHAT"
    assert next(e for e in entries if e["kind"] == "CHAT_ENDED")["data"]["chat_id"] == chat["id"]

    late = error(agent.post(f"/api/chats/{chat['id']}/messages", json={"body": "ainda aí?"}), 409)
    assert late["code"] == "chat_ended"
    assert error(agent.post(f"/api/chats/{chat['id']}/end", json={}), 409)["code"] == "chat_ended"

    # a new chat may follow the ended one, and again opens EXTERNAL work
    again = agent.post(f"/api/tickets/{ticket['id']}/chat", json={})
    assert again.status_code == 201, again.text
    assert get(agent, ticket)["work_in_progress"] == "EXTERNAL"
    assert agent.post(f"/api/chats/{again.json()['id']}/end", json={}).status_code == 200
    assert get(agent, ticket)["status"] == "PAUSED"

    act(agent, ticket, "resolve")
    closed = error(agent.post(f"/api/tickets/{ticket['id']}/chat", json={}), 409)
    assert (closed["code"], closed["details"]["current_status"]) == ("invalid_transition", "RESOLVED")


def test_a_live_chat_needs_a_ticket_with_a_machine(tenant, rpc):
    """The chat talks to the ticket's machine: without one it is refused at start (it used
    to be accepted, then ended as NO_DEVICE by the next cleanup tick)."""
    admin = tenant.admin
    agent_user, agent = tenant.person("agent")
    ticket = create(admin, "Sem máquina")
    act(admin, ticket, "assign", assignee_id=agent_user["id"])

    refused = error(agent.post(f"/api/tickets/{ticket['id']}/chat", json={}), 409)
    assert refused["code"] == "chat_needs_device", refused
    assert "machine" in refused["message"], refused
    untouched = get(agent, ticket)
    assert untouched["status"] == "PENDING" and untouched["work_in_progress"] is None
    assert "CHAT_STARTED" not in kinds(agent, ticket)

    # once the ticket names its machine, the chat starts and the cleanup leaves it running
    updated = admin.patch(f"/api/tickets/{ticket['id']}", json={"machine_id": machine(tenant)})
    assert updated.status_code == 200, updated.text
    opened = agent.post(f"/api/tickets/{ticket['id']}/chat", json={})
    assert opened.status_code == 201, opened.text
    rpc.tickets.end_inactive_chats(datetime.now(timezone.utc).isoformat())
    assert chat_of(agent, opened.json()["id"])["ended_at"] is None


def test_chat_sweep_ends_idle_chats_and_those_whose_ticket_lost_its_device(tenant, rpc):
    admin = tenant.admin
    agent_user, agent = tenant.person("agent")
    with_machine = create(admin, "Na máquina do usuário", machine_id=machine(tenant))
    without = create(admin, "Máquina retirada do chamado", machine_id=machine(tenant))
    chats = {}
    for ticket in (with_machine, without):
        act(admin, ticket, "assign", assignee_id=agent_user["id"])
        response = agent.post(f"/api/tickets/{ticket['id']}/chat", json={})
        assert response.status_code == 201, response.text
        chats[ticket["id"]] = response.json()["id"]
    # a chat starts only with a machine; its ticket may lose it afterwards
    cleared = admin.patch(f"/api/tickets/{without['id']}", json={"machine_id": None})
    assert cleared.status_code == 200 and cleared.json()["machine_id"] is None, cleared.text

    now = datetime.now(timezone.utc)
    swept = rpc.tickets.end_inactive_chats(now.isoformat())
    assert "IDLE" not in swept["reasons"], swept
    assert swept["ended"] == sum(swept["reasons"].values())
    gone = chat_of(agent, chats[without["id"]])
    assert gone["end_reason"] == "NO_DEVICE" and gone["ended_at"] is not None
    assert get(agent, without)["status"] == "PAUSED"
    ended_entry = [e for e in timeline(agent, without) if e["kind"] == "CHAT_ENDED"]
    assert [e["data"]["reason"] for e in ended_entry] == ["NO_DEVICE"]
    assert chat_of(agent, chats[with_machine["id"]])["ended_at"] is None
    assert get(agent, with_machine)["status"] == "AWAITING_ATTENDANCE"

    not_yet = rpc.tickets.end_inactive_chats((now + timedelta(hours=11)).isoformat())
    assert "IDLE" not in not_yet["reasons"], not_yet  # 11 h without a message is not idle yet
    assert chat_of(agent, chats[with_machine["id"]])["ended_at"] is None

    idle = rpc.tickets.end_inactive_chats((now + timedelta(hours=13)).isoformat())
    assert idle["reasons"].get("IDLE", 0) >= 1, idle
    assert idle["ended"] == sum(idle["reasons"].values())
    stale = chat_of(agent, chats[with_machine["id"]])
    assert stale["end_reason"] == "IDLE" and stale["ended_at"] is not None
    paused = get(agent, with_machine)
    assert paused["status"] == "PAUSED" and paused["work_in_progress"] is None
    entries = timeline(agent, with_machine)
    ended_entry = [e for e in entries if e["kind"] == "CHAT_ENDED"]
    assert len(ended_entry) == 1 and ended_entry[0]["data"]["reason"] == "IDLE"
    assert [e["data"]["reason"] for e in entries if e["kind"] == "PAUSED"] == ["END_LIVE_CHAT"]

    assert rpc.tickets.end_inactive_chats((now + timedelta(hours=13)).isoformat()) == {
        "ended": 0, "reasons": {}}


# --- snapshots and merges ---------------------------------------------------------------

def test_renames_refresh_ticket_snapshots(tenant):
    admin = tenant.admin
    company = tenant.company("Padaria Central")
    requester, _ = user(tenant, "collaborator", "Maria Souza", company_id=company["id"])
    agent, _ = user(tenant, "agent", "João Lima")
    ticket = create(admin, "Caixa não liga", requester_id=requester["id"])
    act(admin, ticket, "assign", assignee_id=agent["id"])
    assert ticket["requester"]["name"] == "Maria Souza"
    assert ticket["company"] == {"id": company["id"], "name": "Padaria Central"}

    new_email = f"maria.silva-{uuid.uuid4().hex[:6]}@example.com"
    renamed = admin.patch(f"/api/admin/users/{requester['id']}",
                          json={"name": "Maria Silva", "email": new_email})
    assert renamed.status_code == 200, renamed.text
    assert admin.patch(f"/api/admin/users/{agent['id']}", json={"name": "João P. Lima"}).status_code == 200
    assert admin.patch(f"/api/admin/companies/{company['id']}",
                       json={"name": "Padaria Central Ltda"}).status_code == 200

    def refreshed():
        current = get(admin, ticket)
        return current if (current["requester"] == {"id": requester["id"], "name": "Maria Silva",
                                                     "email": new_email}
                           and current["assignee"]["name"] == "João P. Lima"
                           and current["company"]["name"] == "Padaria Central Ltda") else None

    current = eventually(refreshed)
    assert current, get(admin, ticket)
    assert current["assignee"] == {"id": agent["id"], "name": "João P. Lima", "email": agent["email"]}
    listed = admin.get("/api/tickets", params={"requester_id": requester["id"]}).json()["items"]
    assert [(t["requester"]["name"], t["company"]["name"]) for t in listed] == [
        ("Maria Silva", "Padaria Central Ltda")]


def test_merge_remaps_requester_assignee_comments_and_timeline(tenant):
    admin = tenant.admin
    a_user, a_client = user(tenant, "collaborator", "Ana Antiga")
    b_user, b_client = user(tenant, "agent", "Beto Antigo")
    c_user, c_client = user(tenant, "collaborator", "Ana Nova")
    d_user, _ = user(tenant, "agent", "Beto Novo")

    requested = create(a_client, "Pedido da Ana")
    a_comment = a_client.post(f"/api/tickets/{requested['id']}/comments", json={"body": "ajuda"})
    assert a_comment.status_code == 201, a_comment.text
    worked = create(admin, "Atendido pelo Beto")
    act(b_client, worked, "start")
    b_comment = b_client.post(f"/api/tickets/{worked['id']}/comments",
                              json={"body": "verificando", "visibility": "INTERNAL"})
    assert b_comment.status_code == 201, b_comment.text

    for source, target in ((a_user, c_user), (b_user, d_user)):
        merged = admin.post("/api/admin/users/merge",
                            json={"from_user_id": source["id"], "into_user_id": target["id"]})
        assert merged.status_code == 200, merged.text

    def remapped():
        first, second = get(admin, requested), get(admin, worked)
        return (first["requester"]["id"] == c_user["id"]
                and second["assignee"]["id"] == d_user["id"]) and (first, second)

    result = eventually(remapped)
    assert result, (get(admin, requested), get(admin, worked))
    first, second = result
    assert first["requester"] == {"id": c_user["id"], "name": "Ana Nova", "email": c_user["email"]}
    assert second["assignee"] == {"id": d_user["id"], "name": "Beto Novo", "email": d_user["email"]}

    assert [c["author"]["id"] for c in admin.get(f"/api/tickets/{requested['id']}/comments").json()["items"]] == [c_user["id"]]
    assert [c["author"]["id"] for c in admin.get(f"/api/tickets/{worked['id']}/comments").json()["items"]] == [d_user["id"]]
    actors = {e["kind"]: e["actor"]["id"] for e in timeline(admin, requested) if e["actor"]}
    assert actors == {"CREATED": c_user["id"], "COMMENT_ADDED": c_user["id"]}
    actors = {e["kind"]: e["actor"]["id"] for e in timeline(admin, worked) if e["actor"]}
    assert actors["WORK_STARTED"] == d_user["id"] and actors["COMMENT_ADDED"] == d_user["id"]
    assert actors["CREATED"] != b_user["id"]
    everyone = {e["actor"]["id"] for t in (requested, worked) for e in timeline(admin, t) if e["actor"]}
    assert not everyone & {a_user["id"], b_user["id"]}

    assert ids(admin, requester_id=c_user["id"]) == [requested["id"]]
    assert ids(admin, requester_id=a_user["id"]) == []
    assert ids(admin, assignee_id=d_user["id"]) == [worked["id"]]
    assert ids(admin, assignee_id=b_user["id"]) == []
    assert ids(c_client) == [requested["id"]]  # the surviving account now sees the ticket


def test_assignees_are_the_tenants_staff_and_a_ticket_is_found_by_its_number(tenant):
    agent, agent_client = user(tenant, "agent", "Zélia Atendente")
    collaborator, collaborator_client = user(tenant, "collaborator", "Caio Colaborador")
    manager, _ = user(tenant, "manager", "Mário Gestor")

    def staff_ids():
        answer = agent_client.get("/api/assignees")
        assert answer.status_code == 200, answer.text
        return {person["id"] for person in answer.json()["items"]}

    # the tickets service learns people from accounts' events
    assert eventually(lambda: {agent["id"], manager["id"]} <= staff_ids())
    assert collaborator["id"] not in staff_ids()
    assert collaborator_client.get("/api/assignees").status_code == 403

    created = collaborator_client.post("/api/tickets", json={"subject": "Teclado sem acento"}).json()
    by_number = collaborator_client.get(f"/api/tickets/{created['reference']}")
    assert by_number.status_code == 200 and by_number.json()["id"] == created["id"]
    assert collaborator_client.get("/api/tickets/999999").status_code == 404


def test_a_collaborator_names_only_a_machine_of_their_own(tenant):
    """Assigned or linked to them; another person's machine of the tenant is not found for
    them (staff may name any of the tenant's)."""
    user, collaborator = tenant.person("collaborator")
    someone_elses = machine(tenant)
    refused = error(collaborator.post("/api/tickets", json={"subject": "s", "description": "d",
                                                            "machine_id": someone_elses}), 404)
    assert refused["code"] == "machine_not_found"
    own = machine(tenant, linked_to=user["email"])
    assert create(collaborator, machine_id=own)["machine_id"] == own
    assert create(tenant.admin, machine_id=someone_elses)["machine_id"] == someone_elses
