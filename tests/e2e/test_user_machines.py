"""A user's machines (GET /api/admin/users/<id>/machines, the console's "Dispositivos
vinculados"): the machines they are assigned to or linked with, through the gateway, with
real services; a merge moves them to the account that stays."""
import uuid

from tests.e2e.test_devices import enrol, error
from tests.harness import eventually


def user_by_email(admin, email: str) -> dict:
    response = admin.get("/api/admin/users", params={"q": email})
    assert response.status_code == 200, response.text
    matches = [user for user in response.json()["items"] if user["email"] == email]
    assert len(matches) == 1, response.json()
    return matches[0]


def machines_of(client, user_id: str) -> list[dict]:
    response = client.get(f"/api/admin/users/{user_id}/machines")
    assert response.status_code == 200, response.text
    return response.json()["items"]


def test_a_users_machines_are_the_assigned_and_linked_ones(tenant, anonymous):
    admin = tenant.admin
    company = tenant.company()
    tag = uuid.uuid4().hex[:6]
    assigned_email = f"assigned-{tag}@example.test"
    linked_email = f"linked-{tag}@example.test"
    _, first = enrol(anonymous, company, hostname=f"b-first-{tag}", email=assigned_email)
    _, second = enrol(anonymous, company, hostname=f"a-second-{tag}", email=f"other-{tag}@example.test")
    created = admin.post("/api/admin/users", json={"email": linked_email, "name": "Linked", "role": "collaborator"})
    assert created.status_code == 201, created.text  # a link names someone who exists
    for machine in (first, second):
        linked = admin.post("/api/admin/devices/links",
                            json={"machine_id": machine["machine_id"], "email": linked_email})
        assert linked.status_code == 201, linked.text

    assigned_user = user_by_email(admin, assigned_email)
    [own] = machines_of(admin, assigned_user["id"])
    assert own["id"] == first["machine_id"] and own["relation"] == "assigned"
    assert own["hostname"] == f"b-first-{tag}" and own["company_id"] == company["id"]
    assert own["assigned_user"]["email"] == assigned_email
    assert {"status", "os_label", "last_seen_at"} <= set(own)

    linked_user = user_by_email(admin, linked_email)
    both = machines_of(admin, linked_user["id"])
    assert [m["hostname"] for m in both] == [f"a-second-{tag}", f"b-first-{tag}"]  # by hostname
    assert {m["relation"] for m in both} == {"linked"}

    nobody, agent = tenant.person("collaborator")[0], tenant.person("agent")[1]
    assert machines_of(admin, nobody["id"]) == []
    assert machines_of(agent, linked_user["id"]) == both  # staff read it; the role table says who
    assert error(admin.get(f"/api/admin/users/{uuid.uuid4()}/machines"), 404)["code"] == "user_not_found"
    assert error(admin.get("/api/admin/users/not-an-id/machines"), 404)["code"] == "user_not_found"


def test_a_merge_moves_the_machines_to_the_account_that_stays(tenant, anonymous):
    admin = tenant.admin
    company = tenant.company()
    email = f"leaving-{uuid.uuid4().hex[:6]}@example.test"
    _, enrolled = enrol(anonymous, company, email=email)
    leaving = user_by_email(admin, email)
    staying = tenant.person("collaborator")[0]

    merged = admin.post("/api/admin/users/merge",
                        json={"from_user_id": leaving["id"], "into_user_id": staying["id"]})
    assert merged.status_code == 200, merged.text
    moved = eventually(lambda: machines_of(admin, staying["id"]))  # devices learn it by event
    assert [m["id"] for m in moved] == [enrolled["machine_id"]] and moved[0]["relation"] == "assigned"
    assert machines_of(admin, leaving["id"]) == []
