"""The broker user desktop agents log in with: it may publish to the heartbeat exchange and
use a reply queue of its own, nothing else (not the services' account, which may do
anything on the vhost). Made or updated by `chamados migrate` through RabbitMQ's management
API when AGENT_AMQP_PASSWORD is set.

RabbitMQ checks three regexes per user and vhost (https://www.rabbitmq.com/docs/access-control):
configure (declare/delete) and read (consume, get) on the queue, write (publish) on the
exchange. An agent publishes to `devices.heartbeats` and takes the answers to its heartbeats
by direct reply-to (`amq.rabbitmq.reply-to`, which needs no permission: the broker routes an
answer to the channel that asked and nowhere else), so it may configure and read nothing:
no queue of its own, durable or not, without limit (issue 26).
"""
from __future__ import annotations

import re
from urllib.parse import quote

import requests

from common.config import Settings
from common.contracts.devices import HEARTBEAT_EXCHANGE

NOTHING = "^$"
AGENT_PERMISSIONS = {"configure": NOTHING, "write": f"^{re.escape(HEARTBEAT_EXCHANGE)}$",
                     "read": NOTHING}
TIMEOUT_SECONDS = 10


class BrokerUserError(RuntimeError):
    """The management API refused or could not be reached: the message says which."""


def ensure_agent_user(settings: Settings) -> str | None:
    """The agents' user with its password and permissions on the services' vhost, made or
    brought up to date; its name, or None when no AGENT_AMQP_PASSWORD is set."""
    if not settings.agent_amqp_password:
        return None
    base, vhost, credentials = settings.management_api
    user = quote(settings.agent_amqp_user, safe="")
    _put(f"{base}/users/{user}", {"password": settings.agent_amqp_password, "tags": ""}, credentials)
    _put(f"{base}/permissions/{quote(vhost, safe='')}/{user}", AGENT_PERMISSIONS, credentials)
    return settings.agent_amqp_user


def _put(url: str, body: dict, credentials) -> None:
    try:
        response = requests.put(url, json=body, auth=credentials, timeout=TIMEOUT_SECONDS)
    except requests.RequestException as exc:
        raise BrokerUserError(f"RabbitMQ's management API did not answer at {url.split('/api/')[0]}: "
                              f"{exc.__class__.__name__}") from None
    if response.status_code not in (200, 201, 204):
        raise BrokerUserError(f"RabbitMQ's management API refused {url.split('/api/')[1]!r}: "
                              f"{response.status_code} {response.text[:200]}")
