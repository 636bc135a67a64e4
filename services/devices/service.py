"""devices: registration and machine tokens, the batched heartbeat consumer with
change-only inventory, status, posture alerts, USB policies, links.

The nameko adapter: each entrypoint hands its arguments, the store, the settings it needs
and the time to one use-case handler (enrolment, heartbeats, links, usb_policy, queries,
sweeps), and counts what the heartbeat batch did once it committed."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from nameko.rpc import RpcProxy
from prometheus_client import Counter
from sqlalchemy.exc import InterfaceError, OperationalError

from common import rpc as deadline
from common.db import Database, utcnow
from common.idempotency import IdempotencyContext, idempotent
from common.messaging import HEARTBEAT_EXCHANGE, HEARTBEAT_QUEUE, batch_consumer, subscribe
from common.retention import retention_scope
from common.service_base import ServiceBase, rpc
from services.devices import domain, enrolment, heartbeats, links, queries, storage, sweeps, usb_policy
from services.devices.heartbeats import BatchResult
from services.devices.repository import DevicesRepository

log = logging.getLogger(__name__)
ACCOUNTS_TIMEOUT_SECONDS = 10.0

HEARTBEATS = Counter("chamados_heartbeats_total", "Heartbeats by outcome",
                     ["outcome"])  # accepted | late (counted, older than the current) | duplicate | dead_lettered
INVENTORY_VERSIONS = Counter("chamados_inventory_versions_total",
                             "Full inventories received: a new version written, or skipped as unchanged",
                             ["result"])
HEARTBEATS_REFUSED = Counter("chamados_heartbeats_refused_total",
                             "Heartbeats with an unknown, revoked or expired machine token: "
                             "answered invalid_token, acked and dropped (not dead letters)",
                             ["reason"])  # unknown_token | token_revoked | token_expired
for _outcome in (*heartbeats.OUTCOMES, "dead_lettered"):
    HEARTBEATS.labels(_outcome)
for _reason in ("unknown_token", "token_revoked", "token_expired"):
    HEARTBEATS_REFUSED.labels(_reason)
for _result in ("written", "skipped"):
    INVENTORY_VERSIONS.labels(_result)


def count_batch(result: BatchResult) -> None:
    """After the commit: a retried batch counts once."""
    for outcome, count in result.outcomes.items():
        if count:
            HEARTBEATS.labels(outcome).inc(count)
    if result.inventories_written:
        INVENTORY_VERSIONS.labels("written").inc(result.inventories_written)
    if result.inventories_skipped:
        INVENTORY_VERSIONS.labels("skipped").inc(result.inventories_skipped)
    for refused, message_id in result.refusals:
        HEARTBEATS_REFUSED.labels(refused.replace(" ", "_")).inc()
        log.info("heartbeat refused (%s), dropped; message_id %s", refused, message_id)


def moment(now: str | None) -> datetime:
    """A sweep's tick (ISO 8601, as the scheduler sends it), or now."""
    return datetime.fromisoformat(now) if now else utcnow()


# a state-changing RPC sent with an Idempotency-Key answers every retry with its first answer
once = idempotent(storage.idempotency_keys)


class Service(ServiceBase):
    name = "devices"
    # machine_software too: besides its rewritten rows, VACUUM merges its GIN index's pending
    # list, which a search otherwise reads through (14 ms instead of 0.1 for one version)
    churning_tables = ("heartbeat_state", "inventories", "machine_days", "machine_software", "alerts",
                       "usb_policies", "machine_tokens", "outbox", "idempotency_keys")
    db = Database(repository=DevicesRepository, metadata=storage.metadata)
    accounts = RpcProxy("accounts")
    idempotency = IdempotencyContext()  # the caller's Idempotency-Key (@once)
    idempotency_records = storage.idempotency_keys

    @property
    def thresholds(self) -> domain.StatusThresholds:
        settings = self.db.settings
        return domain.StatusThresholds(timedelta(seconds=settings.machine_online_seconds),
                                       timedelta(seconds=settings.machine_stale_seconds))

    def _accounts(self, method: str, *args):
        """The handlers' `accounts`: an RPC with a deadline, made outside any unit of work."""
        return deadline.call(self.accounts, "accounts", method, *args, timeout=ACCOUNTS_TIMEOUT_SECONDS)

    # registration and tokens ------------------------------------------------------------------

    @rpc
    def register(self, payload: dict) -> dict:
        settings = self.db.settings
        return enrolment.register(self.db, self._accounts, payload, utcnow(),
                                  timedelta(days=settings.machine_token_ttl_days), settings.agent_amqp_uri)

    @rpc
    @once
    def reset_agent(self, actor: dict, machine_id: str) -> dict:
        return enrolment.reset_agent(self.db, actor, machine_id, utcnow())

    @rpc
    def heartbeat_hint(self, token: str) -> dict:
        return heartbeats.heartbeat_hint(self.db, token, utcnow())

    # heartbeats ------------------------------------------------------------------------------

    @batch_consumer(HEARTBEAT_EXCHANGE, HEARTBEAT_QUEUE, batch_size=500, max_wait=0.2,
                    transient=(OperationalError, InterfaceError),
                    on_parked=lambda reason: HEARTBEATS.labels("dead_lettered").inc())
    def consume_heartbeats(self, deliveries) -> dict:
        result = heartbeats.consume(self.db, deliveries, utcnow())
        count_batch(result)
        return result.verdicts

    # status sweeps (the scheduler calls these) -----------------------------------------------

    @rpc
    def mark_offline(self, now: str | None = None) -> dict:
        return sweeps.mark_offline(self.db, self.thresholds, moment(now))

    @rpc
    def expire_stale_usb_policies(self, now: str | None = None) -> dict:
        ttl = timedelta(minutes=self.db.settings.usb_policy_ttl_minutes)
        return sweeps.expire_stale_usb_policies(self.db, ttl, moment(now))

    @rpc
    def apply_retention(self, now: str | None = None, dry_run: bool = False,
                        tenant_id: str | None = None) -> dict:
        now, tenant = retention_scope(now, dry_run, tenant_id)
        return sweeps.apply_retention(self.db, now, dry_run, tenant)

    # what other services ask -----------------------------------------------------------------

    @rpc
    def health_buckets(self, tenant_id: str | None = None) -> dict:
        return queries.health_buckets(self.db, self.thresholds, tenant_id, utcnow())

    @rpc
    def machines_last_seen(self, machine_ids: list) -> dict:
        return queries.machines_last_seen(self.db, machine_ids)

    @rpc
    def machine_in_tenant(self, tenant_id: str, machine_id: str, user_id: str | None = None) -> bool:
        return queries.machine_in_tenant(self.db, tenant_id, machine_id, user_id)

    # admin -----------------------------------------------------------------------------------

    @rpc
    def list_machines(self, actor: dict, query: dict) -> dict:
        return queries.list_machines(self.db, self.thresholds, actor, query, utcnow())

    @rpc
    def get_machine(self, actor: dict, machine_id: str) -> dict:
        return queries.get_machine(self.db, self.thresholds, actor, machine_id, utcnow())

    @rpc
    def user_machines(self, actor: dict, user_id: str) -> dict:
        return queries.user_machines(self.db, self.thresholds, actor, user_id, utcnow())

    @rpc
    def inventory_changes(self, actor: dict, machine_id: str, query: dict) -> dict:
        return queries.inventory_changes(self.db, actor, machine_id, query)

    @rpc
    def current_inventory(self, actor: dict, machine_id: str) -> dict:
        return queries.current_inventory(self.db, actor, machine_id)

    @rpc
    def search_software(self, actor: dict, query: dict) -> dict:
        return queries.search_software(self.db, actor, query)

    @rpc
    def machine_metrics(self, actor: dict, machine_id: str, query: dict) -> dict:
        return queries.machine_metrics(self.db, actor, machine_id, query, utcnow())

    @rpc
    @once
    def adjust_access(self, actor: dict, machine_id: str, payload: dict) -> dict:
        return links.adjust_access(self.db, self._accounts, self.thresholds, actor, machine_id, payload, utcnow())

    @rpc
    @once
    def set_usb_policy(self, actor: dict, machine_id: str, payload: dict) -> dict:
        return usb_policy.set_usb_policy(self.db, actor, machine_id, payload, utcnow())

    @rpc
    @once
    def add_link(self, actor: dict, payload: dict) -> dict:
        return links.add_link(self.db, self._accounts, self.thresholds, actor, payload, utcnow())

    @rpc
    @once
    def remove_link(self, actor: dict, query: dict) -> dict:
        return links.remove_link(self.db, self.thresholds, actor, query, utcnow())

    # accounts' events --------------------------------------------------------------------------

    @subscribe("accounts", "user_updated")
    def on_user_updated(self, event: dict) -> None:
        links.user_updated(self.db, event)

    @subscribe("accounts", "user_merged")
    def on_user_merged(self, event: dict) -> None:
        links.user_merged(self.db, self._accounts, event)
