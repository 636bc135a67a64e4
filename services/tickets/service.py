"""tickets: queues, tickets and their status machine, work sessions, comments, timeline,
live chat. Rules live in domain.py; this adapter loads, applies and persists."""
from __future__ import annotations

import logging
import os
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import orjson
from nameko.rpc import RpcProxy
from prometheus_client.core import GaugeMetricFamily

from common import rpc as deadline
from common.contracts import load, parse_id
from common.contracts import tickets as contract
from common.db import Database, utcnow
from common.errors import Conflict, Forbidden, NotFound
from common.idempotency import IdempotencyContext, idempotent
from common.messaging import first_delivery, subscribe
from common.retention import retention_scope
from common.pagination import datetime_value, decode_cursor, encode_cursor, uuid_value
from common.service_base import ServiceBase, rpc
from services.tickets import domain, storage
from services.tickets.exports import ExportMakerWakeup, export_maker
from services.tickets.views import ticket_view
from services.tickets.storage import (Chat, ChatMessage, Comment, CompanySnapshot, Person,
                                      ReportExport, SavedFilter, Ticket, TicketQueue, TicketsRepository,
                                      TimelineEntry, WorkSession)

log = logging.getLogger(__name__)
LOOKUP_TIMEOUT_SECONDS = 5.0
REPORT_RETENTION = timedelta(days=30)
EXPORT_PAGE, ARCHIVE_BATCH = 1000, 500
EXPORT_CLAIM_ROUNDS = 50  # a run stops after this many rounds of claims (20 exports each)


class ExportClaimLost(Exception):
    """Another maker took this export over (ours stopped renewing its claim in time)."""


class Actor:
    def __init__(self, data: dict):
        self.user_id = uuid.UUID(str(data["user_id"]))
        self.tenant_id = uuid.UUID(str(data["tenant_id"]))
        self.role = data["role"]

    @property
    def is_staff(self) -> bool:
        return self.role in domain.STAFF_ROLES


def require_staff(actor: Actor, what: str) -> None:
    if not actor.is_staff:
        raise Forbidden(f"only staff may {what}", code="forbidden_role")


def state_of(ticket: Ticket, session: WorkSession | None) -> domain.WorkState:
    return domain.WorkState(
        status=ticket.status, assignee_id=ticket.assignee_id,
        session=domain.OpenSession(session.work_type, session.agent_id, session.started_at)
        if session else None,
        worked={"INTERNAL": ticket.worked_internal_seconds, "EXTERNAL": ticket.worked_external_seconds})


# one schema object, reused: building one per item cost 8x the dump itself (ENGINEERING.md 18)
PERSON_SCHEMA = contract.Person()


def resolve_me(filters: dict, user_id) -> dict:
    """`assignee_id=me` is the caller (for an export: whoever asked for it)."""
    if filters.get("assignee_id") == "me":
        filters["assignee_id"] = str(user_id)
    return filters


def ticket_gauges(store):
    """`chamados_tickets{status}`, read at scrape time (cached by the collector)."""
    with store.unit_of_work() as uow:
        counts = uow.repo.counts_by_status()
    family = GaugeMetricFamily("chamados_tickets", "Tickets by status", labels=["status"])
    for status in domain.STATUSES:
        family.add_metric([status], counts.get(status, 0))
    yield family


# a state-changing RPC sent with an Idempotency-Key answers every retry with its first answer
once = idempotent(storage.idempotency_keys)


class Service(ServiceBase):
    name = "tickets"
    db = Database(repository=TicketsRepository, metadata=storage.metadata, gauges=ticket_gauges)
    accounts = RpcProxy("accounts")
    devices = RpcProxy("devices")
    wake_export_maker = ExportMakerWakeup()
    idempotency = IdempotencyContext()  # the caller's Idempotency-Key (@once)
    idempotency_records = storage.idempotency_keys
    churning_tables = ("outbox", "idempotency_keys")

    # queues --------------------------------------------------------------------------

    @rpc
    def list_queues(self, actor: dict) -> dict:
        actor = Actor(actor)
        with self.db.unit_of_work() as uow:
            queues = uow.repo.queues(actor.tenant_id)
            if not any(queue.name_normalized == domain.DEFAULT_QUEUE.lower() for queue in queues):
                self._default_queue(uow, actor.tenant_id)  # a read writes only the first time
                uow.commit()
                queues = uow.repo.queues(actor.tenant_id)
            return contract.QueueList().dump({"items": queues})

    @rpc
    def list_assignees(self, actor: dict) -> dict:
        """Who can be responsible for a ticket: the tenant's staff by name, from the people
        snapshot (the pickers need a few names, not the whole directory)."""
        actor = Actor(actor)
        require_staff(actor, "list assignees")
        with self.db.unit_of_work() as uow:
            return {"items": [PERSON_SCHEMA.dump({"id": person.id, "name": person.name, "email": person.email})
                              for person in uow.repo.staff(actor.tenant_id)]}

    @rpc
    @once
    def create_queue(self, actor: dict, payload: dict) -> dict:
        actor = Actor(actor)
        require_staff(actor, "create queues")
        data = load(contract.QueueCreate, payload)
        name = " ".join(data["name"].split())
        with self.db.unit_of_work() as uow:
            if uow.repo.queue_by_name(actor.tenant_id, name.lower()) is not None:
                raise Conflict(f"queue {name!r} exists", code="queue_exists")
            queue = uow.repo.add(TicketQueue(tenant_id=actor.tenant_id, name=name,
                                             name_normalized=name.lower()))
            uow.commit()
            return contract.Queue().dump(queue)

    def _default_queue(self, uow, tenant_id) -> TicketQueue:
        """"Chamados" exists in every tenant; created on the tenant's event or first use."""
        queue = uow.repo.queue_by_name(tenant_id, domain.DEFAULT_QUEUE.lower())
        if queue is None:  # the tenant's event and a first request may both get here
            uow.repo.insert_missing(TicketQueue, ("tenant_id", "name_normalized"), id=uuid.uuid4(),
                                    tenant_id=tenant_id, name=domain.DEFAULT_QUEUE,
                                    name_normalized=domain.DEFAULT_QUEUE.lower(), created_at=utcnow())
            queue = uow.repo.queue_by_name(tenant_id, domain.DEFAULT_QUEUE.lower())
        return queue

    # tickets -------------------------------------------------------------------------

    @rpc
    @once
    def create_ticket(self, actor: dict, payload: dict) -> dict:
        actor = Actor(actor)
        data = load(contract.TicketCreate, payload)
        if data["machine_id"] is not None:
            self._check_machine(actor, data["machine_id"])
        now = utcnow()
        with self.db.unit_of_work() as uow:
            if data["queue_id"] is None:
                queue = self._default_queue(uow, actor.tenant_id)
            else:
                queue = self._queue(uow, actor, data["queue_id"])
            if actor.is_staff and data["requester_id"]:
                requester = self._person(uow, actor.tenant_id, data["requester_id"])
            else:  # a collaborator always asks for themself
                requester = self._person(uow, actor.tenant_id, actor.user_id)
            company_id = data["company_id"] if actor.is_staff and data["company_id"] else requester.company_id
            company = self._company(uow, actor.tenant_id, company_id) if company_id else None
            ticket = uow.repo.add_ticket(Ticket(
                tenant_id=actor.tenant_id, reference=uow.repo.next_reference(actor.tenant_id),
                subject=data["subject"].strip(), description=data["description"],
                priority=data["priority"], status=domain.PENDING, queue_id=queue.id,
                requester_id=requester.id, requester_name=requester.name,
                requester_email=requester.email, company_id=company.id if company else None,
                company_name=company.name if company else None, machine_id=data["machine_id"],
                worked_internal_seconds=0, worked_external_seconds=0, created_at=now,
                updated_at=now))
            self._record(uow, ticket, actor.user_id, "CREATED", {"queue": queue.name}, now)
            uow.emit("ticket_created", {
                "tenant_id": ticket.tenant_id, "ticket_id": ticket.id, "reference": ticket.reference,
                "subject": ticket.subject, "status": ticket.status, "priority": ticket.priority,
                "queue_id": ticket.queue_id, "requester_id": ticket.requester_id,
                "company_id": ticket.company_id, "machine_id": ticket.machine_id})
            uow.commit()
            return ticket_view(ticket)

    @rpc
    def get_ticket(self, actor: dict, ticket_id: str) -> dict:
        actor = Actor(actor)
        with self.db.unit_of_work() as uow:
            ticket = self._ticket(uow, actor, ticket_id)
            session = uow.repo.open_session(ticket.id)
            return ticket_view(ticket, session.work_type if session else None)

    @rpc
    @once
    def update_ticket(self, actor: dict, ticket_id: str, payload: dict) -> dict:
        actor = Actor(actor)
        require_staff(actor, "edit tickets")
        data = load(contract.TicketUpdate, payload)
        now = utcnow()
        with self.db.unit_of_work() as uow:
            ticket = self._ticket(uow, actor, ticket_id, for_update=True)
            changed = {}
            if "queue_id" in data:
                data["queue_id"] = self._queue(uow, actor, data["queue_id"]).id
            if data.get("machine_id") is not None and data["machine_id"] != ticket.machine_id:
                self._check_machine(actor, data["machine_id"])
            if "company_id" in data:
                company = self._company(uow, actor.tenant_id, data["company_id"]) if data["company_id"] else None
                ticket.company_name = company.name if company else None
            for field in ("subject", "description", "priority", "queue_id", "company_id", "machine_id"):
                if field in data and getattr(ticket, field) != data[field]:
                    changed[field] = str(data[field]) if field.endswith("_id") and data[field] else data[field]
                    setattr(ticket, field, data[field])
            if changed:
                ticket.updated_at = now
                if "subject" in changed or "description" in changed:
                    uow.repo.index_ticket(ticket)
                self._record(uow, ticket, actor.user_id, "UPDATED", {"changed": changed}, now)
                uow.emit("ticket_updated", {"tenant_id": ticket.tenant_id, "ticket_id": ticket.id,
                                            "changed": sorted(changed)})
            uow.commit()
            return ticket_view(ticket)

    @rpc
    def list_tickets(self, actor: dict, query: dict) -> dict:
        actor = Actor(actor)
        filters = resolve_me(load(contract.TicketQuery, query), actor.user_id)
        after = decode_cursor(filters["cursor"], datetime_value, uuid_value)
        only_requester = None if actor.is_staff else actor.user_id
        # read-only (no transaction): the page is one statement; the count, when asked, is a
        # second that may see a newer state, as any count beside a page may
        with self.db.unit_of_work(read_only=True) as uow:
            rows = uow.repo.page(actor.tenant_id, filters, only_requester=only_requester, after=after,
                                 limit=filters["limit"] + 1)
            page, more = rows[:filters["limit"]], len(rows) > filters["limit"]
            _, created_at, last_id = page[-1] if more else (None, None, None)
            cursor = encode_cursor([created_at.isoformat(), str(last_id)]) if more else None
            answer = {"items": [view for view, _, _ in page], "next_cursor": cursor}
            if filters["count"]:  # only when asked: counting costs more than a page
                count = uow.repo.count(uow.repo.list_query(actor.tenant_id, filters,
                                                           only_requester=only_requester),
                                       contract.COUNT_CAP)
                answer["count"] = min(count, contract.COUNT_CAP)
                answer["count_capped"] = count > contract.COUNT_CAP
            return answer

    @rpc
    def recent_tickets(self, actor: dict, query: dict) -> dict:
        actor = Actor(actor)
        data = load(contract.RecentQuery, query)
        with self.db.unit_of_work(read_only=True) as uow:  # one statement (repo.recent)
            return {"items": uow.repo.recent(actor.tenant_id, data["limit"],
                                             only_requester=None if actor.is_staff else actor.user_id)}

    # a person's default list filter ("Salvar filtro como padrão") ------------------------

    @rpc
    def get_saved_filter(self, actor: dict) -> dict:
        actor = Actor(actor)
        with self.db.unit_of_work() as uow:
            saved = uow.session.get(SavedFilter, actor.user_id)
            if saved is None or saved.tenant_id != actor.tenant_id:
                return {"filters": {}, "updated_at": None}
            return contract.SavedFilter().dump({"filters": orjson.loads(saved.filters),
                                                "updated_at": saved.updated_at})

    @rpc
    def save_filter(self, actor: dict, payload: dict) -> dict:
        """Replace the person's default filter; only the filters that are set are kept."""
        actor = Actor(actor)
        data = load(contract.SavedFilterUpdate, payload)
        filters = {key: value for key, value in contract.TicketFilters().dump(data["filters"]).items()
                   if value is not None}
        with self.db.unit_of_work() as uow:
            saved = uow.session.get(SavedFilter, actor.user_id)
            if saved is None:
                saved = uow.repo.add(SavedFilter(user_id=actor.user_id, tenant_id=actor.tenant_id,
                                                 filters="{}", updated_at=utcnow()))
            saved.tenant_id, saved.filters, saved.updated_at = \
                actor.tenant_id, orjson.dumps(filters).decode(), utcnow()
            uow.commit()
            return contract.SavedFilter().dump({"filters": filters, "updated_at": saved.updated_at})

    @rpc
    def clear_saved_filter(self, actor: dict) -> None:
        actor = Actor(actor)
        with self.db.unit_of_work() as uow:
            saved = uow.session.get(SavedFilter, actor.user_id)
            if saved is not None:
                uow.session.delete(saved)
                uow.commit()

    # the status machine --------------------------------------------------------------

    @rpc
    @once
    def assign(self, actor: dict, ticket_id: str, payload: dict) -> dict:
        actor = Actor(actor)
        require_staff(actor, "assign tickets")
        data = load(contract.Assign, payload)

        def decide(uow, ticket, state, now):
            if data["assignee_id"] is not None:
                assignee = self._person(uow, actor.tenant_id, data["assignee_id"])
                if assignee.role not in domain.STAFF_ROLES:
                    raise Conflict("tickets are assigned to staff", code="assignee_not_staff")
            return domain.assign(state, data["assignee_id"])

        return self._transition(actor, ticket_id, decide)

    @rpc
    @once
    def start(self, actor: dict, ticket_id: str, payload: dict) -> dict:
        actor = Actor(actor)
        require_staff(actor, "work on tickets")
        data = load(contract.Start, payload)
        return self._transition(actor, ticket_id, lambda uow, ticket, state, now: domain.start(
            state, actor.user_id, data["work_type"], now))

    @rpc
    @once
    def pause(self, actor: dict, ticket_id: str, payload: dict) -> dict:
        actor = Actor(actor)
        require_staff(actor, "pause tickets")
        data = load(contract.Pause, payload)
        return self._transition(actor, ticket_id, lambda uow, ticket, state, now: domain.pause(
            state, data["reason"], now))

    @rpc
    @once
    def resolve(self, actor: dict, ticket_id: str, payload: dict) -> dict:
        actor = Actor(actor)
        require_staff(actor, "resolve tickets")
        data = load(contract.Resolve, payload)
        return self._transition(actor, ticket_id, lambda uow, ticket, state, now: domain.resolve(
            state, now, data["message"]))

    @rpc
    @once
    def reopen(self, actor: dict, ticket_id: str) -> dict:
        actor = Actor(actor)
        return self._transition(actor, ticket_id, lambda uow, ticket, state, now: domain.reopen(
            state, actor.role))

    def _transition(self, actor: Actor, ticket_id, decide) -> dict:
        now = utcnow()
        with self.db.unit_of_work() as uow:
            ticket = self._ticket(uow, actor, ticket_id, for_update=True)
            session = uow.repo.open_session(ticket.id)
            outcome = decide(uow, ticket, state_of(ticket, session), now)
            self._apply(uow, ticket, session, outcome, actor.user_id, now)
            uow.commit()
            return ticket_view(ticket, outcome.state.session.work_type if outcome.state.session else None)

    def _apply(self, uow, ticket: Ticket, session: WorkSession | None, outcome: domain.Outcome,
               actor_id, now: datetime) -> None:
        """Persist what the machine decided: one place for every transition."""
        state = outcome.state
        if outcome.closed is not None:
            session.ended_at, session.seconds = outcome.closed.ended_at, outcome.closed.seconds
            session.end_reason = outcome.closed.reason
            uow.session.flush()  # the open-session index must see it closed first
        if outcome.opened is not None:
            uow.repo.add(WorkSession(ticket_id=ticket.id, agent_id=outcome.opened.agent_id,
                                     work_type=outcome.opened.work_type,
                                     started_at=outcome.opened.started_at))
        if outcome.assigned:
            assignee = self._person(uow, ticket.tenant_id, state.assignee_id) if state.assignee_id else None
            ticket.assignee_id = state.assignee_id
            ticket.assignee_name = assignee.name if assignee else None
            ticket.assignee_email = assignee.email if assignee else None
            uow.emit("ticket_assigned", {"tenant_id": ticket.tenant_id, "ticket_id": ticket.id,
                                         "assignee_id": ticket.assignee_id, "actor_id": actor_id})
        ticket.status = state.status
        ticket.worked_internal_seconds = state.worked["INTERNAL"]
        ticket.worked_external_seconds = state.worked["EXTERNAL"]
        if outcome.status_changed:
            ticket.resolved_at = now if state.status == domain.RESOLVED else None
            reason = next((data.get("reason") for kind, data in outcome.timeline if kind == "PAUSED"), None)
            uow.emit("ticket_status_changed", {
                "tenant_id": ticket.tenant_id, "ticket_id": ticket.id,
                "from_status": outcome.previous_status, "to_status": state.status,
                "reason": reason, "actor_id": actor_id})
        ticket.updated_at = now
        for kind, data in outcome.timeline:
            self._record(uow, ticket, actor_id, kind, data, now)

    def _record(self, uow, ticket: Ticket, actor_id, kind: str, data: dict, now) -> None:
        uow.session.add(TimelineEntry(ticket_id=ticket.id, actor_id=actor_id, kind=kind,
                                      data=orjson.dumps(data, default=str).decode(), created_at=now))

    # comments and timeline -----------------------------------------------------------

    @rpc
    @once
    def add_comment(self, actor: dict, ticket_id: str, payload: dict) -> dict:
        actor = Actor(actor)
        data = load(contract.CommentCreate, payload)
        now = utcnow()
        with self.db.unit_of_work() as uow:
            ticket = self._ticket(uow, actor, ticket_id)
            domain.check_can_comment(state_of(ticket, None), actor.role, data["visibility"],
                                     ticket.requester_id == actor.user_id)
            comment = uow.repo.add(Comment(ticket_id=ticket.id, author_id=actor.user_id,
                                           visibility=data["visibility"], body=data["body"],
                                           created_at=now))
            ticket.updated_at = now
            if comment.visibility == "PUBLIC":  # only public comments are searchable
                uow.repo.index_comment(ticket, comment.body)
            self._record(uow, ticket, actor.user_id, "COMMENT_ADDED",
                         {"comment_id": str(comment.id), "visibility": comment.visibility}, now)
            uow.emit("comment_added", {"tenant_id": ticket.tenant_id, "ticket_id": ticket.id,
                                       "comment_id": comment.id, "author_id": actor.user_id,
                                       "visibility": comment.visibility})
            uow.commit()
            return self._comment_views(uow, [comment])[0]

    @rpc
    def list_comments(self, actor: dict, ticket_id: str) -> dict:
        actor = Actor(actor)
        with self.db.unit_of_work() as uow:
            ticket = self._ticket(uow, actor, ticket_id)
            comments = uow.repo.comments(ticket.id, domain.visible_comment_kinds(actor.role))
            return {"items": self._comment_views(uow, comments)}

    def _comment_views(self, uow, comments) -> list[dict]:
        people = uow.repo.people(c.author_id for c in comments)
        return [contract.Comment().dump({
            "id": c.id, "ticket_id": c.ticket_id, "body": c.body, "visibility": c.visibility,
            "created_at": c.created_at, "author": self._person_view(people, c.author_id)})
            for c in comments]

    @rpc
    def timeline(self, actor: dict, ticket_id: str) -> dict:
        actor = Actor(actor)
        with self.db.unit_of_work() as uow:
            ticket = self._ticket(uow, actor, ticket_id)
            entries = [(e, orjson.loads(e.data)) for e in uow.repo.timeline(ticket.id)]
            if not actor.is_staff:  # internal comments stay internal, on the timeline too
                entries = [(e, data) for e, data in entries if data.get("visibility") != "INTERNAL"]
            people = uow.repo.people(e.actor_id for e, _ in entries)
            return {"items": [contract.TimelineEntry().dump({
                "id": e.id, "kind": e.kind, "data": data, "created_at": e.created_at,
                "actor": self._person_view(people, e.actor_id) if e.actor_id else None})
                for e, data in entries]}

    @staticmethod
    def _person_view(people: dict, person_id) -> dict:
        person = people.get(person_id)
        return {"id": person_id, "name": person.name if person else None,
                "email": person.email if person else None}

    # live chat -----------------------------------------------------------------------

    @rpc
    @once
    def start_chat(self, actor: dict, ticket_id: str) -> dict:
        actor = Actor(actor)
        require_staff(actor, "start chats")
        now = utcnow()
        with self.db.unit_of_work() as uow:
            ticket = self._ticket(uow, actor, ticket_id, for_update=True)
            if uow.repo.open_chat(ticket.id) is not None:
                raise Conflict("this ticket already has a chat going on", code="chat_in_progress")
            session = uow.repo.open_session(ticket.id)
            outcome = domain.chat_opening(state_of(ticket, session), actor.user_id, now,
                                          has_device=ticket.machine_id is not None)
            if outcome is not None:
                self._apply(uow, ticket, session, outcome, actor.user_id, now)
            chat = uow.repo.add(Chat(ticket_id=ticket.id, tenant_id=ticket.tenant_id,
                                     started_by=actor.user_id, started_at=now, last_activity_at=now))
            self._record(uow, ticket, actor.user_id, "CHAT_STARTED", {"chat_id": str(chat.id)}, now)
            uow.emit("chat_started", {"tenant_id": ticket.tenant_id, "ticket_id": ticket.id,
                                      "chat_id": chat.id, "reason": None})
            uow.commit()
            return self._chat_view(uow, chat)

    @rpc
    def get_chat(self, actor: dict, chat_id: str) -> dict:
        actor = Actor(actor)
        with self.db.unit_of_work() as uow:
            return self._chat_view(uow, self._chat(uow, actor, chat_id))

    @rpc
    @once
    def post_chat_message(self, actor: dict, chat_id: str, payload: dict) -> dict:
        actor = Actor(actor)
        data = load(contract.ChatMessageCreate, payload)
        now = utcnow()
        with self.db.unit_of_work() as uow:
            chat = self._chat(uow, actor, chat_id)
            if chat.ended_at is not None:
                raise Conflict("the chat has ended", code="chat_ended")
            uow.repo.add(ChatMessage(chat_id=chat.id, author_id=actor.user_id, body=data["body"],
                                     created_at=now))
            chat.last_activity_at = now
            uow.commit()
            return self._chat_view(uow, chat)

    @rpc
    @once
    def end_chat(self, actor: dict, chat_id: str) -> dict:
        actor = Actor(actor)
        with self.db.unit_of_work() as uow:
            chat = self._chat(uow, actor, chat_id)
            if chat.ended_at is not None:
                raise Conflict("the chat has ended", code="chat_ended")
            self._end_chat(uow, chat, "ENDED_BY_USER", actor.user_id, utcnow())
            uow.commit()
            return self._chat_view(uow, chat)

    @rpc
    def end_inactive_chats(self, now: str | None = None) -> dict:
        """The scheduler's chat cleanup: ends chats whose device is offline > 5 min, which
        had no message for 12 h, or whose ticket has lost its device since the chat started
        (a chat starts only with one); the reason goes on the timeline. Nothing is written
        when nothing has to end."""
        now = datetime.fromisoformat(now) if now else utcnow()
        reasons: dict[str, int] = {}
        with self.db.unit_of_work() as uow:
            chats = uow.repo.open_chats()
            tickets = {chat.id: uow.session.get(Ticket, chat.ticket_id) for chat in chats}
            last_seen = self._machines_last_seen({t.machine_id for t in tickets.values() if t.machine_id})
            for chat in chats:
                machine_id = tickets[chat.id].machine_id
                known = machine_id is not None and str(machine_id) in last_seen
                seen = last_seen.get(str(machine_id)) if known else None
                reason = domain.chat_end_reason(
                    now=now, last_activity_at=chat.last_activity_at, machine_id=machine_id,
                    machine_last_seen_at=datetime.fromisoformat(seen) if seen else None,
                    machine_known=known)
                if reason is not None:
                    self._end_chat(uow, chat, reason, None, now)
                    reasons[reason] = reasons.get(reason, 0) + 1
            if reasons:
                uow.commit()
        return contract.ChatSweep().dump({"ended": sum(reasons.values()), "reasons": reasons})

    def _machines_last_seen(self, machine_ids) -> dict:
        """{machine id: ISO time or None} from devices; {} while devices cannot tell, so the
        offline rule waits rather than ending chats on a guess."""
        if not machine_ids:
            return {}
        try:
            return deadline.call(self.devices, "devices", "machines_last_seen",
                                 sorted(str(m) for m in machine_ids), timeout=LOOKUP_TIMEOUT_SECONDS)
        except Exception as exc:
            log.warning("devices could not say when machines were last seen: %s", exc)
            return {}

    def _end_chat(self, uow, chat: Chat, reason: str, actor_id, now: datetime) -> None:
        chat.ended_at, chat.end_reason = now, reason
        ticket = uow.session.get(Ticket, chat.ticket_id)
        session = uow.repo.open_session(ticket.id)
        outcome = domain.chat_closing(state_of(ticket, session), now)
        if outcome is not None:
            self._apply(uow, ticket, session, outcome, actor_id, now)
        self._record(uow, ticket, actor_id, "CHAT_ENDED", {"chat_id": str(chat.id), "reason": reason}, now)
        uow.emit("chat_ended", {"tenant_id": ticket.tenant_id, "ticket_id": ticket.id,
                                "chat_id": chat.id, "reason": reason})

    def _chat_view(self, uow, chat: Chat) -> dict:
        messages = uow.repo.chat_messages(chat.id)
        people = uow.repo.people(m.author_id for m in messages)
        return contract.Chat().dump({
            "id": chat.id, "ticket_id": chat.ticket_id, "started_by": chat.started_by,
            "started_at": chat.started_at, "last_activity_at": chat.last_activity_at,
            "ended_at": chat.ended_at, "end_reason": chat.end_reason,
            "messages": [{"id": m.id, "body": m.body, "created_at": m.created_at,
                          "author": self._person_view(people, m.author_id)} for m in messages]})

    # scheduled work ----------------------------------------------------------------------

    @rpc
    def lunch_pause(self, now: str | None = None) -> dict:
        """12:00 in São Paulo: tickets worked in INTERNAL sessions pause with LUNCH_BREAK;
        EXTERNAL work (a customer on the line) goes on."""
        now = datetime.fromisoformat(now) if now else utcnow()
        paused = 0
        with self.db.unit_of_work() as uow:
            for ticket, session in uow.repo.internal_work_in_progress():
                outcome = domain.lunch_pause(state_of(ticket, session), now)
                if outcome is not None:
                    self._apply(uow, ticket, session, outcome, None, now)
                    paused += 1
            if paused:
                uow.commit()
        return {"paused": paused}

    @rpc
    def apply_retention(self, now: str | None = None, dry_run: bool = False,
                        tenant_id: str | None = None) -> dict:
        """Report runs and their files go after 30 days; tickets are kept forever. With
        `tenant_id` (a dry run only), that tenant's alone."""
        now, tenant = retention_scope(now, dry_run, tenant_id)
        cutoff = now - REPORT_RETENTION
        with self.db.unit_of_work() as uow:
            old = uow.repo.exports_before(cutoff, tenant)
            summary = {"report_exports": {"past_policy": len(old), "deleted": 0,
                                          "oldest": min((e.created_at for e in old), default=None)},
                       "tickets": {"policy": "kept forever"}}
            if old and not dry_run:
                for export in old:
                    self._export_path(export).unlink(missing_ok=True)
                    uow.session.delete(export)
                uow.commit()
                summary["report_exports"]["deleted"] = len(old)
        oldest = summary["report_exports"]["oldest"]
        summary["report_exports"]["oldest"] = oldest.isoformat() if oldest else None
        return {"dry_run": dry_run, "kinds": summary}

    @rpc
    def ticket_counts(self, tenant_id: str | None = None) -> dict:
        """Tickets by status, of one tenant or of all (health snapshot)."""
        with self.db.unit_of_work() as uow:
            counts = uow.repo.counts_by_status(parse_id(tenant_id, "tenant") if tenant_id else None)
        return {status: counts.get(status, 0) for status in domain.STATUSES}

    # report exports ----------------------------------------------------------------------

    @rpc
    @once
    def request_export(self, actor: dict, payload: dict) -> dict:
        """Record the export and answer at once; this process's export maker starts on it
        right after the commit (a crash before it does is recovered: see exports.py)."""
        actor = Actor(actor)
        require_staff(actor, "export reports")
        data = load(contract.ExportRequest, payload)
        with self.db.unit_of_work() as uow:
            export = uow.repo.add(ReportExport(
                tenant_id=actor.tenant_id, requested_by=actor.user_id, status="QUEUED",
                delimiter=data["delimiter"],
                filters=orjson.dumps(contract.TicketFilters().dump(data["filters"])).decode()))
            uow.commit()
            self.wake_export_maker()
            return self._export_view(export)

    @rpc
    def get_export(self, actor: dict, export_id: str) -> dict:
        actor = Actor(actor)
        with self.db.unit_of_work() as uow:
            return self._export_view(self._export(uow, actor, export_id))

    @rpc
    def list_exports(self, actor: dict, query: dict) -> dict:
        """The tenant's most recent exports, newest first (Relatórios lists them)."""
        actor = Actor(actor)
        require_staff(actor, "read exports")
        data = load(contract.ExportQuery, query)
        with self.db.unit_of_work() as uow:
            return {"items": [self._export_view(export)
                              for export in uow.repo.recent_exports(actor.tenant_id, data["limit"])]}

    @rpc
    def download_export(self, actor: dict, export_id: str) -> dict:
        actor = Actor(actor)
        with self.db.unit_of_work() as uow:
            export = self._export(uow, actor, export_id)
            if export.status != "DONE":
                raise Conflict(f"the export is {export.status}", code="export_not_ready",
                               details={"status": export.status,
                                        "poll_after_seconds": domain.export_poll_seconds(export.status)})
            path = self._export_path(export)
            if not path.exists():
                raise NotFound("the export's file is gone", code="export_file_missing")
            # as written: the BOM and CRLF line ends stay (no newline translation)
            with open(path, encoding="utf-8", newline="") as handle:
                content = handle.read()
            return {"filename": f"chamados-tickets-{export.id}.csv", "content": content}

    @export_maker
    def make_exports(self) -> dict:
        """The export maker's run (exports.py): right after a request, and every minute."""
        return self._make_exports()

    @rpc
    def run_report_exports(self, now: str | None = None) -> dict:
        """The scheduler's `report-export-runner` (off by default; the service makes exports
        itself): makes whatever is still waiting, as the export maker does."""
        return self._make_exports()

    def _make_exports(self) -> dict:
        """Every export waiting (QUEUED, or RUNNING under a dead maker's claim) becomes a
        CSV file under EXPORT_DIR; each is claimed first, so no two makers make one."""
        done = failed = 0
        for _ in range(EXPORT_CLAIM_ROUNDS):
            now = utcnow()
            with self.db.unit_of_work() as uow:
                waiting = uow.repo.claimable_exports(now - domain.EXPORT_CLAIM_LEASE)
            if not waiting:
                break
            claimed = 0
            for export_id in waiting:
                outcome = self._make_export(export_id)
                claimed += outcome is not None
                done += outcome == "DONE"
                failed += outcome == "FAILED"
            if not claimed:  # others hold them all
                break
        if done or failed:
            log.info("exports made: %d done, %d failed", done, failed)
        return {"done": done, "failed": failed}

    def _make_export(self, export_id) -> str | None:
        """DONE or FAILED once made by us; None when another maker has it."""
        claim, now = uuid.uuid4(), utcnow()
        with self.db.unit_of_work() as uow:
            if not uow.repo.claim_export(export_id, claim, now, now - domain.EXPORT_CLAIM_LEASE):
                return None
            uow.commit()
        try:
            return self._write_export(export_id, claim)
        except ExportClaimLost:
            log.warning("export %s: taken over by another maker; this one stops", export_id)
            return None
        except Exception as exc:  # one bad export must not stop the others
            log.exception("export %s failed", export_id)
            with self.db.unit_of_work() as uow:
                if uow.repo.settle_export(export_id, claim, status="FAILED", finished_at=utcnow(),
                                          error=f"{exc.__class__.__name__}: {exc}"[:500]):
                    uow.commit()
            return "FAILED"

    def _write_export(self, export_id, claim) -> str:
        with self.db.unit_of_work() as uow:
            export = uow.session.get(ReportExport, export_id)
            filters = resolve_me(load(contract.TicketFilters, orjson.loads(export.filters)),
                                 export.requested_by)
            path = self._export_path(export)
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f"{path.stem}.{claim}.partial")  # a maker's own
            rows, after, renewed = 0, None, utcnow()
            try:
                with open(partial, "w", encoding="utf-8", newline="") as handle:
                    writer = domain.ExportCsv(handle, export.delimiter)
                    while True:  # keyset pages: memory stays flat however many tickets
                        page = list(uow.session.scalars(uow.repo.list_query(
                            export.tenant_id, filters, after=after, limit=EXPORT_PAGE)))
                        rows += writer.write(page)
                        if len(page) < EXPORT_PAGE:
                            break
                        after = (page[-1].created_at, page[-1].id)
                        if utcnow() - renewed >= domain.EXPORT_CLAIM_RENEW:  # still ours, still alive
                            renewed = utcnow()
                            if not uow.repo.settle_export(export.id, claim, claimed_at=renewed):
                                raise ExportClaimLost(export.id)
                            uow.commit()
                            log.info("export %s: %d tickets written", export.id, rows)
                    handle.flush()
                    os.fsync(handle.fileno())
                finished = utcnow()
                if not uow.repo.settle_export(export.id, claim, status="DONE", rows=rows,
                                              finished_at=finished, file_name=path.name):
                    raise ExportClaimLost(export.id)
                partial.replace(path)  # then commit: a crash between leaves it to be made again
                uow.commit()
            finally:
                partial.unlink(missing_ok=True)
            log.info("export %s done: %d tickets in %s", export.id, rows, path)
            return "DONE"

    def _export_path(self, export: ReportExport) -> Path:
        return Path(self.db.settings.export_dir) / str(export.tenant_id) / f"{export.id}.csv"

    @staticmethod
    def _export_view(export: ReportExport) -> dict:
        return contract.ExportRun().dump({
            "id": export.id, "status": export.status, "filters": orjson.loads(export.filters),
            "delimiter": export.delimiter, "rows": export.rows, "error": export.error,
            "created_at": export.created_at, "finished_at": export.finished_at,
            "poll_after_seconds": domain.export_poll_seconds(export.status)})

    def _export(self, uow, actor: Actor, export_id) -> ReportExport:
        require_staff(actor, "read exports")
        export = uow.repo.export(actor.tenant_id, parse_id(export_id, "export"))
        if export is None:
            raise NotFound("export not found", code="export_not_found")
        return export

    # archive -------------------------------------------------------------------------------

    @rpc
    def archive_resolved(self, actor: dict, payload: dict) -> dict:
        """Resolved tickets older than N days (with comments and timeline) go to a JSON-lines
        file under ARCHIVE_DIR and are marked archived, so no ticket is written twice. The
        file is renamed into place only after the marks are committed: a crash leaves at
        most a `.partial` file, never a ticket archived twice."""
        actor = Actor(actor)
        if actor.role != "admin":
            raise Forbidden("only admins archive", code="forbidden_role")
        data = load(contract.ArchiveRequest, payload)
        now = utcnow()
        cutoff = now - timedelta(days=data["older_than_days"])
        folder = Path(self.db.settings.archive_dir) / str(actor.tenant_id)
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / f"tickets-{now.strftime('%Y%m%dT%H%M%S%fZ')}.jsonl"
        partial = final.with_suffix(".partial")
        archived = 0
        with open(partial, "w") as handle, self.db.unit_of_work() as uow:
            while True:
                batch = uow.repo.archivable(actor.tenant_id, cutoff, ARCHIVE_BATCH)
                if not batch:
                    break
                for ticket in batch:
                    handle.write(orjson.dumps(self._archive_record(uow, ticket)).decode() + "\n")
                    ticket.archived_at = now
                archived += len(batch)
                uow.session.flush()
                log.info("archive %s: %d tickets written", final.name, archived)
            handle.flush()
            os.fsync(handle.fileno())
            uow.commit()
        if archived:
            partial.replace(final)
            return {"archived": archived, "file": str(final)}
        partial.unlink(missing_ok=True)
        return {"archived": 0, "file": None}

    def _archive_record(self, uow, ticket: Ticket) -> dict:
        comments = uow.repo.comments(ticket.id, ("PUBLIC", "INTERNAL"))
        return {"ticket": ticket_view(ticket),
                "comments": [{"id": str(c.id), "author_id": str(c.author_id), "visibility": c.visibility,
                              "body": c.body, "created_at": c.created_at.isoformat()} for c in comments],
                "timeline": [{"kind": e.kind, "actor_id": str(e.actor_id) if e.actor_id else None,
                              "data": orjson.loads(e.data), "created_at": e.created_at.isoformat()}
                             for e in uow.repo.timeline(ticket.id)]}

    # lookups ---------------------------------------------------------------------------

    def _ticket(self, uow, actor: Actor, ticket_id, for_update: bool = False) -> Ticket:
        """By id, or by the reference number people quote ("chamado 42")."""
        key = int(ticket_id) if isinstance(ticket_id, str) and ticket_id.isascii() and ticket_id.isdigit() \
            and len(ticket_id) <= 9 else parse_id(ticket_id, "ticket")
        ticket = uow.repo.ticket(actor.tenant_id, key, for_update)
        # another tenant's ticket, or a collaborator's look at someone else's: both unknown
        if ticket is None or not domain.check_can_see(actor.role, actor.user_id, ticket.requester_id):
            raise NotFound("ticket not found", code="ticket_not_found")
        return ticket

    def _chat(self, uow, actor: Actor, chat_id) -> Chat:
        chat = uow.repo.chat(actor.tenant_id, parse_id(chat_id, "chat"))
        if chat is None:
            raise NotFound("chat not found", code="chat_not_found")
        self._ticket(uow, actor, chat.ticket_id)  # the chat is as visible as its ticket
        return chat

    def _queue(self, uow, actor: Actor, queue_id) -> storage.QueueRef:
        queue = uow.repo.queue(actor.tenant_id, parse_id(queue_id, "queue"))
        if queue is None:
            raise NotFound("queue not found", code="queue_not_found")
        return queue

    def _check_machine(self, actor: Actor, machine_id) -> None:
        """A ticket's machine is one of its tenant's (devices owns machines; its online status
        drives the chat's auto-end), and a collaborator's one of their own (assigned or
        linked): another tenant's, another person's or an unknown one is not found."""
        own = None if actor.is_staff else str(actor.user_id)
        if not deadline.call(self.devices, "devices", "machine_in_tenant", str(actor.tenant_id),
                             str(machine_id), own, timeout=LOOKUP_TIMEOUT_SECONDS):
            raise NotFound("machine not found", code="machine_not_found")

    def _person(self, uow, tenant_id, user_id) -> Person:
        """From the local snapshot; from accounts when the user's event has not arrived yet."""
        person = uow.repo.person(parse_id(user_id, "user"))
        if person is None:
            user = deadline.call(self.accounts, "accounts", "lookup_user", str(tenant_id),
                                 str(user_id), timeout=LOOKUP_TIMEOUT_SECONDS)
            person, _ = self._upsert_person(uow, user)
        if person.tenant_id != tenant_id or person.merged_into_id is not None:
            raise NotFound("user not found", code="user_not_found")
        return person

    def _company(self, uow, tenant_id, company_id) -> CompanySnapshot:
        company = uow.repo.company(parse_id(company_id, "company"))
        if company is None:
            found = deadline.call(self.accounts, "accounts", "lookup_company", str(tenant_id),
                                  str(company_id), timeout=LOOKUP_TIMEOUT_SECONDS)
            company = uow.repo.ensure_company(uuid.UUID(found["id"]), tenant_id, found["name"],
                                              domain.SnapshotVersion.of(found.get("version")).stored)
        if company.tenant_id != tenant_id:
            raise NotFound("company not found", code="company_not_found")
        return company

    @staticmethod
    def _upsert_person(uow, user: dict) -> tuple[Person, bool]:
        """The person's snapshot as `user` (an event or a lookup) says, unless it holds a
        newer version of them already (domain.SnapshotVersion), and whether tickets now
        carry a stale name or email of theirs (a new snapshot: none can, a ticket is filed
        after its snapshot)."""
        person_id = uuid.UUID(str(user.get("user_id") or user["id"]))
        version = domain.SnapshotVersion.of(user.get("version"))
        values = {"name": user["name"], "email": user["email"], "role": user["role"],
                  "company_id": uuid.UUID(str(user["company_id"])) if user.get("company_id") else None,
                  "merged_into_id": uuid.UUID(str(user["merged_into_id"])) if user.get("merged_into_id") else None}
        person = uow.repo.person_for_update(person_id)
        if person is None:  # a request's lookup and the user's event may both create it
            uow.repo.insert_missing(Person, ("id",), id=person_id, tenant_id=uuid.UUID(str(user["tenant_id"])),
                                    version=version.stored, **values)
            person = uow.repo.person_for_update(person_id)
        before = (person.name, person.email)
        if not uow.repo.update_snapshot_if_newer(Person, person_id, version, values):
            return person, False
        uow.session.refresh(person)
        return person, (person.name, person.email) != before

    # accounts' events ----------------------------------------------------------------

    @subscribe("accounts", "tenant_created")
    def on_tenant_created(self, event: dict) -> None:
        with self.db.unit_of_work() as uow:
            if first_delivery(uow, storage.inbox, event, "tenant_created"):
                self._default_queue(uow, uuid.UUID(event["tenant_id"]))
                uow.commit()

    @subscribe("accounts", "user_created")
    def on_user_created(self, event: dict) -> None:
        self._user_changed(event, "user_created")

    @subscribe("accounts", "user_updated")
    def on_user_updated(self, event: dict) -> None:
        self._user_changed(event, "user_updated")

    def _user_changed(self, event: dict, event_type: str) -> None:
        with self.db.unit_of_work() as uow:
            if first_delivery(uow, storage.inbox, event, event_type):
                person, renamed = self._upsert_person(uow, event)
                if renamed:  # two UPDATEs over the tenant's tickets: only when they change
                    uow.repo.refresh_person_snapshots(person)
                uow.commit()

    @subscribe("accounts", "company_created")
    def on_company_created(self, event: dict) -> None:
        self._company_changed(event, "company_created")

    @subscribe("accounts", "company_updated")
    def on_company_updated(self, event: dict) -> None:
        self._company_changed(event, "company_updated")

    def _company_changed(self, event: dict, event_type: str) -> None:
        with self.db.unit_of_work() as uow:
            if first_delivery(uow, storage.inbox, event, event_type):
                version = domain.SnapshotVersion.of(event.get("version"))
                company = uow.repo.ensure_company(uuid.UUID(event["company_id"]),
                                                  uuid.UUID(event["tenant_id"]), event["name"],
                                                  version.stored)
                if uow.repo.update_snapshot_if_newer(CompanySnapshot, company.id, version,
                                                     {"name": event["name"]}):
                    uow.session.refresh(company)
                    uow.repo.refresh_company_snapshots(company)  # under the row lock just taken
                uow.commit()

    @subscribe("accounts", "user_merged")
    def on_user_merged(self, event: dict) -> None:
        """Every reference to the old id now names the account it was merged into."""
        with self.db.unit_of_work() as uow:
            if not first_delivery(uow, storage.inbox, event, "user_merged"):
                return
            tenant_id = uuid.UUID(event["tenant_id"])
            old_id, new_id = uuid.UUID(event["from_user_id"]), uuid.UUID(event["into_user_id"])
            uow.repo.remap_user(tenant_id, old_id, new_id)
            into = self._person(uow, tenant_id, new_id)
            uow.repo.refresh_person_snapshots(into)
            old = uow.repo.person(old_id)
            if old is not None:
                old.merged_into_id = new_id
            uow.commit()
