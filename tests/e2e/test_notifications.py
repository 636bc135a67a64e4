"""Mail about tickets, end to end: the session's system mails through a real SMTP server
(aiosmtpd as its own process, tests/support/smtp.py); these tests read what it received."""
import time
import uuid
from datetime import datetime, timedelta, timezone

from tests.e2e.test_tickets import user
from tests.harness import Client, eventually
from tests.integration.test_event_consumers import publish


def new_ticket(client, subject):
    response = client.post("/api/tickets", json={"subject": subject, "description": "d"})
    assert response.status_code == 201, response.text
    return response.json()


def act(client, ticket, action, **body):
    response = client.post(f"/api/tickets/{ticket['id']}/{action}", json=body)
    assert response.status_code in (200, 201), response.text
    return response.json()


def test_a_requester_gets_three_threaded_mails_and_nothing_internal_or_of_her_own(tenant, smtp_server):
    ana, ana_client = user(tenant, "collaborator", "Ana Souza")
    bruno, bruno_client = user(tenant, "agent", "Bruno Técnico")
    ticket = new_ticket(ana_client, "Impressora <parada>")
    act(bruno_client, ticket, "assign", assignee_id=bruno["id"])  # his own action: no mail to him
    act(bruno_client, ticket, "comments", body="Olhando agora <b>já</b>", visibility="PUBLIC")
    act(bruno_client, ticket, "comments", body="nota interna: cabo ruim", visibility="INTERNAL")
    act(ana_client, ticket, "comments", body="Obrigada!", visibility="PUBLIC")  # to Bruno only
    act(bruno_client, ticket, "resolve", message="Trocado o cabo")

    received = smtp_server.wait_for(ana["email"], 3)
    assert [m["Subject"] for m in received] == [f"[Chamado #{ticket['reference']}] Impressora <parada>"] * 3
    assert all(m["To"].addresses[0].addr_spec == ana["email"] for m in received)
    opened, commented, resolved = received
    root = opened["Message-ID"]
    assert root.startswith("<chamado-") and root.endswith("@empresa.test>")
    assert len({m["Message-ID"] for m in received}) == 3
    assert commented["In-Reply-To"] == resolved["In-Reply-To"] == root
    assert commented["References"] == resolved["References"] == root
    assert "Olhando agora <b>já</b>" in commented.get_body(("plain",)).get_content()
    assert "&lt;b&gt;já&lt;/b&gt;" in commented.get_body(("html",)).get_content()
    assert "Trocado o cabo" in resolved.get_body(("plain",)).get_content()
    assert not any("nota interna" in m.get_body(("plain",)).get_content() for m in smtp_server.mails())

    to_bruno = smtp_server.wait_for(bruno["email"], 1)
    time.sleep(1.5)  # anything else queued for him would have gone by now
    to_bruno = smtp_server.mails(bruno["email"])
    assert len(to_bruno) == 1 and "Obrigada!" in to_bruno[0].get_body(("plain",)).get_content()
    assert len(smtp_server.mails(ana["email"])) == 3


def test_a_redelivered_event_sends_one_mail(tenant, system, smtp_server):
    ana, _ = user(tenant, "collaborator", "Ana Redelivered")
    event = {"event_id": str(uuid.uuid4()), "occurred_at": datetime.now(timezone.utc).isoformat(),
             "tenant_id": tenant.id, "ticket_id": str(uuid.uuid4()), "reference": 9001,
             "subject": "Duas vezes", "status": "PENDING", "priority": "MEDIUM",
             "queue_id": str(uuid.uuid4()), "requester_id": ana["id"], "company_id": None,
             "machine_id": None}
    publish(system.amqp_uri, "tickets", "ticket_created", event)
    publish(system.amqp_uri, "tickets", "ticket_created", event)
    assert len(smtp_server.wait_for(ana["email"], 1)) == 1
    time.sleep(2)
    assert len(smtp_server.mails(ana["email"])) == 1


def test_a_mail_waits_while_the_smtp_server_is_down_and_arrives_once(tenant, smtp_server):
    ana, ana_client = user(tenant, "collaborator", "Ana Paciente")
    smtp_server.stop()
    try:
        ticket = new_ticket(ana_client, "Sem servidor de e-mail")  # the ticket path does not wait
        time.sleep(3)  # the first tries fail
        assert smtp_server.mails(ana["email"]) == []
    finally:
        smtp_server.start()
    received = smtp_server.wait_for(ana["email"], 1, timeout=30)
    assert [m["Subject"] for m in received] == [f"[Chamado #{ticket['reference']}] Sem servidor de e-mail"]
    time.sleep(2)
    assert len(smtp_server.mails(ana["email"])) == 1


def delivery_rows(system, email):
    from sqlalchemy import create_engine, text

    engine = create_engine(system.database_url)
    try:
        with engine.connect() as connection:
            return connection.execute(text(
                "SELECT d.status, d.attempts, d.last_error FROM notifications.deliveries d "
                "JOIN notifications.people p ON p.id = d.recipient_id WHERE p.email = :email"),
                {"email": email}).all()
    finally:
        engine.dispose()



def mailbox_user(tenant, local_part: str):
    """A collaborator whose address starts with `local_part`, signed in."""
    email = f"{local_part}-{uuid.uuid4().hex[:8]}@{tenant.slug}.test"
    response = tenant.admin.post("/api/admin/users", json={
        "email": email, "name": local_part.title(), "role": "collaborator", "password": "pass-word-1"})
    assert response.status_code == 201, response.text
    return email, Client(tenant.system.base_url).sign_in(email, "pass-word-1", tenant=tenant.slug)


def test_a_5xx_is_recorded_as_failed_and_a_4xx_waits_to_be_tried_again(tenant, system, smtp_server):
    # the test SMTP server refuses recipients named reject… with 550 and defer… with 451
    rejected, rejected_client = mailbox_user(tenant, "reject")
    deferred, deferred_client = mailbox_user(tenant, "defer")
    new_ticket(rejected_client, "Recusado")
    new_ticket(deferred_client, "Adiado")

    failed = eventually(lambda: [row for row in delivery_rows(system, rejected) if row.status == "failed"])
    assert len(failed) == 1 and failed[0].attempts == 1 and "550" in failed[0].last_error, failed
    retried = eventually(lambda: [row for row in delivery_rows(system, deferred) if row.attempts >= 2])
    assert len(retried) == 1 and retried[0].status == "pending" and "451" in retried[0].last_error, retried
    assert smtp_server.mails(rejected) == [] and smtp_server.mails(deferred) == []


def test_maintenance_deletes_sent_mail_past_thirty_days_and_keeps_failed(tenant, system, rpc, smtp_server):
    sent_to, sent_client = mailbox_user(tenant, "kept")
    refused, refused_client = mailbox_user(tenant, "reject")
    new_ticket(sent_client, "Antigo")
    new_ticket(refused_client, "Recusado antigo")
    assert eventually(lambda: [r for r in delivery_rows(system, sent_to) if r.status == "sent"])
    assert eventually(lambda: [r for r in delivery_rows(system, refused) if r.status == "failed"])
    soon = (datetime.now(timezone.utc) + timedelta(days=29)).isoformat()
    assert rpc.notifications.maintain_storage(soon)["vacuumed"] == ["deliveries", "inbox"]
    assert len(delivery_rows(system, sent_to)) == 1
    later = (datetime.now(timezone.utc) + timedelta(days=31)).isoformat()
    assert rpc.notifications.maintain_storage(later)["deliveries_deleted"] >= 1
    assert delivery_rows(system, sent_to) == []
    assert [r.status for r in delivery_rows(system, refused)] == ["failed"]
