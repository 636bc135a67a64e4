"""The API's routes for machines: the agents' and the admins' (devices)."""
from __future__ import annotations

import logging
import uuid

from common import outages
from common.contracts import devices as fleet
from common.contracts import tickets as helpdesk
from common.errors import ValidationFailed
from services.gateway.http import STAFF, USER_ADMINS, bearer_token, route
from services.gateway.responses import json_response

log = logging.getLogger(__name__)


class DeviceRoutes:
    """Enrolment and heartbeats of agents; machines, software, links for staff."""

    # devices: agents -------------------------------------------------------------------

    @route("POST", "/api/machines/register", summary="Enrol a machine with a provisioning code",
           tag="devices", roles=None, body=fleet.Registration, response=fleet.Enrolment, status=201)
    def register_machine(self, principal, body):
        return self.call("devices", "register", body)

    @route("POST", "/api/machines/heartbeat",
           summary="An agent's heartbeat (Bearer machine token), queued like AMQP ones",
           tag="devices", machine=True, raw=True, body=fleet.Heartbeat,
           response=fleet.HeartbeatAnswer, status=202)
    def machine_heartbeat(self, principal, request, body):
        hint = principal
        if hint["sent_at_problem"]:  # refused here, as the consumer would dead-letter it
            raise ValidationFailed(hint["sent_at_problem"], details={"fields": {"sent_at": [hint["sent_at_problem"]]}})
        message_id = request.headers.get("X-Message-Id") or str(uuid.uuid4())
        if len(message_id) > 128:
            raise ValidationFailed("X-Message-Id is too long", details={"fields": {"X-Message-Id": ["max 128"]}})
        try:
            # the bytes received, not a re-serialisation (which could outgrow the size limit)
            self.publish_heartbeat(request.environ["chamados.raw_body"], bearer_token(request),
                                   message_id)
        except Exception as exc:  # unreachable, or did not confirm: the agent sends it again
            raise outages.unavailable("the message broker", exc, log) from None
        return json_response(202, {"need_inventory": hint["need_inventory"], "usb_policy": hint["usb_policy"]})

    # devices: admin --------------------------------------------------------------------

    @route("GET", "/api/admin/machines", summary="Machines, by company, hostname text and status",
           tag="devices", roles=STAFF, query=fleet.MachineQuery, response=fleet.MachineList)
    def list_machines(self, principal, query):
        return self.call("devices", "list_machines", principal, query)

    @route("GET", "/api/admin/software",
           summary="Which machines have a package, at which versions (e.g. name=firefox&version_lt=128): "
                   "from the fleet's software index", tag="devices", roles=STAFF,
           query=fleet.SoftwareQuery, response=fleet.SoftwareSearch)
    def search_software(self, principal, query):
        return self.call("devices", "search_software", principal, query)

    @route("GET", "/api/admin/users/<user_id>/machines",
           summary="Machines the user is assigned to or linked with", tag="devices", roles=STAFF,
           response=fleet.UserMachines)
    def user_machines(self, principal, user_id):
        self.call("accounts", "get_user", principal, user_id)  # an unknown user is a 404, not []
        return self.call("devices", "user_machines", principal, user_id)

    @route("GET", "/api/admin/machines/<machine_id>", summary="One machine, with users, alerts, USB policy",
           tag="devices", roles=STAFF, response=fleet.Machine)
    def get_machine(self, principal, machine_id):
        return self.call("devices", "get_machine", principal, machine_id)

    @route("GET", "/api/admin/machines/<machine_id>/inventory/changes",
           summary="The machine's inventory change history, newest first: added, removed and "
                   "changed paths with their old and new values", tag="devices", roles=STAFF,
           query=fleet.InventoryChangesQuery, response=fleet.InventoryChanges)
    def inventory_changes(self, principal, machine_id, query):
        return self.call("devices", "inventory_changes", principal, machine_id, query)

    @route("GET", "/api/admin/machines/<machine_id>/inventory",
           summary="The machine's current inventory (canonical), its hash and when it last changed",
           tag="devices", roles=STAFF, response=fleet.CurrentInventory)
    def machine_inventory(self, principal, machine_id):
        return self.call("devices", "current_inventory", principal, machine_id)

    @route("GET", "/api/admin/machines/<machine_id>/metrics",
           summary="Hourly CPU and memory of the last `hours` hours (1–168, default 24)",
           tag="devices", roles=STAFF, query=fleet.MetricsQuery, response=fleet.MachineMetrics)
    def machine_metrics(self, principal, machine_id, query):
        return self.call("devices", "machine_metrics", principal, machine_id, query)

    @route("POST", "/api/admin/machines/<machine_id>/reset-agent",
           summary="Revoke every token of the machine; the agent must re-register", tag="devices",
           roles=USER_ADMINS, body=helpdesk.Empty)
    def reset_agent(self, principal, machine_id, body):
        return self.call("devices", "reset_agent", principal, machine_id)

    @route("POST", "/api/admin/machines/<machine_id>/access",
           summary="Change the assigned user (by email) and persona", tag="devices",
           roles=USER_ADMINS, body=fleet.Access, response=fleet.Machine)
    def adjust_access(self, principal, machine_id, body):
        return self.call("devices", "adjust_access", principal, machine_id, body)

    @route("PUT", "/api/admin/machines/<machine_id>/usb-policy",
           summary="Ask the agent to apply a USB mode (PENDING until acknowledged)", tag="devices",
           roles=USER_ADMINS, body=fleet.UsbPolicyRequest, response=fleet.UsbPolicy)
    def set_usb_policy(self, principal, machine_id, body):
        return self.call("devices", "set_usb_policy", principal, machine_id, body)

    @route("POST", "/api/admin/devices/links", summary="Link a user (by email) to a machine",
           tag="devices", roles=USER_ADMINS, body=fleet.LinkCreate, response=fleet.Machine, status=201)
    def add_link(self, principal, body):
        return self.call("devices", "add_link", principal, body)

    @route("DELETE", "/api/admin/devices/links", summary="Unlink a user from a machine",
           tag="devices", roles=USER_ADMINS, query=fleet.LinkQuery, response=fleet.Machine)
    def remove_link(self, principal, query):
        return self.call("devices", "remove_link", principal, query)
