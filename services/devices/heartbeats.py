"""Heartbeats: a batch from the queue in one unit of work (parsed, tokens checked, folded
into the machines' state by heartbeat_state.py, written in a few statements), and the token
hint the HTTP heartbeat route asks for."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import orjson
from marshmallow import ValidationError

from common.contracts import devices as contract
from common.contracts import paths_with_nul
from common.deliveries import Verdict
from common.errors import Unauthorized
from common.tokens import hash_token
from common.unit_of_work import UnitOfWorkSource
from services.devices import domain
from services.devices.heartbeat_state import BatchChanges, answer, fold_heartbeat

NUL_ESCAPE = b"\\u0000"  # JSON can carry NUL only escaped
OUTCOMES = ("accepted", "late", "duplicate")  # accepted: applied as the machine's newest


@dataclass
class BatchResult:
    """A committed batch: each delivery's verdict, and what to count once it committed."""

    verdicts: dict[int, Verdict]
    outcomes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    refusals: list[tuple[str, str | None]] = field(default_factory=list)  # (why, message_id)
    inventories_written: int = 0
    inventories_skipped: int = 0


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


def consume(store: UnitOfWorkSource, deliveries, now: datetime) -> BatchResult:
    """One transaction for the whole batch; see repository.py for what each one writes.

    Every heartbeat is counted once, whatever the number of consumers and the order in
    which their batches commit: the machine's row is locked for the batch, a copy is
    recognised by its sent_at among the machine's recent ones, and one older than the
    machine's current state still counts (its metrics go to the hour it was measured)
    without rolling that state back."""
    result = BatchResult({})
    verdicts, outcomes = result.verdicts, result.outcomes
    parsed = []
    for delivery in deliveries:
        heartbeat, token_hash, reason = parse_heartbeat(delivery)
        if reason:
            verdicts[delivery.index] = Verdict(dead_letter=reason)
        else:
            parsed.append((delivery, heartbeat, token_hash))
    with store.unit_of_work() as uow:
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
                result.refusals.append((refused, delivery.message_id))
                verdicts[delivery.index] = Verdict(
                    reply={"need_inventory": False, "usb_policy": None, "error": "invalid_token",
                           "message": refused})
            else:
                accepted.append((delivery, heartbeat, issued.machine_id))
        machine_ids = {machine_id for _, _, machine_id in accepted}
        states = uow.repo.states_for_update(machine_ids)
        policies = uow.repo.usb_policies(machine_ids)
        # loaded up front in one query: no lookup per changed inventory
        inventories = uow.repo.inventories({machine_id for _, heartbeat, machine_id in accepted
                                            if heartbeat.get("inventory") is not None})
        recent = {machine_id: domain.RecentHeartbeats(states[machine_id].recent_sent)
                  for machine_id in machine_ids}
        changes = BatchChanges()
        for delivery, heartbeat, machine_id in sorted(accepted, key=lambda a: a[1]["sent_at"]):
            state, policy = states[machine_id], policies.get(machine_id)
            role = fold_heartbeat(changes, state, recent[machine_id], policy, inventories, heartbeat,
                                  delivery.message_id, now)
            outcomes["accepted" if role == domain.APPLY else role] += 1
            verdicts[delivery.index] = Verdict(reply=answer(state, policy))
        for machine_id, moments in recent.items():
            states[machine_id].recent_sent = moments.packed()
        uow.repo.save_states(states.values())
        uow.repo.write_changes(changes)
        for machine in uow.repo.machines(changes.came_online).values():
            uow.emit("machine_online", {"tenant_id": machine.tenant_id, "machine_id": machine.id,
                                        "company_id": machine.company_id})
        uow.commit()
    result.inventories_written = changes.inventories_written
    result.inventories_skipped = changes.inventories_skipped
    return result


def heartbeat_hint(store: UnitOfWorkSource, token, now: datetime) -> dict:
    """For the HTTP heartbeat route: whose token this is (or `invalid_token`), whether
    the server holds the machine's inventory, and any USB policy waiting."""
    hint = None
    if isinstance(token, str):
        with store.unit_of_work() as uow:
            hint = uow.repo.token_hint(hash_token(token))
    if hint is None or hint.revoked_at is not None or hint.expires_at <= now:
        raise Unauthorized("unknown, revoked or expired machine token", code="invalid_token")
    return {"machine_id": str(hint.machine_id), "registered_at": hint.registered_at.isoformat(),
            "inventory_hash": hint.inventory_hash,
            "usb_policy": hint.usb_mode if hint.usb_status == "PENDING" else None}
