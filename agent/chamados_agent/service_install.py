"""`chamados-agent install-service` / `uninstall-service`: run the agent as a systemd service
on Linux, as a dedicated unprivileged user, restarted on failure, with its state in
/var/lib/chamados-agent (owned by that user, 0700 — systemd's StateDirectory= keeps it so).

Windows and macOS are not shipped yet: there the agent runs in a session (or under a service
wrapper such as WinSW or NSSM, set up by hand) — docs/OPERATIONS.md says so.

With `--root DIR` nothing on this machine is changed: the unit is written under DIR and the
commands that would create the user and start the service are printed (for an image being
built, a package, or a look before doing it).
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from chamados_agent.errors import AgentError, UsageError

SERVICE_NAME = "chamados-agent.service"
UNIT_DIR = Path("etc/systemd/system")
STATE_DIR = Path("/var/lib/chamados-agent")
SERVICE_USER = "chamados-agent"


def unit_text(executable: list[str], user: str, interval: float, transport_args: list[str]) -> str:
    command = shlex.join([*executable, "run", "--state-dir", str(STATE_DIR), "--interval", f"{interval:g}",
                          *transport_args])
    return f"""[Unit]
Description=Chamados desktop agent: inventory and heartbeats
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
User={user}
Group={user}
ExecStart={command}
Restart=on-failure
RestartSec=30
# its state (token, spool) lives here, owned by {user}, mode 0700; nothing else is writable
StateDirectory={STATE_DIR.name}
StateDirectoryMode=0700
NoNewPrivileges=true
ProtectSystem=strict
ProtectHome=true
PrivateTmp=true

[Install]
WantedBy=multi-user.target
"""


def agent_executable() -> list[str]:
    """How the unit starts this very agent, by absolute path (a unit must not depend on a
    PATH): the `chamados-agent` script beside this Python (its venv), else the one on the
    PATH, else this Python with `-m chamados_agent.cli`."""
    beside = Path(sys.executable).parent / "chamados-agent"
    if beside.is_file():
        return [str(beside.absolute())]
    found = shutil.which("chamados-agent")
    if found:
        return [str(Path(found).absolute())]
    return [str(Path(sys.executable).absolute()), "-m", "chamados_agent.cli"]


def _require_linux_root(root: Path) -> bool:
    """True when this machine is to be changed (root is /), after checking it can be."""
    if not sys.platform.startswith("linux"):
        raise AgentError("install-service knows systemd (Linux) only; on this system run the agent "
                         "under a service wrapper by hand (docs/OPERATIONS.md, \"Desktop agent\")")
    if root != Path("/"):
        return False
    if os.geteuid() != 0:
        raise UsageError("install-service changes the system (a user, a unit, a directory): run it as root")
    if shutil.which("systemctl") is None:
        raise AgentError("systemctl was not found: this system does not run systemd")
    return True


def _run(commands: list[list[str]], for_real: bool) -> None:
    for command in commands:
        if not for_real:
            print(f"would run: {shlex.join(command)}")
            continue
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise AgentError(f"{shlex.join(command)} failed: {done.stderr.strip() or done.returncode}")


def install(args, registered_state: Path) -> int:
    root = Path(args.root)
    for_real = _require_linux_root(root)
    if not registered_state.exists():
        raise AgentError(f"register first, as root, with --state-dir {STATE_DIR}: "
                         f"{registered_state} holds no registration", exit_code=3)
    transport = ["--http"] if args.http else (["--amqp", args.amqp] if args.amqp else [])
    unit = root / UNIT_DIR / SERVICE_NAME
    unit.parent.mkdir(parents=True, exist_ok=True)
    unit.write_text(unit_text(agent_executable(), args.user, args.interval, transport))
    unit.chmod(0o644)
    print(f"wrote {unit}")
    commands = []
    if not for_real or _missing_user(args.user):
        commands.append(["useradd", "--system", "--home-dir", str(STATE_DIR), "--no-create-home",
                         "--shell", "/usr/sbin/nologin", args.user])
    commands += [["chown", "-R", f"{args.user}:{args.user}", str(STATE_DIR)], ["chmod", "0700", str(STATE_DIR)],
                 ["systemctl", "daemon-reload"]]
    if not args.no_start:
        commands.append(["systemctl", "enable", "--now", SERVICE_NAME])
    _run(commands, for_real)
    if for_real:
        print(f"{SERVICE_NAME} installed" + ("" if args.no_start else " and started")
              + f": it runs as {args.user}; see `systemctl status {SERVICE_NAME}` and "
              f"`journalctl -u {SERVICE_NAME}`")
    return 0


def uninstall(args) -> int:
    root = Path(args.root)
    for_real = _require_linux_root(root)
    unit = root / UNIT_DIR / SERVICE_NAME
    if unit.exists() or not for_real:
        _run([["systemctl", "disable", "--now", SERVICE_NAME]], for_real)
    if unit.exists():
        unit.unlink()
        print(f"removed {unit}")
    commands = [["systemctl", "daemon-reload"]]
    if args.purge:  # the registration and spool, then the user
        commands += [["rm", "-rf", str(STATE_DIR)], ["userdel", args.user]]
    _run(commands, for_real)
    return 0


def _missing_user(user: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(user)
        return False
    except KeyError:
        return True
