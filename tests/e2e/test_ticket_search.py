"""Ticket search and list options end to end (issue 13, item 6): `q` searches subject,
description and public comments, accent-insensitive, by whole (stemmed) words; plain dates in
`created_from`/`created_to` are whole days in São Paulo; `assignee_id=me`; `count=true`."""
from datetime import date, datetime, timedelta, timezone

from tests.harness import Client

SAO_PAULO = timezone(timedelta(hours=-3))


def create(client: Client, subject: str, description: str = "", **fields) -> dict:
    response = client.post("/api/tickets", json={"subject": subject, "description": description,
                                                 **fields})
    assert response.status_code == 201, response.text
    return response.json()


def take(client: Client, ticket: dict) -> None:
    """Comments need an assignee: the (staff) client takes the ticket."""
    me = client.get("/api/me").json()
    response = client.post(f"/api/tickets/{ticket['id']}/assign", json={"assignee_id": me["id"]})
    assert response.status_code == 200, response.text


def comment(client: Client, ticket: dict, body: str, visibility: str = "PUBLIC") -> None:
    response = client.post(f"/api/tickets/{ticket['id']}/comments",
                           json={"body": body, "visibility": visibility})
    assert response.status_code == 201, response.text


def listing(client: Client, **params) -> dict:
    response = client.get("/api/tickets", params=params)
    assert response.status_code == 200, (params, response.text)
    return response.json()


def ids(client: Client, **params) -> list[str]:
    return [t["id"] for t in listing(client, **params)["items"]]


def test_q_searches_subject_description_and_public_comments_without_accents(tenant):
    admin = tenant.admin
    outlook = create(admin, "E-mail não sincroniza", "O Outlook fecha sozinho ao abrir")
    teams = create(admin, "Reunião sem áudio", "microfone mudo")
    take(admin, teams)
    comment(admin, teams, "Reinstalei o Teams e voltou")
    accented = create(admin, "Falha de impressão no financeiro")
    plain = create(admin, "Erro geral", "impressao sem acento nenhum")
    printer = create(admin, "Impressora travada")
    other = create(admin, "Senha expirada")

    assert ids(admin, q="Outlook") == [outlook["id"]]        # only in the description
    assert ids(admin, q="outlook") == [outlook["id"]]
    assert ids(admin, q="teams") == [teams["id"]]            # only in a public comment
    assert ids(admin, q="impressao") == [plain["id"], accented["id"]]   # accents both ways
    assert ids(admin, q="impressão") == [plain["id"], accented["id"]]
    assert ids(admin, q="IMPRESSÃO") == [plain["id"], accented["id"]]
    assert ids(admin, q="reuniao") == [teams["id"]]
    assert ids(admin, q="audio") == [teams["id"]]
    # whole words, stemmed (Portuguese): a plural finds the singular; a prefix finds nothing
    assert ids(admin, q="impressoras") == [printer["id"]]
    assert ids(admin, q="impress") == []
    assert ids(admin, q="falha de impressão") == [accented["id"]]   # "de" is a stop word
    # every word must match (AND)
    assert ids(admin, q="outlook sozinho") == [outlook["id"]]
    assert ids(admin, q="outlook teams") == []
    assert ids(admin, q="zzzinexistente") == []
    assert other["id"] not in ids(admin, q="impressao")

    # an edit is searchable at once; the old text is not
    response = admin.patch(f"/api/tickets/{other['id']}", json={"description": "token do Zabbix"})
    assert response.status_code == 200, response.text
    assert ids(admin, q="zabbix") == [other["id"]]
    response = admin.patch(f"/api/tickets/{other['id']}", json={"subject": "Monitoramento"})
    assert response.status_code == 200, response.text
    assert ids(admin, q="senha") == []
    assert ids(admin, q="monitoramento zabbix") == [other["id"]]

    # keyset pages over a search keep newest first and the cursor
    first = listing(admin, q="impressao", limit=1)
    assert [t["id"] for t in first["items"]] == [plain["id"]]
    second = listing(admin, q="impressao", limit=1, cursor=first["next_cursor"])
    assert [t["id"] for t in second["items"]] == [accented["id"]] and second["next_cursor"] is None


def test_internal_comments_are_not_searchable(tenant):
    """Only PUBLIC comments are indexed: a collaborator never finds a ticket through the words
    of an internal note on it (and staff do not either: one index, one rule)."""
    admin = tenant.admin
    person, collaborator = tenant.person("collaborator")
    mine = create(collaborator, "Computador lento")
    take(admin, mine)
    comment(admin, mine, "suspeita de malware no firewall", visibility="INTERNAL")
    comment(admin, mine, "vamos trocar o disco", visibility="PUBLIC")

    assert ids(collaborator, q="firewall") == []
    assert ids(admin, q="firewall") == []
    assert ids(collaborator, q="disco") == [mine["id"]]
    assert ids(admin, q="disco") == [mine["id"]]
    someone_elses = create(admin, "Disco cheio no servidor")
    assert ids(collaborator, q="disco") == [mine["id"]]  # still only their own tickets
    assert ids(admin, q="disco") == [someone_elses["id"], mine["id"]]


def test_plain_dates_are_whole_days_in_sao_paulo(tenant):
    admin = tenant.admin
    ticket = create(admin, "Teclado sem resposta")
    created = datetime.fromisoformat(ticket["created_at"].replace("Z", "+00:00"))
    day = created.astimezone(SAO_PAULO).date()
    before, after = day - timedelta(days=1), day + timedelta(days=1)

    assert ids(admin, created_from=day.isoformat()) == [ticket["id"]]
    assert ids(admin, created_to=day.isoformat()) == [ticket["id"]]          # inclusive day
    assert ids(admin, created_from=day.isoformat(), created_to=day.isoformat()) == [ticket["id"]]
    assert ids(admin, created_from=before.isoformat()) == [ticket["id"]]
    assert ids(admin, created_to=before.isoformat()) == []
    assert ids(admin, created_from=after.isoformat()) == []
    assert ids(admin, created_to=after.isoformat()) == [ticket["id"]]
    # datetimes keep working; a datetime without a zone and a non-date are refused
    assert ids(admin, created_from=created.isoformat()) == [ticket["id"]]
    for bad in ("2026-13-01", "2026-11-30T10:00:00", "ontem", date(2026, 2, 28).isoformat() + "x"):
        response = admin.get("/api/tickets", params={"created_from": bad})
        assert response.status_code == 422, (bad, response.text)


def test_assignee_me_is_the_caller(tenant):
    admin = tenant.admin
    agent, agent_client = tenant.person("agent")
    _, collaborator = tenant.person("collaborator")
    mine = create(admin, "Para o agente")
    create(admin, "Ninguém")
    response = admin.post(f"/api/tickets/{mine['id']}/assign", json={"assignee_id": agent["id"]})
    assert response.status_code == 200, response.text

    assert ids(agent_client, assignee_id="me") == [mine["id"]]
    assert ids(admin, assignee_id="me") == []
    take(admin, create(admin, "Do admin"))
    assert ids(admin, assignee_id="me", q="admin") != []
    assert ids(collaborator, assignee_id="me") == []
    assert ids(agent_client, assignee_id="me", q="agente") == [mine["id"]]
    assert admin.get("/api/tickets", params={"assignee_id": "you"}).status_code == 422


def test_count_only_when_asked(tenant):
    admin = tenant.admin
    for n in range(3):
        create(admin, f"Monitor piscando {n}")
    create(admin, "Mouse quebrado")

    page = listing(admin, limit=1)
    assert "count" not in page and "count_capped" not in page
    page = listing(admin, limit=1, count="true")
    assert page["count"] == 4 and page["count_capped"] is False and len(page["items"]) == 1
    page = listing(admin, q="monitor", limit=2, count="true")
    assert page["count"] == 3 and len(page["items"]) == 2
    page = listing(admin, q="monitor", limit=2, count="false")
    assert "count" not in page
    assert listing(admin, q="teclado", count="true")["count"] == 0
