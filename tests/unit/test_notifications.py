"""Who gets which mail (notifications' domain and handlers on the fake unit of work), what a
mail looks like, and how SMTP failures are classified."""
import smtplib
import uuid
from datetime import datetime, timedelta, timezone

from services.notifications import deliveries, domain, mails, smtp
from tests.support.fake_uow import FakeStore

REQUESTER, ASSIGNEE, STAFF = (str(uuid.uuid4()) for _ in range(3))
NOW = datetime(2026, 12, 8, 12, 0, tzinfo=timezone.utc)


def event(**fields):
    return {"event_id": str(uuid.uuid4()), "tenant_id": str(uuid.uuid4()), "ticket_id": str(uuid.uuid4()),
            "reference": 42, "subject": "Impressora <parada>", "requester_id": REQUESTER,
            "assignee_id": ASSIGNEE, **fields}


def who(event_type, **fields):
    return [(n.recipient_id, n.kind) for n in domain.notices(event_type, event(**fields))]


def test_the_requester_gets_a_receipt_of_her_own_ticket():
    assert who("ticket_created", assignee_id=None) == [(REQUESTER, domain.OPENED)]


def test_the_assignee_hears_of_an_assignment_unless_he_made_it():
    assert who("ticket_assigned", actor_id=STAFF) == [(ASSIGNEE, domain.ASSIGNED)]
    assert who("ticket_assigned", actor_id=ASSIGNEE) == []
    assert who("ticket_assigned", actor_id=STAFF, assignee_id=None) == []


def test_a_public_staff_comment_reaches_the_requester_and_hers_the_assignee():
    assert who("comment_added", author_id=STAFF, visibility="PUBLIC", body="x") == [(REQUESTER, domain.COMMENTED)]
    assert who("comment_added", author_id=REQUESTER, visibility="PUBLIC", body="x") == [(ASSIGNEE, domain.COMMENTED)]
    assert who("comment_added", author_id=ASSIGNEE, visibility="PUBLIC", body="x") == [(REQUESTER, domain.COMMENTED)]


def test_an_internal_comment_reaches_nobody():
    assert who("comment_added", author_id=STAFF, visibility="INTERNAL", body="x") == []
    assert who("comment_added", author_id=ASSIGNEE, visibility="INTERNAL", body="x") == []


def test_resolved_and_reopened():
    assert who("ticket_status_changed", from_status="PENDING", to_status="RESOLVED", actor_id=ASSIGNEE,
               message="feito") == [(REQUESTER, domain.RESOLVED)]
    assert who("ticket_status_changed", from_status="RESOLVED", to_status="PENDING",
               actor_id=REQUESTER) == [(ASSIGNEE, domain.REOPENED)]
    assert who("ticket_status_changed", from_status="RESOLVED", to_status="PENDING", actor_id=STAFF) == [
        (REQUESTER, domain.REOPENED), (ASSIGNEE, domain.REOPENED)]
    assert who("ticket_status_changed", from_status="PENDING", to_status="PAUSED", actor_id=STAFF) == []


def test_nobody_is_mailed_about_their_own_resolve():
    assert who("ticket_status_changed", from_status="PENDING", to_status="RESOLVED", actor_id=REQUESTER) == []


def test_an_event_from_before_the_ticket_context_asks_for_nothing():
    assert domain.notices("comment_added", {"ticket_id": "t", "author_id": STAFF, "visibility": "PUBLIC"}) == []


def test_retries_double_up_to_a_cap():
    delays = [domain.retry_delay(n).total_seconds() for n in range(1, 12)]
    assert delays[:4] == [2, 4, 8, 16]
    assert max(delays) == domain.RETRY_MAX_SECONDS and delays == sorted(delays)


class FakeRepo:
    def __init__(self):
        self.handled, self.deliveries = set(), {}

    def first_delivery(self, event, event_type):
        if event["event_id"] in self.handled:
            return False
        self.handled.add(event["event_id"])
        return True

    def add_deliveries(self, event, notices, now):
        for notice in notices:
            self.deliveries.setdefault((event["event_id"], notice.recipient_id, notice.kind), notice)


def test_a_redelivered_event_adds_no_delivery():
    store = FakeStore("notifications", FakeRepo())
    created = event(event_type="ticket_created")
    created.pop("event_type")
    assert deliveries.ticket_event(store, created, "ticket_created", True, NOW) == 1
    assert deliveries.ticket_event(store, created, "ticket_created", True, NOW) == 0
    assert list(store.repo.deliveries) == [(created["event_id"], REQUESTER, domain.OPENED)]


def test_with_notifications_off_an_event_is_handled_and_queues_nothing():
    store = FakeStore("notifications", FakeRepo())
    assert deliveries.ticket_event(store, event(), "ticket_created", False, NOW) == 0
    assert store.repo.deliveries == {} and len(store.repo.handled) == 1 and store.commits == 1


def test_a_mail_threads_on_its_ticket_and_escapes_what_people_wrote():
    notice = domain.Notice(recipient_id=REQUESTER, kind=domain.COMMENTED, ticket_id="t-1", reference=42,
                           subject="Impressora <parada>", actor_id=STAFF, text="<script>alert(1)</script>\nok")
    mail = mails.compose(notice, "d-1", mails.Person("Ana Souza", "ana@empresa.test"),
                         mails.Person("Bruno", "bruno@empresa.test"), "Chamados <chamados@empresa.test>",
                         "https://chamados.empresa.test/", NOW)
    assert mail["Subject"] == "[Chamado #42] Impressora <parada>"
    assert mail["To"] == "Ana Souza <ana@empresa.test>"
    assert mail["Message-ID"] == "<d-1@empresa.test>"
    assert mail["In-Reply-To"] == mail["References"] == "<chamado-t-1@empresa.test>"
    plain = mail.get_body(("plain",)).get_content()
    page = mail.get_body(("html",)).get_content()
    assert "Bruno comentou no chamado #42" in plain and "<script>alert(1)</script>" in plain
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;parada&gt;" in page
    assert '<a href="https://chamados.empresa.test/chamados/42">' in page


def test_the_receipt_is_the_root_of_its_ticket_thread():
    notice = domain.Notice(recipient_id=REQUESTER, kind=domain.OPENED, ticket_id="t-1", reference=7, subject="s")
    mail = mails.compose(notice, "d-2", mails.Person("Ana", "ana@e.test"), None, "x@e.test", "http://c", NOW)
    assert mail["Message-ID"] == "<chamado-t-1@e.test>" and mail["In-Reply-To"] is None


def test_smtp_outcomes():
    assert smtp.classify(smtplib.SMTPRecipientsRefused({"a@b": (550, b"no")})).result == smtp.FAILED
    assert smtp.classify(smtplib.SMTPRecipientsRefused({"a@b": (451, b"later")})).result == smtp.RETRY
    assert smtp.classify(smtplib.SMTPDataError(554, b"spam")).result == smtp.FAILED
    assert smtp.classify(smtplib.SMTPSenderRefused(452, b"full", "x@y")).result == smtp.RETRY
    assert smtp.classify(ConnectionRefusedError(111, "refused")).result == smtp.RETRY
    assert smtp.classify(smtplib.SMTPServerDisconnected("gone")).result == smtp.RETRY
    assert smtp.classify(smtplib.SMTPAuthenticationError(535, b"bad")).result == smtp.RETRY


def test_smtp_urls():
    server = smtp.SmtpServer.from_url("smtp://us%40er:p%3Ass@mail.test?starttls=true")
    assert (server.host, server.port, server.starttls, server.tls, server.user, server.password) == (
        "mail.test", 587, True, False, "us@er", "p:ss")
    assert smtp.SmtpServer.from_url("smtps://mail.test").port == 465
    assert "p:ss" not in server.describe()
    assert timedelta(0) < domain.retry_delay(1)


class SenderRepo:
    """Deliveries and people in memory, as sender.send_due sees them."""

    def __init__(self, deliveries, people):
        self.rows = {row.id: row for row in deliveries}
        self.people = people

    def claim_due(self, now, lease_until, limit):
        due = [row for row in self.rows.values() if row.status == "pending" and row.next_attempt_at <= now][:limit]
        for row in due:
            row.next_attempt_at = lease_until
        return due

    def person(self, person_id):
        return self.people.get(str(person_id))

    def delivery(self, delivery_id):
        return self.rows[delivery_id]


def delivery_row(recipient_id, kind=domain.OPENED):
    import orjson
    from types import SimpleNamespace

    notice = domain.Notice(recipient_id=recipient_id, kind=kind, ticket_id=str(uuid.uuid4()), reference=5,
                           subject="s", actor_id=STAFF)
    return SimpleNamespace(id=uuid.uuid4(), details=orjson.dumps(notice.__dict__).decode(), status="pending",
                           attempts=0, next_attempt_at=NOW, last_error=None, to_address=None, sent_at=None,
                           recipient_id=recipient_id)


def test_the_sender_records_sent_retried_failed_and_waits_for_an_unknown_recipient():
    from types import SimpleNamespace

    from services.notifications import sender

    person = lambda name, email: SimpleNamespace(name=name, email=email, merged_into_id=None)  # noqa: E731
    sent, deferred, refused, unknown = (delivery_row(str(uuid.uuid4())) for _ in range(4))
    people = {sent.recipient_id: person("Ana", "ana@e.test"), deferred.recipient_id: person("Bia", "bia@e.test"),
              refused.recipient_id: person("Caio", "caio@e.test"), STAFF: person("Bruno", "bruno@e.test")}
    store = FakeStore("notifications", SenderRepo([sent, deferred, refused, unknown], people))
    answers = {sent.id: smtp.Outcome(smtp.SENT), deferred.id: smtp.Outcome(smtp.RETRY, "451 later"),
               refused.id: smtp.Outcome(smtp.FAILED, "550 no")}
    handed = {}

    def send(server, mails_by_key, mail_from):
        handed.update(mails_by_key)
        return {key: answers[key] for key in mails_by_key}

    settings = sender.MailSettings(server=smtp.SmtpServer.from_url("smtp://x"), mail_from="c@e.test",
                                   console_url="http://c")
    counts = sender.send_due(store, settings, send=send, clock=lambda: NOW)
    assert counts == {"sent": 1, "retry": 2, "failed": 1}
    assert set(handed) == {sent.id, deferred.id, refused.id}  # the unknown recipient is not mailed
    assert (sent.status, sent.to_address, sent.attempts) == ("sent", "ana@e.test", 1)
    assert (refused.status, refused.last_error) == ("failed", "550 no")
    assert deferred.status == "pending" and deferred.last_error == "451 later"
    assert unknown.status == "pending" and "not known" in unknown.last_error
    assert deferred.next_attempt_at > NOW and store.commits == 2
    assert sender.send_due(store, settings, send=send, clock=lambda: NOW) == {}  # nothing due again at once
