"""The foundation's acceptance flow, through HTTP only."""


def test_admin_creates_company_and_users_renames_lists_and_merges(tenant):
    admin = tenant.admin
    company = tenant.company("Empresa Exemplo")
    assert len(company["provisioning_code"]) == 32

    created = admin.post("/api/admin/users", json={
        "email": "Maria@Example.com", "name": "Maria", "role": "collaborator",
        "company_id": company["id"]})
    assert created.status_code == 201, created.text
    maria = created.json()

    renamed = admin.patch(f"/api/admin/users/{maria['id']}", json={"email": "maria.silva@example.com"})
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["id"] == maria["id"]
    assert renamed.json()["email"] == "maria.silva@example.com"

    people = admin.get("/api/admin/users", params={"type": "people"}).json()["items"]
    machines = admin.get("/api/admin/users", params={"type": "machines"}).json()["items"]
    assert {u["email"] for u in people} == {tenant.admin_email, "maria.silva@example.com"}
    assert machines == []

    duplicate = admin.post("/api/admin/users", json={
        "email": "MARIA.SILVA@example.com", "name": "Maria 2", "role": "collaborator"})
    assert duplicate.status_code == 409
    assert duplicate.json()["error"]["code"] == "email_taken"

    other = admin.post("/api/admin/users", json={
        "email": "maria.old@example.com", "name": "Maria (old)", "role": "collaborator"}).json()
    merged = admin.post("/api/admin/users/merge",
                        json={"from_user_id": other["id"], "into_user_id": maria["id"]})
    assert merged.status_code == 200, merged.text
    assert merged.json()["from"]["merged_into_id"] == maria["id"]

    listed = {u["id"] for u in admin.get("/api/admin/users").json()["items"]}
    assert other["id"] not in listed and maria["id"] in listed
    tombstone = admin.get(f"/api/admin/users/{other['id']}").json()
    assert tombstone["merged_into_id"] == maria["id"]

    again = admin.post("/api/admin/users/merge",
                       json={"from_user_id": other["id"], "into_user_id": maria["id"]})
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "user_already_merged"


def test_sign_in_me_and_sign_out(tenant, anonymous):
    me = tenant.admin.get("/api/me")
    assert me.status_code == 200
    assert me.json()["email"] == tenant.admin_email

    session = anonymous.post("/api/auth/sign-in", json={
        "email": tenant.admin_email.upper(), "password": tenant.admin_password, "tenant": tenant.slug})
    assert session.status_code == 200
    token = session.json()["token"]
    assert anonymous.post("/api/auth/sign-out", token=token).status_code == 204
    after = anonymous.get("/api/me", token=token)
    assert after.status_code == 401
    assert after.json()["error"]["code"] == "invalid_token"
    assert tenant.admin.get("/api/me").status_code == 200  # other sessions live on


def test_wrong_password_is_401_without_saying_which_part(tenant, anonymous):
    wrong = anonymous.post("/api/auth/sign-in", json={"email": tenant.admin_email, "password": "nope-nope"})
    unknown = anonymous.post("/api/auth/sign-in", json={"email": "ghost@nowhere.test", "password": "nope-nope"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()


def test_users_list_paginates_without_gaps_or_repeats(tenant):
    for index in range(7):
        tenant.admin.post("/api/admin/users", json={
            "email": f"page{index}@example.com", "name": f"P{index}", "role": "collaborator"})
    seen, cursor = [], None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = tenant.admin.get("/api/admin/users", params=params).json()
        seen += [u["id"] for u in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 8


def test_roles_are_enforced(tenant):
    _, agent = tenant.person("agent")
    _, collaborator = tenant.person("collaborator")
    _, manager = tenant.person("manager")

    assert agent.get("/api/admin/users").status_code == 200  # staff read
    denied = agent.post("/api/admin/companies", json={"name": "X", "apelido": "x-agent"})
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "forbidden_role"
    assert collaborator.get("/api/admin/companies").status_code == 403
    assert collaborator.get("/api/me").status_code == 200
    assert manager.post("/api/admin/companies", json={"name": "M", "apelido": "m-co"}).status_code == 201
    promote = manager.post("/api/admin/users", json={"email": "boss@example.com", "name": "B", "role": "admin"})
    assert promote.status_code == 403
    assert manager.post("/api/admin/users/merge", json={
        "from_user_id": tenant.id, "into_user_id": tenant.id}).status_code == 403


def test_another_tenants_ids_are_404(system, rpc, tenant):
    from tests.harness import new_tenant

    other = new_tenant(system, rpc)
    company = other.company()
    user = other.admin.get("/api/me").json()
    assert tenant.admin.get(f"/api/admin/companies/{company['id']}").status_code == 404
    assert tenant.admin.patch(f"/api/admin/companies/{company['id']}", json={"name": "mine"}).status_code == 404
    assert tenant.admin.get(f"/api/admin/users/{user['id']}").status_code == 404
    assert tenant.admin.patch(f"/api/admin/users/{user['id']}", json={"name": "x"}).status_code == 404
    mine = tenant.admin.get("/api/me").json()
    cross = tenant.admin.post("/api/admin/users/merge",
                              json={"from_user_id": user["id"], "into_user_id": mine["id"]})
    assert cross.status_code == 404
    assert other.admin.get("/api/admin/companies").json()["items"] == [company]
    assert all(c["id"] != company["id"] for c in tenant.admin.get("/api/admin/companies").json()["items"])


def test_company_rename_and_code_rotation(tenant):
    company = tenant.company()
    renamed = tenant.admin.patch(f"/api/admin/companies/{company['id']}",
                                 json={"name": "Nova", "apelido": "Nova-Empresa"})
    assert renamed.status_code == 200
    assert renamed.json()["apelido"] == "nova-empresa"
    rotated = tenant.admin.post(f"/api/admin/companies/{company['id']}/provisioning-code")
    assert rotated.status_code == 200
    assert rotated.json()["provisioning_code"] != company["provisioning_code"]
    clash = tenant.company()
    taken = tenant.admin.patch(f"/api/admin/companies/{clash['id']}", json={"apelido": "nova-empresa"})
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "apelido_taken"
    found = tenant.admin.get("/api/admin/companies", params={"q": "NOVA"}).json()["items"]
    assert [c["id"] for c in found] == [company["id"]]


def test_health_and_readiness(anonymous):
    assert anonymous.get("/healthz").json() == {"status": "ok"}
    ready = anonymous.get("/readyz")
    assert ready.status_code == 200
    assert set(ready.json()["checks"]) == {"broker", "accounts", "tickets", "devices", "scheduler", "notifications",
                                          "heartbeats", "events"}
    assert ready.json()["checks"]["events"] == "ok"
