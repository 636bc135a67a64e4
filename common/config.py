"""Typed settings, read from the nameko config mapping (config.yml with env substitution).

Every setting is declared once, in SETTINGS below (grouped by the service that owns it):
Settings' fields, the `<KEY>_FILE` secrets and README's settings table derive from the
declarations, and tests/unit/test_settings_reach.py holds config.yml and README to them."""
from __future__ import annotations

import ipaddress
import os
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, make_dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import yaml
from sqlalchemy.engine import make_url

SERVICE_NAMES = ("accounts", "tickets", "devices", "scheduler", "notifications", "gateway")
ROOT = Path(__file__).resolve().parent.parent
CONFIG_FILE = ROOT / "config.yml"


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
    for setting in SETTINGS:
        secret_file = os.environ.get(f"{setting.key}_FILE") if setting.secret else None
        if secret_file:
            try:
                config[setting.source] = open(secret_file).read().strip()
            except OSError as exc:
                raise ConfigError(f"{setting.key}_FILE: cannot read {secret_file}: {exc.strerror}") from None
    return config


AGENT_PASSWORD_MIN_LENGTH = 16


# argon2-cffi's parameter profiles by name (services/accounts/passwords.py maps them); the last
# one costs microseconds instead of ~0.1 s of CPU: test systems sign in thousands of times
PASSWORD_HASH_PROFILES = ("rfc9106-low-memory", "rfc9106-high-memory", "insecure-for-tests")


def _text(mapping, key, default=None):
    value = mapping.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    return str(value).strip()


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


# --- parsers: (config mapping, key, default) -> the typed value, or a ConfigError naming the key

def _path(mapping, key, default: Path) -> Path:
    return Path(_text(mapping, key, str(default)))


def _positive_number(kind):
    return lambda mapping, key, default: _positive(mapping, key, default, kind)


def _seconds_at_most(most: float, why: str):
    return lambda mapping, key, default: _seconds_up_to(mapping, key, f"{default:g}", most, why)


def _one_of(allowed: tuple[str, ...]):
    return lambda mapping, key, default: _choice(mapping, key, allowed, default)


def _amqp_uri(mapping, key, default):
    uri = _text(mapping, key, default)
    if urlsplit(uri).scheme not in ("amqp", "amqps", "pyamqp"):
        raise ConfigError(f"{key} must be an amqp:// URI, got {uri!r}")
    return uri


def _database_url(mapping, key, default):
    url = _text(mapping, key, default)
    if url and not url.startswith(("postgresql", "sqlite")):
        raise ConfigError(f"{key} must be postgresql+psycopg://… or sqlite:///…")
    return url


def _metrics_ports(mapping, key, default: dict) -> dict:
    """One metrics port per service but the gateway, in SERVICE_NAMES order from the base."""
    names = [name for name in SERVICE_NAMES if name != "gateway"]
    base = _port(mapping, key, default[names[0]])
    if base + len(names) - 1 > 65535:
        raise ConfigError(f"{key} leaves no room for {len(names)} ports, got {base}")
    return {name: base + index for index, name in enumerate(names)}


def _pool_size(mapping, key, default: int) -> int:
    # one connection per nameko worker, two more for the consumers and background loops
    return _positive(mapping, key, default - 2) + 2


def _log_level(mapping, key, default):
    level = _text(mapping, key, default).upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"{key} must be DEBUG, INFO, WARNING or ERROR, got {level!r}")
    return level


def _email(mapping, key, default):
    email = _text(mapping, key, default)
    if "@" not in email.strip("@") or " " in email:
        raise ConfigError(f"{key} must be an email address, got {email!r}")
    return email


def _http_url(mapping, key, default):
    url = _text(mapping, key, default)
    if url and urlsplit(url).scheme not in ("http", "https"):
        raise ConfigError(f"{key} must be an http(s):// URL, got {url!r}")
    return url


def _url_of(schemes: tuple[str, ...]):
    def parse(mapping, key, default):
        url = _text(mapping, key, default)
        if url and (urlsplit(url).scheme not in schemes or not urlsplit(url).hostname):
            raise ConfigError(f"{key} must be a {' or '.join(s + '://' for s in schemes)} URL with a host")
        return url
    return parse


def _broker_user(mapping, key, default):
    user = _text(mapping, key, default)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", user):
        raise ConfigError(f"{key} must be 1-64 letters, digits, '.', '_' or '-', got {user!r}")
    return user


def _agent_password(mapping, key, default):
    password = _text(mapping, key, default)
    if password is not None and len(password) < AGENT_PASSWORD_MIN_LENGTH:
        raise ConfigError(f"{key} must be at least {AGENT_PASSWORD_MIN_LENGTH} characters")
    return password


def _agent_uri(mapping, key, default):
    uri = _text(mapping, key, default)
    if uri is not None:
        parts = urlsplit(uri)
        if parts.scheme not in ("amqp", "amqps") or not parts.hostname:
            raise ConfigError(f"{key} must be an amqp:// or amqps:// URI with a host, got {uri!r}")
    return uri


def _origins_list(mapping, key, default):
    return _origins(mapping, key) or default


def _networks_list(mapping, key, default):
    return _networks(mapping, key) or default


def _json_or_mapping(mapping, key, default):
    """Text for the owner to decode (JSON), or a mapping a config file gave as YAML."""
    raw = mapping.get(key)
    if isinstance(raw, str):
        return raw.strip() or default
    return raw if raw not in (None, "") else default


def _check_together(values: dict) -> None:
    """The rules that relate two settings, once each has parsed."""
    services_user = unquote(urlsplit(values["amqp_uri"]).username or "guest")
    agent_user = values["agent_amqp_user"]
    if agent_user == services_user:
        raise ConfigError(f"AGENT_AMQP_USER must not be the services' broker user ({services_user!r}): "
                          "agents get a user that can only publish heartbeats")
    agent_uri = values["agent_amqp_uri"]
    if agent_uri is not None and unquote(urlsplit(agent_uri).username or "") != agent_user:
        raise ConfigError(f"AGENT_AMQP_URI must log in as AGENT_AMQP_USER ({agent_user!r}), "
                          "never with the services' broker account")
    if values["machine_stale_seconds"] <= values["machine_online_seconds"]:
        raise ConfigError("MACHINE_STALE_SECONDS must be greater than MACHINE_ONLINE_SECONDS")
    if values["sign_in_max_lock_seconds"] < values["sign_in_lock_seconds"]:
        raise ConfigError("SIGN_IN_MAX_LOCK_SECONDS must be at least SIGN_IN_LOCK_SECONDS")


# --- the declarations: one per setting, grouped by the service that owns it ----------------

ALL = "all"


@dataclass(frozen=True)
class Setting:
    """One setting: where it is read from, how it is typed and checked, and what it means.
    Settings' fields, `<KEY>_FILE` secrets and README's settings table all derive from these."""

    field: str  # the attribute code reads: settings.<field>
    key: str  # the environment variable (config.yml substitutes it under the same name)
    parse: Callable[[Mapping, str, Any], Any]  # ConfigError naming the key on a bad value
    default: Any  # the typed value when unset
    used_by: tuple[str, ...]  # services (and `chamados` commands) that read it, or ALL
    meaning: str
    secret: bool = False  # may also come from the file `<KEY>_FILE` names
    shown_default: str | None = None  # README's default, where the value alone says too little
    config_key: str | None = None  # the nameko config's name for it, where that is not `key`

    @property
    def source(self) -> str:
        return self.config_key or self.key


SHARED = (
    Setting("amqp_uri", "AMQP_URI", _amqp_uri, "amqp://guest:guest@localhost:5672/", (ALL,),
            "the broker", secret=True),
    Setting("database_url", "DATABASE_URL", _database_url, None, (ALL,),
            "`postgresql+psycopg://…` for PostgreSQL", secret=True,
            shown_default="SQLite files under `./var/`"),
    Setting("var_dir", "CHAMADOS_VAR_DIR", _path, ROOT / "var", (ALL,), "where the SQLite files go"),
    Setting("db_pool_size", "MAX_WORKERS", _pool_size, 12, (ALL,),
            "nameko workers per service process; each keeps one database connection (pool: workers + 2)",
            shown_default="`10`", config_key="max_workers"),
    Setting("log_level", "LOG_LEVEL", _log_level, "INFO", (ALL,),
            "`DEBUG`, `INFO`, `WARNING`, `ERROR` (logs: one JSON object a line on stdout; see "
            "docs/OPERATIONS.md, \"Watching it\")"),
    Setting("gateway_host", "GATEWAY_HOST", _text, "127.0.0.1", (ALL,),
            "the gateway's HTTP address (also the bind address of the services' metrics ports)"),
    Setting("metrics_ports", "METRICS_PORT_BASE", _metrics_ports,
            {"accounts": 9101, "tickets": 9102, "devices": 9103, "scheduler": 9104, "notifications": 9105},
            ("accounts", "tickets", "devices", "scheduler", "notifications", "chamados"),
            "accounts, tickets, devices, scheduler, notifications serve `/metrics` on 9101–9105",
            shown_default="`9101`"),
)

GATEWAY = (
    Setting("gateway_port", "GATEWAY_PORT", _port, 8000, ("gateway", "chamados"), "the gateway's HTTP port"),
    Setting("cors_allowed_origins", "CORS_ALLOWED_ORIGINS", _origins_list, (), ("gateway",),
            "exact browser origins (`scheme://host[:port]`, comma-separated) allowed to call `/api/` from "
            "a page of theirs; a preflight from any other origin is 403 `cors_origin_not_allowed` "
            "(docs/API.md)", shown_default="unset = CORS off"),
    Setting("console_https", "CONSOLE_HTTPS", _flag, False, ("gateway",),
            "`true` when people reach the console over HTTPS (a proxy in front): its cookies get `Secure`"),
    Setting("trusted_proxies", "TRUSTED_PROXIES", _networks_list, (), ("gateway",),
            "addresses or networks (CIDR, comma-separated) of proxies in front of the gateway: only from "
            "them is `X-Forwarded-For` believed for the client address"),
    Setting("rpc_timeout_seconds", "RPC_TIMEOUT_SECONDS", _positive_number(float), 10.0, ("gateway",),
            "deadline of every gateway → service call (504 beyond)"),
    Setting("auth_cache_seconds", "AUTH_CACHE_SECONDS",
            _seconds_at_most(1, "a revoked token must be refused within it"), 0.5, ("gateway",),
            "how long (0–1 s) a gateway trusts a token accounts verified, instead of asking on every "
            "request; a token revoked elsewhere (another gateway, `chamados reset-password`) is refused "
            "within it; changes made through the same gateway take effect at once; `0` asks every time"),
    Setting("console_cache_seconds", "CONSOLE_CACHE_SECONDS",
            _seconds_at_most(5, "a change made elsewhere shows within it"), 1.0, ("gateway",),
            "how long (0–5 s) a console page's lookups (queues, companies, the staff pickers, a person's "
            "saved filter, the dashboard's counts) are reused for that person instead of asked again; a "
            "change made through the same gateway shows at once, one made elsewhere within it; `0` asks "
            "every time"),
    Setting("max_body_bytes", "MAX_BODY_BYTES", _positive_number(int), 1_048_576, ("gateway",),
            "larger request bodies get 413"),
    # a client's time to send a request (slowloris, issue 26)
    Setting("http_header_timeout_seconds", "HTTP_HEADER_TIMEOUT_SECONDS", _positive_number(float), 10.0,
            ("gateway",), "a client's time to send its request line and headers, in all (a client "
            "trickling bytes is cut off): 408 beyond"),
    Setting("http_body_timeout_seconds", "HTTP_BODY_TIMEOUT_SECONDS", _positive_number(float), 30.0,
            ("gateway",), "a client's time to send its body, in all: 408 beyond. A body is read whole "
            "before a worker takes the request, so slow clients hold no worker"),
    Setting("http_connections_per_client", "HTTP_CONNECTIONS_PER_CLIENT", _positive_number(int), 256,
            ("gateway",), "connections open at once from one client address (a `TRUSTED_PROXIES` address "
            "excepted); one more is answered 429 with `Retry-After` and closed"),
    Setting("cron_secret", "CRON_SECRET", _text, None, ("gateway",),
            "secret for `x-cron-secret` on `POST /api/cron/<job>`", secret=True,
            shown_default="unset = cron routes disabled (404 `cron_disabled`, naming this setting)"),
    Setting("internal_health_token", "INTERNAL_HEALTH_TOKEN", _text, None, ("gateway",),
            "token accepted by `GET /api/admin/health` in `x-internal-token`", secret=True),
    Setting("heartbeat_queue_max_age_seconds", "HEARTBEAT_QUEUE_MAX_AGE_SECONDS", _positive_number(int), 120,
            ("gateway",), "`/readyz` says `stalled` when the oldest queued heartbeat waited longer"),
    Setting("rabbit_management_url", "RABBIT_MANAGEMENT_URL", _http_url, None, ("gateway", "chamados"),
            "RabbitMQ's management API (queue age for `/readyz`, the agents' broker user for `chamados "
            "migrate`; the tests and `scripts/ensure-infra.sh` use it too)",
            shown_default="the broker's host, port 15672, `/api`"),
)

ACCOUNTS = (
    Setting("admin_email", "CHAMADOS_ADMIN_EMAIL", _email, "admin@example.com", ("chamados",),
            "first admin of the default tenant (`chamados up`, `chamados create-admin` make it)"),
    Setting("admin_password", "CHAMADOS_ADMIN_PASSWORD", _text, None, ("chamados",),
            "the first admin's password", secret=True, shown_default="random, printed once"),
    Setting("session_ttl_hours", "SESSION_TTL_HOURS", _positive_number(int), 12, ("accounts",),
            "lifetime of a sign-in token"),
    # sign-in throttling (services/accounts/throttle.py)
    Setting("sign_in_account_failures", "SIGN_IN_ACCOUNT_FAILURES", _positive_number(int), 5, ("accounts",),
            "failed sign-ins of one account (tenant + email) within `SIGN_IN_ACCOUNT_WINDOW_SECONDS` "
            "that lock it"),
    Setting("sign_in_account_window_seconds", "SIGN_IN_ACCOUNT_WINDOW_SECONDS", _positive_number(int), 3600,
            ("accounts",), "the window of `SIGN_IN_ACCOUNT_FAILURES`"),
    Setting("sign_in_address_failures", "SIGN_IN_ADDRESS_FAILURES", _positive_number(int), 20, ("accounts",),
            "failed sign-ins from one client address (an IPv6 /64) within `SIGN_IN_ADDRESS_WINDOW_SECONDS` "
            "that lock it"),
    Setting("sign_in_address_window_seconds", "SIGN_IN_ADDRESS_WINDOW_SECONDS", _positive_number(int), 600,
            ("accounts",), "the window of `SIGN_IN_ADDRESS_FAILURES`"),
    Setting("sign_in_lock_seconds", "SIGN_IN_LOCK_SECONDS", _positive_number(int), 30, ("accounts",),
            "the first lock-out; each further failure doubles it, up to `SIGN_IN_MAX_LOCK_SECONDS` (429 "
            "with `Retry-After` meanwhile)"),
    Setting("sign_in_max_lock_seconds", "SIGN_IN_MAX_LOCK_SECONDS", _positive_number(int), 900, ("accounts",),
            "the longest lock-out"),
    Setting("password_hash_slots", "PASSWORD_HASH_SLOTS", _positive_number(int), 1, ("accounts",),
            "argon2 computations at once in an accounts process (each uses 4 threads); sign-ins beyond "
            "wait in turn, and past 4 waiting per slot or 5 s are answered 429"),
    Setting("password_hash_profile", "PASSWORD_HASH_PROFILE", _one_of(PASSWORD_HASH_PROFILES),
            "rfc9106-low-memory", ("accounts",),
            "argon2's cost for new password hashes: `rfc9106-low-memory` (64 MiB, ~0.1 s), "
            "`rfc9106-high-memory` (2 GiB), or `insecure-for-tests` (what the test systems use: never in "
            "production). A stored hash keeps its own cost, so changing it locks nobody out"),
)

TICKETS = (
    Setting("archive_dir", "ARCHIVE_DIR", _path, ROOT / "archives", ("tickets",), "where archives go"),
    Setting("export_dir", "EXPORT_DIR", _path, ROOT / "exports", ("tickets",), "where report files go"),
)

DEVICES = (
    Setting("machine_token_ttl_days", "MACHINE_TOKEN_TTL_DAYS", _positive_number(int), 30, ("devices",),
            "lifetime of an agent's token"),
    Setting("machine_online_seconds", "MACHINE_ONLINE_SECONDS", _positive_number(int), 300, ("devices",),
            "a machine is online until this silence, then stale; also an edge of the health buckets "
            "(`online`, `stale`, `offline_lt_24h`, `offline_gt_24h`, `never`)"),
    Setting("machine_stale_seconds", "MACHINE_STALE_SECONDS", _positive_number(int), 1800, ("devices",),
            "a stale machine is offline after this silence (more than `MACHINE_ONLINE_SECONDS`)"),
    Setting("usb_policy_ttl_minutes", "USB_POLICY_TTL_MINUTES", _positive_number(int), 60, ("devices",),
            "a USB policy not acknowledged by then becomes STALE"),
    # agents' own broker user (common/broker_users.py): made by `chamados migrate` when it has a password
    Setting("agent_amqp_user", "AGENT_AMQP_USER", _broker_user, "chamados-agent", ("chamados",),
            "the broker user desktop agents log in with; never the services' own user"),
    Setting("agent_amqp_password", "AGENT_AMQP_PASSWORD", _agent_password, None, ("chamados",),
            "with it, `chamados migrate` makes `AGENT_AMQP_USER` (through the management API) with rights "
            "to publish to `devices.heartbeats` and nothing else (no queue of its own: agents take their "
            f"answers by RabbitMQ's direct reply-to); at least {AGENT_PASSWORD_MIN_LENGTH} characters",
            secret=True),
    Setting("agent_amqp_uri", "AGENT_AMQP_URI", _agent_uri, None, ("devices",),
            "the URI agents are told at registration, e.g. `amqps://chamados-agent:…@broker.example.com:5671/`: "
            "the broker as desktops reach it, logging in as `AGENT_AMQP_USER` (any other user is refused)",
            secret=True, shown_default="unset (agents use HTTP)"),
)

SCHEDULER = (
    Setting("scheduler_jobs", "SCHEDULER_JOBS", _json_or_mapping, None, ("scheduler",),
            "JSON overriding the job table, e.g. `{\"lunch-pause\": {\"enabled\": true}, \"chat-cleanup\": "
            "{\"interval_seconds\": 30}}` (keys: enabled, interval_seconds, cron, timezone, timeout_seconds, "
            "targets)"),
)

NOTIFICATIONS = (
    Setting("smtp_url", "SMTP_URL", _url_of(("smtp", "smtps")), None, ("notifications",),
            "the SMTP server mail about tickets goes through: `smtp://user:pass@host:587?starttls=true`, "
            "`smtps://user:pass@host:465`, `smtp://host:25` (README, \"E-mail\")", secret=True,
            shown_default="unset = no mail (said at start-up)"),
    Setting("mail_from", "MAIL_FROM", _text, "Chamados <chamados@localhost>", ("notifications",),
            "the mails' `From` (its domain also names their `Message-ID`s)"),
    Setting("console_url", "CONSOLE_URL", _url_of(("http", "https")), "http://localhost:8000",
            ("notifications",), "the console's address as people reach it: the links in mails"),
)

SETTINGS: tuple[Setting, ...] = SHARED + GATEWAY + ACCOUNTS + TICKETS + DEVICES + SCHEDULER + NOTIFICATIONS
SECRET_KEYS = tuple(setting.key for setting in SETTINGS if setting.secret)
SETTING_KEYS = {setting.field: setting.key for setting in SETTINGS}  # Settings field -> its variable
# config.yml's keys that are nameko's own, not Chamados settings
NAMEKO_KEYS = ("WEB_SERVER_ADDRESS", "rpc_exchange", "serializer")


class _SettingsBehaviour:
    """What Settings does besides holding values (its fields come from SETTINGS)."""

    @classmethod
    def from_mapping(cls, config: Mapping) -> "Settings":
        values = {setting.field: setting.parse(config, setting.source, setting.default) for setting in SETTINGS}
        _check_together(values)
        return cls(**values)

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


def _dataclass_field(setting: Setting):
    if isinstance(setting.default, dict):  # a mutable default: each instance its own copy
        return field(default_factory=lambda: dict(setting.default))
    return field(default=setting.default)


# frozen, compared by value; a field per declaration, defaulting to what an empty config gives
Settings = make_dataclass(
    "Settings", [(setting.field, Any, _dataclass_field(setting)) for setting in SETTINGS],
    bases=(_SettingsBehaviour,), frozen=True, namespace={"__module__": __name__})


def settings_from_env() -> Settings:
    return Settings.from_mapping(load_config())


def _shown_default(setting: Setting) -> str:
    if setting.shown_default is not None:
        return setting.shown_default
    value = setting.default
    if value is None or value == ():
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, Path):
        return f"`./{value.relative_to(ROOT)}`"
    if isinstance(value, float):
        return f"`{value:g}`"
    return f"`{value}`"


def settings_table() -> str:
    """README's settings table, in Markdown: one row per declaration."""
    rows = ["| variable | default | used by | meaning |", "|---|---|---|---|"]
    for setting in SETTINGS:
        variable = f"`{setting.key}`" + (f" (or `{setting.key}_FILE`)" if setting.secret else "")
        rows.append(f"| {variable} | {_shown_default(setting)} | {', '.join(setting.used_by)} | {setting.meaning} |")
    return "\n".join(rows) + "\n"

