"""Typed settings, read from the nameko config mapping (config.yml with env substitution)."""
from __future__ import annotations

import ipaddress
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import yaml
from sqlalchemy.engine import make_url

SERVICE_NAMES = ("accounts", "tickets", "devices", "scheduler", "notifications", "gateway")
ROOT = Path(__file__).resolve().parent.parent
CONFIG_FILE = ROOT / "config.yml"
SECRET_KEYS = ("AMQP_URI", "DATABASE_URL", "CRON_SECRET", "INTERNAL_HEALTH_TOKEN",
               "CHAMADOS_ADMIN_PASSWORD", "AGENT_AMQP_PASSWORD", "AGENT_AMQP_URI", "SMTP_URL")
# Settings field -> the environment variable config.yml reads it from: the one list
# tests/unit/test_config.py checks config.yml and every Settings field against
SETTING_KEYS = {
    "amqp_uri": "AMQP_URI", "database_url": "DATABASE_URL", "var_dir": "CHAMADOS_VAR_DIR",
    "gateway_host": "GATEWAY_HOST", "gateway_port": "GATEWAY_PORT",
    "metrics_ports": "METRICS_PORT_BASE", "rpc_timeout_seconds": "RPC_TIMEOUT_SECONDS",
    "db_pool_size": "MAX_WORKERS", "auth_cache_seconds": "AUTH_CACHE_SECONDS",
    "console_cache_seconds": "CONSOLE_CACHE_SECONDS", "session_ttl_hours": "SESSION_TTL_HOURS",
    "max_body_bytes": "MAX_BODY_BYTES", "cron_secret": "CRON_SECRET",
    "http_header_timeout_seconds": "HTTP_HEADER_TIMEOUT_SECONDS",
    "http_body_timeout_seconds": "HTTP_BODY_TIMEOUT_SECONDS",
    "http_connections_per_client": "HTTP_CONNECTIONS_PER_CLIENT",
    "internal_health_token": "INTERNAL_HEALTH_TOKEN", "archive_dir": "ARCHIVE_DIR",
    "export_dir": "EXPORT_DIR", "log_level": "LOG_LEVEL", "admin_email": "CHAMADOS_ADMIN_EMAIL",
    "admin_password": "CHAMADOS_ADMIN_PASSWORD", "machine_token_ttl_days": "MACHINE_TOKEN_TTL_DAYS",
    "machine_online_seconds": "MACHINE_ONLINE_SECONDS",
    "machine_stale_seconds": "MACHINE_STALE_SECONDS",
    "usb_policy_ttl_minutes": "USB_POLICY_TTL_MINUTES",
    "rabbit_management_url": "RABBIT_MANAGEMENT_URL", "agent_amqp_user": "AGENT_AMQP_USER",
    "agent_amqp_password": "AGENT_AMQP_PASSWORD", "agent_amqp_uri": "AGENT_AMQP_URI",
    "heartbeat_queue_max_age_seconds": "HEARTBEAT_QUEUE_MAX_AGE_SECONDS",
    "console_https": "CONSOLE_HTTPS", "sign_in_account_failures": "SIGN_IN_ACCOUNT_FAILURES",
    "sign_in_account_window_seconds": "SIGN_IN_ACCOUNT_WINDOW_SECONDS",
    "sign_in_address_failures": "SIGN_IN_ADDRESS_FAILURES",
    "sign_in_address_window_seconds": "SIGN_IN_ADDRESS_WINDOW_SECONDS",
    "sign_in_lock_seconds": "SIGN_IN_LOCK_SECONDS",
    "sign_in_max_lock_seconds": "SIGN_IN_MAX_LOCK_SECONDS",
    "password_hash_slots": "PASSWORD_HASH_SLOTS", "password_hash_profile": "PASSWORD_HASH_PROFILE",
    "trusted_proxies": "TRUSTED_PROXIES", "cors_allowed_origins": "CORS_ALLOWED_ORIGINS",
    "smtp_url": "SMTP_URL", "mail_from": "MAIL_FROM", "console_url": "CONSOLE_URL",
}


class ConfigError(ValueError):
    """A configuration value is missing or malformed; the message names the key."""


def load_config(path: Path | str | None = None) -> dict:
    """The nameko config: config.yml with ${VAR:default} substituted from the environment."""
    with warnings.catch_warnings():  # nameko's cli imports the deprecated pkg_resources
        warnings.simplefilter("ignore")
        from nameko.cli.main import setup_yaml_parser
    setup_yaml_parser()
    with open(path or os.environ.get("CHAMADOS_CONFIG") or CONFIG_FILE) as handle:
        config = yaml.safe_load(handle) or {}
    # Docker/Swarm secrets arrive as files: KEY_FILE names the file holding KEY's value
    for key in SECRET_KEYS:
        secret_file = os.environ.get(f"{key}_FILE")
        if secret_file:
            try:
                config[key] = open(secret_file).read().strip()
            except OSError as exc:
                raise ConfigError(f"{key}_FILE: cannot read {secret_file}: {exc.strerror}") from None
    return config


AGENT_PASSWORD_MIN_LENGTH = 16


# argon2-cffi's parameter profiles by name (services/accounts/passwords.py maps them); the last
# one costs microseconds instead of ~0.1 s of CPU: test systems sign in thousands of times
PASSWORD_HASH_PROFILES = ("rfc9106-low-memory", "rfc9106-high-memory", "insecure-for-tests")


def _agent_broker_access(config, amqp_uri: str) -> tuple[str, str | None, str | None]:
    """AGENT_AMQP_USER / _PASSWORD / _URI: never the services' own broker account, which may
    do anything on the vhost; the URI's user is the agents' user."""
    user = _text(config, "AGENT_AMQP_USER", "chamados-agent")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", user):
        raise ConfigError(f"AGENT_AMQP_USER must be 1-64 letters, digits, '.', '_' or '-', got {user!r}")
    services_user = unquote(urlsplit(amqp_uri).username or "guest")
    if user == services_user:
        raise ConfigError(f"AGENT_AMQP_USER must not be the services' broker user ({services_user!r}): "
                          "agents get a user that can only publish heartbeats")
    password = _text(config, "AGENT_AMQP_PASSWORD")
    if password is not None and len(password) < AGENT_PASSWORD_MIN_LENGTH:
        raise ConfigError(f"AGENT_AMQP_PASSWORD must be at least {AGENT_PASSWORD_MIN_LENGTH} characters")
    uri = _text(config, "AGENT_AMQP_URI")
    if uri is not None:
        parts = urlsplit(uri)
        if parts.scheme not in ("amqp", "amqps") or not parts.hostname:
            raise ConfigError(f"AGENT_AMQP_URI must be an amqp:// or amqps:// URI with a host, got {uri!r}")
        if unquote(parts.username or "") != user:
            raise ConfigError(f"AGENT_AMQP_URI must log in as AGENT_AMQP_USER ({user!r}), "
                              "never with the services' broker account")
    return user, password, uri


def _text(mapping, key, default=None):
    value = mapping.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    return str(value).strip()


def _url(mapping, key, schemes):
    value = _text(mapping, key)
    if value is not None and (urlsplit(value).scheme not in schemes or not urlsplit(value).hostname):
        raise ConfigError(f"{key} must be a {' or '.join(s + '://' for s in schemes)} URL with a host")
    return value


def _positive(mapping, key, default, kind=int):
    raw = mapping.get(key)
    if raw is None or raw == "":
        return default
    # YAML already typed the value; accept only what reads as this kind exactly
    # (no bools, no 80.7 for a port, no "1_000")
    text = str(raw).strip()
    pattern = r"\d+" if kind is int else r"\d+(\.\d+)?"
    if isinstance(raw, bool) or not re.fullmatch(pattern, text) or kind(text) <= 0:
        raise ConfigError(f"{key} must be a positive {'whole ' if kind is int else ''}number, got {raw!r}")
    return kind(text)


def _seconds_up_to(mapping, key: str, default: str, most: float, why: str) -> float:
    """A short cache's life in seconds: 0 (off) to `most`."""
    raw = _text(mapping, key, default)
    seconds = float(raw) if re.fullmatch(r"\d+(\.\d+)?", raw) else -1.0
    if not 0 <= seconds <= most:
        raise ConfigError(f"{key} must be between 0 (off) and {most:g}, got {raw!r}: {why}")
    return seconds


def _flag(mapping, key, default: bool) -> bool:
    raw = mapping.get(key)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return default
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{key} must be true or false, got {raw!r}")


ORIGIN = re.compile(r"(https?)://([a-z0-9]([a-z0-9.-]*[a-z0-9])?|\[[0-9a-f:.]+\])(:\d{1,5})?")


def _choice(mapping, key, allowed: tuple[str, ...], default: str) -> str:
    value = _text(mapping, key, default)
    if value not in allowed:
        raise ConfigError(f"{key} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def _origins(mapping, key) -> tuple[str, ...]:
    """Comma-separated exact browser origins (scheme://host[:port], no path, no `*`)."""
    text = _text(mapping, key) or ""
    origins = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        match = ORIGIN.fullmatch(item.lower())
        if match is None or (match.group(4) and not 0 < int(match.group(4)[1:]) <= 65535):
            raise ConfigError(f"{key} must list origins as scheme://host[:port] separated by "
                              f"commas, got {item!r}")
        if match.group(0) not in origins:
            origins.append(match.group(0))
    return tuple(origins)


def _port(mapping, key, default):
    port = _positive(mapping, key, default)
    if port > 65535:
        raise ConfigError(f"{key} must be a TCP port (1-65535), got {port}")
    return port


def _networks(mapping, key) -> tuple:
    """A comma-separated list of IP addresses or networks (CIDR), as ip_network objects."""
    text = _text(mapping, key)
    if text is None:
        return ()
    networks = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(f"{key} must be IP addresses or networks (CIDR), comma-separated; "
                              f"got {item!r}") from None
    return tuple(networks)


@dataclass(frozen=True)
class Settings:
    amqp_uri: str = "amqp://guest:guest@localhost:5672/"
    database_url: str | None = None  # None: SQLite files under var_dir
    var_dir: Path = ROOT / "var"
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8000
    metrics_ports: dict = field(default_factory=dict)
    rpc_timeout_seconds: float = 10.0
    # database connections a service keeps: one per nameko worker (max_workers) and two for
    # its consumers and background loops. Fewer made every request past them open and close
    # a connection of its own (SQLAlchemy's overflow): 5 were kept for 10 workers.
    db_pool_size: int = 12
    auth_cache_seconds: float = 0.5  # how long a gateway trusts a verified token (0: not at all)
    console_cache_seconds: float = 1.0  # how long a console page's lookups are reused (0: never)
    session_ttl_hours: int = 12
    max_body_bytes: int = 1_048_576
    # a client's time to send a request (slowloris, issue 26): the request line and headers,
    # then the body, each within its deadline (408 beyond); and connections open at once from
    # one client address (a trusted proxy's excepted), one more answered 429 and closed
    http_header_timeout_seconds: float = 10.0
    http_body_timeout_seconds: float = 30.0
    http_connections_per_client: int = 256
    cron_secret: str | None = None
    internal_health_token: str | None = None
    archive_dir: Path = ROOT / "archives"
    export_dir: Path = ROOT / "exports"
    log_level: str = "INFO"
    admin_email: str = "admin@example.com"
    admin_password: str | None = None
    machine_token_ttl_days: int = 30
    machine_online_seconds: int = 300
    machine_stale_seconds: int = 1800
    usb_policy_ttl_minutes: int = 60
    rabbit_management_url: str | None = None  # None: the broker's host, port 15672
    # agents' own broker user (common/broker_users.py): made by `chamados migrate` when it has
    # a password; the URI agents are told at registration (the broker as they reach it)
    agent_amqp_user: str = "chamados-agent"
    agent_amqp_password: str | None = None
    agent_amqp_uri: str | None = None
    heartbeat_queue_max_age_seconds: int = 120
    console_https: bool = False  # the console is served over HTTPS: cookies get `Secure`
    # sign-in throttling (services/accounts/throttle.py): failures per account and per
    # client address within a window, then lock-outs from `sign_in_lock_seconds` doubling
    # per further failure up to `sign_in_max_lock_seconds`
    sign_in_account_failures: int = 5
    sign_in_account_window_seconds: int = 3600
    sign_in_address_failures: int = 20
    sign_in_address_window_seconds: int = 600
    sign_in_lock_seconds: int = 30
    sign_in_max_lock_seconds: int = 900
    password_hash_slots: int = 1  # argon2 computations at once in the accounts process
    # argon2's cost for new hashes (argon2-cffi's profiles; a stored hash carries its own, so
    # a change never locks anyone out); the cheap one is for test systems only
    password_hash_profile: str = "rfc9106-low-memory"
    trusted_proxies: tuple = ()  # addresses/networks whose X-Forwarded-For the gateway believes
    cors_allowed_origins: tuple = ()  # browser origins allowed to call /api/; empty: CORS off
    smtp_url: str | None = None  # smtp://user:pass@host:587?starttls=true | smtps://…; None: no mail
    mail_from: str = "Chamados <chamados@localhost>"
    console_url: str = "http://localhost:8000"  # the console's address in mails' links

    @classmethod
    def from_mapping(cls, config: dict) -> "Settings":
        amqp_uri = _text(config, "AMQP_URI", cls.amqp_uri)
        if urlsplit(amqp_uri).scheme not in ("amqp", "amqps", "pyamqp"):
            raise ConfigError(f"AMQP_URI must be an amqp:// URI, got {amqp_uri!r}")
        database_url = _text(config, "DATABASE_URL")
        if database_url and not database_url.startswith(("postgresql", "sqlite")):
            raise ConfigError("DATABASE_URL must be postgresql+psycopg://… or sqlite:///…")
        metrics_base = _port(config, "METRICS_PORT_BASE", 9101)
        if metrics_base + len(SERVICE_NAMES) - 2 > 65535:
            raise ConfigError(f"METRICS_PORT_BASE leaves no room for four ports, got {metrics_base}")
        log_level = (_text(config, "LOG_LEVEL", "INFO")).upper()
        if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError(f"LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {log_level!r}")
        admin_email = _text(config, "CHAMADOS_ADMIN_EMAIL", "admin@example.com")
        if "@" not in admin_email.strip("@") or " " in admin_email:
            raise ConfigError(f"CHAMADOS_ADMIN_EMAIL must be an email address, got {admin_email!r}")
        management_url = _text(config, "RABBIT_MANAGEMENT_URL")
        if management_url and urlsplit(management_url).scheme not in ("http", "https"):
            raise ConfigError(f"RABBIT_MANAGEMENT_URL must be an http(s):// URL, got {management_url!r}")
        agent_user, agent_password, agent_uri = _agent_broker_access(config, amqp_uri)
        online = _positive(config, "MACHINE_ONLINE_SECONDS", 300)
        stale = _positive(config, "MACHINE_STALE_SECONDS", 1800)
        if stale <= online:
            raise ConfigError("MACHINE_STALE_SECONDS must be greater than MACHINE_ONLINE_SECONDS")
        lock = _positive(config, "SIGN_IN_LOCK_SECONDS", 30)
        max_lock = _positive(config, "SIGN_IN_MAX_LOCK_SECONDS", 900)
        if max_lock < lock:
            raise ConfigError("SIGN_IN_MAX_LOCK_SECONDS must be at least SIGN_IN_LOCK_SECONDS")
        return cls(
            amqp_uri=amqp_uri,
            database_url=database_url,
            var_dir=Path(_text(config, "CHAMADOS_VAR_DIR", str(ROOT / "var"))),
            gateway_host=_text(config, "GATEWAY_HOST", "127.0.0.1"),
            gateway_port=_port(config, "GATEWAY_PORT", 8000),
            # one metrics port per service, in SERVICE_NAMES order from METRICS_PORT_BASE
            metrics_ports={
                name: metrics_base + index
                for index, name in enumerate(SERVICE_NAMES)
                if name != "gateway"
            },
            rpc_timeout_seconds=_positive(config, "RPC_TIMEOUT_SECONDS", 10.0, float),
            db_pool_size=_positive(config, "max_workers", 10) + 2,
            auth_cache_seconds=_seconds_up_to(config, "AUTH_CACHE_SECONDS", "0.5", 1,
                                              "a revoked token must be refused within it"),
            console_cache_seconds=_seconds_up_to(config, "CONSOLE_CACHE_SECONDS", "1", 5,
                                                 "a change made elsewhere shows within it"),
            session_ttl_hours=_positive(config, "SESSION_TTL_HOURS", 12),
            max_body_bytes=_positive(config, "MAX_BODY_BYTES", 1_048_576),
            http_header_timeout_seconds=_positive(config, "HTTP_HEADER_TIMEOUT_SECONDS", 10.0, float),
            http_body_timeout_seconds=_positive(config, "HTTP_BODY_TIMEOUT_SECONDS", 30.0, float),
            http_connections_per_client=_positive(config, "HTTP_CONNECTIONS_PER_CLIENT", 256),
            cron_secret=_text(config, "CRON_SECRET"),
            internal_health_token=_text(config, "INTERNAL_HEALTH_TOKEN"),
            archive_dir=Path(_text(config, "ARCHIVE_DIR", str(ROOT / "archives"))),
            export_dir=Path(_text(config, "EXPORT_DIR", str(ROOT / "exports"))),
            log_level=log_level,
            admin_email=admin_email,
            machine_token_ttl_days=_positive(config, "MACHINE_TOKEN_TTL_DAYS", 30),
            machine_online_seconds=online,
            machine_stale_seconds=stale,
            usb_policy_ttl_minutes=_positive(config, "USB_POLICY_TTL_MINUTES", 60),
            admin_password=_text(config, "CHAMADOS_ADMIN_PASSWORD"),
            rabbit_management_url=management_url,
            agent_amqp_user=agent_user,
            agent_amqp_password=agent_password,
            agent_amqp_uri=agent_uri,
            heartbeat_queue_max_age_seconds=_positive(config, "HEARTBEAT_QUEUE_MAX_AGE_SECONDS", 120),
            console_https=_flag(config, "CONSOLE_HTTPS", False),
            sign_in_account_failures=_positive(config, "SIGN_IN_ACCOUNT_FAILURES", 5),
            sign_in_account_window_seconds=_positive(config, "SIGN_IN_ACCOUNT_WINDOW_SECONDS", 3600),
            sign_in_address_failures=_positive(config, "SIGN_IN_ADDRESS_FAILURES", 20),
            sign_in_address_window_seconds=_positive(config, "SIGN_IN_ADDRESS_WINDOW_SECONDS", 600),
            sign_in_lock_seconds=lock,
            sign_in_max_lock_seconds=max_lock,
            password_hash_slots=_positive(config, "PASSWORD_HASH_SLOTS", 1),
            password_hash_profile=_choice(config, "PASSWORD_HASH_PROFILE", PASSWORD_HASH_PROFILES,
                                          "rfc9106-low-memory"),
            trusted_proxies=_networks(config, "TRUSTED_PROXIES"),
            cors_allowed_origins=_origins(config, "CORS_ALLOWED_ORIGINS"),
            smtp_url=_url(config, "SMTP_URL", ("smtp", "smtps")),
            mail_from=_text(config, "MAIL_FROM", cls.mail_from),
            console_url=_url(config, "CONSOLE_URL", ("http", "https")) or cls.console_url,
        )

    @property
    def management_api(self) -> tuple[str, str, tuple[str, str]]:
        """(RabbitMQ management API base URL, vhost, credentials), by default on the
        broker's host at port 15672 with the broker's credentials."""
        broker = urlsplit(self.amqp_uri)
        vhost = unquote(broker.path[1:]) if broker.path not in ("", "/") else "/"
        credentials = (unquote(broker.username or "guest"), unquote(broker.password or "guest"))
        base = self.rabbit_management_url or f"http://{broker.hostname or 'localhost'}:15672/api"
        return base.rstrip("/"), vhost, credentials

    def database_url_for(self, service: str) -> str:
        """Each service owns its data: a PostgreSQL schema, or its own SQLite file."""
        if self.database_url is None:
            return f"sqlite:///{self.var_dir / (service + '.db')}"
        url = make_url(self.database_url)
        if url.get_backend_name() == "sqlite":
            path = Path(url.database or "chamados.db")
            return url.set(database=str(path.with_name(f"{path.stem}-{service}{path.suffix}"))).render_as_string()
        return self.database_url

    @property
    def is_sqlite(self) -> bool:
        return self.database_url is None or self.database_url.startswith("sqlite")


def settings_from_env() -> Settings:
    return Settings.from_mapping(load_config())

