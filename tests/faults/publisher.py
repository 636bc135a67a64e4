"""The fault suite's heartbeat publisher, run as a child process (no eventlet here):
`python -m tests.faults.publisher PLAN.json`.

It publishes `per_machine` heartbeats for each machine of the plan, in rounds (one heartbeat
per machine, in a shuffled order each round, as independent agents would), at `rate`
messages per second, with pika and publisher confirms (persistent, mandatory), the
way the agent does (agent/chamados_agent/transport.py). A heartbeat counts as sent only once the broker
confirmed it. On a lost connection it reconnects with backoff and publishes the unconfirmed
message again with the SAME body and message_id: when the broker had routed it before the
connection died, the consumer sees a genuine duplicate it must absorb.

Poison messages of the plan are published among the good traffic, also confirmed.

Progress goes to the plan's `status` file (JSON, rewritten every ~0.2 s); the end result,
one record per confirmed message, to its `result` file. Every wait is bounded by the plan's
`deadline_seconds`: past it the publisher gives up, says so in the result and exits 2.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone

import orjson
import pika

from common.contracts.devices import HEARTBEAT_EXCHANGE, HEARTBEAT_ROUTING_KEY
from chamados_protocol.inventory import inventory_hash

DEEP_LEVELS = 900
POISON_KINDS = ("int_authorization", "bytes_authorization", "list_authorization",
                "table_authorization", "long_message_id", "deep_inventory", "future_sent_at",
                "malformed_json")


class GiveUp(Exception):
    pass


def inventory(machine: int, revision: int) -> dict:
    packages = [{"name": f"pkg-{index:02d}", "version": "1.0.0"} for index in range(20)]
    packages[revision % len(packages)]["version"] = f"1.0.{revision}"
    return {"hostname": f"fault-{machine}", "hardware": {"cpu": "Intel i5-8500", "machine": machine},
            "software": {"packages": packages}}


class Machine:
    def __init__(self, index: int, machine_id: str, token: str):
        self.index, self.id, self.token = index, machine_id, token
        self.sequence = 0
        self.revision = 0
        self.last_sent_at = datetime.now(timezone.utc) - timedelta(seconds=1)

    def next_sent_at(self) -> datetime:
        """Now, but strictly after this machine's previous heartbeat."""
        self.last_sent_at = max(datetime.now(timezone.utc), self.last_sent_at + timedelta(microseconds=1))
        return self.last_sent_at

    def heartbeat(self) -> dict:
        index, self.sequence = self.sequence, self.sequence + 1
        body = {"sent_at": self.next_sent_at().isoformat(),
                "metrics": {"cpu_percent": float(5 + index % 50), "memory_percent": 40.0,
                            "uptime_seconds": index, "disks": [{"mount": "/", "percent": 50.0}]}}
        if index == 0:
            body["inventory"] = inventory(self.index, self.revision)
        elif index % 10 == 5:  # now and then the inventory changes
            self.revision += 1
            body["inventory"] = inventory(self.index, self.revision)
        else:
            body["inventory_hash"] = inventory_hash(inventory(self.index, self.revision))
        return body


def good_message(machine: Machine) -> dict:
    return {"kind": "good", "machine": machine.id, "body": orjson.dumps(machine.heartbeat()),
            "headers": {"authorization": machine.token}, "message_id": str(uuid.uuid4())}


def poison_message(kind: str, machine: Machine) -> dict:
    """A message the consumer must park in the dead-letter queue, once, with a reason, and
    go on. Each one carries a token of a real machine (but the bytes one): were it applied,
    the machine's count would show it."""
    nonce = uuid.uuid4().hex
    valid = {"sent_at": machine.next_sent_at().isoformat(), "metrics": {"cpu_percent": 1.0},
             "inventory": {"poison": kind, "nonce": nonce}}
    headers: dict = {"authorization": machine.token}
    message_id = str(uuid.uuid4())
    body = orjson.dumps(valid)
    if kind == "int_authorization":
        headers = {"authorization": 123456789}
    elif kind == "bytes_authorization":  # not UTF-8: no reading of it is a known token
        headers = {"authorization": b"\xff\xfe" + os.urandom(16)}
    elif kind == "list_authorization":
        headers = {"authorization": [machine.token]}
    elif kind == "table_authorization":
        headers = {"authorization": {"token": machine.token}}
    elif kind == "long_message_id":
        message_id = ("long-" + nonce) * 6 + "x" * 10  # 232 characters (AMQP allows 255)
    elif kind == "deep_inventory":
        deep = b'{"a":' * DEEP_LEVELS + b'{}' + b'}' * DEEP_LEVELS
        body = (b'{"sent_at":' + orjson.dumps(valid["sent_at"]) + b',"metrics":{},"inventory":'
                b'{"poison":"deep_inventory","nonce":"' + nonce.encode() + b'","deep":' + deep + b'}}')
    elif kind == "future_sent_at":
        valid["sent_at"] = (datetime.now(timezone.utc) + timedelta(days=1)).isoformat()
        body = orjson.dumps(valid)
    elif kind == "malformed_json":
        body = (b'{"sent_at": "' + valid["sent_at"].encode() + b'", "nonce": "' + nonce.encode()
                + b'", "metrics": {')
    else:
        raise ValueError(f"unknown poison kind {kind!r}")
    return {"kind": kind, "machine": machine.id, "body": body, "headers": headers,
            "message_id": message_id}


class Publisher:
    def __init__(self, plan: dict):
        self.plan = plan
        self.parameters = pika.URLParameters(plan["amqp_uri"])
        self.parameters.connection_attempts, self.parameters.retry_delay = 1, 0
        self.parameters.socket_timeout, self.parameters.stack_timeout = 5, 10
        self.parameters.blocked_connection_timeout = 30
        self.deadline = time.monotonic() + plan["deadline_seconds"]
        self.connection = self.channel = None
        self.records: list[list] = []
        self.reconnects = self.republished = self.nacked = 0
        self.last_error = None
        self.state = "starting"
        self.planned = len(plan["machines"]) * plan["per_machine"] + len(plan.get("poison", ()))
        self._status_written = 0.0

    # connection -------------------------------------------------------------------------

    def _close(self):
        if self.connection is not None:
            try:
                if self.connection.is_open:
                    self.connection.close()
            except Exception:  # a dead connection: nothing to save
                pass
        self.connection = self.channel = None

    def _connect(self):
        self.connection = pika.BlockingConnection(self.parameters)
        self.channel = self.connection.channel()
        self.channel.confirm_delivery()

    def publish(self, message: dict) -> None:
        """Returns once the broker confirmed the message; the same body and message_id on
        every attempt."""
        attempts, delay = 0, 0.2
        properties = pika.BasicProperties(content_type="application/json", delivery_mode=2,
                                          message_id=message["message_id"], headers=message["headers"])
        while True:
            if time.monotonic() > self.deadline:
                raise GiveUp(f"message {message['message_id']} unconfirmed at the deadline "
                             f"({attempts} attempts; last error: {self.last_error})")
            try:
                if self.channel is None:
                    self.state = "connecting"
                    self._connect()
                attempts += 1
                if attempts > 1:
                    self.republished += 1
                self.state = "publishing"
                self.channel.basic_publish(HEARTBEAT_EXCHANGE, HEARTBEAT_ROUTING_KEY, message["body"],
                                           properties, mandatory=True)
                break
            except pika.exceptions.UnroutableError:
                raise GiveUp("the broker returned a heartbeat as unroutable: no queue bound") from None
            except pika.exceptions.NackError:
                self.nacked += 1
                self.last_error = "nack"
            except (pika.exceptions.AMQPError, OSError) as exc:
                self.last_error = f"{exc.__class__.__name__}: {exc!r}"[:300]
                self.reconnects += 1
                self._close()
                self.state = "reconnecting"
            self.write_status()
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
        self.records.append([message["machine"], message["kind"], message["message_id"],
                             hashlib.sha256(message["body"]).hexdigest(), attempts])

    # progress ---------------------------------------------------------------------------

    def write_status(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._status_written < 0.2:
            return
        self._status_written = now
        status = {"state": self.state, "confirmed": len(self.records), "planned": self.planned,
                  "reconnects": self.reconnects, "republished": self.republished,
                  "last_error": self.last_error}
        write_json(self.plan["status"], status)

    # the run -------------------------------------------------------------------------------

    def run(self) -> int:
        plan = self.plan
        machines = [Machine(index, m["id"], m["token"]) for index, m in enumerate(plan["machines"])]
        by_id = {m.id: m for m in machines}
        poison = sorted(plan.get("poison", ()), key=lambda p: p["at"])
        interval = 1.0 / plan["rate"]
        started = time.monotonic()
        next_due, good_sent, error = started, 0, None
        shuffle = random.Random(plan.get("seed", 0)).shuffle
        try:
            for _ in range(plan["per_machine"]):
                shuffle(machines)
                for machine in machines:
                    while poison and poison[0]["at"] <= good_sent:
                        item = poison.pop(0)
                        self.publish(poison_message(item["kind"], by_id[item["machine"]]))
                    pause = next_due - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
                    elif pause < -1.0:  # after an outage: no burst to catch up
                        next_due = time.monotonic()
                    next_due += interval
                    self.publish(good_message(machine))
                    good_sent += 1
                    self.write_status()
            for item in poison:
                self.publish(poison_message(item["kind"], by_id[item["machine"]]))
            self.state = "done"
        except GiveUp as exc:
            error, self.state = str(exc), "failed"
        finally:
            self._close()
        write_json(plan["result"], {"records": self.records, "reconnects": self.reconnects,
                                    "republished": self.republished, "nacked": self.nacked,
                                    "error": error, "elapsed": time.monotonic() - started})
        self.write_status(force=True)
        return 0 if error is None else 2


def write_json(path: str, value) -> None:
    partial = f"{path}.partial"
    with open(partial, "w") as handle:
        json.dump(value, handle)
    os.replace(partial, path)


def main(argv: list[str]) -> int:
    with open(argv[1]) as handle:
        plan = json.load(handle)
    return Publisher(plan).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
