"""GET /api/admin/health: every section, for staff (their tenant) and for the internal
token (everything); 401/403 otherwise."""
import pytest

from tests.harness import INTERNAL_HEALTH_TOKEN

SECTIONS = {"scope", "tickets", "registrations", "heartbeats", "retention", "jobs"}


def test_staff_see_their_tenant(tenant):
    tenant.admin.post("/api/tickets", json={"subject": "one"})
    _, agent = tenant.person("agent")
    snapshot = agent.get("/api/admin/health")
    assert snapshot.status_code == 200, snapshot.text
    body = snapshot.json()
    assert set(body) == SECTIONS and body["scope"] == "tenant"
    assert body["tickets"] == {"PENDING": 1, "AWAITING_ATTENDANCE": 0, "PAUSED": 0, "RESOLVED": 0}
    assert body["registrations"]["people"] == 2 and body["registrations"]["companies"] == 0
    assert set(body["heartbeats"]["buckets"]) == {"online", "stale", "offline_lt_24h", "offline_gt_24h",
                                                  "never"}
    assert {"sessions", "report_exports", "metrics_hourly", "alerts"} <= set(body["retention"])
    assert {job["name"] for job in body["jobs"]} >= {"chat-cleanup", "usb-cleanup", "offline-sweep"}


def test_internal_token_sees_everything(anonymous, tenant):
    snapshot = anonymous.get("/api/admin/health", headers={"x-internal-token": INTERNAL_HEALTH_TOKEN})
    assert snapshot.status_code == 200, snapshot.text
    assert snapshot.json()["scope"] == "all"
    assert snapshot.json()["registrations"]["people"] >= 1


@pytest.mark.parametrize("headers, status", [
    ({}, 401),
    ({"x-internal-token": "wrong"}, 401),
    ({"x-internal-token": ""}, 401),
    ({"Authorization": "Bearer forged"}, 401),
])
def test_without_credentials_it_is_401(anonymous, headers, status):
    response = anonymous.get("/api/admin/health", headers=headers)
    assert response.status_code == status
    assert set(response.json()["error"]) == {"code", "message", "details"}


def test_collaborators_are_403(tenant):
    _, collaborator = tenant.person("collaborator")
    response = collaborator.get("/api/admin/health")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden_role"
