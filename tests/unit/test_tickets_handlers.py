"""The tickets service's use-case handlers over a fake unit of work (tests/support/
fake_tickets.py): no broker, no database. Each behaviour also runs for real, through the
gateway, in tests/e2e/test_tickets.py and its neighbours; these say what each handler does
with its unit of work, and that another service is asked only while none is open."""
from __future__ import annotations

import uuid
from datetime import timedelta

import orjson
import pytest

from common.actor import Actor
from common.db import utcnow
from common.errors import Conflict, Forbidden, NotFound, ValidationFailed
from services.tickets import (archive, chat, comments, exports, filters, queues, snapshots, tickets,
                              transitions)
from services.tickets.lookups import LookupNeeded, with_lookups
from services.tickets.models import Person, ReportExport, Ticket, TicketQueue
from tests.support.fake_tickets import FakeDirectory, TicketsStore

TENANT = uuid.uuid4()


@pytest.fixture
def store() -> TicketsStore:
    return TicketsStore()


@pytest.fixture
def directory(store) -> FakeDirectory:
    return FakeDirectory(store)


def person(store, role: str = "collaborator", name: str = "Ana", tenant_id=TENANT, **values) -> Actor:
    """A person in the people snapshot, as the actor they act as."""
    row = store.repo.add(Person(id=uuid.uuid4(), tenant_id=tenant_id, name=name, email=f"{name.lower()}@x.test",
                                role=role, company_id=values.get("company_id"), merged_into_id=None, version=1))
    return Actor(row.id, tenant_id, role)


def user_event(actor: Actor, **values) -> dict:
    return {"event_id": str(uuid.uuid4()), "tenant_id": str(actor.tenant_id), "user_id": str(actor.user_id),
            "name": "Ana", "email": "ana@x.test", "role": actor.role, "company_id": None, **values}


def file_ticket(store, directory, actor: Actor, **payload) -> dict:
    return tickets.create_ticket(store, directory, actor, {"subject": "Impressora", **payload})


# --- actor ---------------------------------------------------------------------------------

def test_an_actor_reads_from_the_rpc_argument_and_knows_staff():
    user_id, tenant_id = uuid.uuid4(), uuid.uuid4()
    agent = Actor.from_dict({"user_id": str(user_id), "tenant_id": str(tenant_id), "role": "agent"})
    assert (agent.user_id, agent.tenant_id, agent.is_staff, agent.is_admin) == (user_id, tenant_id, True, False)
    assert not Actor(user_id, tenant_id, "collaborator").is_staff
    assert Actor(user_id, tenant_id, "admin").is_admin


def test_a_use_case_that_needs_a_lookup_again_after_its_answer_stops(store, directory):
    user_id = uuid.uuid4()
    directory.users[str(user_id)] = {"id": str(user_id)}

    def loops(answers):
        raise LookupNeeded("user", TENANT, user_id)

    with pytest.raises(RuntimeError):
        with_lookups(directory, loops)
    assert directory.calls == [("user", str(user_id))]


# --- queues ----------------------------------------------------------------------------------

def test_listing_queues_makes_the_default_queue_once(store):
    actor = person(store)
    first = queues.list_queues(store, actor)
    second = queues.list_queues(store, actor)
    assert [q["name"] for q in first["items"]] == ["Chamados"] == [q["name"] for q in second["items"]]
    assert store.commits == 1  # the first read writes; the second does not


def test_staff_create_queues_with_folded_spaces_and_unique_names(store):
    agent = person(store, "agent")
    made = queues.create_queue(store, agent, {"name": "  Rede   e  Wi-Fi "})
    assert made["name"] == "Rede e Wi-Fi"
    assert [q.name for q in store.repo.all(TicketQueue)] == ["Rede e Wi-Fi"]
    with pytest.raises(Conflict) as refused:
        queues.create_queue(store, agent, {"name": "rede E wi-fi"})
    assert refused.value.code == "queue_exists"
    with pytest.raises(Forbidden):
        queues.create_queue(store, person(store, name="Bia"), {"name": "Outra"})
    assert store.commits == 1


# --- tickets ---------------------------------------------------------------------------------

def test_a_collaborator_files_a_ticket_for_themself_in_the_default_queue(store, directory):
    ana = person(store)
    someone = person(store, name="Bia")
    view = file_ticket(store, directory, ana, requester_id=str(someone.user_id))  # ignored: not staff
    assert (view["reference"], view["status"], view["requester"]["id"]) == (1, "PENDING", str(ana.user_id))
    assert store.event_types() == ["ticket_created"]
    assert store.events[0]["ticket_id"] == view["id"]
    [ticket] = store.repo.all(Ticket)
    assert [e.kind for e in store.repo.timeline(ticket.id)] == ["CREATED"]
    assert store.repo.indexed == [ticket.id]  # searchable from the start
    assert directory.calls == []  # everything was known here
    assert file_ticket(store, directory, ana)["reference"] == 2


def test_a_requester_not_known_yet_is_asked_of_accounts_before_the_unit_of_work(store, directory):
    agent = person(store, "agent")
    newcomer = uuid.uuid4()
    directory.users[str(newcomer)] = {"id": str(newcomer), "tenant_id": str(TENANT), "name": "Caio",
                                      "email": "caio@x.test", "role": "collaborator", "company_id": None,
                                      "version": 1}
    view = file_ticket(store, directory, agent, requester_id=str(newcomer))
    assert view["requester"] == {"id": str(newcomer), "name": "Caio", "email": "caio@x.test"}
    assert directory.calls == [("user", str(newcomer))]  # asked once, with no unit of work open
    assert store.repo.person(newcomer).name == "Caio"
    assert store.event_types() == ["ticket_created"] and store.commits == 1


def test_a_ticket_machine_must_be_the_tenants(store, directory):
    agent = person(store, "agent")
    machine, elsewhere = uuid.uuid4(), uuid.uuid4()
    directory.machines = {str(machine): str(TENANT), str(elsewhere): str(uuid.uuid4())}
    assert file_ticket(store, directory, agent, machine_id=str(machine))["machine_id"] == str(machine)
    with pytest.raises(NotFound) as refused:
        file_ticket(store, directory, agent, machine_id=str(elsewhere))
    assert refused.value.code == "machine_not_found"
    assert store.event_types() == ["ticket_created"]


def test_a_collaborators_ticket_names_only_a_machine_of_their_own(store, directory):
    ana, bia = person(store), person(store, name="Bia")
    machine = uuid.uuid4()
    directory.machines[str(machine)] = str(TENANT)
    directory.machine_users[str(machine)] = {str(ana.user_id)}
    assert file_ticket(store, directory, ana, machine_id=str(machine))["machine_id"] == str(machine)
    with pytest.raises(NotFound) as refused:
        file_ticket(store, directory, bia, machine_id=str(machine))
    assert refused.value.code == "machine_not_found"


def test_editing_records_what_changed_and_asks_devices_only_for_a_new_machine(store, directory):
    agent = person(store, "agent")
    machine, other = uuid.uuid4(), uuid.uuid4()
    directory.machines = {str(machine): str(TENANT), str(other): str(TENANT)}
    view = file_ticket(store, directory, agent, machine_id=str(machine))
    directory.calls.clear()
    same = tickets.update_ticket(store, directory, agent, view["id"],
                                 {"subject": "Impressora parada", "machine_id": str(machine)})
    assert same["subject"] == "Impressora parada" and directory.calls == []
    moved = tickets.update_ticket(store, directory, agent, view["id"], {"machine_id": str(other)})
    assert moved["machine_id"] == str(other)
    assert directory.calls == [("machine_in_tenant", str(other))]  # while no row was locked
    assert [e["changed"] for e in store.events if e["type"] == "ticket_updated"] == [["subject"], ["machine_id"]]
    with pytest.raises(Forbidden):
        tickets.update_ticket(store, directory, person(store, name="Bia"), view["id"], {"subject": "x"})


def test_a_collaborator_sees_only_their_own_tickets(store, directory):
    ana, bia, agent = person(store), person(store, name="Bia"), person(store, "agent", name="Duda")
    view = file_ticket(store, directory, ana)
    assert tickets.get_ticket(store, ana, view["id"])["id"] == view["id"]
    assert tickets.get_ticket(store, agent, str(view["reference"]))["id"] == view["id"]  # "chamado 1"
    with pytest.raises(NotFound):
        tickets.get_ticket(store, bia, view["id"])
    file_ticket(store, directory, bia)
    assert len(tickets.list_tickets(store, ana, {})["items"]) == 1
    listed = tickets.list_tickets(store, agent, {"count": "true", "limit": "1"})
    assert (len(listed["items"]), listed["count"], listed["next_cursor"] is not None) == (1, 2, True)


def test_recent_tickets_put_the_unassigned_first(store, directory):
    ana, agent = person(store), person(store, "agent", name="Duda")
    taken = file_ticket(store, directory, ana, subject="Primeiro")["id"]
    waiting = file_ticket(store, directory, ana, subject="Segundo")["id"]
    transitions.assign(store, directory, agent, taken, {"assignee_id": str(agent.user_id)})
    assert [t["id"] for t in tickets.recent_tickets(store, agent, {"limit": "5"})["items"]] == [waiting, taken]
    assert tickets.recent_tickets(store, person(store, name="Bia"), {})["items"] == []


def test_assignees_are_the_tenants_staff_by_name(store):
    person(store, "agent", name="Zeca")
    person(store, "manager", name="Bruna")
    person(store, name="Ana")
    person(store, "agent", name="Outro", tenant_id=uuid.uuid4())
    agent = person(store, "admin", name="Carla")
    assert [p["name"] for p in tickets.list_assignees(store, agent)["items"]] == ["Bruna", "Carla", "Zeca"]
    with pytest.raises(Forbidden):
        tickets.list_assignees(store, person(store, name="Bia"))


# --- transitions -------------------------------------------------------------------------------

def test_start_pause_resolve_reopen_persist_the_machines_decisions(store, directory):
    ana, agent = person(store), person(store, "agent", name="Duda")
    ticket_id = file_ticket(store, directory, ana)["id"]
    started = transitions.start(store, directory, agent, ticket_id, {"work_type": "INTERNAL"})
    assert (started["status"], started["assignee"]["id"], started["work_in_progress"]) == \
        ("AWAITING_ATTENDANCE", str(agent.user_id), "INTERNAL")  # started unassigned: assigned to who works
    assert store.repo.open_session(uuid.UUID(ticket_id)).agent_id == agent.user_id
    paused = transitions.pause(store, directory, agent, ticket_id, {"reason": "WAITING_THIRD_PARTY"})
    assert (paused["status"], paused["work_in_progress"]) == ("PAUSED", None)
    assert store.repo.open_session(uuid.UUID(ticket_id)) is None
    resolved = transitions.resolve(store, directory, agent, ticket_id, {"message": "trocado o toner"})
    assert resolved["status"] == "RESOLVED" and resolved["resolved_at"] is not None
    with pytest.raises(Conflict) as refused:
        transitions.pause(store, directory, agent, ticket_id, {"reason": "WAITING_THIRD_PARTY"})
    assert refused.value.code == "invalid_transition"
    with pytest.raises(Forbidden):
        transitions.reopen(store, directory, ana, ticket_id)
    assert transitions.reopen(store, directory, agent, ticket_id)["status"] == "PENDING"
    changes = [(e["from_status"], e["to_status"], e["reason"]) for e in store.events
               if e["type"] == "ticket_status_changed"]
    assert changes == [("PENDING", "AWAITING_ATTENDANCE", None),
                       ("AWAITING_ATTENDANCE", "PAUSED", "WAITING_THIRD_PARTY"),
                       ("PAUSED", "RESOLVED", None), ("RESOLVED", "PENDING", None)]
    assert store.event_types().count("ticket_assigned") == 1
    kinds = [e.kind for e in store.repo.timeline(uuid.UUID(ticket_id))]
    assert kinds == ["CREATED", "ASSIGNED", "WORK_STARTED", "PAUSED", "RESOLVED", "REOPENED"]


def test_assigning_needs_staff_and_asks_accounts_for_an_unknown_assignee_outside_the_lock(store, directory):
    ana, agent = person(store), person(store, "agent", name="Duda")
    ticket_id = file_ticket(store, directory, ana)["id"]
    with pytest.raises(Conflict) as refused:
        transitions.assign(store, directory, agent, ticket_id, {"assignee_id": str(ana.user_id)})
    assert refused.value.code == "assignee_not_staff"
    newcomer = uuid.uuid4()
    directory.users[str(newcomer)] = {"id": str(newcomer), "tenant_id": str(TENANT), "name": "Edu",
                                      "email": "edu@x.test", "role": "agent", "company_id": None}
    view = transitions.assign(store, directory, agent, ticket_id, {"assignee_id": str(newcomer)})
    assert view["assignee"] == {"id": str(newcomer), "name": "Edu", "email": "edu@x.test"}
    assert directory.calls == [("user", str(newcomer))]
    assert [e["assignee_id"] for e in store.events if e["type"] == "ticket_assigned"] == [str(newcomer)]


def test_lunch_pauses_internal_work_only(store, directory):
    agent = person(store, "agent")
    internal = file_ticket(store, directory, agent)["id"]
    external = file_ticket(store, directory, agent)["id"]
    transitions.start(store, directory, agent, internal, {"work_type": "INTERNAL"})
    transitions.start(store, directory, agent, external, {"work_type": "EXTERNAL"})
    assert transitions.lunch_pause(store, utcnow() + timedelta(minutes=30)) == {"paused": 1}
    assert tickets.get_ticket(store, agent, internal)["status"] == "PAUSED"
    assert tickets.get_ticket(store, agent, external)["status"] == "AWAITING_ATTENDANCE"
    assert store.events[-1]["reason"] == "LUNCH_BREAK"
    commits = store.commits
    assert transitions.lunch_pause(store, utcnow()) == {"paused": 0} and store.commits == commits


# --- comments ------------------------------------------------------------------------------------

def test_comments_public_and_internal(store, directory):
    ana, agent = person(store), person(store, "agent", name="Duda")
    ticket_id = file_ticket(store, directory, ana)["id"]
    with pytest.raises(Conflict) as refused:  # staff comment on assigned tickets
        comments.add_comment(store, agent, ticket_id, {"body": "olá"})
    assert refused.value.code == "ticket_unassigned"
    transitions.assign(store, directory, agent, ticket_id, {"assignee_id": str(agent.user_id)})
    note = comments.add_comment(store, agent, ticket_id, {"body": "toner acabou", "visibility": "INTERNAL"})
    reply = comments.add_comment(store, ana, ticket_id, {"body": "obrigada"})
    assert (note["author"]["name"], reply["visibility"]) == ("Duda", "PUBLIC")
    with pytest.raises(Forbidden):
        comments.add_comment(store, ana, ticket_id, {"body": "x", "visibility": "INTERNAL"})
    assert [c["body"] for c in comments.list_comments(store, ana, ticket_id)["items"]] == ["obrigada"]
    assert len(comments.list_comments(store, agent, ticket_id)["items"]) == 2
    ticket = store.repo.ticket_by_id(uuid.UUID(ticket_id))
    assert store.repo.indexed.count(ticket.id) == 2  # filed, then the public comment
    assert [e["visibility"] for e in store.events if e["type"] == "comment_added"] == ["INTERNAL", "PUBLIC"]
    seen_by_ana = [e["kind"] for e in comments.timeline(store, ana, ticket_id)["items"]]
    assert seen_by_ana.count("COMMENT_ADDED") == 1  # the internal one stays internal
    assert [e["kind"] for e in comments.timeline(store, agent, ticket_id)["items"]].count("COMMENT_ADDED") == 2


# --- chat ----------------------------------------------------------------------------------------

def chat_ticket(store, directory, agent: Actor) -> tuple[str, uuid.UUID]:
    machine = uuid.uuid4()
    directory.machines[str(machine)] = str(TENANT)
    ticket_id = file_ticket(store, directory, agent, machine_id=str(machine))["id"]
    transitions.assign(store, directory, agent, ticket_id, {"assignee_id": str(agent.user_id)})
    return ticket_id, machine


def test_a_chat_starts_work_takes_messages_and_pauses_the_work_when_it_ends(store, directory):
    agent = person(store, "agent")
    ticket_id, _ = chat_ticket(store, directory, agent)
    started = chat.start_chat(store, agent, ticket_id)
    assert tickets.get_ticket(store, agent, ticket_id)["work_in_progress"] == "EXTERNAL"
    with pytest.raises(Conflict) as refused:
        chat.start_chat(store, agent, ticket_id)
    assert refused.value.code == "chat_in_progress"
    with_message = chat.post_chat_message(store, agent, started["id"], {"body": "Bom dia"})
    assert [(m["body"], m["author"]["name"]) for m in with_message["messages"]] == [("Bom dia", "Ana")]
    ended = chat.end_chat(store, agent, started["id"])
    assert ended["end_reason"] == "ENDED_BY_USER"
    assert tickets.get_ticket(store, agent, ticket_id)["status"] == "PAUSED"
    with pytest.raises(Conflict) as refused:
        chat.post_chat_message(store, agent, started["id"], {"body": "ainda aí?"})
    assert refused.value.code == "chat_ended"
    assert [e for e in store.event_types() if e.startswith("chat_")] == ["chat_started", "chat_ended"]


def test_a_chat_needs_the_tickets_machine(store, directory):
    agent = person(store, "agent")
    ticket_id = file_ticket(store, directory, agent)["id"]
    with pytest.raises(Conflict) as refused:
        chat.start_chat(store, agent, ticket_id)
    assert refused.value.code == "chat_needs_device"


def test_the_chat_sweep_asks_devices_between_a_read_and_the_write(store, directory):
    agent = person(store, "agent")
    offline_ticket, offline = chat_ticket(store, directory, agent)
    online_ticket, online = chat_ticket(store, directory, agent)
    offline_chat = chat.start_chat(store, agent, offline_ticket)["id"]
    online_chat = chat.start_chat(store, agent, online_ticket)["id"]
    now = utcnow()
    directory.last_seen = {str(offline): (now - timedelta(minutes=10)).isoformat(), str(online): now.isoformat()}
    assert chat.end_inactive_chats(store, directory, now) == {"ended": 1, "reasons": {"DEVICE_OFFLINE": 1}}
    assert chat.get_chat(store, agent, offline_chat)["end_reason"] == "DEVICE_OFFLINE"
    assert chat.get_chat(store, agent, online_chat)["ended_at"] is None
    assert directory.calls[-1][0] == "machines_last_seen"  # and FakeDirectory saw no unit of work open
    directory.last_seen = RuntimeError("devices is down")  # the offline rule waits
    commits = store.commits
    assert chat.end_inactive_chats(store, directory, now + timedelta(minutes=10))["ended"] == 0
    assert store.commits == commits  # nothing to end: nothing written


# --- saved filters ---------------------------------------------------------------------------------

def test_a_saved_filter_keeps_the_set_filters_and_follows_its_person(store):
    ana = person(store)
    assert filters.get_saved_filter(store, ana) == {"filters": {}, "updated_at": None}
    saved = filters.save_filter(store, ana, {"filters": {"status": "PENDING", "assignee_id": "me"}})
    assert saved["filters"] == {"status": "PENDING", "assignee_id": "me"}
    assert filters.get_saved_filter(store, ana)["filters"] == saved["filters"]
    assert filters.save_filter(store, ana, {"filters": {}})["filters"] == {}
    with pytest.raises(ValidationFailed):
        filters.save_filter(store, ana, {"filters": {"status": "LOST"}})
    filters.clear_saved_filter(store, ana)
    assert filters.get_saved_filter(store, ana)["updated_at"] is None
    assert filters.get_saved_filter(store, Actor(ana.user_id, uuid.uuid4(), ana.role))["filters"] == {}


# --- snapshots -------------------------------------------------------------------------------------

def test_user_events_keep_the_newest_version_whatever_order_they_arrive_in(store, directory):
    ana = person(store)
    file_ticket(store, directory, ana)
    newer = user_event(ana, name="Ana Souza", version=3)
    older = user_event(ana, name="Ana Antiga", version=2)
    snapshots.user_changed(store, newer, "user_updated")
    snapshots.user_changed(store, older, "user_updated")
    snapshots.user_changed(store, newer, "user_updated")  # a redelivery: handled once
    assert store.repo.person(ana.user_id).name == "Ana Souza"
    assert store.repo.all(Ticket)[0].requester_name == "Ana Souza"  # the tickets carry the new name
    assert store.commits == 1 + 2  # the ticket, then each first delivery


def test_a_user_created_event_makes_the_snapshot(store):
    actor = Actor(uuid.uuid4(), TENANT, "agent")
    snapshots.user_changed(store, user_event(actor, name="Gil", version=1), "user_created")
    assert [p.name for p in store.repo.staff(TENANT)] == ["Gil"]


def test_company_events_rename_the_tickets_companies_newest_first(store, directory):
    agent = person(store, "agent")
    company_id = uuid.uuid4()
    store.repo.ensure_company(company_id, TENANT, "Silva", version=1)
    file_ticket(store, directory, agent, company_id=str(company_id))
    event = {"event_id": str(uuid.uuid4()), "tenant_id": str(TENANT), "company_id": str(company_id),
             "name": "Silva & Filhos", "apelido": "silva", "version": 2}
    snapshots.company_changed(store, event, "company_updated")
    snapshots.company_changed(store, dict(event, event_id=str(uuid.uuid4()), name="Silva velha", version=1),
                              "company_updated")
    assert store.repo.company(company_id).name == "Silva & Filhos"
    assert store.repo.all(Ticket)[0].company_name == "Silva & Filhos"


def test_a_tenant_created_event_makes_its_default_queue_once(store):
    event = {"event_id": str(uuid.uuid4()), "tenant_id": str(TENANT), "name": "Acme", "slug": "acme"}
    snapshots.tenant_created(store, event)
    snapshots.tenant_created(store, event)
    assert [q.name for q in store.repo.all(TicketQueue)] == ["Chamados"] and store.commits == 1


def test_a_merge_points_the_tickets_at_the_surviving_account_looked_up_first(store, directory):
    old = person(store, name="Ana")
    file_ticket(store, directory, old)
    into = uuid.uuid4()
    directory.users[str(into)] = {"id": str(into), "tenant_id": str(TENANT), "name": "Ana Souza",
                                  "email": "ana.souza@x.test", "role": "collaborator", "company_id": None}
    event = {"event_id": str(uuid.uuid4()), "tenant_id": str(TENANT), "from_user_id": str(old.user_id),
             "into_user_id": str(into)}
    snapshots.user_merged(store, directory, event)
    [ticket] = store.repo.all(Ticket)
    assert (ticket.requester_id, ticket.requester_name) == (into, "Ana Souza")
    assert store.repo.person(old.user_id).merged_into_id == into
    assert directory.calls == [("user", str(into))]


# --- exports and archives --------------------------------------------------------------------------

def test_an_export_is_recorded_woken_made_and_downloaded(store, directory, tmp_path):
    agent = person(store, "agent")
    for subject in ("Impressora", "=1+1"):
        file_ticket(store, directory, agent, subject=subject)
    woken = []
    export = exports.request_export(store, agent, {"delimiter": ";"}, lambda: woken.append(store.commits))
    assert (export["status"], woken) == ("QUEUED", [store.commits])  # woken after the commit
    assert exports.make_exports(store, tmp_path) == {"done": 1, "failed": 0}
    made = exports.get_export(store, agent, export["id"])
    assert (made["status"], made["rows"]) == ("DONE", 2)
    download = exports.download_export(store, tmp_path, agent, export["id"])
    lines = download["content"].lstrip("\ufeff").splitlines()
    assert len(lines) == 3 and lines[0].startswith("reference;")
    assert "'=1+1" in download["content"]  # a formula is written as text
    assert [e["id"] for e in exports.list_exports(store, agent, {})["items"]] == [export["id"]]
    assert not list(tmp_path.rglob("*.partial"))
    with pytest.raises(Forbidden):
        exports.get_export(store, person(store, name="Bia"), export["id"])


def test_an_export_that_fails_is_recorded_failed_and_the_others_are_made(store, directory, tmp_path, monkeypatch):
    agent = person(store, "agent")
    file_ticket(store, directory, agent)
    broken = exports.request_export(store, agent, {}, lambda: None)
    fine = exports.request_export(store, agent, {}, lambda: None)
    real_page, calls = store.repo.export_page, []

    def page(tenant_id, filters, after, limit):  # the first export made (the oldest) meets a full disk
        calls.append(tenant_id)
        if len(calls) == 1:
            raise OSError("disk full")
        return real_page(tenant_id, filters, after, limit)

    monkeypatch.setattr(store.repo, "export_page", page)
    assert exports.make_exports(store, tmp_path) == {"done": 1, "failed": 1}
    failed = exports.get_export(store, agent, broken["id"])
    assert (failed["status"], failed["error"]) == ("FAILED", "OSError: disk full")
    assert exports.get_export(store, agent, fine["id"])["status"] == "DONE"
    assert not list(tmp_path.rglob("*.partial"))


def test_an_export_not_made_yet_cannot_be_downloaded(store, tmp_path):
    agent = person(store, "agent")
    export = exports.request_export(store, agent, {}, lambda: None)
    with pytest.raises(Conflict) as refused:
        exports.download_export(store, tmp_path, agent, export["id"])
    assert refused.value.code == "export_not_ready"


def test_retention_deletes_exports_past_thirty_days_with_their_files(store, tmp_path):
    old = store.repo.add(ReportExport(tenant_id=TENANT, requested_by=uuid.uuid4(), status="DONE", filters="{}",
                                      delimiter=",", created_at=utcnow() - timedelta(days=31)))
    kept = store.repo.add(ReportExport(tenant_id=TENANT, requested_by=uuid.uuid4(), status="DONE",
                                       filters="{}", delimiter=","))
    path = exports.export_path(tmp_path, old)
    path.parent.mkdir(parents=True)
    path.write_text("x")
    dry = exports.apply_retention(store, tmp_path, utcnow(), dry_run=True)
    assert dry["kinds"]["report_exports"]["past_policy"] == 1 and path.exists()
    elsewhere = exports.apply_retention(store, tmp_path, utcnow(), uuid.uuid4(), dry_run=True)
    assert elsewhere["kinds"]["report_exports"]["past_policy"] == 0
    done = exports.apply_retention(store, tmp_path, utcnow())
    assert done["kinds"]["report_exports"]["deleted"] == 1 and not path.exists()
    assert store.repo.all(ReportExport) == [kept]


def test_archiving_writes_old_resolved_tickets_once(store, directory, tmp_path):
    admin = person(store, "admin")
    ticket_id = file_ticket(store, directory, admin)["id"]
    transitions.resolve(store, directory, admin, ticket_id, {})
    ticket = store.repo.ticket_by_id(uuid.UUID(ticket_id))
    ticket.resolved_at = utcnow() - timedelta(days=100)
    result = archive.archive_resolved(store, tmp_path, admin, {"older_than_days": 90})
    assert result["archived"] == 1
    [line] = open(result["file"]).read().splitlines()
    record = orjson.loads(line)
    assert record["ticket"]["id"] == ticket_id
    assert [e["kind"] for e in record["timeline"]] == ["CREATED", "RESOLVED"]
    assert archive.archive_resolved(store, tmp_path, admin, {"older_than_days": 90}) == \
        {"archived": 0, "file": None}
    with pytest.raises(Forbidden):
        archive.archive_resolved(store, tmp_path, person(store, "manager", name="Bia"), {"older_than_days": 90})


def test_counts_by_status_name_every_status(store, directory):
    agent = person(store, "agent")
    file_ticket(store, directory, agent)
    counts = tickets.ticket_counts(store, str(TENANT))
    assert counts["PENDING"] == 1 and set(counts) >= {"PENDING", "AWAITING_ATTENDANCE", "PAUSED", "RESOLVED"}
    assert sum(tickets.ticket_counts(store, str(uuid.uuid4())).values()) == 0

