"""A machine's current inventory and its hourly metrics, read through the gateway
(`GET /api/admin/machines/{id}/inventory` and `/metrics`): what the heartbeats stored, for
staff of the machine's tenant only."""
from datetime import datetime, timedelta, timezone

from chamados_protocol.inventory import canonical_form, inventory_hash
from tests.e2e.test_devices import (beat, beat_and_wait, enrol, error, parse, sample_inventory)
from tests.harness import backdate_registration, eventually


def inventory_of(admin, machine_id: str) -> dict:
    response = admin.get(f"/api/admin/machines/{machine_id}/inventory")
    assert response.status_code == 200, response.text
    return response.json()


def metrics_of(admin, machine_id: str, **params):
    return admin.get(f"/api/admin/machines/{machine_id}/metrics", params=params)


def test_current_inventory_is_the_last_one_sent(tenant, anonymous):
    admin = tenant.admin
    _, enrolled = enrol(anonymous, tenant.company())
    machine_id, token = enrolled["machine_id"], enrolled["token"]
    assert inventory_of(admin, machine_id) == {"hash": None, "version": None, "updated_at": None,
                                               "document": None}

    first = sample_inventory(20)
    before = datetime.now(timezone.utc)
    beat_and_wait(anonymous, admin, token, machine_id, inventory=first)
    stored = inventory_of(admin, machine_id)
    assert stored["hash"] == inventory_hash(first)
    assert stored["document"] == canonical_form(first)[0]  # as stored: volatile fields left out
    assert "collected_at" not in stored["document"]
    changed_at = parse(stored["updated_at"])
    assert before - timedelta(seconds=5) <= changed_at <= datetime.now(timezone.utc) + timedelta(seconds=5)

    # a hash-only heartbeat changes nothing; a changed inventory replaces the document
    beat_and_wait(anonymous, admin, token, machine_id, inventory_hash_=stored["hash"])
    assert inventory_of(admin, machine_id) == stored
    second = sample_inventory(20)
    second["hardware"]["model"] = "OptiPlex 7010"
    beat_and_wait(anonymous, admin, token, machine_id, inventory=second)
    replaced = inventory_of(admin, machine_id)
    assert replaced["hash"] == inventory_hash(second) != stored["hash"]
    assert (stored["version"], replaced["version"]) == (1, 2)
    assert replaced["document"]["hardware"]["model"] == "OptiPlex 7010"
    assert parse(replaced["updated_at"]) >= changed_at


def test_hourly_metrics_hold_the_current_hour_and_late_hours(tenant, anonymous):
    admin = tenant.admin
    _, enrolled = enrol(anonymous, tenant.company())
    machine_id, token = enrolled["machine_id"], enrolled["token"]
    empty = metrics_of(admin, machine_id)
    assert empty.status_code == 200, empty.text
    assert empty.json()["hours"] == 24 and empty.json()["items"] == []

    beat_and_wait(anonymous, admin, token, machine_id, memory=20.0)
    beat_and_wait(anonymous, admin, token, machine_id, memory=40.0)
    # a heartbeat measured three hours ago (the machine is older) arrives late: it counts in its own hour
    backdate_registration(tenant.system.database_url, [machine_id])
    three_hours_ago = datetime.now(timezone.utc) - timedelta(hours=3)
    late = anonymous.post("/api/machines/heartbeat", headers={"Authorization": f"Bearer {token}"},
                          json={"sent_at": three_hours_ago.isoformat(), "inventory_hash": "0" * 64,
                                "metrics": {"cpu_percent": 80.0, "memory_percent": 70.0,
                                            "disks": [{"mount": "C:", "percent": 55.0}]}})
    assert late.status_code == 202, late.text

    def both_hours():
        items = metrics_of(admin, machine_id).json()["items"]
        return items if len(items) >= 2 else None
    items = eventually(both_hours, 10.0)
    assert items, metrics_of(admin, machine_id).json()
    hours = [parse(item["hour"]) for item in items]
    assert hours == sorted(hours) and all(h.minute == h.second == 0 for h in hours)
    old, current = items[0], items[-1]
    assert parse(old["hour"]) == three_hours_ago.replace(minute=0, second=0, microsecond=0)
    assert (old["samples"], old["cpu_max"], old["memory_avg"], old["disk_max"]) == (1, 80.0, 70.0, 55.0)
    # the current hour so far (both heartbeats, unless the test ran across an hour's end)
    assert sum(item["samples"] for item in items[1:]) == 2
    if current["samples"] == 2:
        assert current["memory_avg"] == 30.0 and current["memory_max"] == 40.0
        assert current["cpu_avg"] == 12.5

    answer = metrics_of(admin, machine_id, hours=2).json()
    assert answer["hours"] == 2
    assert all(parse(item["hour"]) >= parse(answer["since"]) for item in answer["items"])
    assert old["hour"] not in {item["hour"] for item in answer["items"]}
    week = metrics_of(admin, machine_id, hours=168)
    assert week.status_code == 200 and len(week.json()["items"]) == len(items)


def test_inventory_and_metrics_are_staff_only_and_tenant_scoped(system, rpc, tenant, anonymous):
    from tests.harness import new_tenant

    admin = tenant.admin
    _, enrolled = enrol(anonymous, tenant.company())
    machine_id = enrolled["machine_id"]
    beat(anonymous, enrolled["token"])

    for hours in (0, 169, "x"):
        assert error(metrics_of(admin, machine_id, hours=hours), 422)["code"] == "validation_failed"
    assert error(admin.get(f"/api/admin/machines/{machine_id}/metrics", params={"days": 1}), 422)

    _, collaborator = tenant.person("collaborator")
    assert error(collaborator.get(f"/api/admin/machines/{machine_id}/inventory"), 403)["code"] == "forbidden_role"
    assert error(metrics_of(collaborator, machine_id), 403)["code"] == "forbidden_role"
    _, agent = tenant.person("agent")
    assert metrics_of(agent, machine_id).status_code == 200

    other = new_tenant(system, rpc).admin
    assert error(other.get(f"/api/admin/machines/{machine_id}/inventory"), 404)["code"] == "machine_not_found"
    assert error(metrics_of(other, machine_id), 404)["code"] == "machine_not_found"
    assert error(admin.get("/api/admin/machines/not-a-uuid/inventory"), 404)["code"] == "machine_not_found"
    assert error(anonymous.get(f"/api/admin/machines/{machine_id}/metrics"), 401)
