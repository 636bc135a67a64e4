"""The gateway trusts a verified token for AUTH_CACHE_SECONDS (0.5 s by default) instead of
asking accounts on every request (services/gateway/auth_cache.py): a token revoked behind
the gateway's back is refused within a second, and what passes through the gateway itself
(sign-out, a demotion, a new password) takes effect on the very next request."""
import time

from tests.harness import Client


def test_a_token_revoked_elsewhere_is_refused_within_a_second(tenant, rpc):
    _, maria = tenant.person("agent")
    assert maria.get("/api/me").status_code == 200  # verified now: remembered by the gateway

    rpc.accounts.sign_out(maria.token)  # as another gateway, or the CLI, would
    revoked_at = time.monotonic()
    answers = []
    while time.monotonic() - revoked_at < 1.5:
        answers.append((time.monotonic() - revoked_at, maria.get("/api/me").status_code))
        if answers[-1][1] == 401:
            break
        time.sleep(0.02)
    refused_after, status = answers[-1]
    assert status == 401, answers
    assert refused_after <= 1.0, answers
    assert all(code == 200 for _, code in answers[:-1]), answers  # trusted, never an error


def test_changes_made_through_the_gateway_apply_to_the_next_request(tenant):
    agent, session = tenant.person("agent")
    assert session.get("/api/tickets").status_code == 200
    demoted = tenant.admin.patch(f"/api/admin/users/{agent['id']}", json={"role": "collaborator"})
    assert demoted.status_code == 200, demoted.text
    assert session.get("/api/me").json()["role"] == "collaborator"
    assert session.get("/api/admin/users").json()["error"]["code"] == "forbidden_role"

    new_password = tenant.admin.patch(f"/api/admin/users/{agent['id']}", json={"password": "outra-senha-9"})
    assert new_password.status_code == 200, new_password.text  # signs every session out
    refused = session.get("/api/me")
    assert refused.status_code == 401, refused.text

    _, other = tenant.person("collaborator")
    token = other.token
    assert other.get("/api/me").status_code == 200
    assert Client(tenant.system.base_url).post("/api/auth/sign-out", token=token).status_code == 204
    assert Client(tenant.system.base_url).get("/api/me", token=token).status_code == 401
