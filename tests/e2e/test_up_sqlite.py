"""`chamados up` on the embedded default (SQLite under ./var): starts all five services,
prints the admin's password once and the gateway URL, serves the people flow, and stops
every process on Ctrl-C."""
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import requests

from common.config import ROOT, SERVICE_NAMES
from tests.harness import Client, RabbitVhost, free_port_block, port_is_listening


@pytest.fixture
def vhost():
    created = RabbitVhost.create()
    yield created
    created.delete()


def read_until(process, pattern, timeout, transcript):
    deadline = time.monotonic() + timeout
    os.set_blocking(process.stdout.fileno(), False)
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            if process.poll() is not None:
                break
            time.sleep(0.1)
            continue
        transcript.append(line.decode(errors="replace"))
        found = re.search(pattern, transcript[-1])
        if found:
            return found
    raise AssertionError(f"never printed {pattern!r}:\n" + "".join(transcript[-60:]))


def test_up_runs_everything_on_sqlite_and_ctrl_c_stops_it(vhost, tmp_path):
    base = free_port_block(len(SERVICE_NAMES))  # a metrics port per back end, then the gateway's
    env = {key: value for key, value in os.environ.items()
           if key not in ("DATABASE_URL", "CHAMADOS_ADMIN_PASSWORD")}
    env.update({"AMQP_URI": vhost.amqp_uri, "CHAMADOS_VAR_DIR": str(tmp_path / "var"),
                "GATEWAY_PORT": str(base + len(SERVICE_NAMES) - 1), "METRICS_PORT_BASE": str(base),
                "CHAMADOS_ADMIN_EMAIL": "boss@example.com", "PYTHONUNBUFFERED": "1"})
    process = subprocess.Popen([sys.executable, "-m", "chamados.cli", "up"], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    transcript = []
    try:
        password = read_until(process, r"admin: boss@example.com with password (\S+)", 120,
                              transcript).group(1)
        url = read_until(process, r"console: (http://\S+)/ ", 10, transcript).group(1)
        read_until(process, r"ready; Ctrl-C stops every service", 10, transcript)
        console = requests.get(url + "/", timeout=10)  # the sign-in form for people
        assert console.status_code == 200 and 'action="/entrar"' in console.text
        assert {"accounts.db", "tickets.db", "devices.db", "notifications.db"} <= {p.name for p in (tmp_path / "var").iterdir()}

        admin = Client(url).sign_in("boss@example.com", password)
        company = admin.post("/api/admin/companies", json={"name": "Escritório", "apelido": "escritorio"})
        assert company.status_code == 201, company.text
        user = admin.post("/api/admin/users", json={"email": "a@example.com", "name": "A",
                                                    "role": "collaborator",
                                                    "company_id": company.json()["id"]}).json()
        renamed = admin.patch(f"/api/admin/users/{user['id']}", json={"email": "b@example.com"}).json()
        assert renamed["id"] == user["id"] and renamed["email"] == "b@example.com"
        other = admin.post("/api/admin/users", json={"email": "c@example.com", "name": "C",
                                                     "role": "collaborator"}).json()
        merge = admin.post("/api/admin/users/merge", json={"from_user_id": other["id"],
                                                           "into_user_id": user["id"]})
        assert merge.status_code == 200, merge.text
        people = admin.get("/api/admin/users", params={"type": "people"}).json()["items"]
        assert {u["email"] for u in people} == {"boss@example.com", "b@example.com"}
        assert requests.get(f"http://127.0.0.1:{base}/metrics", timeout=10).status_code == 200

        ticket = admin.post("/api/tickets", json={"subject": "Impressora parada"})
        assert ticket.status_code == 201, ticket.text
        started = admin.post(f"/api/tickets/{ticket.json()['id']}/start", json={"work_type": "INTERNAL"})
        assert started.status_code == 200 and started.json()["status"] == "AWAITING_ATTENDANCE"
        page = admin.get("/api/tickets", params={"status": "AWAITING_ATTENDANCE", "limit": 1}).json()
        assert [t["id"] for t in page["items"]] == [ticket.json()["id"]]
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert process.returncode == 0, "".join(transcript[-40:])
    assert not any(port_is_listening(base + offset) for offset in range(5)), "a service outlived Ctrl-C"

