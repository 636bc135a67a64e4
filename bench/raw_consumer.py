"""The baseline: the least a heartbeat consumer must do on this broker and database.

pika, prefetch 500; a batch is 500 messages or whatever arrived within 200 ms (the devices
consumer's `max_wait`); each body parsed as JSON (orjson, as the service); one psycopg
`INSERT … ON CONFLICT DO UPDATE` of the batch's rows (one per machine token) into a small
state table in schema `bench_raw`; commit; then one multiple-ack of the batch.

    python -m bench.raw_consumer AMQP_URI DSN QUEUE

Runs until killed (SIGTERM). The bench counts `sum(heartbeats)` of `bench_raw.state`.
"""
from __future__ import annotations

import signal
import sys

import orjson
import pika
import psycopg

PREFETCH, MAX_WAIT = 500, 0.2
SCHEMA = """
CREATE SCHEMA IF NOT EXISTS bench_raw;
CREATE TABLE IF NOT EXISTS bench_raw.state (
    token text PRIMARY KEY,
    heartbeats bigint NOT NULL,
    last_sent_at timestamptz NOT NULL,
    last_metrics text,
    inventory_hash text,
    updated_at timestamptz NOT NULL
)"""
UPSERT = """
INSERT INTO bench_raw.state AS s (token, heartbeats, last_sent_at, last_metrics, inventory_hash, updated_at)
SELECT t.token, t.heartbeats, t.last_sent_at, t.last_metrics, t.inventory_hash, now()
FROM unnest(%b::text[], %b::bigint[], %b::text[]::timestamptz[], %b::text[], %b::text[])
     AS t(token, heartbeats, last_sent_at, last_metrics, inventory_hash)
ON CONFLICT (token) DO UPDATE SET
    heartbeats = s.heartbeats + EXCLUDED.heartbeats,
    last_sent_at = greatest(s.last_sent_at, EXCLUDED.last_sent_at),
    last_metrics = EXCLUDED.last_metrics,
    inventory_hash = coalesce(EXCLUDED.inventory_hash, s.inventory_hash),
    updated_at = now()"""


def ensure_schema(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute(SCHEMA)


def store(db, batch) -> None:
    rows: dict[str, list] = {}
    for _, properties, body in batch:
        heartbeat = orjson.loads(body)
        token = (properties.headers or {}).get("authorization")
        token = token.decode() if isinstance(token, bytes) else str(token)
        row = rows.get(token)
        if row is None:
            rows[token] = [token, 1, heartbeat["sent_at"], orjson.dumps(heartbeat.get("metrics")).decode(),
                           heartbeat.get("inventory_hash")]
        else:
            row[1] += 1
            row[2] = max(row[2], heartbeat["sent_at"])
            row[3] = orjson.dumps(heartbeat.get("metrics")).decode()
            row[4] = heartbeat.get("inventory_hash") or row[4]
    columns = list(zip(*rows.values()))
    with db.cursor() as cursor:
        cursor.execute(UPSERT, [list(column) for column in columns])
    db.commit()


def main(argv=None) -> int:
    amqp_uri, dsn, queue = (argv or sys.argv[1:])[:3]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    ensure_schema(dsn)
    db = psycopg.connect(dsn)
    connection = pika.BlockingConnection(pika.URLParameters(amqp_uri))
    channel = connection.channel()
    channel.basic_qos(prefetch_count=PREFETCH)
    batch = []
    for method, properties, body in channel.consume(queue, inactivity_timeout=MAX_WAIT):
        if method is not None:
            batch.append((method.delivery_tag, properties, body))
            if len(batch) < PREFETCH:
                continue
        if batch:
            store(db, batch)
            channel.basic_ack(batch[-1][0], multiple=True)  # after the commit
            batch = []
    return 0


if __name__ == "__main__":
    sys.exit(main())
