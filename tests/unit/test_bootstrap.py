"""common/bootstrap.py: the one start-up call that installs the library patches — nothing is
patched by importing a module — and refuses versions the patches were not written for."""
from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from common import bootstrap

ROOT = Path(__file__).resolve().parents[2]


def run_python(code: str) -> subprocess.CompletedProcess:
    """A fresh interpreter: this one was bootstrapped by tests/conftest.py (whose psycopg
    setting its children would inherit)."""
    env = {key: value for key, value in os.environ.items() if key != "PSYCOPG_WAIT_FUNC"}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)


def test_the_checked_versions_are_the_pins():
    pins = {}
    for requirement in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]:
        name, _, version = requirement.partition("==")
        pins[name.split("[")[0]] = version
    assert bootstrap.PATCHED_VERSIONS == {name: pins[name] for name in bootstrap.PATCHED_VERSIONS}
    assert bootstrap.version_problems() == []


def test_another_version_or_a_missing_library_is_named():
    installed = {"nameko": "2.15.0", "kombu": "5.7.0", "amqp": "5.4.2"}

    def version(distribution):
        if distribution not in installed:
            raise bootstrap.metadata.PackageNotFoundError(distribution)
        return installed[distribution]

    assert bootstrap.version_problems(version) == [
        "nameko 2.15.0 is installed, the patches were written for 2.14.1",
        "psycopg is not installed (the patches need 3.3.9)"]


def test_install_refuses_before_patching_anything(monkeypatch):
    monkeypatch.setattr(bootstrap, "_installed", False)
    monkeypatch.setitem(bootstrap.PATCHED_VERSIONS, "kombu", "9.9.9")
    with pytest.raises(bootstrap.BootstrapError, match="kombu 5.7.0 is installed, the patches were written for 9.9.9"):
        bootstrap.install()


def test_importing_the_services_patches_nothing_and_install_patches_once():
    result = run_python("""
import nameko.rpc, nameko.messaging, kombu.mixins, amqp.serialization, kombu.serialization
original = (nameko.rpc.Responder, nameko.rpc.RpcConsumer.handle_result, kombu.mixins.warn,
            amqp.serialization.pstr_t, kombu.serialization.registry._encoders["json"])
import services.gateway.service, services.tickets.service, chamados.runner
assert (nameko.rpc.Responder, nameko.rpc.RpcConsumer.handle_result, kombu.mixins.warn,
        amqp.serialization.pstr_t, kombu.serialization.registry._encoders["json"]) == original
from common import bootstrap, errors, nameko_outages, rpc_replies
from nameko.exceptions import registry
assert "common.errors.NotFound" not in registry
bootstrap.install()
wrapped = nameko.messaging.QueueConsumer.get_consumers
bootstrap.install()
assert nameko.messaging.QueueConsumer.get_consumers is wrapped  # idempotent
assert nameko.rpc.Responder is rpc_replies.Responder
assert kombu.mixins.warn is nameko_outages._warn_without_traceback
assert amqp.serialization.pstr_t is not original[3]
assert kombu.serialization.registry._encoders["json"] != original[4]
assert registry["common.errors.NotFound"] is errors.NotFound
class Later(errors.Conflict):
    pass
assert registry[f"{__name__}.Later"] is Later  # defined after install, registered too
import psycopg.waiting
assert psycopg.waiting.wait is psycopg.waiting.wait_select
print("ok")
""")
    assert result.stdout.strip() == "ok", result.stderr


def test_psycopg_loaded_before_install_fails_loudly():
    result = run_python("import psycopg\nfrom common import bootstrap\nbootstrap.install()")
    assert result.returncode != 0
    assert "psycopg was imported before common.bootstrap.install()" in result.stderr
