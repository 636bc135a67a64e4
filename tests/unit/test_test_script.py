"""`scripts/test.sh` cannot pass by hiding a run: a run that collects nothing (pytest's exit 5)
fails unless the arguments select tests, a run past its time limit fails with a line saying
so, and the fault tier is told it may not skip. Checked on a copy of the script whose
`.venv/bin/python` is a fake pytest, told per run how to end."""
import os
import shutil
import stat
import subprocess

import pytest

from common.config import ROOT

FAKE_PYTHON = """#!/usr/bin/env bash
run=main
for arg; do
    case $arg in tests/browser | tests/faults | tests/bench | tests/integration) run=${arg#tests/} ;; esac
done
echo "fake $run: $* (CHAMADOS_FAULTS_REQUIRED=${CHAMADOS_FAULTS_REQUIRED:-})"
ending=FAKE_${run^^}
case ${!ending:-0} in
    hang) exec sleep 60 ;;
    *) exit "${!ending:-0}" ;;
esac
"""


@pytest.fixture
def checkout(tmp_path):
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "test.sh", tmp_path / "scripts" / "test.sh")
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(FAKE_PYTHON)
    python.chmod(python.stat().st_mode | stat.S_IXUSR)
    (tmp_path / "tests" / "unit").mkdir(parents=True)
    (tmp_path / "tests" / "unit" / "test_x.py").write_text("")
    return tmp_path


def run_script(checkout, *args, **endings):
    env = {**os.environ, **{f"FAKE_{run.upper()}": str(end) for run, end in endings.items()}}
    env.pop("CHAMADOS_FAULTS_REQUIRED", None)
    env["CHAMADOS_TEST_LIMIT_BENCH"] = "1s"
    return subprocess.run(["bash", str(checkout / "scripts" / "test.sh"), *args], cwd=checkout,
                          env=env, capture_output=True, text=True, timeout=60)


def test_every_run_passing_passes(checkout):
    done = run_script(checkout)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "FAILED" not in done.stdout


def test_a_run_that_collects_nothing_fails_without_a_selection(checkout):
    done = run_script(checkout, bench=5)
    assert done.returncode == 1
    assert "FAILED: the benchmark smoke run collected no test" in done.stdout


@pytest.mark.parametrize("selection", [["-k", "nothing_matches_this"], ["-kchat"], ["-m", "e2e"],
                                       ["tests/unit"], ["tests/unit/test_x.py::test_y"]])
def test_a_run_that_collects_nothing_passes_when_tests_were_selected(checkout, selection):
    done = run_script(checkout, *selection, bench=5, browser=5)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"fake bench: -m pytest tests/bench {' '.join(selection)}" in done.stdout


def test_an_option_value_is_no_selection(checkout):
    done = run_script(checkout, "--maxfail", "3", "-p", "no:cacheprovider", main=5)
    assert done.returncode == 1
    assert "FAILED: the main suite collected no test" in done.stdout


def test_a_failing_run_fails_the_whole_and_is_named(checkout):
    done = run_script(checkout, faults=1)
    assert done.returncode == 1
    assert "FAILED: the fault subset exited 1" in done.stdout
    assert "fake bench" in done.stdout  # the smoke run still ran after it


def test_a_run_past_its_limit_fails_with_a_line_saying_so(checkout):
    done = run_script(checkout, bench="hang")
    assert done.returncode == 1
    assert "FAILED: the benchmark smoke run timed out after 1s" in done.stdout
    assert "fake bench" in done.stdout  # its log is printed


def test_the_fault_tier_is_told_it_may_not_skip(checkout):
    done = run_script(checkout)
    assert "fake faults: -m pytest tests/faults (CHAMADOS_FAULTS_REQUIRED=1)" in done.stdout
    assert "fake main: -m pytest --ignore=tests/faults --ignore=tests/bench --ignore=tests/integration (CHAMADOS_FAULTS_REQUIRED=)" \
        in done.stdout


def test_the_integration_tier_runs_after_the_benchmarks_and_counts(checkout):
    done = run_script(checkout, integration=1)
    assert done.returncode == 1
    assert "FAILED: the integration tier exited 1" in done.stdout
    ok = run_script(checkout)
    assert "fake integration: -m pytest tests/integration" in (checkout / "var" / "integration-tests.log").read_text()
    assert ok.returncode == 0, ok.stdout
