"""The API's routes for queues, tickets and live chat (tickets)."""
from __future__ import annotations

from common.contracts import tickets as helpdesk
from services.gateway.http import STAFF, USER_ADMINS, route
from services.gateway.responses import json_response


class TicketRoutes:
    """Queues, tickets, comments, timelines and live chat."""

    # tickets: queues -----------------------------------------------------------------

    @route("GET", "/api/queues", summary="Queues of the tenant", tag="tickets",
           response=helpdesk.QueueList)
    def list_queues(self, principal):
        return self.call("tickets", "list_queues", principal)

    @route("POST", "/api/queues", summary="Create a queue", tag="tickets", roles=USER_ADMINS,
           body=helpdesk.QueueCreate, response=helpdesk.Queue, status=201)
    def create_queue(self, principal, body):
        return self.call("tickets", "create_queue", principal, body)

    # tickets -------------------------------------------------------------------------

    @route("POST", "/api/tickets", summary="Open a ticket (queue \"Chamados\" when none given)",
           tag="tickets", body=helpdesk.TicketCreate, response=helpdesk.Ticket, status=201)
    def create_ticket(self, principal, body):
        return self.call("tickets", "create_ticket", principal, body)

    @route("GET", "/api/tickets", summary="Tickets, filtered, newest first, keyset pages",
           tag="tickets", query=helpdesk.TicketQuery, response=helpdesk.TicketList)
    def list_tickets(self, principal, query):
        return self.call("tickets", "list_tickets", principal, query)

    @route("GET", "/api/tickets/recent",
           summary="Dashboard: unassigned oldest first, then the rest newest-updated first",
           tag="tickets", query=helpdesk.RecentQuery, response=helpdesk.RecentList)
    def recent_tickets(self, principal, query):
        return self.call("tickets", "recent_tickets", principal, query)

    @route("GET", "/api/tickets/counts",
           summary="Tickets by status as I see them: the tenant's (staff) or my own (collaborator)",
           tag="tickets", response=helpdesk.TicketCounts)
    def my_ticket_counts(self, principal):
        return self.call("tickets", "my_ticket_counts", principal)

    @route("GET", "/api/assignees", summary="Who can be responsible for a ticket (the tenant's staff)",
           tag="tickets", roles=STAFF, response=helpdesk.PersonList)
    def list_assignees(self, principal):
        return self.call("tickets", "list_assignees", principal)

    @route("GET", "/api/me/ticket-filter", summary="My default ticket-list filter (empty when none)",
           tag="tickets", response=helpdesk.SavedFilter)
    def get_saved_filter(self, principal):
        return self.call("tickets", "get_saved_filter", principal)

    @route("PUT", "/api/me/ticket-filter", summary="Save my default ticket-list filter",
           tag="tickets", body=helpdesk.SavedFilterUpdate, response=helpdesk.SavedFilter)
    def save_filter(self, principal, body):
        return self.call("tickets", "save_filter", principal, body)

    @route("DELETE", "/api/me/ticket-filter", summary="Forget my default ticket-list filter",
           tag="tickets", raw=True, status=204)
    def clear_saved_filter(self, principal, request):
        self.call("tickets", "clear_saved_filter", principal)
        return json_response(204)

    @route("GET", "/api/tickets/<ticket_id>", summary="One ticket, with worked seconds by type",
           tag="tickets", response=helpdesk.Ticket)
    def get_ticket(self, principal, ticket_id):
        return self.call("tickets", "get_ticket", principal, ticket_id)

    @route("PATCH", "/api/tickets/<ticket_id>", summary="Edit subject, description, priority, queue…",
           tag="tickets", roles=STAFF, body=helpdesk.TicketUpdate, response=helpdesk.Ticket)
    def update_ticket(self, principal, ticket_id, body):
        return self.call("tickets", "update_ticket", principal, ticket_id, body)

    @route("POST", "/api/tickets/<ticket_id>/assign", summary="Assign (or unassign with null)",
           tag="tickets", roles=STAFF, body=helpdesk.Assign, response=helpdesk.Ticket)
    def assign_ticket(self, principal, ticket_id, body):
        return self.call("tickets", "assign", principal, ticket_id, body)

    @route("POST", "/api/tickets/<ticket_id>/start", summary="Start work (opens a work session)",
           tag="tickets", roles=STAFF, body=helpdesk.Start, response=helpdesk.Ticket)
    def start_ticket(self, principal, ticket_id, body):
        return self.call("tickets", "start", principal, ticket_id, body)

    @route("POST", "/api/tickets/<ticket_id>/pause", summary="Pause work, with a reason",
           tag="tickets", roles=STAFF, body=helpdesk.Pause, response=helpdesk.Ticket)
    def pause_ticket(self, principal, ticket_id, body):
        return self.call("tickets", "pause", principal, ticket_id, body)

    @route("POST", "/api/tickets/<ticket_id>/resolve", summary="Resolve (Encerrar), optional message",
           tag="tickets", roles=STAFF, body=helpdesk.Resolve, response=helpdesk.Ticket)
    def resolve_ticket(self, principal, ticket_id, body):
        return self.call("tickets", "resolve", principal, ticket_id, body)

    @route("POST", "/api/tickets/<ticket_id>/reopen", summary="Reopen a resolved ticket",
           tag="tickets", roles=STAFF, body=helpdesk.Empty, response=helpdesk.Ticket)
    def reopen_ticket(self, principal, ticket_id, body):
        return self.call("tickets", "reopen", principal, ticket_id)

    @route("GET", "/api/tickets/<ticket_id>/comments", summary="Comments (collaborators: public only)",
           tag="tickets", response=helpdesk.CommentList)
    def list_comments(self, principal, ticket_id):
        return self.call("tickets", "list_comments", principal, ticket_id)

    @route("POST", "/api/tickets/<ticket_id>/comments", summary="Comment (staff: once assigned)",
           tag="tickets", body=helpdesk.CommentCreate, response=helpdesk.Comment, status=201)
    def add_comment(self, principal, ticket_id, body):
        return self.call("tickets", "add_comment", principal, ticket_id, body)

    @route("GET", "/api/tickets/<ticket_id>/events", summary="The ticket's timeline",
           tag="tickets", response=helpdesk.Timeline)
    def ticket_timeline(self, principal, ticket_id):
        return self.call("tickets", "timeline", principal, ticket_id)

    # live chat -----------------------------------------------------------------------

    @route("POST", "/api/tickets/<ticket_id>/chat", summary="Start a live chat on the ticket",
           tag="chat", roles=STAFF, body=helpdesk.Empty, response=helpdesk.Chat, status=201)
    def start_chat(self, principal, ticket_id, body):
        return self.call("tickets", "start_chat", principal, ticket_id)

    @route("GET", "/api/chats/<chat_id>", summary="A chat with its messages", tag="chat",
           response=helpdesk.Chat)
    def get_chat(self, principal, chat_id):
        return self.call("tickets", "get_chat", principal, chat_id)

    @route("POST", "/api/chats/<chat_id>/messages", summary="Send a chat message", tag="chat",
           body=helpdesk.ChatMessageCreate, response=helpdesk.Chat, status=201)
    def post_chat_message(self, principal, chat_id, body):
        return self.call("tickets", "post_chat_message", principal, chat_id, body)

    @route("POST", "/api/chats/<chat_id>/end", summary="End the chat (pauses with END_LIVE_CHAT)",
           tag="chat", body=helpdesk.Empty, response=helpdesk.Chat)
    def end_chat(self, principal, chat_id, body):
        return self.call("tickets", "end_chat", principal, chat_id)
