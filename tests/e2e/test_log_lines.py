"""What the services and the gateway write for a refused request (issue 13, item 8): an
expected 4xx (wrong password, taken email, invalid transition) is one line in the service that
refused it and one in the gateway, never a traceback; a real error keeps its traceback."""
import json

import pytest
from nameko.exceptions import RemoteError

from common.config import SERVICE_NAMES
from tests.harness import Client, eventually


def mark(system) -> dict:
    """Where each log ends now: the system is shared by the whole session."""
    return {name: len(system.log(name)) for name in SERVICE_NAMES}


def written_since(system, marks: dict, name: str) -> str:
    return system.log(name)[marks[name]:]


def entries(text: str, needle: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if needle in line]


def test_a_refused_request_is_one_line_in_the_service_and_one_in_the_gateway(system, tenant):
    admin = tenant.admin
    created = admin.post("/api/tickets", json={"subject": "Impressora parada"})
    assert created.status_code == 201, created.text
    ticket = created.json()
    before = mark(system)

    wrong_password = Client(system.base_url).post("/api/auth/sign-in", json={
        "email": tenant.admin_email, "password": "not-the-password-1", "tenant": tenant.slug})
    assert wrong_password.status_code == 401, wrong_password.text
    taken = admin.post("/api/admin/users", json={
        "email": tenant.admin_email.upper(), "name": "Outra Pessoa", "role": "agent"})
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "email_taken", taken.text
    invalid = admin.post(f"/api/tickets/{ticket['id']}/pause", json={"reason": "NO_CONTACT"})
    assert invalid.status_code == 409 and invalid.json()["error"]["code"] == "invalid_transition", invalid.text

    refusals = {"invalid_credentials": "accounts", "email_taken": "accounts", "invalid_transition": "tickets"}

    def all_written():
        return all(entries(written_since(system, before, service), code)
                   and entries(written_since(system, before, "gateway"), code)
                   for code, service in refusals.items())

    eventually(all_written, timeout=5)
    for name in SERVICE_NAMES:
        assert "Traceback" not in written_since(system, before, name), \
            f"{name} wrote a traceback for an expected 4xx:\n{written_since(system, before, name)}"
    for code, service in refusals.items():
        for name in (service, "gateway"):
            lines = entries(written_since(system, before, name), code)
            assert len(lines) == 1, (name, code, lines)
            assert lines[0]["level"] == "INFO" and "exception" not in lines[0], lines[0]
        (line,) = entries(written_since(system, before, service), code)
        assert line["logger"] == "nameko.containers" and " refused: " in line["message"], line
        assert line["entrypoint"] in ("sign_in", "create_user", "pause"), line


def test_a_real_error_in_a_service_keeps_its_traceback(system, rpc):
    """A wrong argument type an RPC does not expect: a bug, not a refusal."""
    before = mark(system)
    with pytest.raises(RemoteError):
        rpc.devices.machines_last_seen(12345)
    written = eventually(lambda: "Traceback" in written_since(system, before, "devices")
                         and written_since(system, before, "devices"), timeout=5)
    assert written, written_since(system, before, "devices")
    (line,) = entries(written, "machines_last_seen")
    assert line["level"] == "ERROR" and "TypeError" in line["exception"], line
