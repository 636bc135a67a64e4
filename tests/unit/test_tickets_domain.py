"""services/tickets/domain.py: the ticket status machine, work sessions, comment rules and
live chat, as plain Python (no broker, no database, no network).

PRODUCT.md "Tickets" is the reference; the first half are example tests per rule, the
second half a property-based test over random sequences of actions.
"""
import copy
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings, strategies as st

from common.errors import Conflict, DomainError, Forbidden, ValidationFailed
from common.vocabulary import TICKET_ACTIONS
from services.tickets import domain
from services.tickets.domain import (AUTOMATIC_PAUSE_REASONS, AWAITING, CHAT_IDLE_LIMIT,
                                     DEVICE_OFFLINE_LIMIT, PAUSED, PENDING,
                                     PEOPLE_PAUSE_REASONS, RESOLVED, STAFF_ROLES, STATUSES,
                                     WORK_TYPES, ClosedSession, OpenSession, Outcome, WorkState,
                                     assign, chat_closing, chat_end_reason, chat_opening,
                                     check_can_comment, check_can_see, lunch_pause, pause,
                                     reopen, resolve, start, visible_comment_kinds)

T0 = datetime(2024, 3, 4, 9, 0, tzinfo=timezone.utc)
AGENT = uuid.UUID("00000000-0000-0000-0000-0000000000a1")
OTHER = uuid.UUID("00000000-0000-0000-0000-0000000000a2")
COLLAB = uuid.UUID("00000000-0000-0000-0000-0000000000c1")
NON_STAFF_ROLES = ("collaborator", "machine", "", "ADMIN", "Agent")


def zero():
    return {"INTERNAL": 0, "EXTERNAL": 0}


def state(status=PENDING, assignee=None, session=None, worked=None):
    return WorkState(status, assignee, session, worked if worked is not None else zero())


def working(work_type="INTERNAL", agent=AGENT, started=T0, assignee=AGENT, worked=None):
    """A ticket being worked on: AWAITING_ATTENDANCE with an open session."""
    return state(AWAITING, assignee, OpenSession(work_type, agent, started), worked)


def assert_invalid_transition(excinfo, status):
    err = excinfo.value
    assert type(err) is Conflict
    assert err.code == "invalid_transition"
    assert err.details["current_status"] == status
    assert status in err.message


# --- constants ----------------------------------------------------------------------------

def test_statuses_and_labels_match_product():
    assert STATUSES == ("PENDING", "AWAITING_ATTENDANCE", "PAUSED", "RESOLVED")
    assert domain.STATUS_LABELS == {
        "PENDING": ("Pendente", "grey"), "AWAITING_ATTENDANCE": ("Em andamento", "blue"),
        "PAUSED": ("Pausado", "yellow"), "RESOLVED": ("Resolvido", "green")}
    assert domain.OPEN_STATUSES == (PENDING, AWAITING, PAUSED)
    assert set(WORK_TYPES) == {"INTERNAL", "EXTERNAL"}
    assert set(PEOPLE_PAUSE_REASONS) == {"NO_CONTACT", "WAITING_THIRD_PARTY", "IN_PROCEDURE"}
    assert set(AUTOMATIC_PAUSE_REASONS) == {"LUNCH_BREAK", "END_LIVE_CHAT"}
    assert STAFF_ROLES == {"admin", "manager", "agent"}
    assert domain.DEFAULT_QUEUE == "Chamados"
    assert (domain.SUBJECT_MAX, domain.COMMENT_MAX) == (600, 20_000)
    assert CHAT_IDLE_LIMIT == timedelta(hours=12)
    assert DEVICE_OFFLINE_LIMIT == timedelta(minutes=5)


def test_new_work_state_starts_with_zero_worked_per_type_and_no_shared_dict():
    a, b = WorkState(PENDING, None), WorkState(PENDING, None)
    assert a.worked == {"INTERNAL": 0, "EXTERNAL": 0}
    assert a.session is None
    assert a.worked is not b.worked


# --- start --------------------------------------------------------------------------------

@pytest.mark.parametrize("status", [PENDING, PAUSED])
@pytest.mark.parametrize("work_type", WORK_TYPES)
def test_start_moves_to_awaiting_and_opens_a_session_for_the_actor(status, work_type):
    before = state(status, assignee=OTHER, worked={"INTERNAL": 7, "EXTERNAL": 3})
    out = start(before, AGENT, work_type, T0)
    assert out.state.status == AWAITING
    assert out.previous_status == status
    assert out.status_changed
    assert out.opened == OpenSession(work_type, AGENT, T0)
    assert out.state.session == out.opened
    assert out.closed is None
    assert out.state.worked == {"INTERNAL": 7, "EXTERNAL": 3}
    assert ("WORK_STARTED", {"work_type": work_type}) in out.timeline


@pytest.mark.parametrize("status", [PENDING, PAUSED])
def test_start_keeps_an_existing_assignee(status):
    out = start(state(status, assignee=OTHER), AGENT, "INTERNAL", T0)
    assert out.state.assignee_id == OTHER
    assert out.assigned is False
    assert [kind for kind, _ in out.timeline] == ["WORK_STARTED"]
    assert out.state.session.agent_id == AGENT  # the session is the actor's, not the assignee's


@pytest.mark.parametrize("status", [PENDING, PAUSED])
def test_start_auto_assigns_the_actor_when_unassigned(status):
    out = start(state(status, assignee=None), AGENT, "EXTERNAL", T0)
    assert out.state.assignee_id == AGENT
    assert out.assigned is True
    assert ("ASSIGNED", {"assignee_id": str(AGENT), "automatic": True}) in out.timeline
    assert ("WORK_STARTED", {"work_type": "EXTERNAL"}) in out.timeline


@pytest.mark.parametrize("status", [AWAITING, RESOLVED])
def test_start_is_refused_from_awaiting_and_resolved(status):
    before = working() if status == AWAITING else state(RESOLVED, AGENT)
    snapshot = copy.deepcopy(before)
    with pytest.raises(Conflict) as excinfo:
        start(before, OTHER, "INTERNAL", T0 + timedelta(hours=1))
    assert_invalid_transition(excinfo, status)
    assert excinfo.value.details["action"] == "start"
    assert before == snapshot


@pytest.mark.parametrize("work_type", ["", "internal", "REMOTE", None, "EXTERNAL "])
def test_start_with_an_unknown_work_type_fails_validation(work_type):
    before = state(PENDING)
    with pytest.raises(ValidationFailed) as excinfo:
        start(before, AGENT, work_type, T0)
    assert excinfo.value.code == "validation_failed"
    assert "work_type" in excinfo.value.details["fields"]
    assert before == state(PENDING)


def test_start_does_not_mutate_the_given_state():
    before = state(PAUSED, None, worked={"INTERNAL": 5, "EXTERNAL": 0})
    snapshot = copy.deepcopy(before)
    start(before, AGENT, "INTERNAL", T0)
    assert before == snapshot


# --- pause --------------------------------------------------------------------------------

@pytest.mark.parametrize("reason", PEOPLE_PAUSE_REASONS)
@pytest.mark.parametrize("work_type", WORK_TYPES)
def test_pause_with_a_people_reason_closes_the_session_and_adds_its_seconds(reason, work_type):
    before = working(work_type, worked={"INTERNAL": 100, "EXTERNAL": 50})
    now = T0 + timedelta(minutes=30, seconds=5)
    out = pause(before, reason, now)
    assert out.state.status == PAUSED
    assert out.previous_status == AWAITING
    assert out.state.session is None
    assert out.closed == ClosedSession(work_type, AGENT, T0, now, 1805, reason)
    expected = {"INTERNAL": 100, "EXTERNAL": 50}
    expected[work_type] += 1805
    assert out.state.worked == expected
    assert ("PAUSED", {"reason": reason, "automatic": False}) in out.timeline
    assert out.state.assignee_id == AGENT


def test_pause_truncates_partial_seconds():
    out = pause(working(), "NO_CONTACT", T0 + timedelta(seconds=9, microseconds=999_999))
    assert out.closed.seconds == 9
    assert out.state.worked["INTERNAL"] == 9


def test_pause_does_not_mutate_the_given_state():
    before = working(worked={"INTERNAL": 1, "EXTERNAL": 2})
    snapshot = copy.deepcopy(before)
    pause(before, "NO_CONTACT", T0 + timedelta(hours=2))
    assert before == snapshot
    assert before.worked == {"INTERNAL": 1, "EXTERNAL": 2}


@pytest.mark.parametrize("reason", [None, "", "no_contact", "OTHER", "RESOLVED"])
@pytest.mark.parametrize("automatic", [False, True])
def test_pause_needs_a_known_reason(reason, automatic):
    with pytest.raises(ValidationFailed) as excinfo:
        pause(working(), reason, T0 + timedelta(minutes=1), automatic=automatic)
    assert "reason" in excinfo.value.details["fields"]


@pytest.mark.parametrize("reason", AUTOMATIC_PAUSE_REASONS)
def test_automatic_reasons_are_refused_for_people(reason):
    before = working()
    with pytest.raises(ValidationFailed) as excinfo:
        pause(before, reason, T0 + timedelta(minutes=1))
    assert reason not in excinfo.value.details["fields"]["reason"]
    assert before.session is not None


@pytest.mark.parametrize("reason", AUTOMATIC_PAUSE_REASONS + PEOPLE_PAUSE_REASONS)
def test_automatic_pause_accepts_automatic_and_people_reasons(reason):
    out = pause(working("EXTERNAL"), reason, T0 + timedelta(seconds=60), automatic=True)
    assert out.state.status == PAUSED
    assert out.closed.reason == reason
    assert out.state.worked == {"INTERNAL": 0, "EXTERNAL": 60}
    assert ("PAUSED", {"reason": reason, "automatic": True}) in out.timeline


@pytest.mark.parametrize("status", [PENDING, PAUSED, RESOLVED])
def test_pause_is_refused_unless_awaiting(status):
    before = state(status, AGENT)
    with pytest.raises(Conflict) as excinfo:
        pause(before, "NO_CONTACT", T0)
    assert_invalid_transition(excinfo, status)
    assert excinfo.value.details["action"] == "pause"


# --- resolve ------------------------------------------------------------------------------

@pytest.mark.parametrize("status", [PENDING, PAUSED])
def test_resolve_from_an_idle_open_status(status):
    before = state(status, AGENT, worked={"INTERNAL": 10, "EXTERNAL": 20})
    out = resolve(before, T0, "feito")
    assert out.state.status == RESOLVED
    assert out.previous_status == status
    assert out.closed is None
    assert out.state.session is None
    assert out.state.worked == {"INTERNAL": 10, "EXTERNAL": 20}
    assert ("RESOLVED", {"message": "feito"}) in out.timeline


@pytest.mark.parametrize("work_type", WORK_TYPES)
def test_resolve_while_working_closes_the_session(work_type):
    now = T0 + timedelta(hours=1)
    out = resolve(working(work_type), now, None)
    assert out.state.status == RESOLVED
    assert out.previous_status == AWAITING
    assert out.state.session is None
    assert out.closed == ClosedSession(work_type, AGENT, T0, now, 3600, "RESOLVED")
    assert out.state.worked[work_type] == 3600
    assert sum(out.state.worked.values()) == 3600
    assert ("RESOLVED", {"message": None}) in out.timeline


def test_resolve_keeps_the_optional_message_verbatim():
    message = "Trocado o cabo de rede. Obrigado!\nAtt."
    out = resolve(state(PENDING), T0, message)
    assert out.timeline == [("RESOLVED", {"message": message})]


def test_resolve_is_refused_when_resolved():
    before = state(RESOLVED, AGENT)
    with pytest.raises(Conflict) as excinfo:
        resolve(before, T0, "de novo")
    assert_invalid_transition(excinfo, RESOLVED)
    assert excinfo.value.details["action"] == "resolve"


# --- reopen -------------------------------------------------------------------------------

@pytest.mark.parametrize("role", sorted(STAFF_ROLES))
def test_reopen_by_staff_goes_back_to_pending(role):
    before = state(RESOLVED, AGENT, worked={"INTERNAL": 9, "EXTERNAL": 1})
    out = reopen(before, role)
    assert out.state.status == PENDING
    assert out.previous_status == RESOLVED
    assert out.state.assignee_id == AGENT
    assert out.state.session is None
    assert out.state.worked == {"INTERNAL": 9, "EXTERNAL": 1}
    assert out.opened is None and out.closed is None
    assert ("REOPENED", {}) in out.timeline


@pytest.mark.parametrize("role", NON_STAFF_ROLES)
def test_reopen_by_non_staff_is_forbidden(role):
    with pytest.raises(Forbidden) as excinfo:
        reopen(state(RESOLVED, AGENT), role)
    assert excinfo.value.code == "forbidden_role"


@pytest.mark.parametrize("status", [PENDING, AWAITING, PAUSED])
@pytest.mark.parametrize("role", sorted(STAFF_ROLES))
def test_reopen_of_an_open_ticket_is_an_invalid_transition(status, role):
    before = working() if status == AWAITING else state(status, AGENT)
    with pytest.raises(Conflict) as excinfo:
        reopen(before, role)
    assert_invalid_transition(excinfo, status)
    assert excinfo.value.details["action"] == "reopen"


# --- assign -------------------------------------------------------------------------------

@pytest.mark.parametrize("status", [PENDING, PAUSED])
def test_assign_an_unassigned_ticket(status):
    out = assign(state(status, None), AGENT)
    assert out.state.assignee_id == AGENT
    assert out.assigned is True
    assert out.state.status == status
    assert not out.status_changed
    assert out.timeline == [("ASSIGNED", {"assignee_id": str(AGENT), "automatic": False})]


def test_reassign_while_working_keeps_the_session():
    before = working(assignee=AGENT)
    out = assign(before, OTHER)
    assert out.state.assignee_id == OTHER
    assert out.state.status == AWAITING
    assert out.state.session == before.session
    assert out.timeline == [("ASSIGNED", {"assignee_id": str(OTHER), "automatic": False})]


@pytest.mark.parametrize("status", [PENDING, PAUSED])
def test_unassign_an_idle_ticket(status):
    out = assign(state(status, AGENT), None)
    assert out.state.assignee_id is None
    assert out.assigned is True
    assert out.timeline == [("ASSIGNED", {"assignee_id": None, "automatic": False})]


@pytest.mark.parametrize("status, who", [(PENDING, AGENT), (PAUSED, OTHER), (AWAITING, AGENT),
                                         (PENDING, None), (PAUSED, None)])
def test_assigning_the_same_assignee_records_no_change(status, who):
    before = working(assignee=who) if status == AWAITING else state(status, who)
    out = assign(before, who)
    assert out.assigned is False
    assert out.timeline == []
    assert out.state == before


def test_unassign_while_working_is_refused():
    before = working()
    with pytest.raises(Conflict) as excinfo:
        assign(before, None)
    assert excinfo.value.code == "ticket_in_progress"
    assert excinfo.value.details["current_status"] == AWAITING
    assert before.assignee_id == AGENT


@pytest.mark.parametrize("who", [AGENT, OTHER, None])
def test_assign_is_refused_when_resolved(who):
    with pytest.raises(Conflict) as excinfo:
        assign(state(RESOLVED, AGENT), who)
    assert_invalid_transition(excinfo, RESOLVED)


# --- comments and visibility --------------------------------------------------------------

@pytest.mark.parametrize("role", sorted(STAFF_ROLES))
@pytest.mark.parametrize("visibility", ["PUBLIC", "INTERNAL"])
def test_staff_comment_once_the_ticket_has_an_assignee(role, visibility):
    for status in (PENDING, PAUSED, RESOLVED):
        assert check_can_comment(state(status, OTHER), role, visibility, False) is None
    assert check_can_comment(working(), role, visibility, False) is None


@pytest.mark.parametrize("role", sorted(STAFF_ROLES))
@pytest.mark.parametrize("visibility", ["PUBLIC", "INTERNAL"])
@pytest.mark.parametrize("is_requester", [False, True])
def test_staff_cannot_comment_on_an_unassigned_ticket(role, visibility, is_requester):
    with pytest.raises(Conflict) as excinfo:
        check_can_comment(state(PENDING, None), role, visibility, is_requester)
    assert excinfo.value.code == "ticket_unassigned"


@pytest.mark.parametrize("assignee", [None, AGENT])
def test_collaborator_comments_publicly_on_own_ticket(assignee):
    assert check_can_comment(state(PENDING, assignee), "collaborator", "PUBLIC", True) is None


@pytest.mark.parametrize("visibility", ["PUBLIC", "INTERNAL"])
def test_collaborator_cannot_comment_on_someone_elses_ticket(visibility):
    with pytest.raises(Forbidden) as excinfo:
        check_can_comment(state(PENDING, AGENT), "collaborator", visibility, False)
    assert excinfo.value.code == "forbidden_role"


@pytest.mark.parametrize("visibility", ["INTERNAL", "public", ""])
def test_collaborator_writes_public_comments_only(visibility):
    with pytest.raises(Forbidden) as excinfo:
        check_can_comment(state(PENDING, AGENT), "collaborator", visibility, True)
    assert excinfo.value.code == "forbidden_visibility"


@pytest.mark.parametrize("role", sorted(STAFF_ROLES))
def test_staff_see_public_and_internal_comments(role):
    assert set(visible_comment_kinds(role)) == {"PUBLIC", "INTERNAL"}


@pytest.mark.parametrize("role", NON_STAFF_ROLES)
def test_non_staff_see_public_comments_only(role):
    assert visible_comment_kinds(role) == ("PUBLIC",)


@pytest.mark.parametrize("role", sorted(STAFF_ROLES))
@pytest.mark.parametrize("requester", [AGENT, COLLAB, None])
def test_staff_see_every_ticket(role, requester):
    assert check_can_see(role, AGENT, requester) is True


def test_collaborator_sees_own_tickets_only():
    assert check_can_see("collaborator", COLLAB, COLLAB) is True
    assert check_can_see("collaborator", COLLAB, AGENT) is False
    assert check_can_see("collaborator", COLLAB, None) is False


# --- live chat ----------------------------------------------------------------------------

@pytest.mark.parametrize("status", [PENDING, PAUSED])
def test_chat_opening_on_an_assigned_idle_ticket_opens_an_external_session(status):
    before = state(status, OTHER, worked={"INTERNAL": 4, "EXTERNAL": 0})
    out = chat_opening(before, AGENT, T0, has_device=True)
    assert isinstance(out, Outcome)
    assert out.state.status == AWAITING
    assert out.opened == OpenSession("EXTERNAL", AGENT, T0)
    assert out.state.session == out.opened
    assert out.state.assignee_id == OTHER
    assert out.assigned is False
    assert ("WORK_STARTED", {"work_type": "EXTERNAL"}) in out.timeline


@pytest.mark.parametrize("status", [PENDING, PAUSED])
def test_chat_opening_on_an_unassigned_ticket_opens_nothing(status):
    assert chat_opening(state(status, None), AGENT, T0, has_device=True) is None


@pytest.mark.parametrize("work_type", WORK_TYPES)
def test_chat_opening_while_already_working_opens_nothing(work_type):
    assert chat_opening(working(work_type), OTHER, T0 + timedelta(minutes=3), has_device=True) is None


@pytest.mark.parametrize("assignee", [None, AGENT])
def test_chat_opening_is_refused_when_resolved(assignee):
    with pytest.raises(Conflict) as excinfo:
        chat_opening(state(RESOLVED, assignee), AGENT, T0, has_device=True)
    assert_invalid_transition(excinfo, RESOLVED)


@pytest.mark.parametrize("before", [state(PENDING, None), state(PENDING, OTHER), state(PAUSED, OTHER),
                                    working("INTERNAL")])
def test_chat_opening_is_refused_on_a_ticket_without_a_machine(before):
    with pytest.raises(Conflict) as excinfo:
        chat_opening(before, AGENT, T0, has_device=False)
    assert excinfo.value.code == "chat_needs_device"
    assert "machine" in excinfo.value.message


@pytest.mark.parametrize("work_type", WORK_TYPES)
def test_chat_closing_while_working_pauses_with_end_live_chat(work_type):
    now = T0 + timedelta(minutes=2)
    out = chat_closing(working(work_type), now)
    assert out.state.status == PAUSED
    assert out.state.session is None
    assert out.closed == ClosedSession(work_type, AGENT, T0, now, 120, "END_LIVE_CHAT")
    assert out.state.worked[work_type] == 120
    assert ("PAUSED", {"reason": "END_LIVE_CHAT", "automatic": True}) in out.timeline


@pytest.mark.parametrize("status", [PENDING, PAUSED, RESOLVED])
def test_chat_closing_when_not_working_does_nothing(status):
    assert chat_closing(state(status, AGENT), T0) is None


def end_reason(now=T0, idle=timedelta(0), machine_id="m-1", seen_ago=timedelta(0),
               known=True):
    return chat_end_reason(now=now, last_activity_at=now - idle, machine_id=machine_id,
                           machine_last_seen_at=None if seen_ago is None else now - seen_ago,
                           machine_known=known)


def test_chat_end_reason_none_for_a_live_chat():
    assert end_reason() is None
    assert end_reason(idle=timedelta(hours=11, minutes=59), seen_ago=timedelta(minutes=4)) is None


@pytest.mark.parametrize("known", [True, False])
def test_chat_end_reason_no_device_when_the_ticket_has_no_machine(known):
    assert end_reason(machine_id=None, known=known) == "NO_DEVICE"
    # no device wins over every other reason
    assert end_reason(machine_id=None, known=known, seen_ago=None,
                      idle=timedelta(days=3)) == "NO_DEVICE"


@pytest.mark.parametrize("seen_ago", [timedelta(minutes=5, seconds=1), timedelta(minutes=5,
                                      microseconds=1), timedelta(hours=2), None])
def test_chat_end_reason_device_offline_when_known_machine_is_silent(seen_ago):
    assert end_reason(seen_ago=seen_ago) == "DEVICE_OFFLINE"
    # offline is reported even when the chat is also idle
    assert end_reason(seen_ago=seen_ago, idle=timedelta(days=1)) == "DEVICE_OFFLINE"


def test_chat_end_reason_offline_boundary_is_not_over_the_limit():
    assert end_reason(seen_ago=timedelta(minutes=5)) is None
    assert end_reason(seen_ago=DEVICE_OFFLINE_LIMIT) is None


@pytest.mark.parametrize("seen_ago", [timedelta(minutes=6), timedelta(days=30), None])
def test_chat_end_reason_unknown_machine_never_ends_as_offline(seen_ago):
    assert end_reason(seen_ago=seen_ago, known=False) is None
    assert end_reason(seen_ago=seen_ago, known=False, idle=timedelta(hours=13)) == "IDLE"


@pytest.mark.parametrize("idle", [timedelta(hours=12, seconds=1),
                                  timedelta(hours=12, microseconds=1), timedelta(days=2)])
def test_chat_end_reason_idle_after_twelve_hours(idle):
    assert end_reason(idle=idle) == "IDLE"


def test_chat_end_reason_idle_boundary_is_not_over_the_limit():
    assert end_reason(idle=timedelta(hours=12)) is None
    assert end_reason(idle=CHAT_IDLE_LIMIT) is None


@given(idle=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=10)),
       seen_ago=st.none() | st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=10)),
       has_machine=st.booleans(), known=st.booleans())
@settings(max_examples=200, deadline=None)
def test_chat_end_reason_property(idle, seen_ago, has_machine, known):
    got = end_reason(idle=idle, machine_id="m" if has_machine else None, seen_ago=seen_ago,
                     known=known)
    if not has_machine:
        expected = "NO_DEVICE"
    elif known and (seen_ago is None or seen_ago > timedelta(minutes=5)):
        expected = "DEVICE_OFFLINE"
    elif idle > timedelta(hours=12):
        expected = "IDLE"
    else:
        expected = None
    assert got == expected


# --- lunch pause --------------------------------------------------------------------------

def test_lunch_pause_pauses_internal_work():
    now = T0 + timedelta(hours=3)
    out = lunch_pause(working("INTERNAL"), now)
    assert out.state.status == PAUSED
    assert out.state.session is None
    assert out.closed == ClosedSession("INTERNAL", AGENT, T0, now, 3 * 3600, "LUNCH_BREAK")
    assert out.state.worked == {"INTERNAL": 3 * 3600, "EXTERNAL": 0}
    assert ("PAUSED", {"reason": "LUNCH_BREAK", "automatic": True}) in out.timeline


def test_lunch_pause_leaves_external_work_running():
    assert lunch_pause(working("EXTERNAL"), T0 + timedelta(hours=3)) is None


@pytest.mark.parametrize("status", [PENDING, PAUSED, RESOLVED])
def test_lunch_pause_ignores_tickets_not_being_worked(status):
    assert lunch_pause(state(status, AGENT), T0) is None


# --- property: random sequences of actions ------------------------------------------------

ACTORS = (AGENT, OTHER, COLLAB)
BAD_WORK_TYPES = ("", "internal", "REMOTE")
BAD_REASONS = ("", "no_contact", "OTHER")
REFUSALS = (Conflict, Forbidden, ValidationFailed)

actor_st = st.sampled_from(ACTORS)
action_st = st.one_of(
    st.tuples(st.just("start"), actor_st, st.sampled_from(WORK_TYPES + BAD_WORK_TYPES)),
    st.tuples(st.just("pause"),
              st.sampled_from(PEOPLE_PAUSE_REASONS + AUTOMATIC_PAUSE_REASONS + BAD_REASONS),
              st.booleans()),
    st.tuples(st.just("resolve"), st.none() | st.text(max_size=20)),
    st.tuples(st.just("reopen"), st.sampled_from(sorted(STAFF_ROLES) + ["collaborator", "machine"])),
    st.tuples(st.just("assign"), st.none() | actor_st),
    st.tuples(st.just("chat_opening"), actor_st),
    st.tuples(st.just("chat_closing")),
    st.tuples(st.just("lunch_pause")),
)
step_st = st.tuples(action_st, st.integers(min_value=0, max_value=3 * 86_400),
                    st.integers(min_value=0, max_value=999_999))


def apply(s, action, now):
    """Run one action; returns an Outcome or None (no-op helpers). Refusals propagate."""
    name, *args = action
    if name == "start":
        return start(s, args[0], args[1], now)
    if name == "pause":
        return pause(s, args[0], now, automatic=args[1])
    if name == "resolve":
        return resolve(s, now, args[0])
    if name == "reopen":
        return reopen(s, args[0])
    if name == "assign":
        return assign(s, args[0])
    if name == "chat_opening":
        return chat_opening(s, args[0], now, has_device=True)
    if name == "chat_closing":
        return chat_closing(s, now)
    if name == "lunch_pause":
        return lunch_pause(s, now)
    raise AssertionError(name)


def expected_refusal(s, action):
    """The refusals PRODUCT.md allows for this action in this state; () when it must succeed."""
    name, *args = action
    allowed = []
    if name == "start":
        if args[1] not in WORK_TYPES:
            allowed.append(ValidationFailed)
        if s.status not in (PENDING, PAUSED):
            allowed.append(Conflict)
    elif name == "pause":
        reasons = PEOPLE_PAUSE_REASONS + (AUTOMATIC_PAUSE_REASONS if args[1] else ())
        if args[0] not in reasons:
            allowed.append(ValidationFailed)
        if s.status != AWAITING:
            allowed.append(Conflict)
    elif name == "resolve":
        if s.status == RESOLVED:
            allowed.append(Conflict)
    elif name == "reopen":
        if args[0] not in STAFF_ROLES:
            allowed.append(Forbidden)
        if s.status != RESOLVED:
            allowed.append(Conflict)
    elif name == "assign":
        if s.status == RESOLVED or (args[0] is None and s.status == AWAITING):
            allowed.append(Conflict)
    elif name == "chat_opening":
        if s.status == RESOLVED:
            allowed.append(Conflict)
    return tuple(allowed)


def expected_status(s, action):
    """The status after an accepted action (PRODUCT.md transitions)."""
    name = action[0]
    if name == "start":
        return AWAITING
    if name == "pause":
        return PAUSED
    if name == "resolve":
        return RESOLVED
    if name == "reopen":
        return PENDING
    if name == "assign":
        return s.status
    if name == "chat_opening":
        return AWAITING if s.assignee_id is not None and s.session is None else s.status
    if name == "chat_closing":
        return PAUSED if s.status == AWAITING else s.status
    if name == "lunch_pause":
        working_internal = s.status == AWAITING and s.session.work_type == "INTERNAL"
        return PAUSED if working_internal else s.status
    raise AssertionError(name)


def check_invariants(s, closed_totals):
    assert s.status in STATUSES
    assert (s.session is not None) == (s.status == AWAITING)
    if s.status == RESOLVED:
        assert s.session is None
    for work_type in WORK_TYPES:
        assert s.worked.get(work_type, 0) >= 0
        assert s.worked.get(work_type, 0) == closed_totals[work_type]
    assert set(s.worked) <= set(WORK_TYPES)
    if s.session is not None:
        assert s.session.work_type in WORK_TYPES


initial_st = st.one_of(
    st.builds(lambda status, who: state(status, who),
              st.sampled_from([PENDING, PAUSED, RESOLVED]), st.none() | actor_st),
    st.builds(lambda wt, agent, who: working(wt, agent, T0, who),
              st.sampled_from(WORK_TYPES), actor_st, actor_st),
)


@given(initial=initial_st, steps=st.lists(step_st, max_size=40))
@settings(max_examples=200, deadline=None)
def test_random_action_sequences_keep_the_machine_consistent(initial, steps):
    s, now = initial, T0
    closed_totals = zero()
    check_invariants(s, closed_totals)
    for action, advance_s, advance_us in steps:
        now = now + timedelta(seconds=advance_s, microseconds=advance_us)
        snapshot = copy.deepcopy(s)
        allowed = expected_refusal(s, action)
        try:
            out = apply(s, action, now)
        except REFUSALS as err:
            assert allowed, f"{action} refused in {s.status}: {err}"
            assert isinstance(err, allowed), f"{action} in {s.status}: {err!r}"
            if isinstance(err, Conflict):
                assert err.code in ("invalid_transition", "ticket_in_progress")
                assert err.details["current_status"] == s.status
            if isinstance(err, Forbidden):
                assert err.code == "forbidden_role"
            assert s == snapshot, "a refused action changed the state"
            check_invariants(s, closed_totals)
            continue
        assert not allowed, f"{action} accepted in {snapshot.status}, expected {allowed}"
        assert s == snapshot, "the action mutated its input state"
        if out is None:
            assert expected_status(s, action) == s.status
            check_invariants(s, closed_totals)
            continue

        assert isinstance(out, Outcome)
        assert out.previous_status == s.status
        assert out.state.status == expected_status(s, action)
        if out.status_changed:
            assert out.previous_status != out.state.status
        else:
            assert out.previous_status == out.state.status
        if out.closed is not None:
            c = out.closed
            assert s.session is not None
            assert (c.work_type, c.agent_id, c.started_at) == (
                s.session.work_type, s.session.agent_id, s.session.started_at)
            assert c.ended_at == now
            expected_reason = {"resolve": "RESOLVED", "chat_closing": "END_LIVE_CHAT",
                               "lunch_pause": "LUNCH_BREAK"}
            assert c.reason == (action[1] if action[0] == "pause"
                                else expected_reason[action[0]])
            assert c.seconds == int((now - c.started_at).total_seconds())
            assert c.seconds >= 0
            closed_totals[c.work_type] += c.seconds
        elif s.session is not None:
            assert out.state.session == s.session, "an open session vanished without closing"
        if out.opened is not None:
            assert action[0] in ("start", "chat_opening")
            assert out.state.session == out.opened
            assert out.opened.started_at == now
            assert out.opened.agent_id == action[1]  # the session is the acting agent's
            assert out.opened.work_type == (action[2] if action[0] == "start" else "EXTERNAL")
        # the assignee only changes through assign or the automatic assignment on start
        if action[0] == "assign":
            assert out.state.assignee_id == action[1]
            assert out.assigned == (action[1] != s.assignee_id)
        elif out.assigned:
            assert s.assignee_id is None and out.state.assignee_id == out.opened.agent_id
            assert ("ASSIGNED", {"assignee_id": str(out.opened.agent_id),
                                 "automatic": True}) in out.timeline
        else:
            assert out.state.assignee_id == s.assignee_id
        if out.state.status == AWAITING:
            assert out.state.assignee_id is not None
        s = out.state
        check_invariants(s, closed_totals)


@pytest.mark.parametrize("status", STATUSES)
def test_the_allowed_actions_of_a_status_are_the_transitions_the_machine_accepts(status):
    now = datetime(2026, 12, 1, tzinfo=timezone.utc)
    someone = uuid.uuid4()
    session = domain.OpenSession("INTERNAL", someone, now) if status == "AWAITING_ATTENDANCE" else None
    state = domain.WorkState(status=status, assignee_id=someone, session=session)
    attempts = {
        "start": lambda: domain.start(state, someone, "INTERNAL", now),
        "pause": lambda: domain.pause(state, "NO_CONTACT", now),
        "resolve": lambda: domain.resolve(state, now, None),
        "reopen": lambda: domain.reopen(state, "agent"),
        "assign": lambda: domain.assign(state, uuid.uuid4()),
    }
    accepted = set()
    for action, attempt in attempts.items():
        try:
            attempt()
            accepted.add(action)
        except DomainError:
            pass
    assert set(domain.allowed_actions(status, "agent")) == accepted
    assert set(attempts) == set(TICKET_ACTIONS)  # every action the API names is tried
    assert domain.allowed_actions(status, "collaborator") == []  # they change no status
