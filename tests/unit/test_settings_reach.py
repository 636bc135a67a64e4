"""Every declared setting (common/config.py SETTINGS) is reachable through the real path a
deployment takes: environment -> config.yml substitution -> nameko config -> Settings
(settings_from_env), and every secret from `<KEY>_FILE`; config.yml and README's settings
table agree with the declarations. A setting added without wiring fails here."""
import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest
from common.config import (CONFIG_FILE, ConfigError, NAMEKO_KEYS, SECRET_KEYS, SERVICE_NAMES, SETTING_KEYS, SETTINGS, Settings,
                           load_config, settings_from_env, settings_table)

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
    "scheduler_jobs": ('{"chat-cleanup": {"interval_seconds": 30}}', '{"chat-cleanup": {"interval_seconds": 30}}'),
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


def test_every_field_has_one_declaration_and_a_sample():
    assert [setting.field for setting in SETTINGS] == FIELDS
    assert len(set(SETTING_KEYS.values())) == len(SETTINGS), "two declarations share a variable"
    assert sorted(SAMPLES) == sorted(FIELDS)


def test_every_declaration_names_its_users_and_meaning():
    services = {"all", *SERVICE_NAMES, "chamados"}
    for setting in SETTINGS:
        assert setting.used_by and set(setting.used_by) <= services, setting.key
        assert setting.meaning.strip() and "|" not in setting.meaning, setting.key


# `settings.<field>` or `Settings.from_mapping(config).<field>` in a package's code
SETTING_READ = re.compile(r"(?:settings|Settings\.from_mapping\([^()]*\))\.(\w+)")


@pytest.mark.parametrize("reader", [*SERVICE_NAMES, "chamados"])
def test_a_package_reads_only_the_settings_declared_for_it_or_for_all(reader):
    root = CONFIG_FILE.parent
    package = root / "chamados" if reader == "chamados" else root / "services" / reader
    declared = {setting.field: setting.used_by for setting in SETTINGS}
    strays = sorted({f"{path.relative_to(root)}: {field}"
                     for path in package.rglob("*.py")
                     for field in SETTING_READ.findall(path.read_text())
                     if field in declared and not {"all", reader} & set(declared[field])})
    assert not strays, f"add {reader!r} to these settings' used_by in common/config.py: {strays}"


def test_config_yml_reads_every_setting_from_its_own_variable():
    text = CONFIG_FILE.read_text()
    for setting in SETTINGS:
        assert re.search(rf"^{setting.source}: (!raw_env_var )?\$\{{{setting.key}:", text, re.M), \
            f"config.yml does not read {setting.source} from ${{{setting.key}}}"


def test_config_yml_holds_only_declared_settings_and_nameko_s_own_keys(clean_env):
    declared = {setting.source for setting in SETTINGS} | set(NAMEKO_KEYS)
    unknown = sorted(set(load_config()) - declared)
    assert not unknown, f"config.yml has undeclared keys {unknown}: declare them in common/config.py"


def test_config_yml_defaults_are_the_declared_defaults(clean_env):
    assert settings_from_env() == Settings()


def test_readme_holds_the_generated_settings_table():
    readme = (CONFIG_FILE.parent / "README.md").read_text()
    found = re.search(r"<!-- settings table:[^\n]*-->\n(.*?)<!-- end of the settings table -->", readme, re.S)
    assert found, "README.md lost the settings table's markers"
    assert found.group(1) == settings_table(), \
        "README.md's settings table is not the generated one: run `chamados settings --markdown` and paste it"


def test_every_setting_arrives_typed_from_the_environment(clean_env):
    for field, key in SETTING_KEYS.items():
        clean_env.setenv(key, SAMPLES[field][0])
    settings = settings_from_env()
    for field in FIELDS:
        expected = SAMPLES[field][1]
        actual = getattr(settings, field)
        assert actual == expected and type(actual) is type(expected), field
        assert actual != getattr(Settings(), field) or field == "amqp_uri", field


def test_each_setting_alone_arrives_from_the_environment(clean_env):
    for setting in SETTINGS:
        with pytest.MonkeyPatch.context() as one:
            if setting.key == "AGENT_AMQP_URI":  # must log in as AGENT_AMQP_USER
                one.setenv("AGENT_AMQP_USER", "reach-agent")
            one.setenv(setting.key, SAMPLES[setting.field][0])
            assert getattr(settings_from_env(), setting.field) == SAMPLES[setting.field][1], setting.key


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


# a value each checked setting refuses; the rest take any text (their owners read it as given)
BAD = {
    "amqp_uri": "http://broker/", "database_url": "mysql://db/x", "db_pool_size": "0",
    "log_level": "TRACE", "metrics_ports": "65534", "gateway_port": "65536",
    "cors_allowed_origins": "https://a.example/path", "console_https": "maybe",
    "trusted_proxies": "10.0.0.300", "rpc_timeout_seconds": "-1", "auth_cache_seconds": "2",
    "console_cache_seconds": "6", "max_body_bytes": "12kb", "http_header_timeout_seconds": "0",
    "http_body_timeout_seconds": "abc", "http_connections_per_client": "2.5",
    "heartbeat_queue_max_age_seconds": "0", "rabbit_management_url": "ftp://broker/",
    "admin_email": "admin", "session_ttl_hours": "0", "sign_in_account_failures": "-5",
    "sign_in_account_window_seconds": "0", "sign_in_address_failures": "x",
    "sign_in_address_window_seconds": "0", "sign_in_lock_seconds": "0", "sign_in_max_lock_seconds": "1",
    "password_hash_slots": "0", "password_hash_profile": "fast", "machine_token_ttl_days": "0",
    "machine_online_seconds": "0", "machine_stale_seconds": "300", "usb_policy_ttl_minutes": "0",
    "agent_amqp_user": "guest", "agent_amqp_password": "short", "agent_amqp_uri": "amqp://guest:guest@broker/",
    "smtp_url": "imap://mail.example", "console_url": "chamados.example",
}
ANY_TEXT = {"var_dir", "gateway_host", "cron_secret", "internal_health_token", "admin_password",
            "archive_dir", "export_dir", "scheduler_jobs", "mail_from"}


def test_every_setting_is_either_checked_or_free_text():
    assert sorted(BAD.keys() | ANY_TEXT) == sorted(FIELDS)


@pytest.mark.parametrize("setting", [s for s in SETTINGS if s.field in BAD], ids=lambda s: s.key)
def test_a_bad_value_from_the_environment_is_an_error_naming_its_variable(clean_env, setting):
    clean_env.setenv(setting.key, BAD[setting.field])
    with pytest.raises(ConfigError, match=f"(?i){setting.key}"):
        settings_from_env()


def test_a_bad_value_stops_the_command_with_one_line_naming_it(clean_env):
    clean_env.setenv("GATEWAY_PORT", "http")
    done = subprocess.run([sys.executable, "-m", "chamados.cli", "migrate"], capture_output=True, text=True,
                          timeout=60, cwd=CONFIG_FILE.parent)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("chamados: configuration error: GATEWAY_PORT")
    assert "Traceback" not in done.stderr


def test_the_cli_prints_the_generated_table_whatever_the_environment(clean_env):
    clean_env.setenv("GATEWAY_PORT", "http")  # the table needs no valid settings
    done = subprocess.run([sys.executable, "-m", "chamados.cli", "settings", "--markdown"], capture_output=True,
                          text=True, timeout=60, cwd=CONFIG_FILE.parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout == settings_table()
