"""Every Settings field is reachable through the real path a deployment takes: environment ->
config.yml substitution -> nameko config -> Settings (settings_from_env), and every secret
from `<KEY>_FILE`. A field added without wiring fails here."""
import dataclasses
import re
from pathlib import Path

import pytest

from common.config import CONFIG_FILE, SECRET_KEYS, SETTING_KEYS, Settings, settings_from_env

# environment value to set -> the typed value the field must then hold
SAMPLES = {
    "amqp_uri": ("amqp://svc:pw@broker:5673/chamados", "amqp://svc:pw@broker:5673/chamados"),
    "database_url": ("postgresql+psycopg://u:p@db/x", "postgresql+psycopg://u:p@db/x"),
    "var_dir": ("/tmp/reach-var", Path("/tmp/reach-var")),
    "gateway_host": ("0.0.0.0", "0.0.0.0"),
    "gateway_port": ("8123", 8123),
    "metrics_ports": ("9300", {"accounts": 9300, "tickets": 9301, "devices": 9302, "scheduler": 9303,
                               "notifications": 9304}),
    "rpc_timeout_seconds": ("3.5", 3.5),
    "db_pool_size": ("7", 9),
    "auth_cache_seconds": ("0.25", 0.25),
    "console_cache_seconds": ("2", 2.0),
    "session_ttl_hours": ("13", 13),
    "max_body_bytes": ("4096", 4096),
    "http_header_timeout_seconds": ("2.5", 2.5),
    "http_body_timeout_seconds": ("7", 7.0),
    "http_connections_per_client": ("12", 12),
    "cron_secret": ("cron-xyz", "cron-xyz"),
    "internal_health_token": ("health-xyz", "health-xyz"),
    "archive_dir": ("/tmp/reach-arch", Path("/tmp/reach-arch")),
    "export_dir": ("/tmp/reach-exp", Path("/tmp/reach-exp")),
    "log_level": ("warning", "WARNING"),
    "admin_email": ("root@empresa.com.br", "root@empresa.com.br"),
    "admin_password": ("admin-pass-123", "admin-pass-123"),
    "machine_token_ttl_days": ("31", 31),
    "machine_online_seconds": ("301", 301),
    "machine_stale_seconds": ("1801", 1801),
    "usb_policy_ttl_minutes": ("61", 61),
    "rabbit_management_url": ("http://broker:15673/api", "http://broker:15673/api"),
    "agent_amqp_user": ("reach-agent", "reach-agent"),
    "agent_amqp_password": ("agent-password-0123456789", "agent-password-0123456789"),
    "agent_amqp_uri": ("amqps://reach-agent:agent-password-0123456789@broker:5671/",
                       "amqps://reach-agent:agent-password-0123456789@broker:5671/"),
    "heartbeat_queue_max_age_seconds": ("121", 121),
    "console_https": ("true", True),
    "sign_in_account_failures": ("6", 6),
    "sign_in_account_window_seconds": ("3601", 3601),
    "sign_in_address_failures": ("21", 21),
    "sign_in_address_window_seconds": ("601", 601),
    "sign_in_lock_seconds": ("31", 31),
    "sign_in_max_lock_seconds": ("901", 901),
    "password_hash_slots": ("2", 2),
    "password_hash_profile": ("insecure-for-tests", "insecure-for-tests"),
    "trusted_proxies": ("10.0.0.0/8", (__import__("ipaddress").ip_network("10.0.0.0/8"),)),
    "cors_allowed_origins": ("https://a.example", ("https://a.example",)),
    "smtp_url": ("smtps://u:p@mail.example:465", "smtps://u:p@mail.example:465"),
    "mail_from": ("Suporte <suporte@empresa.com.br>", "Suporte <suporte@empresa.com.br>"),
    "console_url": ("https://chamados.empresa.com.br", "https://chamados.empresa.com.br"),
}
FIELDS = [f.name for f in dataclasses.fields(Settings)]


@pytest.fixture
def clean_env(monkeypatch):
    for key in SETTING_KEYS.values():
        monkeypatch.delenv(key, raising=False)
        monkeypatch.delenv(f"{key}_FILE", raising=False)
    monkeypatch.delenv("CHAMADOS_CONFIG", raising=False)
    return monkeypatch


def test_every_field_has_an_environment_key_and_a_sample():
    assert sorted(SETTING_KEYS) == sorted(FIELDS)
    assert sorted(SAMPLES) == sorted(FIELDS)


def test_config_yml_reads_every_setting_key_from_the_environment():
    text = CONFIG_FILE.read_text()
    substituted = set(re.findall(r"\$\{([A-Z_]+):", text))
    missing = sorted(set(SETTING_KEYS.values()) - substituted)
    assert not missing, f"config.yml does not read {missing}"


def test_every_setting_arrives_typed_from_the_environment(clean_env):
    for field, key in SETTING_KEYS.items():
        clean_env.setenv(key, SAMPLES[field][0])
    settings = settings_from_env()
    for field in FIELDS:
        expected = SAMPLES[field][1]
        actual = getattr(settings, field)
        assert actual == expected and type(actual) is type(expected), field
        assert actual != getattr(Settings(), field) or field == "amqp_uri", field


@pytest.mark.parametrize("key", SECRET_KEYS)
def test_every_secret_arrives_from_its_file(clean_env, tmp_path, key):
    field = next(f for f, k in SETTING_KEYS.items() if k == key)
    if key == "AGENT_AMQP_URI":  # must log in as AGENT_AMQP_USER
        clean_env.setenv("AGENT_AMQP_USER", "reach-agent")
    secret = tmp_path / key.lower()
    secret.write_text(SAMPLES[field][0] + "\n")
    clean_env.setenv(f"{key}_FILE", str(secret))
    assert getattr(settings_from_env(), field) == SAMPLES[field][1]


def test_the_agents_secrets_are_file_secrets():
    assert {"AGENT_AMQP_PASSWORD", "AGENT_AMQP_URI"} <= set(SECRET_KEYS)


def test_stack_and_readme_name_only_known_keys():
    root = CONFIG_FILE.parent
    stack = (root / "deploy" / "stack.yml").read_text()
    for key in re.findall(r"^\s+([A-Z_]+)_FILE:", stack, re.M):
        if not key.startswith(("RABBITMQ_", "POSTGRES_", "GF_")):
            assert key in SECRET_KEYS, key
    readme = (root / "README.md").read_text()
    for key in SETTING_KEYS.values():
        assert f"`{key}`" in readme, f"README's settings table lacks {key}"
