"""The one start-up step of every Chamados process: `common.bootstrap.install()`.

Called first thing by each process entry — `chamados` (the CLI, and through it every service
runner), the test suites' conftests, the benches, scripts/screenshots.py — right after
`eventlet.monkey_patch()` where the process is green (not in the browser tier: pitfall 19),
and before anything imports psycopg. Idempotent.

It checks that nameko, kombu, amqp and psycopg are the versions the patches below were
written and measured against (a patch of another version's internals may do nothing, or
harm, silently), then installs, in this order:
- psycopg waits through `select`, so eventlet can switch (ENGINEERING.md pitfall 1);
- AMQP short strings read leniently (common.amqp_text);
- nameko riding out a broker outage (common.nameko_outages, pitfall 20);
- malformed messages parked, never fatal (common.bus_guard);
- RPC replies serialised once, no confirm, no ack (common.rpc_replies, pitfall 21);
- the bus's JSON through orjson (common.wire);
- domain errors carried across RPC as themselves (common.remote_errors).
"""
from __future__ import annotations

import os
import sys
from importlib import metadata

# what the patches were written against: the pins of pyproject.toml (tests/unit/test_layering.py
# holds the two equal)
PATCHED_VERSIONS = {"nameko": "2.14.1", "kombu": "5.7.0", "amqp": "5.4.2", "psycopg": "3.3.9"}

_installed = False


class BootstrapError(RuntimeError):
    pass


def version_problems(installed=metadata.version) -> list[str]:
    """One line per patched library whose installed version is not the pinned one."""
    problems = []
    for distribution, pinned in PATCHED_VERSIONS.items():
        try:
            found = installed(distribution)
        except metadata.PackageNotFoundError:
            found = None
        if found is None:
            problems.append(f"{distribution} is not installed (the patches need {pinned})")
        elif found != pinned:
            problems.append(f"{distribution} {found} is installed, the patches were written for {pinned}")
    return problems


def install() -> None:
    global _installed
    if _installed:
        return
    problems = version_problems()
    if problems:
        raise BootstrapError("common.bootstrap: " + "; ".join(problems)
                             + " (install with `pip install -c constraints.txt`)")
    _psycopg_waits_green()
    from common import amqp_text, bus_guard, nameko_outages, remote_errors, rpc_replies, wire

    amqp_text.install()
    nameko_outages.install()
    bus_guard.install()  # wraps QueueConsumer.get_consumers before rpc_replies does, as ever
    rpc_replies.install()
    wire.install()
    remote_errors.install()
    _installed = True


def _psycopg_waits_green() -> None:
    # read by psycopg when it is first imported: too late afterwards, so fail loudly rather
    # than run slowly
    os.environ["PSYCOPG_WAIT_FUNC"] = "wait_select"
    waiting = sys.modules.get("psycopg.waiting")
    if waiting is not None and waiting.wait is not waiting.wait_select:
        raise BootstrapError("psycopg was imported before common.bootstrap.install(); call it first")
