"""The admin's read models of machines (list, page, the user's machines, inventory, its
changes, metrics, software search) and the lookups other services make (health, last
seen, tenant membership)."""
from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timedelta

import orjson

from common.actor import Actor
from common.contracts import devices as contract
from common.contracts import load, parse_id
from common.errors import NotFound
from common.pagination import day_value, decode_cursor, encode_cursor, text_value, uuid_value
from common.unit_of_work import UnitOfWorkSource
from services.devices import domain
from services.devices.heartbeat_state import open_hour
from services.devices.history import HourMetrics, day_of, fold_hours, hour_starts, newest_changes
from services.devices.software import version_key


def find_machine(uow, actor: Actor, machine_id):
    """The actor's tenant's machine, or `machine_not_found` (another tenant's too)."""
    machine = uow.repo.machine(actor.tenant_id, parse_id(machine_id, "machine"))
    if machine is None:
        raise NotFound("machine not found", code="machine_not_found")
    return machine


def user_ref(user_id, email, name):
    return None if user_id is None else {"id": user_id, "email": email, "name": name}


def machine_summary(machine, last_seen_at, now: datetime, thresholds: domain.StatusThresholds) -> dict:
    return contract.MachineSummary().dump({
        "id": machine.id, "company_id": machine.company_id, "hostname": machine.hostname,
        "os_label": domain.os_label(machine.os_name, machine.os_version, machine.os_build),
        "status": domain.machine_status(last_seen_at, now, thresholds),
        "last_seen_at": last_seen_at,
        "assigned_user": user_ref(machine.assigned_user_id, machine.assigned_user_email,
                                  machine.assigned_user_name)})


def machine_detail(uow, machine, thresholds: domain.StatusThresholds, now: datetime) -> dict:
    """The machine's page: its summary, OS, people, health, last metrics, open alerts and
    USB policy."""
    state = uow.repo.state(machine.id)
    policy = uow.repo.usb_policy(machine.id)
    seen = state.last_seen_at if state else None
    view = machine_summary(machine, seen, now, thresholds)  # status and bucket: one `now`
    view.update(contract.Machine(only=(
        "os", "persona", "machine_user_id", "linked_users", "health_bucket", "last_metrics",
        "inventory_hash", "open_alerts", "usb_policy", "usb_policy_supported", "created_at")).dump({
            "os": {"name": machine.os_name, "version": machine.os_version,
                   "build": machine.os_build, "arch": machine.os_arch},
            "persona": machine.persona, "machine_user_id": machine.machine_user_id,
            "linked_users": [user_ref(link.user_id, link.user_email, link.user_name)
                             for link in uow.repo.links(machine.id)],
            "health_bucket": domain.health_bucket(seen, now, thresholds),
            "last_metrics": orjson.loads(state.last_metrics) if state and state.last_metrics else None,
            "inventory_hash": state.inventory_hash if state else None,
            "open_alerts": [{"id": a.id, "kind": a.kind, "opened_at": a.opened_at,
                             "details": orjson.loads(a.details)} for a in uow.repo.open_alerts(machine.id)],
            "usb_policy": policy, "usb_policy_supported": machine.usb_policy_supported,
            "created_at": machine.created_at}))
    return view


def get_machine(store: UnitOfWorkSource, thresholds, actor: dict, machine_id, now: datetime) -> dict:
    with store.unit_of_work() as uow:
        return machine_detail(uow, find_machine(uow, Actor.from_dict(actor), machine_id), thresholds, now)


def list_machines(store: UnitOfWorkSource, thresholds, actor: dict, query: dict, now: datetime) -> dict:
    actor = Actor.from_dict(actor)
    filters = load(contract.MachineQuery, query)
    after = decode_cursor(filters["cursor"], text_value, uuid_value)
    with store.unit_of_work() as uow:
        rows = uow.repo.list_machines(actor.tenant_id, filters, now, thresholds, after, filters["limit"] + 1)
        page, more = rows[:filters["limit"]], len(rows) > filters["limit"]
        cursor = encode_cursor([page[-1][0].hostname, str(page[-1][0].id)]) if more else None
        return {"items": [machine_summary(machine, seen, now, thresholds) for machine, seen in page],
                "next_cursor": cursor}


def user_machines(store: UnitOfWorkSource, thresholds, actor: dict, user_id, now: datetime) -> dict:
    """The machines a user is assigned to or linked with (Admin ▸ Usuários). The gateway
    has already found the user; an id nobody holds simply has no machines."""
    actor = Actor.from_dict(actor)
    user = parse_id(user_id, "user")
    with store.unit_of_work() as uow:
        rows = uow.repo.user_machines(actor.tenant_id, user, contract.USER_MACHINES_MAX)
        return {"items": [{**machine_summary(machine, seen, now, thresholds),
                           "relation": "assigned" if machine.assigned_user_id == user else "linked"}
                          for machine, seen in rows]}


def inventory_changes(store: UnitOfWorkSource, actor: dict, machine_id, query: dict) -> dict:
    """The machine's inventory change records, newest first, a page at a time: what was
    added, removed (with its old value) and changed (old and new) at each version."""
    actor = Actor.from_dict(actor)
    data = load(contract.InventoryChangesQuery, query)
    before = decode_cursor(data["cursor"], day_value, int)
    limit = data["limit"]
    with store.unit_of_work(read_only=True) as uow:
        machine = find_machine(uow, actor, machine_id)
        page, more = newest_changes(uow.repo.change_days(machine.id, until=before[0] if before else None,
                                                         limit=limit + 2), before, limit)
        cursor = encode_cursor([day_of(page[-1].changed_at).isoformat(), page[-1].version]) if more else None
        return {"items": [contract.InventoryChange().dump({
            "version": record.version, "changed_at": record.changed_at, "initial": record.initial,
            "changes": {kind: record.changes.get(kind, {}) for kind in ("added", "removed", "changed")}})
            for record in page], "next_cursor": cursor}


def current_inventory(store: UnitOfWorkSource, actor: dict, machine_id) -> dict:
    """The machine's inventory as stored (canonical), its hash and when it last changed."""
    with store.unit_of_work() as uow:
        stored = uow.repo.inventory(find_machine(uow, Actor.from_dict(actor), machine_id).id)
        return contract.CurrentInventory().dump({
            "hash": stored.hash if stored else None, "version": stored.version if stored else None,
            "updated_at": stored.updated_at if stored else None,
            "document": orjson.loads(stored.document) if stored else None})


def search_software(store: UnitOfWorkSource, actor: dict, query: dict) -> dict:
    """Which of the tenant's machines have a package, at which versions — "which PCs still
    have firefox older than 128": from the software index kept on every inventory change,
    never by reading inventories."""
    actor = Actor.from_dict(actor)
    data = load(contract.SoftwareQuery, query)
    after = decode_cursor(data["cursor"], text_value, uuid_value)
    older_than = version_key(data["version_lt"]) if data["version_lt"] else None
    with store.unit_of_work(read_only=True) as uow:
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


def machine_metrics(store: UnitOfWorkSource, actor: dict, machine_id, query: dict, now: datetime) -> dict:
    """Hourly CPU, memory and fullest disk for the last `hours` hours, oldest first: the
    ended days from the machine's day rows, the current day's ended hours and the current
    hour so far from the state row (no hour is in two places: the state row hands a day
    over only when it moves on to a later one)."""
    actor = Actor.from_dict(actor)
    hours = load(contract.MetricsQuery, query)["hours"]
    since = domain.hour_of(now) - timedelta(hours=hours - 1)
    with store.unit_of_work(read_only=True) as uow:
        machine = find_machine(uow, actor, machine_id)
        found: dict[datetime, HourMetrics] = {}  # one hour in two places only around an upgrade
        for day, packed in uow.repo.metric_days(machine.id, since=day_of(since)):
            fold_hours(found, hour_starts(day, packed))
        state = uow.repo.state(machine.id)
        if state is not None and state.agg_hour is not None:  # its day so far, and its hour
            fold_hours(found, hour_starts(day_of(state.agg_hour), state.day_metrics))
            if current := open_hour(state):
                fold_hours(found, {state.agg_hour: current})
        items = [{"hour": hour, **asdict(found[hour])} for hour in sorted(found) if hour >= since]
        return contract.MachineMetrics().dump({"hours": hours, "since": since, "items": items})


def health_buckets(store: UnitOfWorkSource, thresholds, tenant_id, now: datetime) -> dict:
    """Machines by time since their last heartbeat, of one tenant or of all, in buckets
    whose edges are the status thresholds (given along, in seconds)."""
    tenant = parse_id(tenant_id, "tenant") if tenant_id else None
    buckets = dict.fromkeys(domain.HEALTH_BUCKETS, 0)
    with store.unit_of_work() as uow:
        for seen in uow.repo.last_seen_all(tenant):
            buckets[domain.health_bucket(seen, now, thresholds)] += 1
    return {"machines": sum(buckets.values()), "buckets": buckets,
            "thresholds": {"online_seconds": int(thresholds.online.total_seconds()),
                           "stale_seconds": int(thresholds.stale.total_seconds())}}


def machines_last_seen(store: UnitOfWorkSource, machine_ids) -> dict:
    """{machine id: last heartbeat (ISO) or None} for the ids that exist (tickets' chat
    cleanup asks)."""
    ids = {parse_id(m, "machine") for m in machine_ids or []}
    with store.unit_of_work() as uow:
        return {str(m): seen.isoformat() if seen else None for m, seen in uow.repo.last_seen(ids)}


def machine_in_tenant(store: UnitOfWorkSource, tenant_id, machine_id, user_id=None) -> bool:
    """Whether this machine exists in this tenant (tickets checks a ticket's machine_id:
    another tenant's machine must not drive its chat) and, given a user, is assigned to
    or linked with them (a collaborator's ticket names only one of their own machines)."""
    try:
        tenant, machine = parse_id(tenant_id, "tenant"), parse_id(machine_id, "machine")
        user = parse_id(user_id, "user") if user_id is not None else None
    except NotFound:
        return False
    with store.unit_of_work(read_only=True) as uow:
        found = uow.repo.machine(tenant, machine)
        return found is not None and (user is None or uow.repo.is_users_machine(found, user))
