"""The agent as desktops get it: wheels of `chamados-agent` and `chamados-protocol` built from
this checkout, installed into a fresh virtualenv that holds none of the server's packages,
then `chamados-agent register / heartbeat / run / status` from there against the running
system, whose database must show the heartbeats applied and the inventory stored."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid

import pytest
from sqlalchemy import create_engine, text

from common.config import ROOT
from tests.harness import eventually

pytestmark = pytest.mark.e2e

# distributions the server needs and a desktop must not get
SERVER_DISTRIBUTIONS = {"chamados", "nameko", "eventlet", "kombu", "amqp", "sqlalchemy", "psycopg",
                        "psycopg-binary", "werkzeug", "alembic", "argon2-cffi", "croniter", "jinja2",
                        "prometheus-client", "apispec", "pyyaml"}
TRACEBACK = "Traceback (most recent call last)"


def run(*command, timeout=240, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run([str(part) for part in command], capture_output=True, text=True,
                          timeout=timeout, **kwargs)
    assert done.returncode == 0, f"{command}:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def agent_venv(tmp_path_factory):
    """A virtualenv with only the agent's wheel and what it depends on."""
    work = tmp_path_factory.mktemp("agent-wheel")
    wheels = work / "wheels"
    for project in ("protocol", "agent"):  # built from copies: the checkout gets no build/ folder
        shutil.copytree(ROOT / project, work / project, ignore=shutil.ignore_patterns("*.egg-info", "build"))
    run(sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check", "--no-deps",
        "--no-build-isolation", "-w", wheels, work / "protocol", work / "agent")
    assert sorted(path.name.split("-")[0] for path in wheels.glob("*.whl")) == \
        ["chamados_agent", "chamados_protocol"]
    venv = work / "venv"
    run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    # the same versions as the server's pin set, so pip's cache serves them
    run(python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--find-links", wheels,
        "-c", ROOT / "constraints.txt", "chamados-agent")
    return venv


def test_the_wheel_installs_without_the_server(agent_venv):
    listed = json.loads(run(agent_venv / "bin" / "python", "-m", "pip", "list", "--format", "json",
                            "--disable-pip-version-check").stdout)
    installed = {entry["name"].lower().replace("_", "-") for entry in listed}
    assert {"chamados-agent", "chamados-protocol", "pika", "psutil", "requests"} <= installed
    assert not installed & SERVER_DISTRIBUTIONS
    # and it runs from there, not from this checkout (cwd elsewhere, no PYTHONPATH)
    probe = run(agent_venv / "bin" / "python", "-c", "import chamados_agent; print(chamados_agent.__file__)",
                cwd=agent_venv, env={"PATH": os.environ["PATH"]})
    assert probe.stdout.startswith(str(agent_venv))


def test_the_installed_agent_registers_and_its_heartbeats_are_applied(agent_venv, system, tenant, tmp_path):
    state_dir = tmp_path / "state"
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}

    def agent(*args):
        done = run(agent_venv / "bin" / "chamados-agent", *args, "--state-dir", state_dir,
                   cwd=tmp_path, env=env, timeout=90)
        assert TRACEBACK not in done.stderr, done.stderr
        return done

    company = tenant.company()
    agent("register", "--gateway", system.base_url, "--code", company["provisioning_code"],
          "--email", f"{uuid.uuid4().hex[:8]}@desk.test", "--name", "Desk User")
    status = json.loads(agent("status", "--json").stdout)
    machine_id = status["machine_id"]
    assert machine_id

    agent("heartbeat", "--amqp", system.amqp_uri)          # the bus
    agent("heartbeat", "--http")                           # the gateway's route
    agent("run", "--interval", "60", "--count", "1", "--http")  # the service loop, one round

    engine = create_engine(system.database_url)
    try:
        def applied():
            with engine.connect() as connection:
                row = connection.execute(text(
                    "SELECT heartbeats, inventory_hash FROM devices.heartbeat_state WHERE machine_id = :m"),
                    {"m": machine_id}).one_or_none()
            return row if row is not None and row.heartbeats >= 3 else None

        row = eventually(applied, timeout=20)
    finally:
        engine.dispose()
    assert row is not None, "the installed agent's heartbeats were not applied"
    held = json.loads((state_dir / "state.json").read_text())["inventory_hash"]
    assert row.inventory_hash == held
    inventory = tenant.admin.get(f"/api/admin/machines/{machine_id}/inventory").json()
    assert inventory["hash"] == held and inventory["document"]
