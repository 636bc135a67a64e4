"""With thresholds other than the defaults, a machine's status and its health bucket agree on
its page, in the device list's status filter and in the health snapshot (issue 13, item 4:
a machine was shown `stale` with the bucket `lt_5m`). A system of its own, started with
MACHINE_ONLINE_SECONDS=2 and MACHINE_STALE_SECONDS=3600."""
import pytest

from services.devices.domain import BUCKET_STATUS
from tests.e2e.test_devices import beat_and_wait, detail, enrol, machine_ids
from tests.harness import Client, eventually, new_tenant, private_system

ONLINE_SECONDS, STALE_SECONDS = 2, 3600


@pytest.fixture(scope="module")
def short_thresholds(postgres, tmp_path_factory):
    """(system, rpc proxy) with short status thresholds."""
    with private_system(postgres, tmp_path_factory.mktemp("short"), extra_env={
            "MACHINE_ONLINE_SECONDS": str(ONLINE_SECONDS), "MACHINE_STALE_SECONDS": str(STALE_SECONDS)}) as running:
        yield running


def test_status_and_health_bucket_come_from_the_same_thresholds(short_thresholds):
    system, rpc = short_thresholds
    tenant = new_tenant(system, rpc)
    admin, anonymous = tenant.admin, Client(system.base_url)
    _, enrolled = enrol(anonymous, tenant.company())
    machine_id = enrolled["machine_id"]

    _, view = beat_and_wait(anonymous, admin, enrolled["token"], machine_id)
    assert BUCKET_STATUS[view["health_bucket"]] == view["status"], view

    # past MACHINE_ONLINE_SECONDS, well within 5 minutes: stale, and in the stale bucket
    view = eventually(lambda: (seen := detail(admin, machine_id))["status"] == "stale" and seen, timeout=15)
    assert view, detail(admin, machine_id)
    assert (view["status"], view["health_bucket"]) == ("stale", "stale"), view
    assert machine_ids(admin, status="stale") == {machine_id}
    assert machine_ids(admin, status="online") == set()

    snapshot = admin.get("/api/admin/health")
    assert snapshot.status_code == 200, snapshot.text
    heartbeats = snapshot.json()["heartbeats"]
    assert heartbeats["machines"] == 1
    assert heartbeats["buckets"] == {"online": 0, "stale": 1, "offline_lt_24h": 0, "offline_gt_24h": 0,
                                     "never": 0}
    assert heartbeats["thresholds"] == {"online_seconds": ONLINE_SECONDS, "stale_seconds": STALE_SECONDS}
