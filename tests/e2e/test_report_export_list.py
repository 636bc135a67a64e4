"""GET /api/reports/exports: the tenant's recent exports (the console's Relatórios lists
them), newest first, bounded, staff only, never another tenant's."""
from tests.harness import eventually, new_tenant


def request_export(client, filters: dict) -> dict:
    response = client.post("/api/reports/exports", json={"filters": filters})
    assert response.status_code == 202, response.text
    return response.json()


def made(client, export_id: str) -> dict:
    """The export once the service has made it (it starts on a request at once)."""
    def view():
        response = client.get(f"/api/reports/exports/{export_id}")
        assert response.status_code == 200, response.text
        return response.json()
    return eventually(lambda: (lambda e: e if e["status"] == "DONE" else None)(view())) or view()


def test_staff_list_their_tenants_exports_newest_first(system, rpc, tenant):
    _, agent = tenant.person("agent")
    _, collaborator = tenant.person("collaborator")
    other = new_tenant(system, rpc)
    foreign = request_export(other.admin, {})
    ours = [request_export(tenant.admin, {"status": "PENDING"}), request_export(agent, {}),
            request_export(tenant.admin, {"priority": "HIGH"})]

    finished = [made(agent, export["id"]) for export in ours]

    listed = agent.get("/api/reports/exports")
    assert listed.status_code == 200, listed.text
    items = listed.json()["items"]
    assert [item["id"] for item in items] == [export["id"] for export in reversed(ours)]
    assert items[0] == finished[-1]  # the same view as GET /exports/<id>
    assert {key: items[0][key] for key in ("id", "filters", "delimiter", "created_at", "status_url")} == \
        {key: ours[-1][key] for key in ("id", "filters", "delimiter", "created_at", "status_url")}
    assert foreign["id"] not in {item["id"] for item in items}

    bounded = tenant.admin.get("/api/reports/exports", params={"limit": 2})
    assert bounded.status_code == 200, bounded.text
    assert [item["id"] for item in bounded.json()["items"]] == [ours[2]["id"], ours[1]["id"]]

    assert [item["id"] for item in other.admin.get("/api/reports/exports").json()["items"]] == [foreign["id"]]
    refused = collaborator.get("/api/reports/exports")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden_role"
    for limit in (0, 101, "many"):
        invalid = tenant.admin.get("/api/reports/exports", params={"limit": limit})
        assert invalid.status_code == 422, (limit, invalid.text)
