"""devices: registration and machine tokens, the batched heartbeat consumer with
change-only inventory, status, posture alerts, USB policies, links."""
from __future__ import annotations

import logging
import uuid
from dataclasses import asdict
from datetime import datetime, timedelta, timezone

import orjson
from marshmallow import ValidationError
from nameko.rpc import RpcProxy
from prometheus_client import Counter
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import InterfaceError, OperationalError

from common import rpc as deadline
from common.contracts import devices as contract
from common.contracts import load, parse_id, paths_with_nul
from common.db import Database, utcnow
from common.errors import Conflict, NotFound, Unauthorized, ValidationFailed
from common.idempotency import IdempotencyContext, idempotent
from chamados_protocol.inventory import canonical_form, diff_canonical
from common.messaging import (HEARTBEAT_EXCHANGE, HEARTBEAT_QUEUE, Verdict, batch_consumer,
                              first_delivery, subscribe)
from common.retention import retention_scope
from common.pagination import day_value, decode_cursor, encode_cursor, text_value, uuid_value
from common.service_base import ServiceBase, rpc
from common.tokens import hash_token, new_secret_token
from services.devices import domain, storage
from services.devices.history import (ChangeRecord, HistoryBatch, HourMetrics, day_of, day_start, fold_hours,
                                      hour_starts, newest_changes, pack_metrics, unpack_metrics)
from services.devices.software import packages, version_key
from services.devices.storage import (Alert, DevicesRepository, HeartbeatState, Inventory, Machine,
                                      MachineDay, MachineLink, MachineToken, StateRow, UsbPolicy)

log = logging.getLogger(__name__)
ACCOUNTS_TIMEOUT_SECONDS = 10.0
# a heartbeat older than the metrics' retention is refused at the contract (nothing of it kept)
METRICS_RETENTION, ALERT_RETENTION = contract.HEARTBEAT_MAX_AGE, timedelta(days=180)

HEARTBEATS = Counter("chamados_heartbeats_total", "Heartbeats by outcome",
                     ["outcome"])  # accepted | late (counted, older than the current) | duplicate | dead_lettered
INVENTORY_VERSIONS = Counter("chamados_inventory_versions_total",
                             "Full inventories received: a new version written, or skipped as unchanged",
                             ["result"])
HEARTBEATS_REFUSED = Counter("chamados_heartbeats_refused_total",
                             "Heartbeats with an unknown, revoked or expired machine token: "
                             "answered invalid_token, acked and dropped (not dead letters)",
                             ["reason"])  # unknown_token | token_revoked | token_expired
for _outcome in ("accepted", "late", "duplicate", "dead_lettered"):
    HEARTBEATS.labels(_outcome)
for _reason in ("unknown_token", "token_revoked", "token_expired"):
    HEARTBEATS_REFUSED.labels(_reason)
for _result in ("written", "skipped"):
    INVENTORY_VERSIONS.labels(_result)


class Actor:
    def __init__(self, data: dict):
        self.user_id = uuid.UUID(str(data["user_id"]))
        self.tenant_id = uuid.UUID(str(data["tenant_id"]))
        self.role = data["role"]


def user_ref(user_id, email, name):
    return None if user_id is None else {"id": user_id, "email": email, "name": name}


def open_hour(state) -> HourMetrics | None:
    """The hour still being folded in a machine's state row (it starts at `state.agg_hour`);
    None when nothing was folded yet."""
    if state.agg_hour is None or not state.agg_samples:
        return None
    return HourMetrics(
        samples=state.agg_samples,
        cpu_avg=state.agg_cpu_sum / state.agg_samples if state.agg_cpu_max is not None else None,
        cpu_max=state.agg_cpu_max,
        memory_avg=state.agg_memory_sum / state.agg_samples if state.agg_memory_max is not None else None,
        memory_max=state.agg_memory_max, disk_max=state.agg_disk_max)


NUL_ESCAPE = b"\\u0000"  # JSON can carry NUL only escaped


def parse_heartbeat(delivery) -> tuple[dict | None, str | None, str | None]:
    """(heartbeat, token hash, None) or (None, None, reason to dead-letter it). Body,
    headers and properties are untrusted: types and sizes are checked before use."""
    if len(delivery.body) > contract.HEARTBEAT_MAX_BYTES:
        return None, None, f"too_large: {len(delivery.body)} bytes (max {contract.HEARTBEAT_MAX_BYTES})"
    token = delivery.headers.get("authorization")
    if isinstance(token, (bytes, bytearray)):
        token = bytes(token).decode(errors="replace")
    if not isinstance(token, str) or not token.strip():
        return None, None, "unauthenticated: no machine token (text) in the authorization header"
    token = token.strip()
    if token.lower().startswith("bearer "):
        token = token[7:].strip()
    if len(token) > 256:
        return None, None, "unauthenticated: the authorization header is longer than 256 characters"
    try:
        body = orjson.loads(delivery.body)
    except orjson.JSONDecodeError as exc:
        return None, None, f"malformed_json: {exc}"
    if not isinstance(body, dict):
        return None, None, "malformed_json: not an object"
    # nothing walks the body recursively before the schema bounds the inventory's extent
    if NUL_ESCAPE in delivery.body and next(paths_with_nul(body), None) is not None:
        return None, None, "invalid: NUL character in the body"
    try:
        heartbeat = contract.load_heartbeat(body)
    except ValidationError as exc:
        return None, None, f"invalid: {orjson.dumps(exc.messages).decode()[:500]}"
    return heartbeat, hash_token(token), None


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
        return deadline.call(self.accounts, "accounts", method, *args, timeout=ACCOUNTS_TIMEOUT_SECONDS)

    # registration and tokens --------------------------------------------------------------

    @rpc
    def register(self, payload: dict) -> dict:
        """Enrol a machine with its company's provisioning code; the same hardware in the
        same company (a serial or physical MAC in common) gets its old record back."""
        data = load(contract.Registration, payload)
        found = domain.identifiers(data["mac_addresses"], data["serial_numbers"])
        if not found:
            raise ValidationFailed("send at least one real MAC address or serial number",
                                   details={"fields": {"mac_addresses": ["no physical MAC"],
                                                       "serial_numbers": ["no real serial"]}})
        company = self._accounts("enrolment", data["provisioning_code"], data["collaborator"]["email"],
                                 data["collaborator"]["name"])
        tenant_id, company_id = uuid.UUID(company["tenant_id"]), uuid.UUID(company["company_id"])
        collaborator = company["collaborator"]
        now = utcnow()
        with self.db.unit_of_work() as uow:
            machine = uow.repo.machine_matching(company_id, found)
            reused = machine is not None
            if machine is None:
                machine_user = self._accounts("create_machine_user", str(tenant_id), str(company_id),
                                              data["hostname"])
                # described before its INSERT: one statement, no UPDATE after it
                machine = Machine(tenant_id=tenant_id, company_id=company_id,
                                  machine_user_id=uuid.UUID(machine_user["id"]), created_at=now)
                self._describe(machine, data, collaborator, now)
                uow.repo.add(machine)
                uow.session.add(HeartbeatState(machine_id=machine.id, heartbeats=0, need_inventory=True,
                                               reported_online=False, open_alert_kinds="", agg_samples=0,
                                               agg_cpu_sum=0.0, agg_memory_sum=0.0))
            else:
                uow.repo.revoke_tokens(machine.id, now)
                self._describe(machine, data, collaborator, now)
            uow.repo.replace_identifiers(machine, found, new_machine=not reused)
            token, token_hash = new_secret_token()
            issued = uow.repo.add(MachineToken(machine_id=machine.id, token_hash=token_hash,
                                               created_at=now, expires_at=now + timedelta(days=self.db.settings.machine_token_ttl_days)))
            uow.emit("machine_registered", {"tenant_id": tenant_id, "machine_id": machine.id,
                                            "company_id": company_id, "hostname": machine.hostname,
                                            "reused": reused})
            uow.commit()
            held = uow.session.get(HeartbeatState, machine.id).inventory_hash if reused else None
            return contract.Enrolment().dump({"machine_id": machine.id, "token": token,
                                              "expires_at": issued.expires_at, "reused": reused,
                                              "inventory_hash": held,
                                              "amqp_uri": self.db.settings.agent_amqp_uri})

    @classmethod
    def _describe(cls, machine: Machine, data: dict, collaborator: dict, now) -> None:
        """What a registration says about the machine: name, OS, persona, its person."""
        os_data = data["os"]
        machine.hostname = data["hostname"]
        machine.os_name, machine.os_version = os_data["name"], os_data["version"]
        machine.os_build, machine.os_arch = os_data["build"], os_data["arch"]
        machine.persona = data["access_role"]
        machine.usb_policy_supported = "usb_policy" in data["capabilities"]
        cls._assign(machine, collaborator)
        machine.updated_at = now

    @staticmethod
    def _assign(machine: Machine, user: dict) -> None:
        """`user` as accounts answered; the same person's newer name, from an event applied
        meanwhile, stays."""
        user_id, version = uuid.UUID(user["id"]), domain.SnapshotVersion.of(user.get("version"))
        if machine.assigned_user_id == user_id and not version.applies_over(machine.assigned_user_version):
            return
        machine.assigned_user_id, machine.assigned_user_version = user_id, version.stored
        machine.assigned_user_email, machine.assigned_user_name = user["email"], user["name"]

    @rpc
    @once
    def reset_agent(self, actor: dict, machine_id: str) -> dict:
        """Every token of the machine stops working at once; the agent must re-register."""
        actor = Actor(actor)
        with self.db.unit_of_work() as uow:
            machine = self._machine(uow, actor, machine_id)
            revoked = uow.repo.revoke_tokens(machine.id, utcnow())
            uow.commit()
            return {"machine_id": str(machine.id), "revoked_tokens": revoked}

    @rpc
    def heartbeat_hint(self, token: str, inventory_hash: str | None = None, carries_inventory: bool = False) -> dict:
        """For the HTTP heartbeat route: whose token this is (or `invalid_token`), whether to
        ask the agent for its full inventory (from its heartbeat's `inventory_hash` and whether
        it carries the inventory), and any USB policy waiting."""
        hint = None
        if isinstance(token, str):
            with self.db.unit_of_work() as uow:
                hint = uow.repo.token_hint(hash_token(token))
        if hint is None or hint.revoked_at is not None or hint.expires_at <= utcnow():
            raise Unauthorized("unknown, revoked or expired machine token", code="invalid_token")
        return {"machine_id": str(hint.machine_id), "registered_at": hint.registered_at.isoformat(),
                "need_inventory": domain.needs_inventory(hint.inventory_hash, inventory_hash, carries_inventory),
                "usb_policy": hint.usb_mode if hint.usb_status == "PENDING" else None}

    # heartbeats ----------------------------------------------------------------------------

    @batch_consumer(HEARTBEAT_EXCHANGE, HEARTBEAT_QUEUE, batch_size=500, max_wait=0.2,
                    transient=(OperationalError, InterfaceError),
                    on_parked=lambda reason: HEARTBEATS.labels("dead_lettered").inc())
    def consume_heartbeats(self, deliveries) -> dict:
        """One transaction for the whole batch; see storage.py for what each one writes.

        Every heartbeat is counted once, whatever the number of consumers and the order in
        which their batches commit: the machine's row is locked for the batch, a copy is
        recognised by its sent_at among the machine's recent ones, and one older than the
        machine's current state still counts (its metrics go to the hour it was measured)
        without rolling that state back."""
        now = utcnow()
        verdicts: dict[int, Verdict] = {}
        parsed = []
        for delivery in deliveries:
            heartbeat, token_hash, reason = parse_heartbeat(delivery)
            if reason:
                verdicts[delivery.index] = Verdict(dead_letter=reason)
            else:
                parsed.append((delivery, heartbeat, token_hash))
        outcomes = dict.fromkeys(("accepted", "late", "duplicate"), 0)
        refusals: list[tuple[str, str | None]] = []
        with self.db.unit_of_work() as uow:
            tokens = uow.repo.tokens_by_hash({token_hash for _, _, token_hash in parsed})
            accepted = []
            for delivery, heartbeat, token_hash in parsed:
                issued = tokens.get(token_hash)
                refused = ("unknown token" if issued is None else "token revoked" if issued.revoked_at
                           else "token expired" if issued.expires_at <= now else None)
                implausible = None if refused else contract.registration_problem(
                    heartbeat["sent_at"], issued.machine_created_at)
                if implausible:  # a broken clock: nothing the machine measured can predate it
                    verdicts[delivery.index] = Verdict(dead_letter=f"invalid: {implausible}")
                elif refused:  # expected traffic (a reset or re-enrolled agent), not a dead
                    # letter: acked and dropped, counted; an agent waiting for an answer is told
                    refusals.append((refused, delivery.message_id))
                    verdicts[delivery.index] = Verdict(
                        reply={"need_inventory": False, "usb_policy": None, "error": "invalid_token",
                               "message": refused})
                else:
                    accepted.append((delivery, heartbeat, issued.machine_id))
            machine_ids = {machine_id for _, _, machine_id in accepted}
            states = uow.repo.states_for_update(machine_ids)
            policies = {p.machine_id: p for p in uow.session.scalars(
                select(UsbPolicy).where(UsbPolicy.machine_id.in_(sorted(machine_ids))))} if machine_ids else {}
            # loaded up front in one query: a lookup per changed inventory would flush the
            # batch's pending updates each time (autoflush)
            inventories = uow.repo.inventories({machine_id for _, heartbeat, machine_id in accepted
                                                if heartbeat.get("inventory") is not None})
            recent = {machine_id: domain.RecentHeartbeats(states[machine_id].recent_sent)
                      for machine_id in machine_ids}
            history = HistoryBatch()  # ended hours and inventory changes, written once below
            software: dict = {}  # the packages of machines whose inventory changed, indexed below
            came_online = []
            for delivery, heartbeat, machine_id in sorted(accepted, key=lambda a: a[1]["sent_at"]):
                state, policy = states[machine_id], policies.get(machine_id)
                role = domain.heartbeat_role(heartbeat["sent_at"], state.last_sent_at, recent[machine_id])
                if role != domain.DUPLICATE:  # a redelivery or a re-sent copy changes nothing
                    recent[machine_id].add(heartbeat["sent_at"], now)
                    self._count_heartbeat(history, state, heartbeat, now)
                    if role == domain.APPLY:
                        self._apply_heartbeat(uow, history, software, state, policy, inventories,
                                              heartbeat, delivery, now)
                    if not state.reported_online:
                        state.reported_online = True
                        came_online.append(machine_id)
                outcomes["accepted" if role == domain.APPLY else role] += 1
                verdicts[delivery.index] = Verdict(reply=self._answer(state, policy))
            for machine_id, moments in recent.items():
                states[machine_id].recent_sent = moments.packed()
            uow.repo.save_states(states.values())
            uow.repo.write_history(history)
            uow.repo.write_software(software)
            for machine in uow.repo.machines(came_online).values():
                uow.emit("machine_online", {"tenant_id": machine.tenant_id, "machine_id": machine.id,
                                            "company_id": machine.company_id})
            uow.commit()
        for outcome, count in outcomes.items():
            if count:
                HEARTBEATS.labels(outcome).inc(count)
        for refused, message_id in refusals:  # after the commit: a retried batch counts once
            HEARTBEATS_REFUSED.labels(refused.replace(" ", "_")).inc()
            log.info("heartbeat refused (%s), dropped; message_id %s", refused, message_id)
        return verdicts

    @staticmethod
    def _answer(state: StateRow, policy: UsbPolicy | None) -> dict:
        return {"need_inventory": state.need_inventory,
                "usb_policy": policy.mode if policy and policy.status == "PENDING" else None}

    def _count_heartbeat(self, history: HistoryBatch, state: StateRow, heartbeat: dict,
                         now: datetime) -> None:
        """What every heartbeat of a machine does, late or not: it is counted, shows the
        machine alive now, and its metrics fold into the hour the agent measured them in
        (a replayed heartbeat belongs to its own hour, never in the future whatever the
        agent's clock says)."""
        state.heartbeats += 1
        state.last_seen_at = max(now, state.last_seen_at) if state.last_seen_at else now
        metrics = heartbeat["metrics"]
        measured_at = min(heartbeat["sent_at"], now)
        if state.agg_hour is not None and domain.hour_of(measured_at) < state.agg_hour:
            self._fold_ended_hour(history, state, domain.hour_of(measured_at), domain.one_sample(metrics))
        else:
            self._fold_metrics(history, state, metrics, measured_at)

    def _apply_heartbeat(self, uow, history: HistoryBatch, software: dict, state: StateRow,
                         policy: UsbPolicy | None, inventories: dict, heartbeat: dict, delivery,
                         now: datetime) -> None:
        """The machine's newest heartbeat: it becomes the machine's current state."""
        metrics = heartbeat["metrics"]
        state.last_sent_at = heartbeat["sent_at"]
        state.last_message_id = delivery.message_id
        state.last_metrics = orjson.dumps(metrics).decode()
        self._apply_inventory(uow, history, software, state, inventories, heartbeat, now)
        self._apply_alerts(uow, state, domain.posture_alerts(metrics), now)
        ack = heartbeat.get("usb_policy_ack")
        if policy is not None and ack and policy.status != "APPLIED" and ack["mode"] == policy.mode:
            policy.status, policy.applied_at = "APPLIED", now
            self._apply_alerts(uow, state, {}, now, kinds=(domain.USB_POLICY_STALE,))

    @staticmethod
    def _fold_metrics(history: HistoryBatch, state: StateRow, metrics: dict, measured_at: datetime) -> None:
        hour = domain.hour_of(measured_at)
        if state.agg_hour != hour:
            if ended := open_hour(state):
                Service._fold_ended_hour(history, state, state.agg_hour, ended)
            if state.agg_hour is not None and day_of(hour) != day_of(state.agg_hour) and state.day_metrics:
                # the day is over: its hours go to its day row, once
                history.add_hours(state.machine_id, day_of(state.agg_hour), unpack_metrics(state.day_metrics))
                state.day_metrics = None
            state.agg_hour, state.agg_samples = hour, 0
            state.agg_cpu_sum = state.agg_memory_sum = 0.0
            state.agg_cpu_max = state.agg_memory_max = state.agg_disk_max = None
        state.agg_samples += 1
        cpu, memory = metrics.get("cpu_percent"), metrics.get("memory_percent")
        disk = domain.fullest_disk(metrics)
        if cpu is not None:
            state.agg_cpu_sum += cpu
            state.agg_cpu_max = max(cpu, state.agg_cpu_max or 0.0)
        if memory is not None:
            state.agg_memory_sum += memory
            state.agg_memory_max = max(memory, state.agg_memory_max or 0.0)
        if disk is not None:
            state.agg_disk_max = max(disk, state.agg_disk_max or 0.0)

    @staticmethod
    def _fold_ended_hour(history: HistoryBatch, state: StateRow, hour: datetime, metrics: HourMetrics) -> None:
        """An hour before the current one: into the state row's day while it is the
        current hour's day, else into its own day row."""
        slot = {hour.astimezone(timezone.utc).hour: metrics}
        if state.agg_hour is not None and day_of(hour) == day_of(state.agg_hour):
            state.day_metrics = pack_metrics(fold_hours(unpack_metrics(state.day_metrics), slot))
        else:
            history.add_hours(state.machine_id, day_of(hour), slot)

    @staticmethod
    def _apply_inventory(uow, history: HistoryBatch, software: dict, state: StateRow, inventories: dict,
                         heartbeat: dict, now: datetime) -> None:
        """Canonicalised once; the stored document is already canonical, so a change is
        diffed by flattening each side once; a first inventory is its own record."""
        inventory = heartbeat.get("inventory")
        document, encoded, computed = canonical_form(inventory) if inventory is not None else (None, None, None)
        decision = domain.decide_inventory(state.inventory_hash, heartbeat.get("inventory_hash"), computed)
        state.need_inventory = decision.need_inventory
        if inventory is not None:
            INVENTORY_VERSIONS.labels("written" if decision.new_hash else "skipped").inc()
        if decision.new_hash is None:
            return
        current = inventories.get(state.machine_id)
        if current is None:  # the first inventory: the document is the record, not its paths
            version, changes = 1, {}
        else:
            version, changes = current.version + 1, diff_canonical(orjson.loads(current.document), document)
        # dated when the agent saw it (a replayed spool keeps its days), never in the future
        history.add_change(state.machine_id, ChangeRecord(version, min(heartbeat["sent_at"], now), changes))
        software[state.machine_id] = packages(document)
        encoded = encoded.decode()
        if current is None:
            inventories[state.machine_id] = Inventory(machine_id=state.machine_id, hash=decision.new_hash,
                                                      document=encoded, updated_at=now, version=version)
            uow.session.add(inventories[state.machine_id])
        else:
            current.hash, current.document, current.updated_at, current.version = \
                decision.new_hash, encoded, now, version
        state.inventory_hash = decision.new_hash

    @staticmethod
    def _apply_alerts(uow, state: HeartbeatState | StateRow, holding: dict, now: datetime,
                      kinds=domain.METRIC_ALERTS) -> None:
        """Open the alerts that now hold, close those that cleared; the alerts table is only
        touched when something changes (the state row remembers what is open)."""
        open_kinds = set(filter(None, state.open_alert_kinds.split(",")))
        for kind in kinds:
            if kind in holding and kind not in open_kinds:
                uow.session.add(Alert(machine_id=state.machine_id, kind=kind, opened_at=now,
                                      details=orjson.dumps(holding[kind]).decode()))
                open_kinds.add(kind)
            elif kind not in holding and kind in open_kinds:
                uow.session.execute(update(Alert).where(
                    Alert.machine_id == state.machine_id, Alert.kind == kind,
                    Alert.closed_at.is_(None)).values(closed_at=now))
                open_kinds.discard(kind)
        state.open_alert_kinds = ",".join(sorted(open_kinds))

    # status sweeps (the scheduler calls these) ------------------------------------------

    @rpc
    def mark_offline(self, now: str | None = None) -> dict:
        """Machines silent past the stale threshold become offline (`machine_offline`);
        nothing is written when no machine changed."""
        now = datetime.fromisoformat(now) if now else utcnow()
        with self.db.unit_of_work() as uow:
            states = list(uow.session.scalars(select(HeartbeatState).where(
                HeartbeatState.reported_online.is_(True),
                HeartbeatState.last_seen_at <= now - self.thresholds.stale).with_for_update(skip_locked=True)))
            machines = uow.repo.machines({s.machine_id for s in states})
            for state in states:
                state.reported_online = False
                machine = machines[state.machine_id]
                uow.emit("machine_offline", {"tenant_id": machine.tenant_id, "machine_id": machine.id,
                                             "company_id": machine.company_id})
            if states:
                uow.commit()
            return {"marked_offline": len(states)}

    @rpc
    def expire_stale_usb_policies(self, now: str | None = None) -> dict:
        """Pending USB policies not acknowledged within the TTL become STALE, with an alert."""
        now = datetime.fromisoformat(now) if now else utcnow()
        with self.db.unit_of_work() as uow:
            stale = list(uow.session.scalars(select(UsbPolicy).where(
                UsbPolicy.status == "PENDING",
                UsbPolicy.requested_at <= now - timedelta(minutes=self.db.settings.usb_policy_ttl_minutes))))
            for policy in stale:
                policy.status = "STALE"
                state = uow.session.get(HeartbeatState, policy.machine_id)
                self._apply_alerts(uow, state, {domain.USB_POLICY_STALE: {"mode": policy.mode}}, now,
                                   kinds=(domain.USB_POLICY_STALE,))
            if stale:
                uow.commit()
            return {"marked_stale": len(stale)}

    @rpc
    def apply_retention(self, now: str | None = None, dry_run: bool = False,
                        tenant_id: str | None = None) -> dict:
        """Hourly metrics go after 90 days (a whole day at a time: a day's hours are one
        value), closed alerts after 180; machines, their current inventory and its change
        history stay (a day row with changes loses only its metrics). With `tenant_id` (a
        dry run only), that tenant's machines alone."""
        now, tenant = retention_scope(now, dry_run, tenant_id)
        days, alerts = MachineDay.__table__, Alert.__table__
        metrics_past = [days.c.day < day_of(now - METRICS_RETENTION), days.c.metrics.is_not(None)]
        alerts_past = [alerts.c.closed_at < now - ALERT_RETENTION, alerts.c.closed_at.is_not(None)]
        if tenant is not None:
            of_tenant = select(Machine.id).where(Machine.tenant_id == tenant)
            metrics_past.append(days.c.machine_id.in_(of_tenant))
            alerts_past.append(alerts.c.machine_id.in_(of_tenant))
        kinds = {}
        with self.db.unit_of_work() as uow:
            count, oldest = uow.session.execute(
                select(func.count(), func.min(days.c.day)).where(*metrics_past)).one()
            if count and not dry_run:
                uow.session.execute(update(days).where(*metrics_past).values(metrics=None))
                uow.session.execute(delete(days).where(days.c.metrics.is_(None), days.c.changes.is_(None)))
            kinds["metrics_hourly"] = {"past_policy": count, "deleted": 0 if dry_run else count,
                                       "oldest": day_start(oldest).isoformat() if oldest else None}
            count, oldest = uow.session.execute(
                select(func.count(), func.min(alerts.c.closed_at)).where(*alerts_past)).one()
            if count and not dry_run:
                uow.session.execute(delete(alerts).where(*alerts_past))
            kinds["alerts"] = {"past_policy": count, "deleted": 0 if dry_run else count,
                               "oldest": oldest.isoformat() if oldest else None}
            if not dry_run and any(k["past_policy"] for k in kinds.values()):
                uow.commit()
        return {"dry_run": dry_run, "kinds": kinds}

    @rpc
    def health_buckets(self, tenant_id: str | None = None) -> dict:
        """Machines by time since their last heartbeat, of one tenant or of all, in buckets
        whose edges are the status thresholds (given along, in seconds)."""
        now, thresholds = utcnow(), self.thresholds
        with self.db.unit_of_work() as uow:
            query = select(HeartbeatState.last_seen_at).join(Machine, Machine.id == HeartbeatState.machine_id)
            if tenant_id:
                query = query.where(Machine.tenant_id == parse_id(tenant_id, "tenant"))
            buckets = dict.fromkeys(domain.HEALTH_BUCKETS, 0)
            for (seen,) in uow.session.execute(query):
                buckets[domain.health_bucket(seen, now, thresholds)] += 1
        return {"machines": sum(buckets.values()), "buckets": buckets,
                "thresholds": {"online_seconds": int(thresholds.online.total_seconds()),
                               "stale_seconds": int(thresholds.stale.total_seconds())}}

    @rpc
    def machines_last_seen(self, machine_ids: list) -> dict:
        """{machine id: last heartbeat (ISO) or None} for the ids that exist (tickets' chat
        cleanup asks)."""
        ids = {parse_id(m, "machine") for m in machine_ids or []}
        with self.db.unit_of_work() as uow:
            rows = uow.session.execute(select(HeartbeatState.machine_id, HeartbeatState.last_seen_at)
                                       .where(HeartbeatState.machine_id.in_(sorted(ids)))).all() if ids else []
            return {str(m): seen.isoformat() if seen else None for m, seen in rows}

    @rpc
    def machine_in_tenant(self, tenant_id: str, machine_id: str, user_id: str | None = None) -> bool:
        """Whether this machine exists in this tenant (tickets checks a ticket's machine_id:
        another tenant's machine must not drive its chat) and, given a user, is assigned to
        or linked with them (a collaborator's ticket names only one of their own machines)."""
        try:
            tenant, machine = parse_id(tenant_id, "tenant"), parse_id(machine_id, "machine")
            user = parse_id(user_id, "user") if user_id is not None else None
        except NotFound:
            return False
        with self.db.unit_of_work(read_only=True) as uow:
            found = uow.repo.machine(tenant, machine)
            return found is not None and (user is None or uow.repo.is_users_machine(found, user))

    # admin -----------------------------------------------------------------------------

    @rpc
    def list_machines(self, actor: dict, query: dict) -> dict:
        actor = Actor(actor)
        filters = load(contract.MachineQuery, query)
        after = decode_cursor(filters["cursor"], text_value, uuid_value)
        now = utcnow()
        with self.db.unit_of_work() as uow:
            rows = uow.session.execute(uow.repo.list_query(actor.tenant_id, filters, now, self.thresholds,
                                                           after, filters["limit"] + 1)).all()
            page, more = rows[:filters["limit"]], len(rows) > filters["limit"]
            cursor = encode_cursor([page[-1][0].hostname, str(page[-1][0].id)]) if more else None
            return {"items": [self._summary(machine, seen, now, self.thresholds) for machine, seen in page],
                    "next_cursor": cursor}

    @staticmethod
    def _summary(machine: Machine, last_seen_at, now, thresholds) -> dict:
        return contract.MachineSummary().dump({
            "id": machine.id, "company_id": machine.company_id, "hostname": machine.hostname,
            "os_label": domain.os_label(machine.os_name, machine.os_version, machine.os_build),
            "status": domain.machine_status(last_seen_at, now, thresholds),
            "last_seen_at": last_seen_at,
            "assigned_user": user_ref(machine.assigned_user_id, machine.assigned_user_email,
                                      machine.assigned_user_name)})

    @rpc
    def get_machine(self, actor: dict, machine_id: str) -> dict:
        actor = Actor(actor)
        with self.db.unit_of_work() as uow:
            return self._detail(uow, self._machine(uow, actor, machine_id))

    def _detail(self, uow, machine: Machine) -> dict:
        now = utcnow()
        state = uow.session.get(HeartbeatState, machine.id)
        policy = uow.session.get(UsbPolicy, machine.id)
        seen = state.last_seen_at if state else None
        thresholds = self.thresholds
        view = self._summary(machine, seen, now, thresholds)  # status and bucket: one `now`
        view.update(contract.Machine(only=(
            "os", "persona", "machine_user_id", "linked_users", "health_bucket", "last_metrics",
            "inventory_hash", "open_alerts", "usb_policy", "usb_policy_supported", "created_at")).dump({
                "os": {"name": machine.os_name, "version": machine.os_version,
                       "build": machine.os_build, "arch": machine.os_arch},
                "persona": machine.persona, "machine_user_id": machine.machine_user_id,
                "linked_users": [user_ref(l.user_id, l.user_email, l.user_name)
                                 for l in uow.repo.links(machine.id)],
                "health_bucket": domain.health_bucket(seen, now, thresholds),
                "last_metrics": orjson.loads(state.last_metrics) if state and state.last_metrics else None,
                "inventory_hash": state.inventory_hash if state else None,
                "open_alerts": [{"id": a.id, "kind": a.kind, "opened_at": a.opened_at,
                                 "details": orjson.loads(a.details)} for a in uow.repo.open_alerts(machine.id)],
                "usb_policy": policy, "usb_policy_supported": machine.usb_policy_supported,
                "created_at": machine.created_at}))
        return view

    @rpc
    def user_machines(self, actor: dict, user_id: str) -> dict:
        """The machines a user is assigned to or linked with (Admin ▸ Usuários). The gateway
        has already found the user; an id nobody holds simply has no machines."""
        actor = Actor(actor)
        user = parse_id(user_id, "user")
        now = utcnow()
        linked = select(MachineLink.machine_id).where(MachineLink.user_id == user)
        with self.db.unit_of_work() as uow:
            rows = uow.session.execute(
                select(Machine, HeartbeatState.last_seen_at)
                .join(HeartbeatState, HeartbeatState.machine_id == Machine.id, isouter=True)
                .where(Machine.tenant_id == actor.tenant_id,
                       or_(Machine.assigned_user_id == user, Machine.id.in_(linked)))
                .order_by(Machine.hostname, Machine.id).limit(contract.USER_MACHINES_MAX)).all()
            return {"items": [{**self._summary(machine, seen, now, self.thresholds),
                               "relation": "assigned" if machine.assigned_user_id == user else "linked"}
                              for machine, seen in rows]}

    @rpc
    def inventory_changes(self, actor: dict, machine_id: str, query: dict) -> dict:
        """The machine's inventory change records, newest first, a page at a time: what was
        added, removed (with its old value) and changed (old and new) at each version."""
        actor = Actor(actor)
        data = load(contract.InventoryChangesQuery, query)
        before = decode_cursor(data["cursor"], day_value, int)
        limit = data["limit"]
        with self.db.unit_of_work(read_only=True) as uow:
            machine = self._machine(uow, actor, machine_id)
            page, more = newest_changes(uow.repo.change_days(machine.id, until=before[0] if before else None,
                                                             limit=limit + 2), before, limit)
            cursor = encode_cursor([day_of(page[-1].changed_at).isoformat(), page[-1].version]) if more else None
            return {"items": [contract.InventoryChange().dump({
                "version": record.version, "changed_at": record.changed_at, "initial": record.initial,
                "changes": {kind: record.changes.get(kind, {}) for kind in ("added", "removed", "changed")}})
                for record in page], "next_cursor": cursor}

    @rpc
    def current_inventory(self, actor: dict, machine_id: str) -> dict:
        """The machine's inventory as stored (canonical), its hash and when it last changed."""
        actor = Actor(actor)
        with self.db.unit_of_work() as uow:
            machine = self._machine(uow, actor, machine_id)
            stored = uow.session.get(Inventory, machine.id)
            return contract.CurrentInventory().dump({
                "hash": stored.hash if stored else None, "version": stored.version if stored else None,
                "updated_at": stored.updated_at if stored else None,
                "document": orjson.loads(stored.document) if stored else None})

    @rpc
    def search_software(self, actor: dict, query: dict) -> dict:
        """Which of the tenant's machines have a package, at which versions — "which PCs still
        have firefox older than 128": from the software index kept on every inventory change,
        never by reading inventories."""
        actor = Actor(actor)
        data = load(contract.SoftwareQuery, query)
        after = decode_cursor(data["cursor"], text_value, uuid_value)
        older_than = version_key(data["version_lt"]) if data["version_lt"] else None
        with self.db.unit_of_work(read_only=True) as uow:
            versions = uow.repo.software_versions(data["name"], data["version"], older_than)
            newest = sorted(versions, key=lambda held: version_key(versions[held]), reverse=True)
            counts = uow.repo.software_counts(actor.tenant_id, data["company_id"],
                                              newest[:contract.SOFTWARE_VERSIONS_COUNTED]) \
                if versions and after is None else {}
            rows = uow.repo.software_holders(actor.tenant_id, data["company_id"], list(versions), after,
                                             data["limit"] + 1) if versions else []
        page, more = rows[:data["limit"]], len(rows) > data["limit"]
        return contract.SoftwareSearch().dump({
            "name": data["name"],
            # counted on the first page only: the next pages are the same search
            "versions": [{"version": versions[held], "machines": counts[held]} for held in newest if held in counts],
            "items": [{"machine_id": machine_id, "hostname": hostname, "company_id": company_id,
                       "version": versions[held]} for machine_id, hostname, company_id, held in page],
            "next_cursor": encode_cursor([page[-1][1], str(page[-1][0])]) if more else None})

    @rpc
    def machine_metrics(self, actor: dict, machine_id: str, query: dict) -> dict:
        """Hourly CPU, memory and fullest disk for the last `hours` hours, oldest first: the
        ended days from the machine's day rows, the current day's ended hours and the current
        hour so far from the state row (no hour is in two places: the state row hands a day
        over only when it moves on to a later one)."""
        actor = Actor(actor)
        hours = load(contract.MetricsQuery, query)["hours"]
        since = domain.hour_of(utcnow()) - timedelta(hours=hours - 1)
        with self.db.unit_of_work(read_only=True) as uow:
            machine = self._machine(uow, actor, machine_id)
            found: dict[datetime, HourMetrics] = {}  # one hour in two places only around an upgrade
            for day, packed in uow.repo.metric_days(machine.id, since=day_of(since)):
                fold_hours(found, hour_starts(day, packed))
            state = uow.session.get(HeartbeatState, machine.id)
            if state is not None and state.agg_hour is not None:  # its day so far, and its hour
                fold_hours(found, hour_starts(day_of(state.agg_hour), state.day_metrics))
                if current := open_hour(state):
                    fold_hours(found, {state.agg_hour: current})
            items = [{"hour": hour, **asdict(found[hour])} for hour in sorted(found) if hour >= since]
            return contract.MachineMetrics().dump({"hours": hours, "since": since, "items": items})

    @rpc
    @once
    def adjust_access(self, actor: dict, machine_id: str, payload: dict) -> dict:
        actor = Actor(actor)
        data = load(contract.Access, payload)
        with self.db.unit_of_work() as uow:
            machine = self._machine(uow, actor, machine_id)
            user = self._accounts("ensure_person", str(machine.tenant_id), data["email"], data["name"],
                                  str(machine.company_id))
            self._assign(machine, user)
            machine.persona, machine.updated_at = data["persona"], utcnow()
            uow.session.query(MachineLink).filter(MachineLink.machine_id == machine.id,
                                                  MachineLink.user_id == machine.assigned_user_id).delete()
            uow.commit()
            return self._detail(uow, machine)

    @rpc
    @once
    def set_usb_policy(self, actor: dict, machine_id: str, payload: dict) -> dict:
        actor = Actor(actor)
        data = load(contract.UsbPolicyRequest, payload)
        now = utcnow()
        with self.db.unit_of_work() as uow:
            machine = self._machine(uow, actor, machine_id)
            if not machine.usb_policy_supported:  # it would only wait, then go STALE with an alert
                raise Conflict("this machine's agent does not apply USB policies (it did not say it "
                               "does when it registered)", code="usb_policy_unsupported")
            policy = uow.session.get(UsbPolicy, machine.id) or uow.repo.add(
                UsbPolicy(machine_id=machine.id, mode=data["mode"], status="PENDING", requested_at=now))
            policy.mode, policy.status, policy.requested_at = data["mode"], "PENDING", now
            policy.requested_by, policy.applied_at = actor.user_id, None
            uow.commit()
            return contract.UsbPolicy().dump(policy)

    @rpc
    @once
    def add_link(self, actor: dict, payload: dict) -> dict:
        actor = Actor(actor)
        data = load(contract.LinkCreate, payload)
        with self.db.unit_of_work() as uow:
            machine = self._machine(uow, actor, data["machine_id"])
            # a link is to someone who already exists: an unknown email is refused, not a new
            # person (the machine's own user is made by registration or `access`)
            user = self._accounts("find_person", str(machine.tenant_id), data["email"])
            if uuid.UUID(user["id"]) == machine.assigned_user_id:
                raise Conflict("the assigned user is not a link", code="already_assigned")
            if uow.session.get(MachineLink, (machine.id, uuid.UUID(user["id"]))) is None:
                uow.repo.add(MachineLink(machine_id=machine.id, user_id=uuid.UUID(user["id"]),
                                         user_email=user["email"], user_name=user["name"],
                                         user_version=domain.SnapshotVersion.of(user.get("version")).stored))
            uow.commit()
            return self._detail(uow, machine)

    @rpc
    @once
    def remove_link(self, actor: dict, query: dict) -> dict:
        actor = Actor(actor)
        data = load(contract.LinkQuery, query)
        with self.db.unit_of_work() as uow:
            machine = self._machine(uow, actor, data["machine_id"])
            link = uow.session.get(MachineLink, (machine.id, data["user_id"]))
            if link is None:
                raise NotFound("no such link", code="link_not_found")
            uow.session.delete(link)
            uow.commit()
            return self._detail(uow, machine)

    def _machine(self, uow, actor: Actor, machine_id) -> Machine:
        machine = uow.repo.machine(actor.tenant_id, parse_id(machine_id, "machine"))
        if machine is None:
            raise NotFound("machine not found", code="machine_not_found")
        return machine

    # accounts' events ----------------------------------------------------------------

    @subscribe("accounts", "user_updated")
    def on_user_updated(self, event: dict) -> None:
        with self.db.unit_of_work() as uow:
            if first_delivery(uow, storage.inbox, event, "user_updated"):
                user_id = uuid.UUID(event["user_id"])
                version = domain.SnapshotVersion.of(event.get("version"))
                # WHERE version < :new: an older change arriving late (a retry after an
                # outage) leaves the newer name it finds (issue 26)
                uow.session.execute(update(Machine).where(
                    Machine.assigned_user_id == user_id,
                    Machine.assigned_user_version < version.applies_below).values(
                    assigned_user_email=event["email"], assigned_user_name=event["name"],
                    assigned_user_version=version.stored))
                uow.session.execute(update(MachineLink).where(
                    MachineLink.user_id == user_id, MachineLink.user_version < version.applies_below).values(
                    user_email=event["email"], user_name=event["name"], user_version=version.stored))
                uow.commit()

    @subscribe("accounts", "user_merged")
    def on_user_merged(self, event: dict) -> None:
        """The merged account's machines and links now belong to the account it joined."""
        with self.db.unit_of_work() as uow:
            if not first_delivery(uow, storage.inbox, event, "user_merged"):
                return
            old_id, new_id = uuid.UUID(event["from_user_id"]), uuid.UUID(event["into_user_id"])
            into = self._accounts("lookup_user", event["tenant_id"], str(new_id))
            into_version = domain.SnapshotVersion.of(into.get("version")).stored
            uow.session.execute(update(Machine).where(Machine.assigned_user_id == old_id).values(
                assigned_user_id=new_id, assigned_user_email=into["email"], assigned_user_name=into["name"],
                assigned_user_version=into_version))
            for link in uow.session.scalars(select(MachineLink).where(MachineLink.user_id == old_id)).all():
                if uow.session.get(MachineLink, (link.machine_id, new_id)) is None:
                    uow.session.add(MachineLink(machine_id=link.machine_id, user_id=new_id,
                                                user_email=into["email"], user_name=into["name"],
                                                user_version=into_version,
                                                created_at=link.created_at))
                uow.session.delete(link)
            uow.commit()

