"""`make lint`'s layering contracts (pyproject.toml [tool.importlinter]) hold on the real tree
and fail on a planted violation of each: the packages are copied to a temporary folder, one
import is planted, and `lint-imports` runs there with the project's own configuration."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
PACKAGES = {"common": ROOT / "common", "services": ROOT / "services", "chamados": ROOT / "chamados",
            "chamados_protocol": ROOT / "protocol" / "chamados_protocol",
            "chamados_agent": ROOT / "agent" / "chamados_agent"}
CONTRACTS = {contract["id"]: contract["name"]
             for contract in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]}

# (contract id, module file, the line planted at its end)
PLANTED = [
    ("pure-domain", "services/tickets/domain.py", "import sqlalchemy"),
    # through a common module that loads nameko, not named by the contract itself
    ("pure-domain", "services/devices/history.py", "from common import logs"),
    ("pure-domain", "common/errors.py", "from nameko.exceptions import deserialize_to_instance"),
    ("common-below-services", "common/pagination.py", "import services.tickets.domain"),
    ("common-below-services", "common/config.py", "from chamados import runner"),
    ("agent-and-protocol-alone", "chamados_agent/state.py", "import common.config"),
    ("agent-and-protocol-alone", "chamados_protocol/inventory.py", "from services.devices import software"),
    ("services-independent", "services/tickets/views.py", "from services.devices import domain"),
    ("services-independent", "services/gateway/openapi.py", "import services.accounts.storage"),
    # imports inside a function count: that is how both cycles this contract broke were hidden
    ("no-cycles", "common/tables.py", "def planted():\n    import common.db"),
    ("no-cycles", "services/gateway/http.py", "def planted():\n    from services.gateway.console import web"),
]


def lint_imports(tree: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(tree))  # the copy, ahead of the editable installs
    return subprocess.run([str(LINT_IMPORTS), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
                          cwd=tree, env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def copied_tree(tmp_path_factory) -> Path:
    tree = tmp_path_factory.mktemp("layering")
    for name, source in PACKAGES.items():
        shutil.copytree(source, tree / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return tree


def test_the_contracts_are_the_five_rules():
    assert set(CONTRACTS) == {"pure-domain", "common-below-services", "agent-and-protocol-alone",
                              "services-independent", "no-cycles"}
    assert {contract for contract, _, _ in PLANTED} == set(CONTRACTS)


def test_the_tree_keeps_every_contract(copied_tree):
    result = lint_imports(copied_tree)
    assert result.returncode == 0, result.stdout + result.stderr
    for name in CONTRACTS.values():
        assert f"{name} KEPT" in result.stdout


@pytest.mark.parametrize("contract, module, line", PLANTED, ids=[f"{c}:{m}" for c, m, _ in PLANTED])
def test_a_planted_violation_breaks_its_contract(copied_tree, contract, module, line):
    path = copied_tree / module
    original = path.read_text()
    path.write_text(f"{original}\n\n{line}  # planted by tests/unit/test_layering.py\n")
    try:
        result = lint_imports(copied_tree)
    finally:
        path.write_text(original)
    assert result.returncode != 0, result.stdout
    assert f"{CONTRACTS[contract]} BROKEN" in result.stdout, result.stdout + result.stderr
