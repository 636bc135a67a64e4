"""Chamados: the list with filters and a saved default, the new-ticket form, and the ticket
page (status actions with their dialogs, assignment, comments, timeline, live chat)."""
from __future__ import annotations

from urllib.parse import urlencode

from common.contracts.accounts import STAFF_ROLES
from common.contracts.tickets import PAUSE_REASONS, PRIORITIES, STATUSES, WORK_TYPES
from common.errors import ValidationFailed
from common.rpc import together
from services.gateway.console import catalogue
from services.gateway.console.web import error_message, may, page

LIST_FILTERS = ("status", "queue_id", "assignee_id", "company_id", "priority", "q")
LIST_PAGE_SIZE = 25
PEOPLE_PICKER_LIMIT = "500"  # the assignee and requester pickers (one page of users)
DEFAULT_QUEUE = "Chamados"
CHAT_POLL_SECONDS = 3
DIALOGS = ("pausar", "encerrar")
PAGE_HISTORY_LIMIT = 20
PAGE_HISTORY_SEPARATOR = " "  # never inside a cursor (URL-safe base64)
FIRST_PAGE = "-"


class TicketViews:

    # the list --------------------------------------------------------------------------

    @page("GET", "/chamados", operation="list_tickets")
    def ticket_list(self, page_):
        principal = page_.principal
        staff = principal["role"] in STAFF_ROLES
        asked = page_.args(*LIST_FILTERS)
        cursor = page_.request.args.get("cursor", "").strip()
        may_use_default = not asked and not cursor and "todos" not in page_.request.args
        lookups = {"saved": lambda: self._saved_list_filter(principal),
                   "queues": lambda: self._queue_choices(principal)}
        if may(principal, "list_companies"):
            lookups["companies"] = lambda: self._company_choices(principal)
        if staff:
            lookups["assignees"] = lambda: self._staff(principal)
        if not may_use_default:  # the list need not wait for the saved filter
            lookups["found"] = lambda: self._find_tickets(principal, asked, cursor)
        got = together(**lookups)
        saved = got["saved"]
        using_default = may_use_default and bool(saved)
        filters = {key: str(value) for key, value in saved.items() if key in LIST_FILTERS} \
            if using_default else asked
        found, problem = got["found"] if "found" in got else self._find_tickets(principal, filters, cursor)
        next_url, previous_url = page_links(filters, cursor, found["next_cursor"],
                                            page_.request.args.get("anteriores", ""))
        return page_.render(
            "tickets_list.html", tickets=found["items"], filters=filters, problem=problem,
            using_default=using_default, has_default=bool(saved), next_url=next_url,
            previous_url=previous_url, staff=staff, statuses=STATUSES, priorities=PRIORITIES,
            queues=got["queues"], companies=got.get("companies", []), assignees=got.get("assignees", []))

    def _find_tickets(self, principal, filters: dict, cursor: str) -> tuple[dict, str | None]:
        """(one page of tickets, None), or (an empty page, why) for filters the API refuses
        (a hand-edited address: the page says which filter is wrong)."""
        query = {**filters, "limit": str(LIST_PAGE_SIZE)}
        if cursor:
            query["cursor"] = cursor
        try:
            return self.operation("list_tickets", principal, query=query), None
        except ValidationFailed as exc:
            return {"items": [], "next_cursor": None}, error_message(exc)

    @page("POST", "/chamados/filtro", operation="save_filter")
    def save_default_filter(self, page_):
        filters = {key: page_.field(key) for key in LIST_FILTERS if page_.field(key)}
        self.operation("save_filter", page_.principal, body={"filters": filters})
        return page_.redirect("/chamados", page_.t("tickets.filter_saved"))

    @page("POST", "/chamados/filtro/limpar", operation="clear_saved_filter")
    def clear_default_filter(self, page_):
        self.operation("clear_saved_filter", page_.principal)
        return page_.redirect("/chamados?todos=1", page_.t("tickets.filter_cleared"))

    # a new ticket ----------------------------------------------------------------------

    @page("GET", "/chamados/novo", operation="create_ticket")
    def new_ticket_form(self, page_):
        return self._new_ticket(page_, {})

    @page("POST", "/chamados/novo", operation="create_ticket")
    def new_ticket_submit(self, page_):
        fields = ("subject", "description", "priority", "queue_id", "requester_id", "company_id")
        body = {name: page_.field(name) for name in fields if page_.field(name)}
        body.setdefault("subject", "")
        try:
            ticket = self.operation("create_ticket", page_.principal, body=body)
        except ValidationFailed as exc:  # keep what was typed, say what to fix
            return self._new_ticket(page_, body, error_message(exc), 422)
        return page_.redirect(f"/chamados/{ticket['reference']}",
                              page_.t("tickets.created", reference=ticket["reference"]))

    def _new_ticket(self, page_, values: dict, problem: str | None = None, status: int = 200):
        principal = page_.principal
        staff = principal["role"] in STAFF_ROLES
        lookups = {"queues": lambda: self._queue_choices(principal)}
        if staff:  # staff open tickets for anyone of the tenant
            lookups["people"] = lambda: self._people(principal)
        if may(principal, "list_companies"):
            lookups["companies"] = lambda: self._company_choices(principal)
        got = together(**lookups)
        default_queue = next((queue["id"] for queue in got["queues"] if queue["name"] == DEFAULT_QUEUE), "")
        return page_.render(
            "ticket_new.html", status=status, values=values, problem=problem, staff=staff,
            queues=got["queues"], chosen_queue=values.get("queue_id") or default_queue,
            priorities=PRIORITIES, people=got.get("people", []), companies=got.get("companies", []))

    # one ticket ------------------------------------------------------------------------

    @page("GET", "/chamados/<ticket_key>", operation="get_ticket")
    def ticket_page(self, page_, ticket_key):
        principal = page_.principal
        staff = principal["role"] in STAFF_ROLES
        lookups = {  # every ticket route takes the reference number as well as the id
            "ticket": lambda: self.operation("get_ticket", principal, ticket_id=ticket_key),
            "timeline": lambda: self.operation("ticket_timeline", principal, ticket_id=ticket_key)["items"],
            "comments": lambda: self.operation("list_comments", principal, ticket_id=ticket_key)["items"],
            "queues": lambda: self._queue_choices(principal),
        }
        if staff:
            lookups["assignees"] = lambda: self._staff(principal)
        got = together(**lookups)
        ticket, timeline, assignees = got["ticket"], got["timeline"], got.get("assignees", [])
        names = {person["id"]: person["name"] for person in assignees}
        chat_id = open_chat_id(timeline)
        chat = self.operation("get_chat", principal, chat_id=chat_id) if chat_id else None
        queue_names = {queue["id"]: queue["name"] for queue in got["queues"]}
        dialog = page_.request.args.get("dialogo")
        return page_.render(
            "ticket.html", ticket=ticket, comments=got["comments"], staff=staff, assignees=assignees,
            timeline=[{"entry": entry, "text": timeline_text(entry, names)} for entry in reversed(timeline)],
            chat=chat, chat_poll=CHAT_POLL_SECONDS, queue_name=queue_names.get(ticket["queue_id"], "—"),
            open_dialog=dialog if dialog in DIALOGS else None, work_types=WORK_TYPES,
            pause_reasons=PAUSE_REASONS, can_comment=not staff or ticket["assignee"] is not None,
            actions=set(ticket["allowed_actions"]))

    @page("GET", "/chamados/<ticket_key>/chat", operation="get_chat")
    def chat_log(self, page_, ticket_key):
        """The chat's messages alone: what console.js polls to show new ones."""
        ticket = self.operation("get_ticket", page_.principal, ticket_id=ticket_key)
        chat_id = page_.request.args.get("id", "")
        chat = self.operation("get_chat", page_.principal, chat_id=chat_id)
        if chat["ticket_id"] != ticket["id"]:
            return page_.redirect(f"/chamados/{ticket['reference']}")
        return page_.render("ticket_chat_log.html", chat=chat)

    @page("POST", "/chamados/<ticket_key>/iniciar", operation="start_ticket")
    def start_submit(self, page_, ticket_key):
        ticket = self.operation("start_ticket", page_.principal, ticket_id=ticket_key,
                                body={"work_type": page_.field("work_type") or "INTERNAL"})
        return self._back_to(page_, ticket, "tickets.started")

    @page("POST", "/chamados/<ticket_key>/pausar", operation="pause_ticket")
    def pause_submit(self, page_, ticket_key):
        ticket = self.operation("pause_ticket", page_.principal, ticket_id=ticket_key,
                                body={"reason": page_.field("reason")})
        return self._back_to(page_, ticket, "tickets.paused")

    @page("POST", "/chamados/<ticket_key>/encerrar", operation="resolve_ticket")
    def resolve_submit(self, page_, ticket_key):
        message = page_.field("message")
        ticket = self.operation("resolve_ticket", page_.principal, ticket_id=ticket_key,
                                body={"message": message or None})
        return self._back_to(page_, ticket, "tickets.resolved")

    @page("POST", "/chamados/<ticket_key>/reabrir", operation="reopen_ticket")
    def reopen_submit(self, page_, ticket_key):
        ticket = self.operation("reopen_ticket", page_.principal, ticket_id=ticket_key, body={})
        return self._back_to(page_, ticket, "tickets.reopened")

    @page("POST", "/chamados/<ticket_key>/atribuir", operation="assign_ticket")
    def assign_submit(self, page_, ticket_key):
        # "Assumir" submits the same form: it wins over the select's value
        assignee = page_.principal["user_id"] if page_.field("assumir") else (page_.field("assignee_id") or None)
        ticket = self.operation("assign_ticket", page_.principal, ticket_id=ticket_key,
                                body={"assignee_id": assignee})
        return self._back_to(page_, ticket, "tickets.assigned" if assignee else "tickets.unassigned")

    @page("POST", "/chamados/<ticket_key>/comentarios", operation="add_comment")
    def comment_submit(self, page_, ticket_key):
        body = {"body": page_.form.get("body", "").strip()}
        if page_.field("visibility"):
            body["visibility"] = page_.field("visibility")
        self.operation("add_comment", page_.principal, ticket_id=ticket_key, body=body)
        return page_.redirect(page_.back(f"/chamados/{ticket_key}") + "#comentarios",
                              page_.t("tickets.commented"))

    @page("POST", "/chamados/<ticket_key>/chat", operation="start_chat")
    def chat_start_submit(self, page_, ticket_key):
        self.operation("start_chat", page_.principal, ticket_id=ticket_key, body={})
        return page_.redirect(page_.back(f"/chamados/{ticket_key}") + "#chat", page_.t("chat.started"))

    @page("POST", "/chamados/<ticket_key>/chat/mensagens", operation="post_chat_message")
    def chat_message_submit(self, page_, ticket_key):
        self.operation("post_chat_message", page_.principal, chat_id=page_.field("chat_id"),
                       body={"body": page_.form.get("body", "").strip()})
        return page_.redirect(page_.back(f"/chamados/{ticket_key}") + "#chat")

    @page("POST", "/chamados/<ticket_key>/chat/encerrar", operation="end_chat")
    def chat_end_submit(self, page_, ticket_key):
        self.operation("end_chat", page_.principal, chat_id=page_.field("chat_id"), body={})
        return page_.redirect(page_.back(f"/chamados/{ticket_key}") + "#chat", page_.t("chat.ended"))

    # helpers ---------------------------------------------------------------------------

    def _back_to(self, page_, ticket: dict, notice_key: str):
        return page_.redirect(f"/chamados/{ticket['reference']}",
                              page_.t(notice_key, reference=ticket["reference"]))

    def _people(self, principal) -> list[dict]:
        return self.operation("list_users", principal,
                              query={"type": "people", "limit": PEOPLE_PICKER_LIMIT})["items"]

    # what pages look up beside their content, reused for a second (console/lookups.py)

    def _staff(self, principal) -> list[dict]:
        """Who can be responsible for a ticket: the tenant's staff."""
        return self.console_lookups.get("staff", principal, lambda: self.operation(
            "list_assignees", principal)["items"])

    def _queue_choices(self, principal) -> list[dict]:
        return self.console_lookups.get("queues", principal, lambda: self.operation(
            "list_queues", principal)["items"])

    def _company_choices(self, principal) -> list[dict]:
        return self.console_lookups.get("companies", principal, lambda: self.operation(
            "list_companies", principal, query={})["items"])

    def _saved_list_filter(self, principal) -> dict:
        return self.console_lookups.get("saved_filter", principal, lambda: self.operation(
            "get_saved_filter", principal)["filters"])


def page_links(filters: dict, cursor: str, next_cursor: str | None, history: str) -> tuple:
    """(next page, previous page) addresses. A keyset cursor only goes forward, so the
    address carries the cursors of the pages before (`anteriores`, the last
    PAGE_HISTORY_LIMIT of them; older ones go back to the first page)."""
    earlier = [value for value in history.split(PAGE_HISTORY_SEPARATOR) if value][-PAGE_HISTORY_LIMIT:] \
        if cursor else []
    base = {**filters} if filters else {"todos": "1"}
    next_url = None
    if next_cursor:
        trail = (earlier + [cursor or FIRST_PAGE])[-PAGE_HISTORY_LIMIT:]
        next_url = "/chamados?" + urlencode({**base, "cursor": next_cursor,
                                             "anteriores": PAGE_HISTORY_SEPARATOR.join(trail)})
    previous_url = None
    if cursor:
        before = earlier[-1] if earlier else FIRST_PAGE
        query = dict(base)
        if before != FIRST_PAGE:
            query.update(cursor=before, anteriores=PAGE_HISTORY_SEPARATOR.join(earlier[:-1]))
        previous_url = "/chamados?" + urlencode(query)
    return next_url, previous_url


def open_chat_id(timeline: list[dict]) -> str | None:
    """The ticket's live chat still open, from its timeline (started and not yet ended)."""
    open_chats: list[str] = []
    for entry in timeline:
        chat_id = entry["data"].get("chat_id")
        if entry["kind"] == "CHAT_STARTED" and chat_id:
            open_chats.append(chat_id)
        elif entry["kind"] == "CHAT_ENDED" and chat_id in open_chats:
            open_chats.remove(chat_id)
    return open_chats[-1] if open_chats else None


def timeline_text(entry: dict, names: dict) -> str:
    """One timeline entry as a sentence."""
    kind, data = entry["kind"], entry["data"]
    t = catalogue.translate
    if kind == "ASSIGNED":
        assignee = data.get("assignee_id")
        text = t("timeline.ASSIGNED", name=names.get(assignee, t("timeline.someone"))) if assignee \
            else t("timeline.UNASSIGNED")
        return text + (" " + t("timeline.automatic") if data.get("automatic") else "")
    if kind == "WORK_STARTED":
        return t("timeline.WORK_STARTED", work_type=t(f"work_type.{data.get('work_type')}"))
    if kind == "PAUSED":
        return t("timeline.PAUSED", reason=t(f"pause_reason.{data.get('reason')}"))
    if kind == "RESOLVED":
        return t("timeline.RESOLVED") + (f": {data['message']}" if data.get("message") else "")
    if kind == "COMMENT_ADDED":
        return t(f"timeline.COMMENT_ADDED.{data.get('visibility', 'PUBLIC')}")
    if kind == "UPDATED":
        changed = ", ".join(catalogue.translate_field(name) for name in data.get("changed") or [])
        return t("timeline.UPDATED", fields=changed or "—")
    if kind == "CHAT_ENDED":
        return t("timeline.CHAT_ENDED", reason=t(f"chat_end.{data.get('reason')}"))
    key = f"timeline.{kind}"
    return t(key, **{k: v for k, v in data.items() if isinstance(v, str)}) if catalogue.has(key) else kind
