"""Ticket rules as plain Python: the status machine, work sessions, who may comment, live
chat. No nameko, SQLAlchemy, kombu or werkzeug here.

The machine (PRODUCT.md "Tickets"):

    PENDING ──start──► AWAITING_ATTENDANCE ──pause(reason)──► PAUSED
       ▲                   ▲        │                            │
       │                   └────────┼──────────start─────────────┘
     reopen                         │
       │                          resolve (from any open status)
    RESOLVED ◄──────────────────────┘

A work session is open exactly while the ticket is AWAITING_ATTENDANCE.
"""
from __future__ import annotations

import csv
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from common.actor import STAFF_ROLES
from common.vocabulary import (COMMENT_MAX, EXPORT_DELIMITERS, PRIORITIES, STATUSES,  # noqa: F401
                               SUBJECT_MAX, WORK_TYPES)
from common.vocabulary import PAUSE_REASONS as PEOPLE_PAUSE_REASONS
from common.errors import Conflict, Forbidden, ValidationFailed
from common.snapshot_version import SnapshotVersion  # noqa: F401  (domain.SnapshotVersion)

# the contract names the values; the machine gives them meaning
PENDING, AWAITING, PAUSED, RESOLVED = STATUSES
STATUS_LABELS = {PENDING: ("Pendente", "grey"), AWAITING: ("Em andamento", "blue"),
                 PAUSED: ("Pausado", "yellow"), RESOLVED: ("Resolvido", "green")}
OPEN_STATUSES = (PENDING, AWAITING, PAUSED)
AUTOMATIC_PAUSE_REASONS = ("LUNCH_BREAK", "END_LIVE_CHAT")
DEFAULT_QUEUE = "Chamados"

CHAT_IDLE_LIMIT = timedelta(hours=12)
DEVICE_OFFLINE_LIMIT = timedelta(minutes=5)


@dataclass(frozen=True)
class OpenSession:
    work_type: str
    agent_id: uuid.UUID
    started_at: datetime


@dataclass(frozen=True)
class ClosedSession:
    work_type: str
    agent_id: uuid.UUID
    started_at: datetime
    ended_at: datetime
    seconds: int
    reason: str


@dataclass(frozen=True)
class WorkState:
    """What the machine needs of a ticket."""

    status: str
    assignee_id: uuid.UUID | None
    session: OpenSession | None = None
    worked: dict = field(default_factory=lambda: {"INTERNAL": 0, "EXTERNAL": 0})


@dataclass
class Outcome:
    """The new state and what changed, for storage to persist and the timeline to record."""

    state: WorkState
    previous_status: str
    opened: OpenSession | None = None
    closed: ClosedSession | None = None
    assigned: bool = False
    timeline: list = field(default_factory=list)  # (kind, data) pairs

    @property
    def status_changed(self) -> bool:
        return self.state.status != self.previous_status


def invalid_transition(action: str, status: str) -> Conflict:
    return Conflict(f"cannot {action} a ticket that is {status}", code="invalid_transition",
                    details={"action": action, "current_status": status})


def _close(state: WorkState, now: datetime, reason: str) -> tuple[dict, ClosedSession | None]:
    if state.session is None:
        return dict(state.worked), None
    seconds = max(0, int((now - state.session.started_at).total_seconds()))
    worked = dict(state.worked)
    worked[state.session.work_type] = worked.get(state.session.work_type, 0) + seconds
    return worked, ClosedSession(state.session.work_type, state.session.agent_id,
                                 state.session.started_at, now, seconds, reason)


def start(state: WorkState, actor_id: uuid.UUID, work_type: str, now: datetime) -> Outcome:
    if work_type not in WORK_TYPES:
        raise ValidationFailed("unknown work type", details={"fields": {"work_type": list(WORK_TYPES)}})
    if state.status not in (PENDING, PAUSED):
        raise invalid_transition("start", state.status)
    outcome = Outcome(state, state.status)
    assignee = state.assignee_id
    if assignee is None:
        assignee = actor_id
        outcome.assigned = True
        outcome.timeline.append(("ASSIGNED", {"assignee_id": str(actor_id), "automatic": True}))
    session = OpenSession(work_type, actor_id, now)
    outcome.state = replace(state, status=AWAITING, assignee_id=assignee, session=session)
    outcome.opened = session
    outcome.timeline.append(("WORK_STARTED", {"work_type": work_type}))
    return outcome


def pause(state: WorkState, reason: str, now: datetime, automatic: bool = False) -> Outcome:
    allowed = PEOPLE_PAUSE_REASONS + (AUTOMATIC_PAUSE_REASONS if automatic else ())
    if reason not in allowed:
        raise ValidationFailed("a pause needs a reason", details={"fields": {"reason": list(allowed)}})
    if state.status != AWAITING:
        raise invalid_transition("pause", state.status)
    worked, closed = _close(state, now, reason)
    outcome = Outcome(replace(state, status=PAUSED, session=None, worked=worked), state.status,
                      closed=closed)
    outcome.timeline.append(("PAUSED", {"reason": reason, "automatic": automatic}))
    return outcome


def resolve(state: WorkState, now: datetime, message: str | None) -> Outcome:
    if state.status == RESOLVED:
        raise invalid_transition("resolve", state.status)
    worked, closed = _close(state, now, "RESOLVED")
    outcome = Outcome(replace(state, status=RESOLVED, session=None, worked=worked), state.status,
                      closed=closed)
    outcome.timeline.append(("RESOLVED", {"message": message}))
    return outcome


def reopen(state: WorkState, actor_role: str) -> Outcome:
    if actor_role not in STAFF_ROLES:
        raise Forbidden("only staff reopen tickets", code="forbidden_role")
    if state.status != RESOLVED:
        raise invalid_transition("reopen", state.status)
    outcome = Outcome(replace(state, status=PENDING), state.status)
    outcome.timeline.append(("REOPENED", {}))
    return outcome


def assign(state: WorkState, assignee_id: uuid.UUID | None) -> Outcome:
    if state.status == RESOLVED:
        raise invalid_transition("assign", state.status)
    if assignee_id is None and state.status == AWAITING:
        raise Conflict("pause the work before leaving the ticket unassigned",
                       code="ticket_in_progress", details={"current_status": state.status})
    outcome = Outcome(replace(state, assignee_id=assignee_id), state.status,
                      assigned=assignee_id != state.assignee_id)
    if outcome.assigned:
        outcome.timeline.append(("ASSIGNED", {"assignee_id": str(assignee_id) if assignee_id else None,
                                              "automatic": False}))
    return outcome


def check_can_comment(state: WorkState, role: str, visibility: str, is_requester: bool) -> None:
    if role in STAFF_ROLES:
        if state.assignee_id is None:
            raise Conflict("assign the ticket before commenting", code="ticket_unassigned")
        return
    if not is_requester:
        raise Forbidden("only the requester and staff comment", code="forbidden_role")
    if visibility != "PUBLIC":
        raise Forbidden("collaborators write public comments only", code="forbidden_visibility")


def visible_comment_kinds(role: str) -> tuple[str, ...]:
    return ("PUBLIC", "INTERNAL") if role in STAFF_ROLES else ("PUBLIC",)


def check_can_see(role: str, actor_id: uuid.UUID, requester_id: uuid.UUID | None) -> bool:
    """Collaborators see their own tickets only; staff see the tenant's."""
    return role in STAFF_ROLES or requester_id == actor_id


# --- live chat ---------------------------------------------------------------------------

def chat_opening(state: WorkState, actor_id: uuid.UUID, now: datetime, *,
                 has_device: bool) -> Outcome | None:
    """Starting a chat on an assigned ticket with no work going on opens an EXTERNAL session.
    A chat talks to the person at the ticket's machine: a ticket without one is refused
    here, rather than accepted and then ended as NO_DEVICE by the next cleanup."""
    if state.status == RESOLVED:
        raise invalid_transition("chat on", state.status)
    if not has_device:
        raise Conflict("a live chat talks to the ticket's machine, and this ticket has none: "
                       "set the ticket's machine_id first", code="chat_needs_device")
    if state.assignee_id is not None and state.session is None:
        return start(state, actor_id, "EXTERNAL", now)
    return None


def chat_closing(state: WorkState, now: datetime) -> Outcome | None:
    """Ending a chat pauses the work with END_LIVE_CHAT."""
    if state.status == AWAITING:
        return pause(state, "END_LIVE_CHAT", now, automatic=True)
    return None


def chat_end_reason(*, now: datetime, last_activity_at: datetime, machine_id,
                    machine_last_seen_at: datetime | None, machine_known: bool) -> str | None:
    """Why the scheduler should end a chat now, or None to leave it running. A chat starts
    only on a ticket with a machine; NO_DEVICE is for one whose ticket lost it since."""
    if machine_id is None:
        return "NO_DEVICE"
    if machine_known and (machine_last_seen_at is None
                          or now - machine_last_seen_at > DEVICE_OFFLINE_LIMIT):
        return "DEVICE_OFFLINE"
    if now - last_activity_at > CHAT_IDLE_LIMIT:
        return "IDLE"
    return None


def lunch_pause(state: WorkState, now: datetime) -> Outcome | None:
    """At lunch, only INTERNAL work is paused; a customer call (EXTERNAL) goes on."""
    if state.status == AWAITING and state.session and state.session.work_type == "INTERNAL":
        return pause(state, "LUNCH_BREAK", now, automatic=True)
    return None


# --- report exports ----------------------------------------------------------------------

EXPORT_POLL_SECONDS = 2  # what a QUEUED or RUNNING export tells its caller to wait
# A maker renews its claim on an export while it writes; a claim not renewed for this long
# is a dead maker's (killed mid-file), and the export is made again by whoever looks next.
EXPORT_CLAIM_LEASE = timedelta(minutes=2)
EXPORT_CLAIM_RENEW = timedelta(seconds=30)
EXPORT_COLUMNS = ("reference", "id", "subject", "status", "priority", "queue_id", "requester_name",
                  "requester_email", "assignee_name", "assignee_email", "company_name", "machine_id",
                  "worked_internal_seconds", "worked_external_seconds", "created_at", "updated_at",
                  "resolved_at")
# People open the file in a spreadsheet in Brazil: times read in São Paulo's time, with the
# offset, to the second (ISO 8601); UTF-8 announced by a BOM (without it Excel reads the
# accents as Latin-1); "," or ";" between fields (Excel set to Portuguese splits on ";").
EXPORT_TIME_ZONE = ZoneInfo("America/Sao_Paulo")
UTF8_BOM = "\ufeff"


def export_poll_seconds(status: str) -> int | None:
    """When to ask again about an export: never once it is DONE or FAILED."""
    return EXPORT_POLL_SECONDS if status in ("QUEUED", "RUNNING") else None


# a cell starting with one of these is a formula to a spreadsheet: a subject typed as
# "=HYPERLINK(…)" would run when the export is opened (CSV injection, OWASP)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def export_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(EXPORT_TIME_ZONE).replace(microsecond=0).isoformat()
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value  # shown as typed, never evaluated
    return str(value)


class ExportCsv:
    """The export's CSV, written to a text handle opened with newline="" (lines end in
    CRLF, as RFC 4180 and Excel expect): the BOM and the header at once, then tickets in
    pages (any object with the columns as attributes)."""

    def __init__(self, handle, delimiter: str = ","):
        if delimiter not in EXPORT_DELIMITERS:
            raise ValueError(f"delimiter must be one of {EXPORT_DELIMITERS}")
        handle.write(UTF8_BOM)
        self._writer = csv.writer(handle, delimiter=delimiter, lineterminator="\r\n")
        self._writer.writerow(EXPORT_COLUMNS)

    def write(self, tickets) -> int:
        count = 0
        for ticket in tickets:
            self._writer.writerow([export_cell(getattr(ticket, column)) for column in EXPORT_COLUMNS])
            count += 1
        return count
