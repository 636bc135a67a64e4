"""The devices use cases over a fake unit of work and repository (no broker, no database):
enrolment, heartbeat batches, USB policies, links and accounts' events, the sweeps. Every
question to accounts is checked to be asked with no unit of work open."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import orjson
import pytest

from common.deliveries import Delivery
from common.errors import Conflict, NotFound, Unauthorized, ValidationFailed
from services.devices import enrolment, heartbeats, links, queries, sweeps, usb_policy
from services.devices.domain import StatusThresholds
from services.devices.history import unpack_changes
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
