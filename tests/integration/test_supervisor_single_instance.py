"""A second `chamados up` in the same folder is refused (exit 1, a message saying why) before
it migrates or starts anything: while another holds the folder's lock file, or while
something already accepts connections on the gateway's or a metrics port (eventlet
listeners use SO_REUSEPORT, so a second system would bind the same port silently).

None of these needs the broker or a database: AMQP_URI points at a closed port and the data
would be SQLite files in the test's own folder, which must stay absent."""
import fcntl
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from chamados.supervisor import (LOCK_FILE_NAME, AlreadyRunning, acquire_instance_lock,
                                 check_ports_free)
from tests.harness import ROOT, free_port_block

REFUSAL_TIMEOUT_SECONDS = 30


@pytest.fixture
def up_env(tmp_path):
    """The environment of an `up` whose every port is free and that could reach nothing."""
    base = free_port_block(7)  # five metrics ports, the gateway's, and a closed broker port
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    env.update({
        "CHAMADOS_VAR_DIR": str(tmp_path / "var"),
        "ARCHIVE_DIR": str(tmp_path / "archives"),
        "EXPORT_DIR": str(tmp_path / "exports"),
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(base + 5),
        "METRICS_PORT_BASE": str(base),
        "AMQP_URI": f"amqp://guest:guest@127.0.0.1:{base + 6}/",
        "PYTHONUNBUFFERED": "1",
    })
    return env


def run_up(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "chamados.cli", "up"], env=env, cwd=ROOT,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          timeout=REFUSAL_TIMEOUT_SECONDS)


def assert_nothing_prepared(result: subprocess.CompletedProcess, var_dir: Path) -> None:
    assert "migrations" not in result.stdout
    assert "data:" not in result.stdout  # `up` says where the data is first, then migrates
    assert not list(var_dir.glob("*.db")), "it migrated"


def listening(port: int) -> socket.socket:
    listener = socket.socket()
    listener.bind(("127.0.0.1", port))
    listener.listen(8)
    return listener


def test_refused_while_another_up_holds_the_folders_lock(up_env):
    var_dir = Path(up_env["CHAMADOS_VAR_DIR"])
    var_dir.mkdir(parents=True)
    with open(var_dir / LOCK_FILE_NAME, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("4242\n")
        held.flush()
        result = run_up(up_env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "chamados up is already running from this folder (pid 4242); stop it first" in result.stderr
    assert_nothing_prepared(result, var_dir)


def test_refused_while_something_listens_on_the_gateway_port(up_env):
    port = int(up_env["GATEWAY_PORT"])
    with listening(port):
        result = run_up(up_env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"port {port} is already in use; set GATEWAY_PORT or stop what uses it" in result.stderr
    var_dir = Path(up_env["CHAMADOS_VAR_DIR"])
    assert_nothing_prepared(result, var_dir)
    # the refusal let go of the lock: the next `up` may take it
    acquire_instance_lock(var_dir).close()


def test_refused_while_something_listens_on_a_metrics_port(up_env):
    port = int(up_env["METRICS_PORT_BASE"]) + 2  # devices
    with listening(port):
        result = run_up(up_env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"port {port} (devices metrics) is already in use; set METRICS_PORT_BASE" in result.stderr
    assert_nothing_prepared(result, Path(up_env["CHAMADOS_VAR_DIR"]))


def test_the_lock_names_the_pid_of_its_holder_and_is_let_go_on_close(tmp_path):
    var_dir = tmp_path / "not" / "there" / "yet"
    first = acquire_instance_lock(var_dir)
    try:
        assert (var_dir / LOCK_FILE_NAME).read_text().strip() == str(os.getpid())
        with pytest.raises(AlreadyRunning, match=rf"\(pid {os.getpid()}\); stop it first"):
            acquire_instance_lock(var_dir)
    finally:
        first.close()
    acquire_instance_lock(var_dir).close()


def test_free_ports_pass_the_check_and_a_listener_does_not(up_env):
    from common.config import Settings

    base = int(up_env["METRICS_PORT_BASE"])
    settings = Settings(gateway_host="127.0.0.1", gateway_port=base + 5,
                        metrics_ports={"accounts": base, "tickets": base + 1, "devices": base + 2,
                                       "scheduler": base + 3, "notifications": base + 4})
    check_ports_free(settings)  # nothing listens: no refusal
    with listening(base + 3):
        with pytest.raises(AlreadyRunning, match=rf"port {base + 3} \(scheduler metrics\)"):
            check_ports_free(settings)
