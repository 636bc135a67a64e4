"""The devices use cases over a fake unit of work and repository (no broker, no database):
enrolment, heartbeat batches, USB policies, links and accounts' events, the sweeps and
retention, the read models and the HTTP heartbeat route's hint. Every
question to accounts is checked to be asked with no unit of work open."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import orjson
import pytest

from common.deliveries import Delivery
from common.errors import Conflict, NotFound, Unauthorized, ValidationFailed
from services.devices import enrolment, heartbeats, links, queries, sweeps, usb_policy
from services.devices.domain import StatusThresholds, hour_of
from services.devices.history import (ChangeRecord, HourMetrics, day_of, day_start, pack_changes, pack_metrics,
                                      unpack_changes, unpack_metrics)
from services.devices.storage import Alert, Machine, MachineLink
from tests.support.fake_devices import FakeDevicesRepository
from tests.support.fake_uow import FakeStore, FakeUnitOfWork

NOW = datetime.now(timezone.utc).replace(microsecond=0)
ENROLLED_AT = NOW - timedelta(hours=2)
TENANT, COMPANY = uuid.uuid4(), uuid.uuid4()
CODE = "acme-code"
THRESHOLDS = StatusThresholds()
TOKEN_TTL = timedelta(days=365)
ADMIN = {"user_id": str(uuid.uuid4()), "tenant_id": str(TENANT), "role": "admin"}


class TrackedUnitOfWork(FakeUnitOfWork):
    def __enter__(self):
        self._store.open_units += 1
        return self

    def __exit__(self, *exc_info):
        self._store.open_units -= 1
        super().__exit__(*exc_info)


class Store(FakeStore):
    """A FakeStore over the fake devices repository that knows whether a unit of work is open."""

    def __init__(self):
        super().__init__("devices", FakeDevicesRepository())
        self.open_units = 0

    def unit_of_work(self, read_only: bool = False):
        return TrackedUnitOfWork(self, read_only=read_only)

    def events_of(self, event_type: str) -> list:
        return [event for event in self.events if event["type"] == event_type]


class FakeAccounts:
    """accounts' answers, as the handlers' `accounts(method, *args)` gets them."""

    def __init__(self, store: Store):
        self.store = store
        self.calls: list[str] = []
        self.people: dict[str, dict] = {}  # email -> user

    def __call__(self, method: str, *args):
        assert self.store.open_units == 0, f"accounts.{method} asked inside a unit of work"
        self.calls.append(method)
        return getattr(self, method)(*args)

    def enrolment(self, code, email, name):
        if code != CODE:
            raise Unauthorized("unknown or rotated provisioning code", code="invalid_provisioning_code")
        return {"tenant_id": str(TENANT), "company_id": str(COMPANY), "company_name": "Acme",
                "collaborator": self.ensure_person(str(TENANT), email, name, str(COMPANY))}

    def ensure_person(self, tenant_id, email, name, company_id):
        return self.people.setdefault(email, {"id": str(uuid.uuid4()), "email": email, "name": name, "version": 1})

    def find_person(self, tenant_id, email):
        if email not in self.people:
            raise NotFound("no such person", code="email_not_found")
        return self.people[email]

    def create_machine_user(self, tenant_id, company_id, hostname):
        return {"id": str(uuid.uuid4()), "email": f"{hostname}@machines.test", "name": hostname}

    def lookup_user(self, tenant_id, user_id):
        return next(person for person in self.people.values() if person["id"] == user_id)


@pytest.fixture
def store():
    return Store()


@pytest.fixture
def accounts(store):
    return FakeAccounts(store)


def registration(mac="3c:52:82:11:22:33", **fields) -> dict:
    return {"provisioning_code": CODE, "hostname": "pc-01",
            "os": {"name": "Ubuntu 22.04.4 LTS", "version": "22.04", "build": "", "arch": "x86_64"},
            "mac_addresses": [mac], "serial_numbers": [],
            "collaborator": {"email": "ana@example.test", "name": "Ana"}, **fields}


def register(store, accounts, **fields) -> dict:
    return enrolment.register(store, accounts, registration(**fields), ENROLLED_AT, TOKEN_TTL, "amqp://agents")


def inventory(firefox: str = "128.0") -> dict:
    return {"hostname": "pc-01", "software": {"packages": [{"name": "firefox", "version": firefox},
                                                           {"name": "curl", "version": "8.5"}]}}


def delivery(index: int, token: str | None, body, message_id: str | None = None) -> Delivery:
    return Delivery(index, body if isinstance(body, bytes) else orjson.dumps(body),
                    {"authorization": token} if token else {}, message_id or str(uuid.uuid4()), None, None)


def beat(minutes_ago: float, disk: float = 40.0, **fields) -> dict:
    return {"sent_at": (NOW - timedelta(minutes=minutes_ago)).isoformat(),
            "metrics": {"cpu_percent": 10.0, "memory_percent": 30.0, "disks": [{"mount": "/", "percent": disk}]},
            **fields}


def consume(store, *deliveries) -> heartbeats.BatchResult:
    return heartbeats.consume(store, list(deliveries), NOW)


def answer(store, token, heartbeat) -> dict:
    return consume(store, delivery(0, token, heartbeat)).verdicts[0].reply


def link(store, accounts, machine_id: str, email: str) -> dict:
    return links.add_link(store, accounts, THRESHOLDS, ADMIN, {"machine_id": machine_id, "email": email}, NOW)


# enrolment -------------------------------------------------------------------------------------

def test_a_new_machine_is_enrolled_with_its_machine_user_made_outside_any_unit_of_work(store, accounts):
    enrolled = register(store, accounts)
    assert enrolled["reused"] is False and enrolled["inventory_hash"] is None
    assert enrolled["amqp_uri"] == "amqp://agents"
    assert accounts.calls == ["enrolment", "create_machine_user"]
    machine = store.repo.machine_rows[uuid.UUID(enrolled["machine_id"])]
    assert machine.tenant_id == TENANT and machine.company_id == COMPANY and machine.hostname == "pc-01"
    assert machine.assigned_user_email == "ana@example.test" and machine.machine_user_id is not None
    assert [event["hostname"] for event in store.events_of("machine_registered")] == ["pc-01"]
    assert store.commits == 1


def test_the_same_hardware_gets_its_record_back_with_a_new_token_and_its_inventory_hash(store, accounts):
    first = register(store, accounts)
    consume(store, delivery(0, first["token"], beat(30, inventory=inventory())))
    again = register(store, accounts, hostname="pc-01-reinstalled")
    assert again["reused"] is True and again["machine_id"] == first["machine_id"]
    assert again["inventory_hash"] == store.repo.states[uuid.UUID(first["machine_id"])].inventory_hash
    assert accounts.calls.count("create_machine_user") == 1
    assert [token.revoked_at is not None for token in store.repo.tokens] == [True, False]
    refused = consume(store, delivery(0, first["token"], beat(20, inventory_hash="a" * 64)))
    assert refused.verdicts[0].reply["error"] == "invalid_token" and refused.refusals[0][0] == "token revoked"


def test_a_registration_without_real_identifiers_or_with_a_wrong_code_is_refused(store, accounts):
    with pytest.raises(ValidationFailed):
        register(store, accounts, mac="00:50:56:00:00:01")  # a VMware MAC says nothing of the hardware
    assert accounts.calls == []
    with pytest.raises(Unauthorized):
        register(store, accounts, provisioning_code="wrong")
    assert store.repo.machine_rows == {} and store.commits == 0


# heartbeats ------------------------------------------------------------------------------------

def test_a_new_machine_s_first_inventory_is_stored_once_and_brings_it_online(store, accounts):
    enrolled = register(store, accounts)
    machine_id = uuid.UUID(enrolled["machine_id"])
    result = consume(store, delivery(0, enrolled["token"], beat(30, inventory=inventory())))
    assert result.verdicts[0].reply == {"need_inventory": False, "usb_policy": None}
    assert result.outcomes == {"accepted": 1, "late": 0, "duplicate": 0}
    assert (result.inventories_written, result.inventories_skipped) == (1, 0)
    assert store.repo.inventory_writes == [(machine_id, 1)]
    assert store.repo.software[machine_id] == {("firefox", "128.0"), ("curl", "8.5")}
    state = store.repo.states[machine_id]
    assert state.heartbeats == 1 and state.last_seen_at == NOW and state.reported_online
    assert [event["machine_id"] for event in store.events_of("machine_online")] == [str(machine_id)]
    [(day, (_, packed))] = [(key[1], value) for key, value in store.repo.days.items()]
    assert [(record.version, record.initial) for record in unpack_changes(packed, day)] == [(1, True)]


def test_a_changed_inventory_is_a_new_version_and_an_unchanged_one_no_new_copy(store, accounts):
    enrolled = register(store, accounts)
    machine_id, token = uuid.UUID(enrolled["machine_id"]), enrolled["token"]
    consume(store, delivery(0, token, beat(30, inventory=inventory("128.0"))))
    changed = consume(store, delivery(0, token, beat(25, inventory=inventory("129.0"))))
    assert changed.inventories_written == 1 and store.repo.inventory_rows[machine_id].version == 2
    unchanged = consume(store, delivery(0, token, beat(20, inventory=inventory("129.0"))))
    assert (unchanged.inventories_written, unchanged.inventories_skipped) == (0, 1)
    assert store.repo.inventory_writes == [(machine_id, 1), (machine_id, 2)]  # no third copy
    assert store.repo.software[machine_id] == {("firefox", "129.0"), ("curl", "8.5")}
    [(day, (_, packed))] = [(key[1], value) for key, value in store.repo.days.items()]
    records = unpack_changes(packed, day)
    assert [record.version for record in records] == [1, 2]
    assert set(records[1].changes["changed"]) == {"software/packages[name=firefox]/version"}
    held = store.repo.states[machine_id].inventory_hash
    assert answer(store, token, beat(15, inventory_hash=held))["need_inventory"] is False
    assert answer(store, token, beat(10, inventory_hash="b" * 64))["need_inventory"] is True
    assert store.repo.inventory_writes == [(machine_id, 1), (machine_id, 2)]


def test_one_batch_counts_copies_once_and_refuses_what_it_cannot_use(store, accounts):
    enrolled = register(store, accounts)
    machine_id, token = uuid.UUID(enrolled["machine_id"]), enrolled["token"]
    newest, older = beat(10, inventory_hash="a" * 64), beat(20, inventory_hash="a" * 64)
    result = consume(store, delivery(0, token, newest), delivery(1, token, newest), delivery(2, token, older),
                     delivery(3, "not-a-token", newest), delivery(4, token, b"{nope"), delivery(5, None, newest))
    # in sent_at order: the older one is applied first, then the newest, then its copy
    assert result.outcomes == {"accepted": 2, "late": 0, "duplicate": 1}
    assert result.verdicts[3].reply["error"] == "invalid_token" and result.refusals[0][0] == "unknown token"
    assert result.verdicts[4].dead_letter.startswith("malformed_json")
    assert result.verdicts[5].dead_letter.startswith("unauthenticated")
    assert store.repo.states[machine_id].heartbeats == 2
    again = consume(store, delivery(0, token, older))  # redelivered after its batch committed
    assert again.outcomes["duplicate"] == 1 and store.repo.states[machine_id].heartbeats == 2
    late = consume(store, delivery(0, token, beat(15, inventory_hash="a" * 64)))
    assert late.outcomes["late"] == 1 and store.repo.states[machine_id].heartbeats == 3
    assert store.repo.states[machine_id].last_sent_at == NOW - timedelta(minutes=10)  # not rolled back


def test_a_heartbeat_from_before_its_machine_was_registered_is_dead_lettered(store, accounts):
    enrolled = register(store, accounts)
    minutes_ago = (NOW - ENROLLED_AT) / timedelta(minutes=1) + 20  # 20 minutes before it enrolled
    result = consume(store, delivery(0, enrolled["token"], beat(minutes_ago, inventory_hash="a" * 64)))
    assert "before the machine was registered" in result.verdicts[0].dead_letter
    assert store.repo.states[uuid.UUID(enrolled["machine_id"])].heartbeats == 0


def test_posture_alerts_open_and_close_and_a_usb_policy_is_applied_once_acknowledged(store, accounts):
    enrolled = register(store, accounts, capabilities=["usb_policy"])
    machine_id, token = uuid.UUID(enrolled["machine_id"]), enrolled["token"]
    consume(store, delivery(0, token, beat(30, disk=95.0, inventory_hash="a" * 64)))
    assert [(a.kind, a.closed_at) for a in store.repo.alerts] == [("DISK_ALMOST_FULL", None)]
    asked_at = NOW - timedelta(minutes=25)
    policy = usb_policy.set_usb_policy(store, ADMIN, str(machine_id), {"mode": "BLOCK"}, asked_at)
    assert policy["status"] == "PENDING"
    told = consume(store, delivery(0, token, beat(20, disk=50.0, inventory_hash="a" * 64)))
    assert told.verdicts[0].reply["usb_policy"] == "BLOCK"
    assert [(a.kind, a.closed_at) for a in store.repo.alerts] == [("DISK_ALMOST_FULL", NOW)]
    acked = consume(store, delivery(0, token, beat(10, inventory_hash="a" * 64, usb_policy_ack={"mode": "BLOCK"})))
    assert acked.verdicts[0].reply["usb_policy"] is None
    assert (store.repo.policies[machine_id].status, store.repo.policies[machine_id].applied_at) == ("APPLIED", NOW)


# links and accounts' events -----------------------------------------------------------------------

def test_links_are_to_people_who_exist_and_never_to_the_assigned_user(store, accounts):
    enrolled = register(store, accounts)
    machine_id = enrolled["machine_id"]
    accounts.ensure_person(str(TENANT), "bia@example.test", "Bia", None)
    view = link(store, accounts, machine_id, "bia@example.test")
    assert [user["email"] for user in view["linked_users"]] == ["bia@example.test"]
    with pytest.raises(Conflict) as refused:
        link(store, accounts, machine_id, "ana@example.test")
    assert refused.value.args[1] == "already_assigned"
    with pytest.raises(NotFound):
        link(store, accounts, machine_id, "who@example.test")
    asked = list(accounts.calls)
    with pytest.raises(NotFound) as missing:
        link(store, accounts, str(uuid.uuid4()), "bia@example.test")
    assert missing.value.args[1] == "machine_not_found" and accounts.calls == asked  # refused before asking
    bia = accounts.people["bia@example.test"]["id"]
    view = links.remove_link(store, THRESHOLDS, ADMIN, {"machine_id": machine_id, "user_id": bia}, NOW)
    assert view["linked_users"] == []
    with pytest.raises(NotFound):
        links.remove_link(store, THRESHOLDS, ADMIN, {"machine_id": machine_id, "user_id": bia}, NOW)


def test_a_machine_is_a_user_s_when_assigned_to_or_linked_with_them(store, accounts):
    machine_id = register(store, accounts)["machine_id"]
    ana = accounts.people["ana@example.test"]["id"]
    bia = accounts.ensure_person(str(TENANT), "bia@example.test", "Bia", None)["id"]
    assert queries.machine_in_tenant(store, str(TENANT), machine_id)
    assert not queries.machine_in_tenant(store, str(uuid.uuid4()), machine_id)  # another tenant's
    assert queries.machine_in_tenant(store, str(TENANT), machine_id, ana)
    assert not queries.machine_in_tenant(store, str(TENANT), machine_id, bia)
    link(store, accounts, machine_id, "bia@example.test")
    assert queries.machine_in_tenant(store, str(TENANT), machine_id, bia)
    assert not queries.machine_in_tenant(store, str(TENANT), "not-an-id")


def test_access_assigns_the_person_accounts_ensures_and_drops_their_link(store, accounts):
    enrolled = register(store, accounts)
    machine_id = enrolled["machine_id"]
    accounts.ensure_person(str(TENANT), "bia@example.test", "Bia", None)
    link(store, accounts, machine_id, "bia@example.test")
    view = links.adjust_access(store, accounts, THRESHOLDS, ADMIN, machine_id,
                               {"email": "bia@example.test", "name": "Bia", "persona": "manager"}, NOW)
    assert view["assigned_user"]["email"] == "bia@example.test" and view["persona"] == "manager"
    assert view["linked_users"] == []
    assert accounts.calls[-1] == "ensure_person"


def test_a_person_s_new_name_reaches_machines_and_links_once_and_never_backwards(store, accounts):
    enrolled = register(store, accounts)
    machine = store.repo.machine_rows[uuid.UUID(enrolled["machine_id"])]
    ana = accounts.people["ana@example.test"]
    renamed = {"event_id": str(uuid.uuid4()), "tenant_id": str(TENANT), "user_id": ana["id"],
               "email": "ana@new.test", "name": "Ana Souza", "version": 3}
    links.user_updated(store, renamed)
    assert (machine.assigned_user_email, machine.assigned_user_name) == ("ana@new.test", "Ana Souza")
    links.user_updated(store, {**renamed, "event_id": str(uuid.uuid4()), "name": "Ana (old)", "version": 2})
    assert machine.assigned_user_name == "Ana Souza"  # an older change arriving late
    commits = store.commits
    links.user_updated(store, renamed)  # a redelivery
    assert store.commits == commits


def test_a_merged_person_s_machines_and_links_move_to_the_account_it_joined(store, accounts):
    enrolled = register(store, accounts)
    machine_id = uuid.UUID(enrolled["machine_id"])
    ana = accounts.people["ana@example.test"]
    into = accounts.ensure_person(str(TENANT), "ana.souza@example.test", "Ana Souza", None)
    merged = {"event_id": str(uuid.uuid4()), "tenant_id": str(TENANT), "from_user_id": ana["id"],
              "into_user_id": into["id"]}
    links.user_merged(store, accounts, merged)
    machine = store.repo.machine_rows[machine_id]
    assert machine.assigned_user_id == uuid.UUID(into["id"])
    assert machine.assigned_user_email == "ana.souza@example.test"
    asked = list(accounts.calls)
    links.user_merged(store, accounts, merged)  # a redelivery asks accounts nothing
    assert accounts.calls == asked


# sweeps ---------------------------------------------------------------------------------------

def test_a_silent_machine_is_marked_offline_once(store, accounts):
    enrolled = register(store, accounts)
    consume(store, delivery(0, enrolled["token"], beat(5, inventory_hash="a" * 64)))
    assert sweeps.mark_offline(store, THRESHOLDS, NOW + timedelta(minutes=10)) == {"marked_offline": 0}
    later = NOW + THRESHOLDS.stale + timedelta(seconds=1)
    assert sweeps.mark_offline(store, THRESHOLDS, later) == {"marked_offline": 1}
    assert [event["machine_id"] for event in store.events_of("machine_offline")] == [enrolled["machine_id"]]
    commits = store.commits
    assert sweeps.mark_offline(store, THRESHOLDS, later) == {"marked_offline": 0}
    assert store.commits == commits  # nothing changed, nothing written


def test_an_unacknowledged_usb_policy_goes_stale_with_an_alert(store, accounts):
    enrolled = register(store, accounts, capabilities=["usb_policy"])
    machine_id = uuid.UUID(enrolled["machine_id"])
    usb_policy.set_usb_policy(store, ADMIN, str(machine_id), {"mode": "READ_ONLY"}, NOW - timedelta(hours=1))
    ttl = timedelta(minutes=30)
    assert sweeps.expire_stale_usb_policies(store, ttl, NOW) == {"marked_stale": 1}
    assert store.repo.policies[machine_id].status == "STALE"
    assert [(a.kind, orjson.loads(a.details)) for a in store.repo.open_alerts(machine_id)] == \
        [("USB_POLICY_STALE", {"mode": "READ_ONLY"})]
    assert store.repo.states[machine_id].open_alert_kinds == "USB_POLICY_STALE"
    assert sweeps.expire_stale_usb_policies(store, ttl, NOW) == {"marked_stale": 0}
    view = queries.get_machine(store, THRESHOLDS, ADMIN, str(machine_id), NOW)
    assert [alert["kind"] for alert in view["open_alerts"]] == ["USB_POLICY_STALE"]


# read models -------------------------------------------------------------------------------------

OTHER_TENANT = uuid.uuid4()
OTHER_ADMIN = {"user_id": str(uuid.uuid4()), "tenant_id": str(OTHER_TENANT), "role": "admin"}


def add_machine(store, hostname: str, tenant=TENANT, seen: datetime | None = None, **fields) -> uuid.UUID:
    """A machine put straight into the fake repository (enrolment is tested above)."""
    machine = store.repo.add_machine(Machine(
        tenant_id=tenant, company_id=COMPANY, hostname=hostname, os_name="Ubuntu", os_version="22.04",
        os_build="", os_arch="x86_64", persona="collaborator", usb_policy_supported=False,
        machine_user_id=uuid.uuid4(), created_at=ENROLLED_AT, **fields))
    store.repo.states[machine.id].last_seen_at = seen
    return machine.id


def test_a_machine_s_page_is_its_tenant_s_only(store, accounts):
    enrolled = register(store, accounts)
    consume(store, delivery(0, enrolled["token"], beat(1, inventory_hash="a" * 64)))
    view = queries.get_machine(store, THRESHOLDS, ADMIN, enrolled["machine_id"], NOW)
    assert (view["id"], view["hostname"], view["status"]) == (enrolled["machine_id"], "pc-01", "online")
    assert view["assigned_user"]["email"] == "ana@example.test"
    with pytest.raises(NotFound) as other:
        queries.get_machine(store, THRESHOLDS, OTHER_ADMIN, enrolled["machine_id"], NOW)
    assert other.value.args[1] == "machine_not_found"
    with pytest.raises(NotFound):
        queries.get_machine(store, THRESHOLDS, ADMIN, str(uuid.uuid4()), NOW)


def test_the_machine_list_pages_by_hostname_filters_by_status_and_shows_only_the_tenant_s(store):
    for hostname in ("pc-c", "pc-a", "pc-b"):
        add_machine(store, hostname, seen=NOW - timedelta(minutes=1) if hostname == "pc-b" else None)
    add_machine(store, "pc-0", tenant=OTHER_TENANT)
    first = queries.list_machines(store, THRESHOLDS, ADMIN, {"limit": 2}, NOW)
    assert [m["hostname"] for m in first["items"]] == ["pc-a", "pc-b"] and first["next_cursor"]
    rest = queries.list_machines(store, THRESHOLDS, ADMIN, {"limit": 2, "cursor": first["next_cursor"]}, NOW)
    assert [m["hostname"] for m in rest["items"]] == ["pc-c"] and rest["next_cursor"] is None
    online = queries.list_machines(store, THRESHOLDS, ADMIN, {"status": "online"}, NOW)
    assert [(m["hostname"], m["status"]) for m in online["items"]] == [("pc-b", "online")]
    offline = queries.list_machines(store, THRESHOLDS, ADMIN, {"status": "offline", "q": "-C"}, NOW)
    assert [m["hostname"] for m in offline["items"]] == ["pc-c"]


def test_a_user_s_machines_are_those_assigned_to_or_linked_with_them_in_the_tenant(store):
    user = uuid.uuid4()
    assigned = add_machine(store, "pc-b", assigned_user_id=user, assigned_user_email="ana@example.test",
                           assigned_user_name="Ana")
    linked = add_machine(store, "pc-a")
    store.repo.add(MachineLink(machine_id=linked, user_id=user, user_email="ana@example.test", user_name="Ana"))
    add_machine(store, "pc-c")  # nobody's
    add_machine(store, "pc-0", tenant=OTHER_TENANT, assigned_user_id=user)
    view = queries.user_machines(store, THRESHOLDS, ADMIN, str(user), NOW)
    assert [(m["id"], m["relation"]) for m in view["items"]] == [(str(linked), "linked"), (str(assigned), "assigned")]
    assert queries.user_machines(store, THRESHOLDS, ADMIN, str(uuid.uuid4()), NOW) == {"items": []}


def test_inventory_changes_page_newest_first_and_the_current_inventory_is_the_last_version(store, accounts):
    enrolled = register(store, accounts)
    machine_id, token = enrolled["machine_id"], enrolled["token"]
    assert queries.current_inventory(store, ADMIN, machine_id) == \
        {"hash": None, "version": None, "updated_at": None, "document": None}
    consume(store, delivery(0, token, beat(30, inventory=inventory("128.0"))))
    consume(store, delivery(0, token, beat(25, inventory=inventory("129.0"))))
    first = queries.inventory_changes(store, ADMIN, machine_id, {"limit": 1})
    [newest] = first["items"]
    assert newest["version"] == 2 and not newest["initial"] and newest["changes"]["changed"] and first["next_cursor"]
    rest = queries.inventory_changes(store, ADMIN, machine_id, {"limit": 1, "cursor": first["next_cursor"]})
    assert [(c["version"], c["initial"]) for c in rest["items"]] == [(1, True)] and rest["next_cursor"] is None
    current = queries.current_inventory(store, ADMIN, machine_id)
    assert current["version"] == 2 and current["hash"] == store.repo.inventory_rows[uuid.UUID(machine_id)].hash
    assert {"name": "firefox", "version": "129.0"} in current["document"]["software"]["packages"]
    for handler in (lambda: queries.inventory_changes(store, OTHER_ADMIN, machine_id, {}),
                    lambda: queries.current_inventory(store, OTHER_ADMIN, machine_id)):
        with pytest.raises(NotFound):
            handler()


def test_software_search_finds_the_tenant_s_machines_with_older_versions_and_pages(store):
    held = {"pc-a": "115.0", "pc-b": "128.0", "pc-c": "115.0", "pc-d": "129.0"}
    for hostname, version in held.items():
        store.repo.software[add_machine(store, hostname)] = {("firefox", version), ("curl", "8.5")}
    store.repo.software[add_machine(store, "pc-0", tenant=OTHER_TENANT)] = {("firefox", "100.0")}
    found = queries.search_software(store, ADMIN, {"name": "firefox", "version_lt": "129", "limit": 2})
    assert found["versions"] == [{"version": "128.0", "machines": 1}, {"version": "115.0", "machines": 2}]
    assert [(m["hostname"], m["version"]) for m in found["items"]] == [("pc-a", "115.0"), ("pc-b", "128.0")]
    rest = queries.search_software(store, ADMIN, {"name": "firefox", "version_lt": "129", "limit": 2,
                                                  "cursor": found["next_cursor"]})
    assert [m["hostname"] for m in rest["items"]] == ["pc-c"] and rest["next_cursor"] is None
    assert rest["versions"] == []  # counted on the first page only
    exact = queries.search_software(store, OTHER_ADMIN, {"name": "firefox", "version": "100.0"})
    assert [m["hostname"] for m in exact["items"]] == ["pc-0"]
    assert queries.search_software(store, ADMIN, {"name": "nothing"})["items"] == []


def test_metrics_are_the_last_hours_from_day_rows_and_the_open_hour(store):
    machine_id = add_machine(store, "pc-a")
    hour = hour_of(NOW)
    for hours_ago in (1, 5):
        start = hour - timedelta(hours=hours_ago)
        days = store.repo.days
        stored = unpack_metrics(days.get((machine_id, day_of(start)), (None, None))[0])
        stored[start.hour] = HourMetrics(samples=hours_ago, cpu_avg=10.0, cpu_max=20.0)
        days[(machine_id, day_of(start))] = (pack_metrics(stored), None)
    state = store.repo.states[machine_id]
    state.agg_hour, state.agg_samples, state.agg_cpu_sum, state.agg_cpu_max = hour, 2, 30.0, 20.0
    recent = queries.machine_metrics(store, ADMIN, str(machine_id), {"hours": 3}, NOW)
    assert recent["since"] == (hour - timedelta(hours=2)).isoformat()
    assert [(item["hour"], item["samples"]) for item in recent["items"]] == \
        [((hour - timedelta(hours=1)).isoformat(), 1), (hour.isoformat(), 2)]
    assert recent["items"][-1]["cpu_avg"] == 15.0
    day = queries.machine_metrics(store, ADMIN, str(machine_id), {}, NOW)
    assert [item["samples"] for item in day["items"]] == [5, 1, 2] and day["hours"] == 24
    with pytest.raises(NotFound):
        queries.machine_metrics(store, OTHER_ADMIN, str(machine_id), {}, NOW)


def test_health_buckets_count_a_tenant_s_machines_or_everyone_s(store):
    add_machine(store, "pc-a", seen=NOW - timedelta(minutes=1))
    add_machine(store, "pc-b", seen=NOW - timedelta(hours=30))
    add_machine(store, "pc-c")
    add_machine(store, "pc-0", tenant=OTHER_TENANT, seen=NOW)
    tenant = queries.health_buckets(store, THRESHOLDS, str(TENANT), NOW)
    assert tenant["machines"] == 3
    assert tenant["buckets"] == {"online": 1, "stale": 0, "offline_lt_24h": 0, "offline_gt_24h": 1, "never": 1}
    assert tenant["thresholds"]["stale_seconds"] == int(THRESHOLDS.stale.total_seconds())
    everyone = queries.health_buckets(store, THRESHOLDS, None, NOW)
    assert everyone["machines"] == 4 and everyone["buckets"]["online"] == 2


def test_last_seen_answers_only_the_machines_that_exist(store):
    seen, never = add_machine(store, "pc-a", seen=NOW), add_machine(store, "pc-b")
    assert queries.machines_last_seen(store, [str(seen), str(never), str(uuid.uuid4())]) == \
        {str(seen): NOW.isoformat(), str(never): None}
    assert queries.machines_last_seen(store, None) == {}


# retention ----------------------------------------------------------------------------------------

def test_retention_drops_metrics_and_closed_alerts_past_policy_and_a_tenant_s_dry_run_counts_its_own(store):
    ours, theirs = add_machine(store, "pc-a"), add_machine(store, "pc-0", tenant=OTHER_TENANT)
    old, older, recent = (day_of(NOW - timedelta(days=days)) for days in (100, 120, 10))
    metrics = pack_metrics({3: HourMetrics(samples=1, cpu_avg=5.0)})
    changes = pack_changes([ChangeRecord(1, day_start(older), {})], older)
    store.repo.days.update({(ours, old): (metrics, None), (ours, older): (metrics, changes),
                            (ours, recent): (metrics, None), (theirs, old): (metrics, None)})
    closed_long_ago, closed_lately = NOW - timedelta(days=200), NOW - timedelta(days=10)
    store.repo.alerts.extend([
        Alert(id=uuid.uuid4(), machine_id=ours, kind="DISK_ALMOST_FULL", details="{}",
              opened_at=closed_long_ago - timedelta(days=1), closed_at=closed_long_ago),
        Alert(id=uuid.uuid4(), machine_id=theirs, kind="DISK_ALMOST_FULL", details="{}",
              opened_at=closed_long_ago - timedelta(days=1), closed_at=closed_long_ago),
        Alert(id=uuid.uuid4(), machine_id=ours, kind="DISK_ALMOST_FULL", details="{}",
              opened_at=closed_lately - timedelta(days=1), closed_at=closed_lately),
        Alert(id=uuid.uuid4(), machine_id=ours, kind="CPU_SATURATED", details="{}",
              opened_at=closed_long_ago, closed_at=None)])
    scoped = sweeps.apply_retention(store, NOW, dry_run=True, tenant_id=TENANT)
    assert scoped["kinds"]["metrics_hourly"] == {"past_policy": 2, "deleted": 0,
                                                 "oldest": day_start(older).isoformat()}
    assert scoped["kinds"]["alerts"] == {"past_policy": 1, "deleted": 0, "oldest": closed_long_ago.isoformat()}
    assert len(store.repo.days) == 4 and len(store.repo.alerts) == 4 and store.commits == 0
    applied = sweeps.apply_retention(store, NOW)
    assert {kind: (counts["past_policy"], counts["deleted"]) for kind, counts in applied["kinds"].items()} == \
        {"metrics_hourly": (3, 3), "alerts": (2, 2)}
    assert store.repo.days == {(ours, older): (None, changes), (ours, recent): (metrics, None)}  # history stays
    assert [alert.closed_at for alert in store.repo.alerts] == [closed_lately, None]
    assert store.commits == 1
    again = sweeps.apply_retention(store, NOW)
    assert again["kinds"]["metrics_hourly"]["past_policy"] == 0 and again["kinds"]["alerts"]["past_policy"] == 0
    assert store.commits == 1  # nothing past policy, nothing written


# the HTTP heartbeat route's hint -------------------------------------------------------------------

def test_the_heartbeat_hint_names_the_machine_asks_for_inventory_and_questions_its_sent_at(store, accounts):
    enrolled = register(store, accounts, capabilities=["usb_policy"])
    token, machine_id = enrolled["token"], enrolled["machine_id"]
    hint = heartbeats.heartbeat_hint(store, token, NOW, "a" * 64, sent_at=NOW.isoformat())
    assert hint == {"machine_id": machine_id, "sent_at_problem": None, "need_inventory": True, "usb_policy": None}
    assert not heartbeats.heartbeat_hint(store, token, NOW, "a" * 64, carries_inventory=True)["need_inventory"]
    store.repo.states[uuid.UUID(machine_id)].inventory_hash = "a" * 64
    assert not heartbeats.heartbeat_hint(store, token, NOW, "a" * 64)["need_inventory"]
    assert heartbeats.heartbeat_hint(store, token, NOW, "b" * 64)["need_inventory"]
    skewed = (ENROLLED_AT - timedelta(minutes=9)).isoformat()  # within the clock skew allowed
    assert heartbeats.heartbeat_hint(store, token, NOW, sent_at=skewed)["sent_at_problem"] is None
    before = (ENROLLED_AT - timedelta(minutes=11)).isoformat()
    assert "before the machine was registered" in \
        heartbeats.heartbeat_hint(store, token, NOW, sent_at=before)["sent_at_problem"]
    assert "not an ISO 8601" in heartbeats.heartbeat_hint(store, token, NOW, sent_at="yesterday")["sent_at_problem"]
    usb_policy.set_usb_policy(store, ADMIN, machine_id, {"mode": "BLOCK"}, NOW)
    assert heartbeats.heartbeat_hint(store, token, NOW)["usb_policy"] == "BLOCK"


def test_the_heartbeat_hint_refuses_unknown_expired_and_revoked_tokens(store, accounts):
    token = register(store, accounts)["token"]
    for refused, when in (("not-a-token", NOW), (None, NOW), (token, ENROLLED_AT + TOKEN_TTL)):
        with pytest.raises(Unauthorized) as error:
            heartbeats.heartbeat_hint(store, refused, when)
        assert error.value.args[1] == "invalid_token"
    store.repo.tokens[0].revoked_at = NOW
    with pytest.raises(Unauthorized):
        heartbeats.heartbeat_hint(store, token, NOW)
