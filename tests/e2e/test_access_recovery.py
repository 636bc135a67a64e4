"""Access recovery (issue 13, item 7): a person changes their own password
(`POST /api/me/password`), and an operator gives anyone a new one with
`chamados reset-password EMAIL` — a lost admin password included — while the system runs."""
import re
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor

from common.config import ROOT
from tests.e2e.test_tickets import me, user
from tests.harness import Client, new_tenant

PASSWORD = "pass-word-1"  # what `user()` gives
SHOWN_ONCE = re.compile(r"^new password of (\S+) \(tenant (\S+)\): (\S+)  <- shown once, keep it$",
                        re.MULTILINE)


def error(response, status: int, code: str) -> dict:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert body["error"]["code"] == code, body
    return body["error"]


def sign_in(tenant, email: str, password: str):
    return Client(tenant.system.base_url).post("/api/auth/sign-in", json={
        "email": email, "password": password, "tenant": tenant.slug})


def reset_password(system, *args: str, env: dict | None = None, stdin: str | None = None):
    """`chamados reset-password …` as an operator runs it, next to the running services."""
    return subprocess.run([sys.executable, "-m", "chamados.cli", "reset-password", *args],
                          env={**system.env, **(env or {})}, cwd=ROOT, capture_output=True,
                          text=True, timeout=120, input=stdin)


# POST /api/me/password ---------------------------------------------------------------------

def test_a_person_changes_their_own_password_and_their_other_sessions_end(tenant):
    maria, here = user(tenant, "collaborator", "Maria Souza")
    elsewhere = Client(tenant.system.base_url).sign_in(maria["email"], PASSWORD, tenant=tenant.slug)

    wrong = here.post("/api/me/password", json={"current_password": "not-my-password",
                                                "new_password": "nova-senha-2"})
    error(wrong, 403, "wrong_password")
    assert me(elsewhere)["id"] == maria["id"]  # a refused change ends nothing
    assert sign_in(tenant, maria["email"], PASSWORD).status_code == 200

    for weak in ("", "curta", "x" * 7):
        refused = here.post("/api/me/password", json={"current_password": PASSWORD, "new_password": weak})
        assert error(refused, 422, "validation_failed")["details"]["fields"].keys() == {"new_password"}
    too_long = here.post("/api/me/password", json={"current_password": PASSWORD,
                                                   "new_password": "x" * 257})
    assert error(too_long, 422, "validation_failed")["details"]["fields"].keys() == {"new_password"}
    missing = here.post("/api/me/password", json={"new_password": "nova-senha-2"})
    assert error(missing, 422, "validation_failed")["details"]["fields"].keys() == {"current_password"}
    assert me(elsewhere)["id"] == maria["id"]

    changed = here.post("/api/me/password", json={"current_password": PASSWORD,
                                                  "new_password": "nova-senha-2"})
    assert changed.status_code == 204, changed.text
    assert changed.content == b""
    assert me(here)["id"] == maria["id"]  # the session that asked lives on
    error(elsewhere.get("/api/me"), 401, "invalid_token")  # the others ended
    error(sign_in(tenant, maria["email"], PASSWORD), 401, "invalid_credentials")
    again = Client(tenant.system.base_url).sign_in(maria["email"], "nova-senha-2", tenant=tenant.slug)
    assert me(again)["id"] == maria["id"]
    assert me(here)["id"] == maria["id"]

    # the old password is no proof any more
    stale = here.post("/api/me/password", json={"current_password": PASSWORD,
                                                "new_password": "outra-senha-3"})
    error(stale, 403, "wrong_password")
    assert me(again)["id"] == maria["id"]


def test_changing_a_password_needs_a_session(tenant, anonymous):
    body = {"current_password": tenant.admin_password, "new_password": "nova-senha-2"}
    error(anonymous.post("/api/me/password", json=body), 401, "missing_token")
    assert sign_in(tenant, tenant.admin_email, tenant.admin_password).status_code == 200


def test_an_admin_changes_their_own_password_too(tenant):
    other = Client(tenant.system.base_url).sign_in(tenant.admin_email, tenant.admin_password,
                                                   tenant=tenant.slug)
    changed = tenant.admin.post("/api/me/password", json={
        "current_password": tenant.admin_password, "new_password": "admin-pass-2"})
    assert changed.status_code == 204, changed.text
    assert tenant.admin.get("/api/admin/users").status_code == 200
    error(other.get("/api/me"), 401, "invalid_token")
    assert sign_in(tenant, tenant.admin_email, "admin-pass-2").status_code == 200


# chamados reset-password ---------------------------------------------------------------------

def test_a_lost_admin_password_is_reset_with_the_system_running(tenant):
    """Generated, printed once; every session of the admin ends; the old password is gone."""
    other = Client(tenant.system.base_url).sign_in(tenant.admin_email, tenant.admin_password,
                                                   tenant=tenant.slug)
    done = reset_password(tenant.system, tenant.admin_email.upper(), "--tenant", tenant.slug)
    assert done.returncode == 0, done.stdout + done.stderr
    shown = SHOWN_ONCE.findall(done.stdout)
    assert len(shown) == 1, done.stdout
    email, slug, password = shown[0]
    assert (email, slug) == (tenant.admin_email, tenant.slug)
    assert done.stdout.count(password) == 1
    assert "sessions ended: 2" in done.stdout

    for client in (tenant.admin, other):
        error(client.get("/api/me"), 401, "invalid_token")
    error(sign_in(tenant, tenant.admin_email, tenant.admin_password), 401, "invalid_credentials")
    admin = Client(tenant.system.base_url).sign_in(tenant.admin_email, password, tenant=tenant.slug)
    assert me(admin)["role"] == "admin"
    assert admin.get("/api/admin/users").status_code == 200


def test_reset_password_takes_it_from_the_environment_or_a_file(tenant, tmp_path):
    maria, session = user(tenant, "collaborator", "Maria Souza")

    from_env = reset_password(tenant.system, maria["email"],
                              env={"CHAMADOS_NEW_PASSWORD": "senha-do-ambiente"})
    assert from_env.returncode == 0, from_env.stdout + from_env.stderr
    assert "senha-do-ambiente" not in from_env.stdout + from_env.stderr
    assert "CHAMADOS_NEW_PASSWORD" in from_env.stdout
    assert not SHOWN_ONCE.search(from_env.stdout)
    error(session.get("/api/me"), 401, "invalid_token")
    error(sign_in(tenant, maria["email"], PASSWORD), 401, "invalid_credentials")
    assert sign_in(tenant, maria["email"], "senha-do-ambiente").status_code == 200

    secret = tmp_path / "new-password"
    secret.write_text("senha-do-arquivo\n")
    from_file = reset_password(tenant.system, maria["email"], "--password-file", str(secret),
                               env={"CHAMADOS_NEW_PASSWORD": "the-file-wins"})
    assert from_file.returncode == 0, from_file.stdout + from_file.stderr
    assert "senha-do-arquivo" not in from_file.stdout
    assert sign_in(tenant, maria["email"], "senha-do-arquivo").status_code == 200  # newline dropped
    error(sign_in(tenant, maria["email"], "the-file-wins"), 401, "invalid_credentials")

    from_stdin = reset_password(tenant.system, maria["email"], "--password-file", "-",
                                stdin="senha-da-entrada\n")
    assert from_stdin.returncode == 0, from_stdin.stdout + from_stdin.stderr
    assert sign_in(tenant, maria["email"], "senha-da-entrada").status_code == 200


def test_reset_password_refuses_what_it_cannot_do_and_changes_nothing(system, rpc, tenant, tmp_path):
    # the same email in two tenants: which one is never guessed
    other = new_tenant(system, rpc)
    email = f"shared-{uuid.uuid4().hex[:8]}@example.com"
    for where in (tenant, other):
        created = where.admin.post("/api/admin/users", json={
            "email": email, "name": "Shared Person", "role": "agent", "password": PASSWORD})
        assert created.status_code == 201, created.text
    empty_file = tmp_path / "empty"
    empty_file.write_text("\n")

    # each refusal changes nothing, so they run at once (each is a process start, ~3 s)
    attempts = {
        "unknown": ((f"ghost-{uuid.uuid4().hex[:8]}@nowhere.test",), None),
        "ambiguous": ((email,), None),
        "wrong_tenant": ((email, "--tenant", "no-such-tenant"), None),
        "weak": ((email, "--tenant", tenant.slug), {"CHAMADOS_NEW_PASSWORD": "curta"}),
        "empty": ((email, "--tenant", tenant.slug, "--password-file", str(empty_file)), None),
        "missing": ((email, "--tenant", tenant.slug, "--password-file", str(tmp_path / "absent")), None),
    }
    with ThreadPoolExecutor(len(attempts)) as pool:
        runs = {name: pool.submit(reset_password, system, *args, env=env)
                for name, (args, env) in attempts.items()}
    done = {name: run.result() for name, run in runs.items()}
    assert all(result.returncode != 0 for result in done.values()), done
    assert not any(SHOWN_ONCE.search(result.stdout) for result in done.values())
    assert "no person with the email" in done["unknown"].stderr, done["unknown"].stderr
    ambiguous = done["ambiguous"].stderr
    assert "several tenants" in ambiguous and "--tenant" in ambiguous, ambiguous
    assert tenant.slug in ambiguous and other.slug in ambiguous
    assert "no person with the email" in done["wrong_tenant"].stderr
    assert "8-256 characters" in done["weak"].stderr, done["weak"].stderr
    assert "8-256 characters" in done["empty"].stderr, done["empty"].stderr
    assert "cannot read the password" in done["missing"].stderr, done["missing"].stderr
    for where in (tenant, other):
        assert sign_in(where, email, PASSWORD).status_code == 200

    chosen = reset_password(system, email, "--tenant", other.slug)
    assert chosen.returncode == 0, chosen.stdout + chosen.stderr
    (_, slug, password), = SHOWN_ONCE.findall(chosen.stdout)
    assert slug == other.slug
    assert sign_in(other, email, password).status_code == 200
    assert sign_in(tenant, email, PASSWORD).status_code == 200  # the other tenant's is untouched
