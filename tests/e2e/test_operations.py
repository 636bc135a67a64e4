"""What operators rely on: tested alert rules, a real Prometheus scraping every service
with the deployed job definitions, a dashboard whose queries name exported metrics, and a
Swarm stack the docker client accepts."""
import json
import re
import shutil
import subprocess
import time

import pytest
import requests
import yaml

from common.config import ROOT, SERVICE_NAMES
from tests.harness import free_port_block

DEPLOY = ROOT / "deploy"
PROMETHEUS_DIR = DEPLOY / "prometheus"
OPERATIONS = ROOT / "docs" / "OPERATIONS.md"  # how to deploy the stack


def run(*command, cwd=None):
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_alert_rules_are_valid_and_their_unit_tests_pass():
    assert shutil.which("promtool"), "promtool missing: make test installs Debian's prometheus"
    checked = run("promtool", "check", "rules", "alerts.yml", cwd=PROMETHEUS_DIR)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = run("promtool", "test", "rules", "alerts_test.yml", cwd=PROMETHEUS_DIR)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_rule_has_a_firing_and_a_quiet_case():
    rules = [rule["alert"] for group in yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())["groups"]
             for rule in group["rules"]]
    cases = [case for test in yaml.safe_load((PROMETHEUS_DIR / "alerts_test.yml").read_text())["tests"]
             for case in test["alert_rule_test"]]
    for rule in rules:
        mine = [case for case in cases if case["alertname"] == rule]
        assert any(case["exp_alerts"] for case in mine), f"{rule} never fires in a test"
        assert any(not case["exp_alerts"] for case in mine), f"{rule} is never shown quiet"


def exported_metric_names(system) -> set[str]:
    names = {"up"}
    for service in SERVICE_NAMES:
        text = requests.get(system.metrics_url(service), timeout=10).text
        for line in text.splitlines():
            match = re.match(r"# TYPE (\S+) (\w+)", line)
            if match:
                base = match.group(1)
                names |= {base, f"{base}_total", f"{base}_created", f"{base}_bucket", f"{base}_sum",
                          f"{base}_count"}
            elif line and not line.startswith("#"):
                names.add(re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0))
    return names


def test_every_dashboard_query_names_exported_metrics(system):
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "chamados.json").read_text())
    exported = exported_metric_names(system)
    queried = set()
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            queried |= set(re.findall(r"\b((?:chamados|process)_[a-z0-9_]+)\b", target["expr"]))
    assert queried, "the dashboard queries nothing"
    assert queried <= exported, f"not exported: {sorted(queried - exported)}"


def test_alert_rules_name_exported_metrics(system):
    exported = exported_metric_names(system)
    rules = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
    named = {name for group in rules["groups"] for rule in group["rules"]
             for name in re.findall(r"\b((?:chamados|process)_[a-z0-9_]+)\b", rule["expr"])}
    assert named <= exported, f"not exported: {sorted(named - exported)}"


@pytest.fixture
def prometheus(system, tmp_path):
    """The deployed Prometheus configuration (its jobs and rules), with the test system's
    addresses in place of Swarm's DNS discovery."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"]["scrape_interval"] = "1s"
    config["global"]["evaluation_interval"] = "1s"
    config["rule_files"] = [str(PROMETHEUS_DIR / name) for name in config["rule_files"]]
    for job in config["scrape_configs"]:
        job.pop("dns_sd_configs")
        url = system.metrics_url(job["job_name"])
        job["static_configs"] = [{"targets": [url.split("/")[2]]}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port_block(1)
    process = subprocess.Popen(
        ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=open(tmp_path / "prometheus.log", "wb"), stderr=subprocess.STDOUT)
    yield f"http://127.0.0.1:{port}", tmp_path / "prometheus.log"
    process.terminate()
    process.wait(timeout=20)


def test_a_real_prometheus_scrapes_every_service(prometheus):
    url, log = prometheus
    deadline, targets = time.monotonic() + 60, []
    while time.monotonic() < deadline:
        try:
            targets = requests.get(f"{url}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
        except requests.RequestException:
            targets = []
        if len(targets) == len(SERVICE_NAMES) and all(t["health"] == "up" for t in targets):
            break
        time.sleep(1)
    assert sorted(t["labels"]["job"] for t in targets) == sorted(SERVICE_NAMES), log.read_text()[-2000:]
    assert all(t["health"] == "up" for t in targets), targets
    series = requests.get(f"{url}/api/v1/query", params={"query": "chamados_database_size_bytes"},
                          timeout=5).json()["data"]["result"]
    assert {s["metric"]["service"] for s in series} >= {"accounts", "tickets", "devices"}
    rules = requests.get(f"{url}/api/v1/rules", timeout=5).json()["data"]["groups"]
    assert {r["name"] for g in rules for r in g["rules"]} >= {"ChamadosDeadLetters", "ChamadosJobLate"}


def test_the_swarm_stack_is_valid():
    # `docker stack config` merges and checks the file in the client alone (no daemon, no
    # swarm); nothing installs the client, so a machine without one says so in the -ra summary
    if not shutil.which("docker"):
        pytest.skip("docker client not installed: `docker stack config` checks deploy/stack.yml "
                    "(Debian: apt-get install docker.io)")
    result = run("docker", "stack", "config", "-c", str(DEPLOY / "stack.yml"))
    if result.returncode != 0 and re.search(r"unknown command|is not a docker command", result.stderr):
        pytest.skip(f"this docker client has no `docker stack config`: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    stack = yaml.safe_load(result.stdout)
    services = stack["services"]
    assert {"rabbitmq", "postgres", "accounts", "tickets", "devices", "scheduler", "notifications", "gateway",
            "prometheus", "grafana", "migrate"} <= set(services)
    assert services["scheduler"]["deploy"]["replicas"] == 2
    assert services["gateway"]["deploy"]["replicas"] == 2
    assert services["devices"]["deploy"]["replicas"] == 2
    for name in ("accounts", "tickets", "devices", "scheduler", "notifications", "gateway"):
        service = services[name]
        assert service["deploy"]["update_config"]["order"] == "start-first"
        assert service["deploy"]["update_config"]["failure_action"] == "rollback"
        assert service["deploy"]["resources"]["limits"]["memory"]
        assert "healthcheck" in service
    for config in stack["configs"].values():
        assert (DEPLOY / config["file"]).exists() or config["file"].startswith("/"), config


def _secret_names(service):
    return {entry if isinstance(entry, str) else entry["source"] for entry in service.get("secrets", [])}


def test_the_swarm_stack_keeps_every_password_in_a_secret():
    text = (DEPLOY / "stack.yml").read_text()
    stack = yaml.safe_load(text)  # merge keys (<<) resolved, like docker's own parser
    services, declared = stack["services"], stack["secrets"]
    # no credential in the file: no user:password@ in a URI, no *PASS*/*SECRET*/*TOKEN* value
    assert not re.search(r"://[^/\s:@]+:[^@\s]+@", text), "a URI with a password in stack.yml"
    for name, service in services.items():
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"PASS|SECRET|TOKEN|AMQP_URI|DATABASE_URL", key):
                assert key.endswith("_FILE"), f"{name}: {key} is set in plain text"
                secret = str(value).removeprefix("/run/secrets/")
                assert str(value).startswith("/run/secrets/") and secret in _secret_names(service), \
                    f"{name}: {key} names {value}, not a secret the service mounts"
    for name, service in services.items():
        assert _secret_names(service) <= set(declared), f"{name} uses an undeclared secret"
    assert all(secret.get("external") for secret in declared.values())
    # the broker's password, and the services' URI that carries it
    assert services["rabbitmq"]["environment"]["RABBITMQ_DEFAULT_PASS_FILE"] == \
        "/run/secrets/chamados_rabbitmq_password"
    assert "RABBITMQ_DEFAULT_PASS_FILE" in " ".join(services["rabbitmq"]["entrypoint"])
    for name in ("migrate", *SERVICE_NAMES):
        assert services[name]["environment"]["AMQP_URI_FILE"] == "/run/secrets/chamados_amqp_uri", name
        assert "AMQP_URI" not in services[name]["environment"], name
    # Grafana's admin password (not its default)
    assert services["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD__FILE"] == \
        "/run/secrets/chamados_grafana_admin_password"
    # the deployment steps create every secret the stack uses
    steps = OPERATIONS.read_text()
    for secret in declared:
        assert f"docker secret create {secret} " in steps, f"docs/OPERATIONS.md never creates {secret}"


def test_the_first_admin_step_fits_the_stack():
    swarm = OPERATIONS.read_text().split("## Deploying on a Swarm", 1)[1].split("\n## ", 1)[0]
    stack = yaml.safe_load((DEPLOY / "stack.yml").read_text())
    for network in re.findall(r"docker run [^`]*--network (\w+)", swarm):
        assert network.startswith("chamados_"), network
        assert stack["networks"][network.removeprefix("chamados_")].get("attachable"), \
            f"docker run --network {network} needs `attachable: true` on that network"
    for service in re.findall(r"com\.docker\.swarm\.service\.name=chamados_(\w+)", swarm):
        assert service in stack["services"], service
    assert re.search(r"docker (exec|run) [^`]*create-admin", swarm), "step 4 creates the first admin"
