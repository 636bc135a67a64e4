"""Contract of the tickets service (RPC `tickets`)."""
import re
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from marshmallow import ValidationError, fields, validate

from common.contracts import PageQuery, StrictSchema, trimmed
from common.vocabulary import (COMMENT_MAX, EXPORT_DELIMITERS, EXPORT_STATUSES,  # noqa: F401
                               PAUSE_REASONS, PRIORITIES, STATUSES, SUBJECT_MAX, VISIBILITIES,
                               WORK_TYPES)

LOCAL_ZONE = ZoneInfo("America/Sao_Paulo")  # what a plain date in a filter means
COUNT_CAP = 10_000  # `count=true` counts up to this many matches (then `count_capped`)
_PLAIN_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class AssigneeFilter(fields.String):
    """A user id, or the word `unassigned`, or `me` (the caller)."""

    def _deserialize(self, value, attr, data, **kwargs):
        value = super()._deserialize(value, attr, data, **kwargs)
        if value in ("unassigned", "me"):
            return value
        try:
            return str(fields.UUID()._deserialize(value, attr, data))
        except ValidationError:
            raise ValidationError("a user id, 'unassigned' or 'me'") from None


class DayOrDateTime(fields.AwareDateTime):
    """An ISO 8601 datetime with its zone, or a plain date (`2026-11-30`): a whole day in
    America/Sao_Paulo — its start as a lower bound, the start of the next day as an (exclusive)
    upper bound, so `created_to=2026-11-30` includes all of the 30th. Loads as UTC."""

    def __init__(self, *, end_of_day: bool = False, **kwargs):
        super().__init__(default_timezone=None, **kwargs)
        self.end_of_day = end_of_day

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str) and _PLAIN_DATE.fullmatch(value):
            try:
                day = date.fromisoformat(value)
            except ValueError:
                raise ValidationError("not a valid date (YYYY-MM-DD)") from None
            if self.end_of_day:
                day += timedelta(days=1)
            return datetime.combine(day, time(), LOCAL_ZONE).astimezone(timezone.utc)
        return super()._deserialize(value, attr, data, **kwargs)


class QueueCreate(StrictSchema):
    name = trimmed(100, required=True)


class Queue(StrictSchema):
    id = fields.UUID(required=True)
    name = fields.String(required=True)
    created_at = fields.AwareDateTime(required=True)


class QueueList(StrictSchema):
    items = fields.List(fields.Nested(Queue), required=True)


class TicketCreate(StrictSchema):
    subject = trimmed(SUBJECT_MAX, required=True)
    description = fields.String(load_default="", validate=validate.Length(max=50_000))
    priority = fields.String(load_default="MEDIUM", validate=validate.OneOf(PRIORITIES))
    queue_id = fields.UUID(load_default=None, allow_none=True)
    company_id = fields.UUID(load_default=None, allow_none=True)
    requester_id = fields.UUID(load_default=None, allow_none=True)
    machine_id = fields.UUID(load_default=None, allow_none=True)


class TicketUpdate(StrictSchema):
    subject = trimmed(SUBJECT_MAX)
    description = fields.String(validate=validate.Length(max=50_000))
    priority = fields.String(validate=validate.OneOf(PRIORITIES))
    queue_id = fields.UUID()
    company_id = fields.UUID(allow_none=True)
    machine_id = fields.UUID(allow_none=True)


class TicketFilters(StrictSchema):
    """The ticket list's filters (all optional), for lists and exports alike."""

    status = fields.String(load_default=None, validate=validate.OneOf(STATUSES))
    queue_id = fields.UUID(load_default=None)
    assignee_id = AssigneeFilter(load_default=None)
    company_id = fields.UUID(load_default=None)
    requester_id = fields.UUID(load_default=None)
    priority = fields.String(load_default=None, validate=validate.OneOf(PRIORITIES))
    q = fields.String(load_default=None, validate=validate.Length(min=1, max=200), metadata={
        "description": "words searched in the subject, the description and the PUBLIC comments; "
                       "accents and case do not matter (\"impressao\" finds \"impressão\"); "
                       "every word must match: a whole word, stemmed in Portuguese, on PostgreSQL "
                       "(\"impressoras\" finds \"impressora\"; stop words such as \"de\" are "
                       "ignored), a word or the start of one on the embedded SQLite"})
    created_from = DayOrDateTime(load_default=None, metadata={
        "description": "a datetime with its zone, or a date (YYYY-MM-DD): from the start of that "
                       "day in America/Sao_Paulo"})
    created_to = DayOrDateTime(load_default=None, end_of_day=True, metadata={
        "description": "a datetime with its zone (exclusive), or a date (YYYY-MM-DD): up to the "
                       "end of that day in America/Sao_Paulo (the day included)"})


class TicketQuery(PageQuery, TicketFilters):
    """Filters plus `limit`, `cursor` and `count`."""
    count = fields.Boolean(load_default=False, metadata={
        "description": f"true: the answer also says how many tickets match (`count`), counting up "
                       f"to {COUNT_CAP:,} (`count_capped` true when there are more)"})


class SavedFilterUpdate(StrictSchema):
    filters = fields.Nested(TicketFilters, required=True)


class SavedFilter(StrictSchema):
    """A person's default ticket-list filter (empty `filters` and no `updated_at`: none)."""
    filters = fields.Dict(required=True)
    updated_at = fields.AwareDateTime(allow_none=True, required=True)


class RecentQuery(StrictSchema):
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))


class Person(StrictSchema):
    id = fields.UUID(required=True)
    name = fields.String(allow_none=True)
    email = fields.String(allow_none=True)


class PersonList(StrictSchema):
    items = fields.List(fields.Nested(Person), required=True)


class CompanyRef(StrictSchema):
    id = fields.UUID(required=True)
    name = fields.String(allow_none=True)


class WorkedSeconds(StrictSchema):
    INTERNAL = fields.Integer(required=True)
    EXTERNAL = fields.Integer(required=True)
    total = fields.Integer(required=True)


class Ticket(StrictSchema):
    id = fields.UUID(required=True)
    reference = fields.Integer(required=True)
    subject = fields.String(required=True)
    description = fields.String(required=True)
    priority = fields.String(required=True)
    status = fields.String(required=True)
    status_label = fields.String(required=True)
    status_colour = fields.String(required=True)
    queue_id = fields.UUID(required=True)
    requester = fields.Nested(Person, allow_none=True)
    assignee = fields.Nested(Person, allow_none=True)
    company = fields.Nested(CompanyRef, allow_none=True)
    machine_id = fields.UUID(allow_none=True)
    worked_seconds = fields.Nested(WorkedSeconds, required=True)
    work_in_progress = fields.String(allow_none=True, metadata={"description": "work type of the open session"})
    created_at = fields.AwareDateTime(required=True)
    updated_at = fields.AwareDateTime(required=True)
    resolved_at = fields.AwareDateTime(allow_none=True)


class TicketList(StrictSchema):
    items = fields.List(fields.Nested(Ticket), required=True)
    next_cursor = fields.String(allow_none=True, required=True)
    count = fields.Integer(metadata={"description": "only with `count=true`: how many match, "
                                                    f"up to {COUNT_CAP:,}"})
    count_capped = fields.Boolean(metadata={"description": "only with `count=true`: true when "
                                                           "more match than `count` says"})


class RecentList(StrictSchema):
    items = fields.List(fields.Nested(Ticket), required=True)


class Assign(StrictSchema):
    assignee_id = fields.UUID(required=True, allow_none=True)


class Start(StrictSchema):
    work_type = fields.String(load_default="INTERNAL", validate=validate.OneOf(WORK_TYPES))


class Pause(StrictSchema):
    reason = fields.String(required=True, validate=validate.OneOf(PAUSE_REASONS))


class Resolve(StrictSchema):
    message = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=COMMENT_MAX))


class Empty(StrictSchema):
    """A body with nothing in it (POST /reopen, /chat, /end)."""


class CommentCreate(StrictSchema):
    body = fields.String(required=True, validate=validate.Length(min=1, max=COMMENT_MAX))
    visibility = fields.String(load_default="PUBLIC", validate=validate.OneOf(VISIBILITIES))


class Comment(StrictSchema):
    id = fields.UUID(required=True)
    ticket_id = fields.UUID(required=True)
    author = fields.Nested(Person, required=True)
    body = fields.String(required=True)
    visibility = fields.String(required=True)
    created_at = fields.AwareDateTime(required=True)


class CommentList(StrictSchema):
    items = fields.List(fields.Nested(Comment), required=True)


class TimelineEntry(StrictSchema):
    id = fields.Integer(required=True)
    kind = fields.String(required=True)
    actor = fields.Nested(Person, allow_none=True)
    data = fields.Dict(required=True)
    created_at = fields.AwareDateTime(required=True)


class Timeline(StrictSchema):
    items = fields.List(fields.Nested(TimelineEntry), required=True)


class ChatMessageCreate(StrictSchema):
    body = fields.String(required=True, validate=validate.Length(min=1, max=5_000))


class ChatMessage(StrictSchema):
    id = fields.UUID(required=True)
    author = fields.Nested(Person, required=True)
    body = fields.String(required=True)
    created_at = fields.AwareDateTime(required=True)


class Chat(StrictSchema):
    id = fields.UUID(required=True)
    ticket_id = fields.UUID(required=True)
    started_by = fields.UUID(required=True)
    started_at = fields.AwareDateTime(required=True)
    last_activity_at = fields.AwareDateTime(required=True)
    ended_at = fields.AwareDateTime(allow_none=True)
    end_reason = fields.String(allow_none=True)
    messages = fields.List(fields.Nested(ChatMessage), required=True)


class ChatSweep(StrictSchema):
    ended = fields.Integer(required=True)
    reasons = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)


class ExportRequest(StrictSchema):
    filters = fields.Nested(TicketFilters, load_default=dict)
    delimiter = fields.String(load_default=",", validate=validate.OneOf(EXPORT_DELIMITERS), metadata={
        "description": "between the CSV's fields: \",\" (default) or \";\" (a spreadsheet set "
                       "to Portuguese (Brazil) splits columns on \";\")"})


class ExportRun(StrictSchema):
    """An export. POST answers 202 as soon as it is recorded: the tickets service makes the
    file at once; poll `status_url` after `poll_after_seconds` (also the 202's `Retry-After`
    header; `Location` is `status_url`) until DONE, then fetch `download_url`."""
    id = fields.UUID(required=True)
    status = fields.String(required=True, metadata={"enum": list(EXPORT_STATUSES)})
    filters = fields.Dict(required=True)
    delimiter = fields.String(required=True, metadata={"enum": list(EXPORT_DELIMITERS)})
    rows = fields.Integer(allow_none=True)
    error = fields.String(allow_none=True)
    created_at = fields.AwareDateTime(required=True)
    finished_at = fields.AwareDateTime(allow_none=True)
    poll_after_seconds = fields.Integer(allow_none=True, required=True, metadata={
        "description": "while QUEUED or RUNNING: seconds to wait before asking again; null once "
                       "DONE or FAILED"})
    status_url = fields.String(metadata={"description": "this export's status (GET)"})
    download_url = fields.String(metadata={"description": "the CSV (GET), once DONE: UTF-8 with a "
                                                          "BOM, times in ISO 8601 in America/Sao_Paulo"})


class ExportQuery(StrictSchema):
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))


class ExportList(StrictSchema):
    """The tenant's most recent exports, newest first (runs are kept 30 days)."""
    items = fields.List(fields.Nested(ExportRun), required=True)


class ArchiveRequest(StrictSchema):
    older_than_days = fields.Integer(required=True, strict=True,
                                     validate=validate.Range(min=1, max=36500))


class ArchiveResult(StrictSchema):
    archived = fields.Integer(required=True)
    file = fields.String(allow_none=True, required=True)


class CronQuery(StrictSchema):
    dry_run = fields.Boolean(load_default=False, metadata={"description": "retention-sweep only: count, delete nothing"})
