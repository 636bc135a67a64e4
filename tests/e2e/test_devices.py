"""Devices end to end, through the gateway (plus the devices RPC the scheduler calls): agents
register and send heartbeats over HTTP, staff read and manage machines. Real services, real
broker, real database; every test has a tenant of its own."""
import random
import time
import uuid
from datetime import datetime, timedelta, timezone

import orjson
from kombu import Connection, Queue
from nameko.standalone.events import get_event_exchange

from chamados_protocol.inventory import inventory_hash
from tests.harness import Client, eventually, new_tenant

WINDOWS = {"name": "Windows 11 Pro", "version": "11", "build": "26100", "arch": "x86_64"}
PROCESSED_TIMEOUT = 10.0


# --- helpers ----------------------------------------------------------------------------


def parse(moment: str) -> datetime:
    return datetime.fromisoformat(moment.replace("Z", "+00:00"))


def error(response, status: int) -> dict:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error"} and {"code", "message", "details"} <= set(body["error"]), body
    return body["error"]


def physical_mac() -> str:
    """A universally administered, unicast MAC outside the hypervisors' prefixes."""
    return "3c:52:82:" + ":".join(f"{random.randint(0, 255):02x}" for _ in range(3))


def serial() -> str:
    return f"BR{uuid.uuid4().hex[:10].upper()}"


def registration(company: dict, *, hostname: str | None = None, macs=None, serials=None,
                 email: str | None = None, name: str = "Maria Colaboradora", **extra) -> dict:
    return {"provisioning_code": company["provisioning_code"],
            "hostname": hostname or f"pc-{uuid.uuid4().hex[:6]}",
            "os": dict(WINDOWS),
            "mac_addresses": [physical_mac()] if macs is None else macs,
            "serial_numbers": [serial()] if serials is None else serials,
            "collaborator": {"email": email or f"colab-{uuid.uuid4().hex[:8]}@example.test",
                             "name": name},
            **extra}


def register(anonymous: Client, body: dict, expect: int = 201) -> dict:
    response = anonymous.post("/api/machines/register", json=body)
    assert response.status_code == expect, (response.status_code, response.text)
    return response.json()


def enrol(anonymous: Client, company: dict, **fields) -> tuple[dict, dict]:
    """A new machine: (registration body, enrolment answer)."""
    body = registration(company, **fields)
    return body, register(anonymous, body)


_clock = {"last": datetime.now(timezone.utc)}


def sent_at() -> str:
    """Strictly increasing `sent_at` for every heartbeat of this module."""
    moment = max(datetime.now(timezone.utc), _clock["last"] + timedelta(milliseconds=1))
    _clock["last"] = moment
    return moment.isoformat()


_sequence = {"n": 1000}


def beat(anonymous: Client, token: str, *, inventory=None, inventory_hash_=None, disks=None,
         memory=23.5, ack=None, expect: int = 202) -> tuple[dict, int]:
    """One HTTP heartbeat; its `uptime_seconds` is a unique marker to see it processed.
    Returns (answer, marker)."""
    _sequence["n"] += 1
    marker = _sequence["n"]
    body = {"sent_at": sent_at(),
            "metrics": {"cpu_percent": 12.5, "memory_percent": memory, "uptime_seconds": marker,
                        "disks": disks if disks is not None else [{"mount": "C:", "percent": 41.0}]}}
    if inventory is not None:
        body["inventory"] = inventory
    if inventory_hash_ is not None:
        body["inventory_hash"] = inventory_hash_
    if inventory is None and inventory_hash_ is None:
        body["inventory_hash"] = "0" * 64
    if ack is not None:
        body["usb_policy_ack"] = ack
    response = anonymous.post("/api/machines/heartbeat", json=body,
                              headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == expect, (response.status_code, response.text)
    return response.json(), marker


def detail(admin: Client, machine_id: str) -> dict:
    response = admin.get(f"/api/admin/machines/{machine_id}")
    assert response.status_code == 200, response.text
    return response.json()


def processed(admin: Client, machine_id: str, marker: int) -> dict:
    """The machine's detail once the heartbeat with this marker has been applied."""
    def check():
        view = detail(admin, machine_id)
        return view if (view.get("last_metrics") or {}).get("uptime_seconds") == marker else None
    view = eventually(check, PROCESSED_TIMEOUT)
    assert view, f"heartbeat {marker} of {machine_id} not processed in {PROCESSED_TIMEOUT}s: " \
                 f"{detail(admin, machine_id)}"
    return view


def beat_and_wait(anonymous, admin, token, machine_id, **kwargs) -> tuple[dict, dict]:
    answer, marker = beat(anonymous, token, **kwargs)
    return answer, processed(admin, machine_id, marker)


def versions(admin: Client, machine_id: str, **query) -> list[dict]:
    return change_page(admin, machine_id, **query)["items"]


def change_page(admin: Client, machine_id: str, **query) -> dict:
    response = admin.get(f"/api/admin/machines/{machine_id}/inventory/changes", params=query)
    assert response.status_code == 200, response.text
    return response.json()


def users(admin: Client, kind: str) -> list[dict]:
    response = admin.get("/api/admin/users", params={"type": kind, "limit": 500})
    assert response.status_code == 200, response.text
    return response.json()["items"]


def machine_ids(admin: Client, **params) -> set[str]:
    response = admin.get("/api/admin/machines", params=params)
    assert response.status_code == 200, (params, response.text)
    return {m["id"] for m in response.json()["items"]}


def sample_inventory(packages: int = 300) -> dict:
    """A realistic inventory (tens of KB): hardware, software, disks, network, plus the
    volatile fields an agent collects every time."""
    return {
        "collected_at": datetime.now(timezone.utc).isoformat(),
        "uptime_seconds": 3600,
        "hardware": {"manufacturer": "Dell Inc.", "model": "OptiPlex 7090",
                     "cpu": {"model": "Intel(R) Core(TM) i7-10700", "cores": 8, "threads": 16},
                     "memory_bytes": 17_179_869_184, "bios": {"vendor": "Dell", "version": "1.14.0"}},
        "software": {"packages": [{"name": f"package-{index:03d}", "version": f"1.{index}.0",
                                   "publisher": "Fornecedor Ltda", "install_date": "2024-05-01"}
                                  for index in range(packages)]},
        "disks": [{"mount": "C:", "size_bytes": 512_110_190_592, "free_bytes": 210_000_000_000,
                   "percent": 59.0, "filesystem": "NTFS"},
                  {"mount": "D:", "size_bytes": 1_000_204_886_016, "free_bytes": 900_000_000_000,
                   "percent": 10.0, "filesystem": "NTFS"}],
        "network": [{"mac": "3c:52:82:10:20:30", "name": "Ethernet", "ipv4": "10.0.0.15"},
                    {"mac": "3c:52:82:10:20:31", "name": "Wi-Fi", "ipv4": "10.0.1.22"}],
    }


def shuffled(value):
    """The same document with every dict's keys and every list in another order."""
    if isinstance(value, dict):
        items = list(value.items())
        random.shuffle(items)
        return {key: shuffled(item) for key, item in items}
    if isinstance(value, list):
        items = [shuffled(item) for item in value]
        random.shuffle(items)
        return items
    return value


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


# --- registration -------------------------------------------------------------------------

def test_register_creates_machine_collaborator_and_machine_user(tenant, anonymous):
    admin = tenant.admin
    company = tenant.company()
    machines_before = {u["id"] for u in users(admin, "machines")}
    email = f"colab-{uuid.uuid4().hex[:8]}@example.test"

    before = now_utc()
    body, enrolled = enrol(anonymous, company, hostname="recepcao-01", email=email,
                           name="Joana Recepção")
    assert set(enrolled) >= {"machine_id", "token", "expires_at", "reused"}, enrolled
    assert enrolled["reused"] is False
    assert isinstance(enrolled["token"], str) and len(enrolled["token"]) >= 20
    uuid.UUID(enrolled["machine_id"])
    expires = parse(enrolled["expires_at"])
    assert before + timedelta(days=30) - timedelta(minutes=2) <= expires <= \
        now_utc() + timedelta(days=30) + timedelta(minutes=2), enrolled["expires_at"]

    people = [u for u in users(admin, "people") if u["email"] == email]
    assert len(people) == 1, users(admin, "people")
    assert people[0]["role"] == "collaborator" and people[0]["name"] == "Joana Recepção"
    assert people[0]["company_id"] == company["id"]
    new_machine_users = [u for u in users(admin, "machines") if u["id"] not in machines_before]
    assert len(new_machine_users) == 1, new_machine_users
    assert new_machine_users[0]["role"] == "machine"

    view = detail(admin, enrolled["machine_id"])
    assert view["company_id"] == company["id"]
    assert view["hostname"] == "recepcao-01"
    assert view["os_label"] == "Windows 11 Pro (26100)"
    assert view["assigned_user"]["email"] == email
    assert view["assigned_user"]["id"] == people[0]["id"]
    assert view["machine_user_id"] == new_machine_users[0]["id"]
    assert view["persona"] == "collaborator"
    assert view["linked_users"] == []
    assert view["status"] == "offline" and view["health_bucket"] == "never"
    assert view["last_seen_at"] is None and view["inventory_hash"] is None


def test_reinstall_reuses_the_record_and_revokes_the_old_token(tenant, anonymous):
    admin = tenant.admin
    company = tenant.company()
    the_serial = serial()
    first_body, first = enrol(anonymous, company, serials=[the_serial], macs=[physical_mac()])
    _, view = beat_and_wait(anonymous, admin, first["token"], first["machine_id"],
                            inventory=sample_inventory(20))
    assert len(versions(admin, first["machine_id"])) == 1

    # the same hardware reinstalled: same serial (written differently), a new network card
    again_body = registration(company, serials=[the_serial.lower().replace("BR", "br-")],
                              macs=[physical_mac()], hostname="reinstalled",
                              email=first_body["collaborator"]["email"])
    again = register(anonymous, again_body)
    assert again["machine_id"] == first["machine_id"]
    assert again["reused"] is True
    assert again["token"] != first["token"]

    refused = anonymous.post("/api/machines/heartbeat", headers={"Authorization": f"Bearer {first['token']}"},
                             json={"sent_at": sent_at(), "inventory_hash": "0" * 64})
    assert error(refused, 401)["code"] == "invalid_token"
    beat(anonymous, again["token"])  # 202

    reused_view = detail(admin, first["machine_id"])
    assert reused_view["hostname"] == "reinstalled"
    assert len(versions(admin, first["machine_id"])) == 1  # history kept with the record
    assert machine_ids(admin, company_id=company["id"]) == {first["machine_id"]}

    # the new MAC alone is now enough to recognise it
    by_mac = register(anonymous, registration(company, serials=[], macs=[again_body["mac_addresses"][0].upper()]))
    assert by_mac["machine_id"] == first["machine_id"] and by_mac["reused"] is True

    # the same serial in another company is another machine
    other_company = tenant.company()
    elsewhere = register(anonymous, registration(other_company, serials=[the_serial], macs=[]))
    assert elsewhere["reused"] is False
    assert elsewhere["machine_id"] != first["machine_id"]
    assert detail(admin, elsewhere["machine_id"])["company_id"] == other_company["id"]


def test_registration_refuses_virtual_identifiers_and_bad_provisioning_codes(tenant, anonymous):
    admin = tenant.admin
    company = tenant.company()

    virtual_only = registration(company, macs=["02:42:ac:11:00:02", "00:50:56:aa:bb:cc",
                                               "00-0C-29-12-34-56", "ff:ff:ff:ff:ff:ff"],
                                serials=["To be filled by O.E.M.", "Default string", "0000000"])
    assert error(anonymous.post("/api/machines/register", json=virtual_only), 422)["code"] == \
        "validation_failed"
    nothing = registration(company, macs=[], serials=[])
    error(anonymous.post("/api/machines/register", json=nothing), 422)
    assert machine_ids(admin, company_id=company["id"]) == set()

    wrong = registration(company)
    wrong["provisioning_code"] = "not-" + company["provisioning_code"]
    assert error(anonymous.post("/api/machines/register", json=wrong), 401)["code"] == \
        "invalid_provisioning_code"

    rotated = admin.post(f"/api/admin/companies/{company['id']}/provisioning-code")
    assert rotated.status_code == 200, rotated.text
    new_code = rotated.json()["provisioning_code"]
    assert new_code != company["provisioning_code"]
    stale = registration(company)  # still carries the old code
    assert error(anonymous.post("/api/machines/register", json=stale), 401)["code"] == \
        "invalid_provisioning_code"
    stale["provisioning_code"] = new_code
    assert register(anonymous, stale)["reused"] is False
    assert len(machine_ids(admin, company_id=company["id"])) == 1


def test_reset_agent_revokes_every_token(tenant, anonymous):
    admin = tenant.admin
    company = tenant.company()
    body, enrolled = enrol(anonymous, company)
    beat(anonymous, enrolled["token"])

    reset = admin.post(f"/api/admin/machines/{enrolled['machine_id']}/reset-agent", json={})
    assert reset.status_code == 200, reset.text
    assert reset.json()["revoked_tokens"] == 1

    refused = anonymous.post("/api/machines/heartbeat", headers={"Authorization": f"Bearer {enrolled['token']}"},
                             json={"sent_at": sent_at(), "inventory_hash": "0" * 64})
    assert error(refused, 401)["code"] == "invalid_token"

    again = register(anonymous, body)  # the agent re-registers
    assert again["machine_id"] == enrolled["machine_id"] and again["reused"] is True
    beat(anonymous, again["token"])

    missing = admin.post(f"/api/admin/machines/{uuid.uuid4()}/reset-agent", json={})
    assert error(missing, 404)["code"] == "machine_not_found"


# --- heartbeats ---------------------------------------------------------------------------

def test_heartbeat_updates_state_and_negotiates_the_inventory(tenant, anonymous):
    admin = tenant.admin
    company = tenant.company()
    _, enrolled = enrol(anonymous, company)
    machine_id, token = enrolled["machine_id"], enrolled["token"]
    inventory = sample_inventory()
    expected_hash = inventory_hash(inventory)

    # a hash the server does not hold (it holds nothing yet): send the full inventory
    answer, marker = beat(anonymous, token, inventory_hash_=expected_hash)
    assert answer == {"need_inventory": True, "usb_policy": None}
    processed(admin, machine_id, marker)

    answer, view = beat_and_wait(anonymous, admin, token, machine_id, inventory=inventory)
    assert answer == {"need_inventory": False, "usb_policy": None}
    assert view["inventory_hash"] == expected_hash
    assert view["status"] == "online"
    assert view["health_bucket"] == "online"
    assert now_utc() - parse(view["last_seen_at"]) < timedelta(minutes=1)
    assert view["last_metrics"]["cpu_percent"] == 12.5
    assert view["last_metrics"]["memory_percent"] == 23.5
    assert view["last_metrics"]["disks"] == [{"mount": "C:", "percent": 41.0}]

    answer, view = beat_and_wait(anonymous, admin, token, machine_id, inventory_hash_=expected_hash)
    assert answer["need_inventory"] is False
    assert view["inventory_hash"] == expected_hash

    unknown = inventory_hash({"something": "else"})
    answer, view = beat_and_wait(anonymous, admin, token, machine_id, inventory_hash_=unknown)
    assert answer["need_inventory"] is True
    assert view["inventory_hash"] == expected_hash  # a hash alone never replaces the inventory

    assert machine_id in machine_ids(admin, status="online")
    assert len(versions(admin, machine_id)) == 1

    # what the gateway refuses before queueing anything
    no_token = anonymous.post("/api/machines/heartbeat", json={"sent_at": sent_at(), "inventory_hash": unknown})
    assert error(no_token, 401)["code"] == "missing_token"
    bad_token = anonymous.post("/api/machines/heartbeat", headers={"Authorization": "Bearer nope"},
                               json={"sent_at": sent_at(), "inventory_hash": unknown})
    assert error(bad_token, 401)["code"] == "invalid_token"
    no_time = anonymous.post("/api/machines/heartbeat", headers={"Authorization": f"Bearer {token}"},
                             json={"inventory_hash": unknown})
    error(no_time, 422)


def test_inventory_versions_grow_with_changes_only(tenant, anonymous):
    admin = tenant.admin
    company = tenant.company()
    _, enrolled = enrol(anonymous, company)
    machine_id, token = enrolled["machine_id"], enrolled["token"]
    inventory = sample_inventory(400)
    first_hash = inventory_hash(inventory)

    beat_and_wait(anonymous, admin, token, machine_id, inventory=inventory)
    initial = versions(admin, machine_id)
    assert len(initial) == 1, initial
    assert (initial[0]["version"], initial[0]["initial"]) == (1, True), initial
    assert initial[0]["changes"] == {"added": {}, "removed": {}, "changed": {}}

    # the same inventory: keys and lists in another order, volatile fields changed
    same = shuffled(inventory)
    same["uptime_seconds"] = 999_999
    same["collected_at"] = (now_utc() + timedelta(minutes=3)).isoformat()
    for disk in same["disks"]:
        disk["free_bytes"] -= 1_000_000
        disk["percent"] += 0.5
    assert inventory_hash(same) == first_hash
    answer, view = beat_and_wait(anonymous, admin, token, machine_id, inventory=same)
    assert answer["need_inventory"] is False
    assert view["inventory_hash"] == first_hash
    assert versions(admin, machine_id) == initial  # an unchanged inventory costs no row

    changed = shuffled(inventory)
    target = next(p for p in changed["software"]["packages"] if p["name"] == "package-123")
    target["version"] = "1.123.1"
    second_hash = inventory_hash(changed)
    assert second_hash != first_hash
    _, view = beat_and_wait(anonymous, admin, token, machine_id, inventory=changed)
    assert view["inventory_hash"] == second_hash

    records = versions(admin, machine_id)
    assert len(records) == 2, records
    newest = records[0]
    assert (newest["version"], newest["initial"]) == (2, False), newest
    assert len(orjson.dumps(newest["changes"])) < 1024, newest
    assert admin.get(f"/api/admin/machines/{machine_id}/inventory").json()["version"] == 2
    changes = newest["changes"]
    touched = list(changes.get("changed", {})) + list(changes.get("added", {})) + list(changes.get("removed", []))
    assert touched and all("package-123" in path for path in touched), changes
    assert any(path.endswith("version") for path in changes.get("changed", {})), changes
    assert ["1.123.0", "1.123.1"] in list(changes["changed"].values()), changes

    # a page at a time, newest first, without skipping or repeating
    first_page = change_page(admin, machine_id, limit=1)
    assert [item["version"] for item in first_page["items"]] == [2] and first_page["next_cursor"]
    last_page = change_page(admin, machine_id, limit=1, cursor=first_page["next_cursor"])
    assert [item["version"] for item in last_page["items"]] == [1] and last_page["next_cursor"] is None
    error(admin.get(f"/api/admin/machines/{machine_id}/inventory/changes", params={"cursor": "bm9wZQ"}), 422)


def test_posture_alert_opens_once_and_closes(tenant, anonymous):
    admin = tenant.admin
    _, enrolled = enrol(anonymous, tenant.company())
    machine_id, token = enrolled["machine_id"], enrolled["token"]

    def disk_alerts(view):
        return [a for a in view["open_alerts"] if a["kind"] == "DISK_ALMOST_FULL"]

    full = [{"mount": "C:", "percent": 95.0}, {"mount": "D:", "percent": 20.0}]
    _, view = beat_and_wait(anonymous, admin, token, machine_id, disks=full)
    opened = disk_alerts(view)
    assert len(opened) == 1, view["open_alerts"]
    assert opened[0]["details"]["disks"] == [{"mount": "C:", "percent": 95.0}]

    _, view = beat_and_wait(anonymous, admin, token, machine_id, disks=full)
    assert disk_alerts(view) == opened  # the same alert, not a second one

    _, view = beat_and_wait(anonymous, admin, token, machine_id,
                            disks=[{"mount": "C:", "percent": 50.0}])
    assert disk_alerts(view) == []

    _, view = beat_and_wait(anonymous, admin, token, machine_id, disks=full)
    reopened = disk_alerts(view)
    assert len(reopened) == 1 and reopened[0]["id"] != opened[0]["id"]


def test_usb_policy_is_refused_for_an_agent_that_does_not_apply_it(tenant, anonymous):
    admin = tenant.admin
    _, plain = enrol(anonymous, tenant.company())  # as the shipped agent registers
    _, newer = enrol(anonymous, tenant.company(), capabilities=["usb_policy", "some_future_thing"])
    assert detail(admin, plain["machine_id"])["usb_policy_supported"] is False
    assert detail(admin, newer["machine_id"])["usb_policy_supported"] is True  # unknown names ignored
    refused = admin.request("PUT", f"/api/admin/machines/{plain['machine_id']}/usb-policy", json={"mode": "BLOCK"})
    assert error(refused, 409)["code"] == "usb_policy_unsupported"
    assert detail(admin, plain["machine_id"])["usb_policy"] is None
    for bad in (["USB"], ["x" * 40], "usb_policy", [1], ["usb_policy"] * 17):
        assert error(anonymous.post("/api/machines/register", json=registration(tenant.company(), capabilities=bad)),
                     422)["code"] == "validation_failed", bad


def test_usb_policy_pending_applied_and_stale(tenant, anonymous, rpc):
    admin = tenant.admin
    _, enrolled = enrol(anonymous, tenant.company(), capabilities=["usb_policy"])
    machine_id, token = enrolled["machine_id"], enrolled["token"]
    beat_and_wait(anonymous, admin, token, machine_id)

    asked = admin.request("PUT", f"/api/admin/machines/{machine_id}/usb-policy", json={"mode": "BLOCK"})
    assert asked.status_code == 200, asked.text
    assert asked.json()["mode"] == "BLOCK" and asked.json()["status"] == "PENDING"
    assert detail(admin, machine_id)["usb_policy"]["status"] == "PENDING"

    answer, _ = beat_and_wait(anonymous, admin, token, machine_id)
    assert answer["usb_policy"] == "BLOCK"

    _, view = beat_and_wait(anonymous, admin, token, machine_id, ack={"mode": "BLOCK"})
    assert view["usb_policy"]["status"] == "APPLIED", view["usb_policy"]
    assert view["usb_policy"]["mode"] == "BLOCK" and view["usb_policy"]["applied_at"]
    answer, _ = beat_and_wait(anonymous, admin, token, machine_id)
    assert answer["usb_policy"] is None

    asked = admin.request("PUT", f"/api/admin/machines/{machine_id}/usb-policy", json={"mode": "READ_ONLY"})
    assert asked.status_code == 200, asked.text
    assert asked.json()["status"] == "PENDING"
    rpc.devices.expire_stale_usb_policies(now_utc().isoformat())  # within the TTL: untouched
    assert detail(admin, machine_id)["usb_policy"]["status"] == "PENDING"

    swept = rpc.devices.expire_stale_usb_policies((now_utc() + timedelta(hours=2)).isoformat())
    assert swept["marked_stale"] >= 1
    view = detail(admin, machine_id)
    assert view["usb_policy"]["status"] == "STALE" and view["usb_policy"]["mode"] == "READ_ONLY"
    stale_alerts = [a for a in view["open_alerts"] if a["kind"] == "USB_POLICY_STALE"]
    assert len(stale_alerts) == 1, view["open_alerts"]

    bad = admin.request("PUT", f"/api/admin/machines/{machine_id}/usb-policy", json={"mode": "EJECT"})
    error(bad, 422)


# --- links and access ------------------------------------------------------------------

def test_links_and_access(tenant, anonymous):
    admin = tenant.admin
    body, enrolled = enrol(anonymous, tenant.company())
    machine_id = enrolled["machine_id"]
    assigned_email = body["collaborator"]["email"]
    linked_email = f"linked-{uuid.uuid4().hex[:8]}@example.test"

    # a link names someone who exists: an unknown email is refused, and nobody is created
    unknown = error(admin.post("/api/admin/devices/links", json={"machine_id": machine_id, "email": linked_email}), 404)
    assert unknown["code"] == "email_not_found", unknown
    assert linked_email not in {u["email"] for u in users(admin, "people")}
    assert detail(admin, machine_id)["linked_users"] == []

    manager_email = f"gerente-{uuid.uuid4().hex[:8]}@example.test"
    for email in (linked_email, manager_email):
        created = admin.post("/api/admin/users", json={"email": email, "name": "Vinculada", "role": "collaborator"})
        assert created.status_code == 201, created.text
    linked = admin.post("/api/admin/devices/links", json={"machine_id": machine_id, "email": linked_email.upper()})
    assert linked.status_code == 201, linked.text
    links = linked.json()["linked_users"]
    assert [u["email"] for u in links] == [linked_email]
    assert [u["email"] for u in detail(admin, machine_id)["linked_users"]] == [linked_email]

    same = admin.post("/api/admin/devices/links", json={"machine_id": machine_id, "email": assigned_email})
    assert error(same, 409)["code"] == "already_assigned"

    removed = admin.delete("/api/admin/devices/links",
                           params={"machine_id": machine_id, "user_id": links[0]["id"]})
    assert removed.status_code == 200, removed.text
    assert removed.json()["linked_users"] == []
    assert detail(admin, machine_id)["linked_users"] == []
    again = admin.delete("/api/admin/devices/links", params={"machine_id": machine_id, "user_id": links[0]["id"]})
    error(again, 404)

    assert admin.post("/api/admin/devices/links",
                      json={"machine_id": machine_id, "email": manager_email}).status_code == 201
    access = admin.post(f"/api/admin/machines/{machine_id}/access",
                        json={"email": manager_email, "name": "Gerente", "persona": "manager"})
    assert access.status_code == 200, access.text
    view = detail(admin, machine_id)
    assert view["assigned_user"]["email"] == manager_email
    assert view["persona"] == "manager"
    assert view["linked_users"] == []  # the new principal user is no longer a mere link
    bad = admin.post(f"/api/admin/machines/{machine_id}/access",
                     json={"email": manager_email, "persona": "admin"})
    error(bad, 422)


# --- lists and tenants ----------------------------------------------------------------

def test_machine_list_filters_and_tenant_isolation(system, rpc, tenant, anonymous):
    admin = tenant.admin
    company_a, company_b = tenant.company(), tenant.company()
    tag = uuid.uuid4().hex[:6]
    _, alpha = enrol(anonymous, company_a, hostname=f"lab-alpha-{tag}")
    _, beta = enrol(anonymous, company_b, hostname=f"LAB-beta-{tag}")
    beat_and_wait(anonymous, admin, alpha["token"], alpha["machine_id"])

    assert machine_ids(admin) == {alpha["machine_id"], beta["machine_id"]}
    assert machine_ids(admin, company_id=company_a["id"]) == {alpha["machine_id"]}
    assert machine_ids(admin, company_id=company_b["id"]) == {beta["machine_id"]}
    assert machine_ids(admin, q="beta") == {beta["machine_id"]}
    assert machine_ids(admin, q=f"lab-ALPHA-{tag}") == {alpha["machine_id"]}
    assert machine_ids(admin, q="lab") == {alpha["machine_id"], beta["machine_id"]}
    assert machine_ids(admin, q="nothing-like-this") == set()
    assert machine_ids(admin, status="online") == {alpha["machine_id"]}
    assert machine_ids(admin, status="offline") == {beta["machine_id"]}
    assert machine_ids(admin, status="stale") == set()
    assert machine_ids(admin, status="online", company_id=company_b["id"]) == set()
    listed = admin.get("/api/admin/machines", params={"q": "alpha"}).json()["items"][0]
    assert listed["status"] == "online" and listed["os_label"] == "Windows 11 Pro (26100)"
    error(admin.get("/api/admin/machines", params={"status": "sleeping"}), 422)

    other = new_tenant(system, rpc)
    assert machine_ids(other.admin) == set()
    assert error(other.admin.get(f"/api/admin/machines/{alpha['machine_id']}"), 404)["code"] == \
        "machine_not_found"
    error(other.admin.get(f"/api/admin/machines/{alpha['machine_id']}/inventory/changes"), 404)
    error(other.admin.post(f"/api/admin/machines/{alpha['machine_id']}/reset-agent", json={}), 404)
    error(other.admin.request("PUT", f"/api/admin/machines/{alpha['machine_id']}/usb-policy",
                              json={"mode": "BLOCK"}), 404)
    error(other.admin.post("/api/admin/devices/links",
                           json={"machine_id": alpha["machine_id"], "email": "x@example.test"}), 404)
    # and nothing of that reached the machine
    beat(anonymous, alpha["token"])
    assert detail(admin, alpha["machine_id"])["usb_policy"] is None


# --- status sweeps (RPC, as the scheduler calls them) ----------------------------------

def offline_events(amqp_uri: str):
    """A private queue bound to devices' `machine_offline` events."""
    connection = Connection(amqp_uri)
    queue = Queue(f"test-machine-offline-{uuid.uuid4().hex[:8]}",
                  exchange=get_event_exchange("devices", {}), routing_key="machine_offline",
                  exclusive=True, auto_delete=True)
    bound = queue(connection.channel())
    bound.declare()
    return connection, bound


def drain_offline(bound, machine_id: str, wait: float, enough: int | None = None) -> list[dict]:
    """This machine's `machine_offline` events seen within `wait` seconds (or as soon as
    `enough` of them arrived)."""
    found = []
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and (enough is None or len(found) < enough):
        message = bound.get(no_ack=True)
        if message is None:
            time.sleep(0.2)
            continue
        payload = message.decode()
        if payload.get("machine_id") == machine_id:
            found.append(payload)
    return found


def test_mark_offline_reports_each_machine_once(system, rpc, tenant, anonymous):
    admin = tenant.admin
    _, enrolled = enrol(anonymous, tenant.company())
    machine_id, token = enrolled["machine_id"], enrolled["token"]
    beat_and_wait(anonymous, admin, token, machine_id)  # and every earlier heartbeat too (FIFO)

    connection, bound = offline_events(system.amqp_uri)
    try:
        # now: this machine is online (the count is the whole system's: other tests' machines
        # may be silent, so only this machine's events are looked at)
        rpc.devices.mark_offline(now_utc().isoformat())
        assert drain_offline(bound, machine_id, wait=1.0) == []

        first = rpc.devices.mark_offline((now_utc() + timedelta(hours=1)).isoformat())
        assert first["marked_offline"] >= 1
        events = drain_offline(bound, machine_id, wait=5.0, enough=1)
        events += drain_offline(bound, machine_id, wait=1.0)  # and no second copy
        assert len(events) == 1, events
        assert events[0]["company_id"] == detail(admin, machine_id)["company_id"]

        rpc.devices.mark_offline((now_utc() + timedelta(hours=1)).isoformat())  # already reported
        assert drain_offline(bound, machine_id, wait=2.0) == []

        # back online, then silent again: reported again
        beat_and_wait(anonymous, admin, token, machine_id)
        third = rpc.devices.mark_offline((now_utc() + timedelta(hours=1)).isoformat())
        assert third["marked_offline"] >= 1
        assert len(drain_offline(bound, machine_id, wait=5.0, enough=1)) == 1
    finally:
        connection.release()


def test_machines_last_seen(rpc, tenant, anonymous):
    admin = tenant.admin
    company = tenant.company()
    _, seen = enrol(anonymous, company)
    _, silent = enrol(anonymous, company)
    _, view = beat_and_wait(anonymous, admin, seen["token"], seen["machine_id"])
    unknown = str(uuid.uuid4())

    answer = rpc.devices.machines_last_seen([seen["machine_id"], silent["machine_id"], unknown])
    assert set(answer) == {seen["machine_id"], silent["machine_id"]}, answer
    assert answer[silent["machine_id"]] is None
    last_seen = datetime.fromisoformat(answer[seen["machine_id"]])
    assert last_seen.tzinfo is not None
    assert abs(last_seen - parse(view["last_seen_at"])) < timedelta(seconds=1)
    assert now_utc() - last_seen < timedelta(minutes=1)
    assert rpc.devices.machines_last_seen([]) == {}


def test_a_provisioning_code_never_creates_staff(tenant, anonymous):
    """The persona is the machine's: registering as "manager" makes no manager account."""
    company = tenant.company()
    email = f"persona-{uuid.uuid4().hex[:8]}@example.test"
    _, enrolled = enrol(anonymous, company, email=email, access_role="manager")
    detail = tenant.admin.get(f"/api/admin/machines/{enrolled['machine_id']}").json()
    assert detail["persona"] == "manager"
    person = next(u for u in users(tenant.admin, "people") if u["email"] == email)
    assert person["role"] == "collaborator" and not person["has_password"]


# --- the fleet's software index ---------------------------------------------------------------

def software(admin: Client, **query) -> dict:
    response = admin.get("/api/admin/software", params=query)
    assert response.status_code == 200, response.text
    return response.json()


def test_software_search_answers_which_machines_have_a_package_at_which_versions(system, rpc, tenant, anonymous):
    admin = tenant.admin
    name = f"browser-{uuid.uuid4().hex[:6]}"  # a package only this test's machines have
    first_company, second_company = tenant.company(), tenant.company()
    machines = []
    for company, version in ((first_company, "119.0.1"), (first_company, "120.0"), (second_company, "1:9.0")):
        _, enrolled = enrol(anonymous, company)
        inventory = sample_inventory(5)
        inventory["software"]["packages"].append({"name": name, "version": version})
        beat_and_wait(anonymous, admin, enrolled["token"], enrolled["machine_id"], inventory=inventory)
        machines.append((enrolled, inventory))

    found = software(admin, name=name)
    assert [(v["version"], v["machines"]) for v in found["versions"]] == [("1:9.0", 1), ("120.0", 1), ("119.0.1", 1)]
    assert {item["machine_id"] for item in found["items"]} == {m["machine_id"] for m, _ in machines}
    older = software(admin, name=name, version_lt="120.0")  # 1:9.0 has an epoch: newer than any 120
    assert [item["version"] for item in older["items"]] == ["119.0.1"]
    assert [item["version"] for item in software(admin, name=name, company_id=second_company["id"])["items"]] == ["1:9.0"]
    assert software(admin, name=name, version="120.0")["versions"] == [{"version": "120.0", "machines": 1}]
    assert software(admin, name=f"{name}-nobody-has") == {"name": f"{name}-nobody-has", "versions": [], "items": [],
                                                        "next_cursor": None}

    # an upgrade moves the machine to its new version; pages never skip or repeat
    (enrolled, inventory) = machines[0]
    next(p for p in inventory["software"]["packages"] if p["name"] == name)["version"] = "121.0"
    beat_and_wait(anonymous, admin, enrolled["token"], enrolled["machine_id"], inventory=inventory)
    assert [(v["version"], v["machines"]) for v in software(admin, name=name, version_lt="121")["versions"]] == [
        ("120.0", 1)]
    first = software(admin, name=name, limit=2)
    rest = software(admin, name=name, limit=2, cursor=first["next_cursor"])
    assert len(first["items"]) == 2 and len(rest["items"]) == 1 and rest["next_cursor"] is None
    assert rest["versions"] == []  # counted on the first page
    assert {i["machine_id"] for i in first["items"] + rest["items"]} == {m["machine_id"] for m, _ in machines}

    # another tenant sees none of it; staff only; bad queries are 422
    assert software(new_tenant(system, rpc).admin, name=name)["items"] == []
    _, collaborator = tenant.person("collaborator")
    assert error(collaborator.get("/api/admin/software", params={"name": name}), 403)["code"] == "forbidden_role"
    for bad in ({}, {"name": ""}, {"name": name, "limit": 0}, {"name": name, "company_id": "x"},
                {"name": name, "cursor": "bm9wZQ"}, {"name": "x" * 201}):
        assert error(admin.get("/api/admin/software", params=bad), 422)["code"] == "validation_failed", bad
