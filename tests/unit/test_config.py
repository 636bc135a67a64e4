"""common/config.py: typed settings from the nameko config mapping."""
from pathlib import Path

import pytest

from common import config as config_module
from common.config import ROOT, SERVICE_NAMES, ConfigError, Settings, load_config

CONFIG_VARS = (
    "AMQP_URI", "WEB_SERVER_ADDRESS", "MAX_WORKERS", "DATABASE_URL", "CHAMADOS_VAR_DIR",
    "GATEWAY_HOST", "GATEWAY_PORT", "METRICS_PORT_BASE", "RPC_TIMEOUT_SECONDS",
    "SESSION_TTL_HOURS", "MAX_BODY_BYTES", "CRON_SECRET", "INTERNAL_HEALTH_TOKEN",
    "ARCHIVE_DIR", "EXPORT_DIR", "CHAMADOS_ADMIN_EMAIL", "CHAMADOS_ADMIN_PASSWORD", "LOG_LEVEL",
)


# --- defaults and types -------------------------------------------------------------------

def test_defaults_from_an_empty_mapping():
    settings = Settings.from_mapping({})
    assert settings.amqp_uri == "amqp://guest:guest@localhost:5672/"
    assert settings.database_url is None
    assert settings.is_sqlite
    assert settings.var_dir == ROOT / "var"
    assert settings.gateway_host == "127.0.0.1"
    assert settings.gateway_port == 8000
    assert settings.metrics_ports == {"accounts": 9101, "tickets": 9102, "devices": 9103,
                                      "scheduler": 9104, "notifications": 9105}
    assert settings.rpc_timeout_seconds == 10.0
    assert settings.session_ttl_hours == 12
    assert settings.max_body_bytes == 1_048_576
    assert settings.cron_secret is None
    assert settings.internal_health_token is None
    assert settings.archive_dir == ROOT / "archives"
    assert settings.export_dir == ROOT / "exports"
    assert settings.log_level == "INFO"
    assert settings.admin_email == "admin@example.com"
    assert settings.admin_password is None


def test_empty_and_blank_strings_mean_default():
    settings = Settings.from_mapping({
        "AMQP_URI": "", "DATABASE_URL": "", "CHAMADOS_VAR_DIR": "  ", "GATEWAY_PORT": "",
        "CRON_SECRET": "", "INTERNAL_HEALTH_TOKEN": " ", "ARCHIVE_DIR": "", "LOG_LEVEL": "",
        "CHAMADOS_ADMIN_EMAIL": "", "CHAMADOS_ADMIN_PASSWORD": "",
    })
    assert settings == Settings.from_mapping({})


def test_values_are_typed():
    settings = Settings.from_mapping({
        "AMQP_URI": " amqps://u:p@broker:5671/chamados ",
        "DATABASE_URL": "postgresql+psycopg://u:p@db/chamados",
        "CHAMADOS_VAR_DIR": "/tmp/chamados-var",
        "GATEWAY_HOST": "0.0.0.0",
        "GATEWAY_PORT": "8001",
        "METRICS_PORT_BASE": "9200",
        "RPC_TIMEOUT_SECONDS": "2.5",
        "SESSION_TTL_HOURS": "24",
        "MAX_BODY_BYTES": 2048,
        "CRON_SECRET": "0123",
        "INTERNAL_HEALTH_TOKEN": "tok",
        "ARCHIVE_DIR": "/tmp/arch",
        "EXPORT_DIR": "/tmp/exp",
        "LOG_LEVEL": "debug",
        "CHAMADOS_ADMIN_EMAIL": "root@empresa.com.br",
        "CHAMADOS_ADMIN_PASSWORD": "s3cret-pass",
    })
    assert settings.amqp_uri == "amqps://u:p@broker:5671/chamados"
    assert settings.database_url == "postgresql+psycopg://u:p@db/chamados"
    assert not settings.is_sqlite
    assert settings.var_dir == Path("/tmp/chamados-var")
    assert settings.gateway_host == "0.0.0.0"
    assert settings.gateway_port == 8001 and isinstance(settings.gateway_port, int)
    assert settings.metrics_ports["accounts"] == 9200
    assert settings.rpc_timeout_seconds == 2.5 and isinstance(settings.rpc_timeout_seconds, float)
    assert settings.session_ttl_hours == 24 and isinstance(settings.session_ttl_hours, int)
    assert settings.max_body_bytes == 2048
    assert settings.cron_secret == "0123"
    assert settings.internal_health_token == "tok"
    assert settings.archive_dir == Path("/tmp/arch")
    assert settings.export_dir == Path("/tmp/exp")
    assert settings.log_level == "DEBUG"
    assert settings.admin_email == "root@empresa.com.br"
    assert settings.admin_password == "s3cret-pass"


def test_numbers_given_as_yaml_ints_are_kept():
    settings = Settings.from_mapping({"GATEWAY_PORT": 8001, "RPC_TIMEOUT_SECONDS": 3})
    assert settings.gateway_port == 8001
    assert settings.rpc_timeout_seconds == 3.0 and isinstance(settings.rpc_timeout_seconds, float)


def test_numeric_secret_from_yaml_is_text():
    assert Settings.from_mapping({"CRON_SECRET": 123}).cron_secret == "123"


@pytest.mark.parametrize("uri", ["amqp://localhost", "amqps://h:5671/", "pyamqp://guest@h//"])
def test_amqp_schemes_accepted(uri):
    assert Settings.from_mapping({"AMQP_URI": uri}).amqp_uri == uri


@pytest.mark.parametrize("level", ["DEBUG", "info", "Warning", "error"])
def test_log_levels_accepted_case_insensitively(level):
    assert Settings.from_mapping({"LOG_LEVEL": level}).log_level == level.upper()


# --- errors -------------------------------------------------------------------------------

@pytest.mark.parametrize("uri", ["http://localhost:5672/", "redis://localhost", "localhost:5672",
                                 "guest:guest@localhost"])
def test_bad_amqp_uri(uri):
    with pytest.raises(ConfigError, match="AMQP_URI"):
        Settings.from_mapping({"AMQP_URI": uri})


@pytest.mark.parametrize("url", ["mysql://u:p@db/chamados", "postgres://u@db/x",
                                 "oracle://db", "/var/lib/chamados.db"])
def test_database_url_of_another_scheme(url):
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        Settings.from_mapping({"DATABASE_URL": url})


@pytest.mark.parametrize("key", ["GATEWAY_PORT", "METRICS_PORT_BASE"])
@pytest.mark.parametrize("value", ["http", "80a", "8.5", "-1", -80, "0", 0, "65536", 70000])
def test_bad_ports(key, value):
    with pytest.raises(ConfigError, match=key):
        Settings.from_mapping({key: value})


@pytest.mark.parametrize("key", ["GATEWAY_PORT", "METRICS_PORT_BASE"])
def test_port_bounds_inclusive(key):
    assert Settings.from_mapping({key: "1"})  # does not raise
    if key == "GATEWAY_PORT":
        assert Settings.from_mapping({key: "65535"}).gateway_port == 65535


@pytest.mark.parametrize("key", ["RPC_TIMEOUT_SECONDS", "SESSION_TTL_HOURS", "MAX_BODY_BYTES", "max_workers"])
@pytest.mark.parametrize("value", ["abc", "-1", "0"])
def test_bad_positive_numbers(key, value):
    with pytest.raises(ConfigError, match=key):
        Settings.from_mapping({key: value})


def test_the_database_pool_keeps_a_connection_per_worker_and_two_more():
    assert Settings.from_mapping({}).db_pool_size == 12
    assert Settings.from_mapping({"max_workers": "20"}).db_pool_size == 22


@pytest.mark.parametrize("level", ["TRACE", "CRITICAL", "verbose", "1"])
def test_bad_log_level(level):
    with pytest.raises(ConfigError, match="LOG_LEVEL"):
        Settings.from_mapping({"LOG_LEVEL": level})


@pytest.mark.parametrize("email", ["admin", "admin@", "@example.com", "ad min@example.com",
                                   "admin@exa mple.com", "@"])
def test_bad_admin_email(email):
    with pytest.raises(ConfigError, match="CHAMADOS_ADMIN_EMAIL"):
        Settings.from_mapping({"CHAMADOS_ADMIN_EMAIL": email})


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


# --- metrics ports ------------------------------------------------------------------------

def test_metrics_ports_are_consecutive_from_the_base_in_service_order():
    settings = Settings.from_mapping({"METRICS_PORT_BASE": "12000"})
    assert settings.metrics_ports == {"accounts": 12000, "tickets": 12001, "devices": 12002,
                                      "scheduler": 12003, "notifications": 12004}
    assert list(settings.metrics_ports) == ["accounts", "tickets", "devices", "scheduler", "notifications"]
    assert "gateway" not in settings.metrics_ports
    assert set(settings.metrics_ports) == set(SERVICE_NAMES) - {"gateway"}


# --- database URLs ------------------------------------------------------------------------

@pytest.mark.parametrize("service", ["accounts", "tickets", "devices"])
def test_database_url_for_defaults_to_a_sqlite_file_per_service(service, tmp_path):
    settings = Settings.from_mapping({"CHAMADOS_VAR_DIR": str(tmp_path)})
    assert settings.is_sqlite
    assert settings.database_url_for(service) == f"sqlite:///{tmp_path / (service + '.db')}"


def test_database_url_for_default_var_dir():
    assert Settings.from_mapping({}).database_url_for("tickets") == f"sqlite:///{ROOT / 'var' / 'tickets.db'}"


def test_database_url_for_explicit_sqlite_relative_path():
    settings = Settings.from_mapping({"DATABASE_URL": "sqlite:///dir/x.db"})
    assert settings.is_sqlite
    assert settings.database_url_for("accounts") == "sqlite:///dir/x-accounts.db"
    assert settings.database_url_for("devices") == "sqlite:///dir/x-devices.db"


def test_database_url_for_explicit_sqlite_absolute_path():
    settings = Settings.from_mapping({"DATABASE_URL": "sqlite:////srv/data/chamados.db"})
    assert settings.database_url_for("tickets") == "sqlite:////srv/data/chamados-tickets.db"


def test_database_url_for_postgresql_is_unchanged():
    url = "postgresql+psycopg://chamados:pw@db.internal:5432/chamados"
    settings = Settings.from_mapping({"DATABASE_URL": url})
    assert not settings.is_sqlite
    for service in ("accounts", "tickets", "devices"):
        assert settings.database_url_for(service) == url


def test_is_sqlite_on_direct_construction():
    assert Settings().is_sqlite
    assert Settings(database_url="sqlite:///x.db").is_sqlite
    assert not Settings(database_url="postgresql://h/db").is_sqlite


# --- load_config --------------------------------------------------------------------------

@pytest.fixture
def clean_env(monkeypatch):
    for name in CONFIG_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_load_config_reads_config_yml_defaults(clean_env):
    assert config_module.CONFIG_FILE == Path(__file__).resolve().parents[2] / "config.yml"
    config = load_config()
    assert config["AMQP_URI"] == "amqp://guest:guest@localhost:5672/"
    assert config["GATEWAY_PORT"] == 8000
    assert config["serializer"] == "json"
    settings = Settings.from_mapping(config)
    assert settings == Settings.from_mapping({})


def test_load_config_substitutes_the_environment(clean_env):
    clean_env.setenv("AMQP_URI", "amqp://user:pw@rabbit:5672/chamados-test")
    clean_env.setenv("CRON_SECRET", "0123")
    clean_env.setenv("GATEWAY_PORT", "8001")
    config = load_config(config_module.ROOT / "config.yml")
    assert config["AMQP_URI"] == "amqp://user:pw@rabbit:5672/chamados-test"
    assert config["CRON_SECRET"] == "0123"
    assert isinstance(config["CRON_SECRET"], str)
    settings = Settings.from_mapping(config)
    assert settings.amqp_uri == "amqp://user:pw@rabbit:5672/chamados-test"
    assert settings.cron_secret == "0123"
    assert settings.gateway_port == 8001


def test_load_config_reads_a_given_path(clean_env, tmp_path):
    path = tmp_path / "other.yml"
    path.write_text("AMQP_URI: ${AMQP_URI:amqp://other/}\nLOG_LEVEL: warning\n")
    assert load_config(path) == {"AMQP_URI": "amqp://other/", "LOG_LEVEL": "warning"}


def test_load_config_of_an_empty_file_is_an_empty_mapping(clean_env, tmp_path):
    path = tmp_path / "empty.yml"
    path.write_text("")
    assert load_config(path) == {}


# --- the agents' broker access -------------------------------------------------------------

def test_agent_broker_access_defaults_to_no_user_and_http():
    settings = Settings.from_mapping({})
    assert (settings.agent_amqp_user, settings.agent_amqp_password, settings.agent_amqp_uri) == \
        ("chamados-agent", None, None)


def test_agent_broker_access_when_given():
    settings = Settings.from_mapping({"AGENT_AMQP_PASSWORD": "a-long-enough-secret",
                                      "AGENT_AMQP_URI": "amqps://chamados-agent:a-long-enough-secret@broker.example/"})
    assert settings.agent_amqp_uri.startswith("amqps://chamados-agent:")


@pytest.mark.parametrize("mapping, key", [
    ({"AGENT_AMQP_USER": "guest"}, "AGENT_AMQP_USER"),  # the services' own account
    ({"AMQP_URI": "amqp://svc:pw@h/", "AGENT_AMQP_USER": "svc"}, "AGENT_AMQP_USER"),
    ({"AGENT_AMQP_USER": "bad user"}, "AGENT_AMQP_USER"),
    ({"AGENT_AMQP_PASSWORD": "short"}, "AGENT_AMQP_PASSWORD"),
    ({"AGENT_AMQP_URI": "http://broker/"}, "AGENT_AMQP_URI"),
    ({"AGENT_AMQP_URI": "amqp://guest:guest@broker/"}, "AGENT_AMQP_URI"),  # not the agents' user
    ({"AGENT_AMQP_URI": "amqp:///vhost"}, "AGENT_AMQP_URI"),
])
def test_bad_agent_broker_access(mapping, key):
    with pytest.raises(ConfigError, match=key):
        Settings.from_mapping(mapping)
