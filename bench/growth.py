"""growth: storage of the `devices` schema after a simulated 90 days, projected to a fleet
of 1,000 machines.

A fleet of `fleet` machines is written to the database and every machine's first full
inventory is applied by the service (the steady state: one stored inventory each). Then a
`sample` of them replays `days` of heartbeats at the agent's real cadence (`interval_minutes`,
5 as the agent), `sent_at` spread over the past `days` days on a compressed clock — 2 % of the
heartbeats carry a changed inventory (1–3 packages upgraded), the rest its hash — through the
running devices service. After every `checkpoint_days` simulated days (once applied) the size
of each table of the schema is read (`pg_total_relation_size`: heap, TOAST and indexes).

Projection (stated in the result): projected size = the size with the whole fleet enrolled
and inventoried (after a VACUUM FULL) + 1,000 machines × 90 days × the growth per machine-day
of the history tables (HISTORY_TABLES: the rows that accumulate with time), that growth
being the least-squares slope of their size, as-is, over the checkpoints of the second half
of the simulation, divided by the sample size.

Every other table holds a row per machine (its state, its current inventory, its tokens),
rewritten in place: bounded by the fleet, not by time. Under the compressed clock the
sample's rewrites are far denser than deployed — 90 days replayed in a minute fill each
sampled machine's `recent_sent` to its 4,096-entry cap (64 KB, rewritten every batch; 32
entries at a real 5-minute cadence), and rewrite its 92 KB inventory dozens of times
between two vacuums — so their dead TOAST pages swing the schema by more than the history
adds, and a slope of the whole schema would multiply that swing by 1,000 / the sample size
and by 90 days. `software_versions` holds each (package, version) the fleet has had once: it
grows with the versions published, shared by the fleet's machines (the sample's upgrades are
each a version of its own, so its growth here is reported, not projected per machine). What
the other tables gained is reported per sampled machine
(`state_tables_growth_per_sampled_machine`, as-is and live), and the whole schema's slope
beside it (`schema_growth_per_machine_per_day`), so nothing is hidden.

The enrolled fleet is compacted (VACUUM FULL) before the replay. During it, after every
checkpoint, the bench vacuums the tables `devices.maintain_storage` vacuums when the scheduler's
`storage-maintenance` job calls it in production (there every 15 minutes; here every
`checkpoint_days` simulated days, so less often than deployed), with `maintenance=1`; with
`maintenance=0` only the server's own autovacuum setting applies (reported; `off` on the test
server). A final VACUUM FULL gives what the live rows take, projected the same way and
reported beside it.
"""
from __future__ import annotations

import random
import time
from datetime import datetime, timedelta, timezone

from bench.core import Stack, log, target, watch_drain
from bench.drains import warm_up
from bench.fleet import applied_count, publish, seed_machines
from services.devices.service import Service as Devices

CHURNING_TABLES = Devices.churning_tables

NAME = "growth"
SUMMARY = "devices schema size after a simulated 90 days of a sample, projected to 1,000 machines"
# 89 simulated days, projected to 90: a heartbeat 90 days old is past the metrics' retention,
# refused by the contract (chamados_protocol.heartbeat.HEARTBEAT_MAX_AGE)
FULL = {"fleet": 1_000, "sample": 4, "days": 89, "interval_minutes": 5, "change_rate": 0.02,
        "checkpoint_days": 1, "maintenance": 1, "project_machines": 1_000, "project_days": 90,
        "stall_seconds": 60, "deadline_seconds": 1_200}
SMOKE = {"fleet": 10, "sample": 1, "days": 2, "interval_minutes": 5, "change_rate": 0.02,
         "checkpoint_days": 1, "maintenance": 1, "project_machines": 1_000, "project_days": 90,
         "stall_seconds": 20, "deadline_seconds": 60}
GOAL_MB = 100
# the devices tables whose rows accumulate with time (a row per machine-day; alerts as they
# open); every other one holds a row per machine, registration or pending request
HISTORY_TABLES = ("machine_days", "alerts")
MB = 2 ** 20

SIZES = """
SELECT c.relname, pg_total_relation_size(c.oid), pg_relation_size(c.oid),
       pg_total_relation_size(c.oid) - pg_relation_size(c.oid) - pg_indexes_size(c.oid),
       pg_indexes_size(c.oid), coalesce(s.n_live_tup, 0), coalesce(s.n_dead_tup, 0)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
WHERE n.nspname = 'devices' AND c.relkind = 'r' ORDER BY c.relname"""


def table_sizes(stack) -> dict:
    return {name: {"total": total, "heap": heap, "toast": toast, "indexes": indexes, "live_rows": live,
                   "dead_rows": dead}
            for name, total, heap, toast, indexes, live, dead in stack.sql(SIZES)}


def total(sizes: dict) -> int:
    return sum(table["total"] for table in sizes.values())


def per_sample(fleet_slope: float | None, sample: list) -> float | None:
    return fleet_slope / len(sample) if fleet_slope is not None else None


def history(sizes: dict) -> int:
    return sum(sizes[name]["total"] for name in HISTORY_TABLES if name in sizes)


def slope(points) -> float | None:
    """Least-squares slope of (x, y) points."""
    if len(points) < 2:
        return None
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((x - mean_x) ** 2 for x, _ in points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / var if var else None


def run(params: dict, reps: int, workdir) -> dict:
    """One simulation (a storage figure does not vary between repetitions like a rate)."""
    p = params
    with Stack(NAME, workdir) as stack:
        settings = dict(stack.sql("SELECT name, setting FROM pg_settings WHERE name IN "
                                  "('autovacuum', 'toast_compression', 'fillfactor', 'block_size')"))
        machines = seed_machines(stack, p["fleet"])
        sample = machines[: p["sample"]]
        now = datetime.now(timezone.utc)
        start = now - timedelta(days=p["days"])
        warm = warm_up(stack, machines, stall_seconds=p["stall_seconds"], deadline_seconds=p["deadline_seconds"],
                       start=start - timedelta(minutes=1), bench=NAME)
        if warm["status"] != "done":
            return {"failure": f"warm-up {warm['status']}: {warm['detail']}",
                    "targets": [target("projected_storage_1000_machines_90_days", "<", GOAL_MB, None, "MB")]}
        stack.sql("VACUUM FULL")  # the enrolled fleet, compact: the replay's growth starts from live rows
        enrolled = table_sizes(stack)
        checkpoints = [{"day": 0, "bytes": total(enrolled), "history_bytes": history(enrolled)}]
        rnd = random.Random(90)
        interval = timedelta(minutes=p["interval_minutes"])
        per_day = int(timedelta(days=1) / interval)
        stack.start("devices")
        failure = None
        sent = changed = 0
        try:
            day = 0
            while day < p["days"]:
                until = min(p["days"], day + p["checkpoint_days"])
                steps = range(day * per_day, until * per_day)

                def chunk():
                    nonlocal sent, changed
                    for step in steps:
                        for offset, machine in enumerate(sample):
                            full = rnd.random() < p["change_rate"]
                            if full:
                                machine.change(rnd)
                                changed += 1
                            sent += 1
                            yield machine.token, machine.heartbeat(
                                rnd, start + step * interval + timedelta(microseconds=offset), full=full)
                before = applied_count(stack)
                published = publish(stack.amqp_uri, chunk(), expect_in=())
                drain = watch_drain(lambda: applied_count(stack) - before, published, started=time.monotonic(),
                                    alive=lambda: stack.system.processes["devices"].poll() is None,
                                    stall_seconds=p["stall_seconds"], deadline_seconds=p["deadline_seconds"],
                                    interval=0.2)
                if drain.status != "done":
                    failure = f"day {day}-{until}: {drain.status} ({drain.detail})\n{stack.log_tail('devices')}"
                    break
                day = until
                if p["maintenance"]:  # what the scheduler's storage-maintenance job has devices do
                    for table in CHURNING_TABLES:
                        stack.sql(f'VACUUM (ANALYZE) devices."{table}"')
                sizes = table_sizes(stack)
                checkpoints.append({"day": day, "bytes": total(sizes), "history_bytes": history(sizes)})
                log(NAME, f"day {day}/{p['days']}: {sent} heartbeats ({changed} changed inventories), "
                          f"schema {total(sizes) / MB:.2f} MB")
        finally:
            stack.stop("devices")
        final = table_sizes(stack)
        stack.sql("VACUUM FULL")  # only this bench's database
        vacuumed = table_sizes(stack)
    second_half = [c for c in checkpoints if c["day"] >= p["days"] / 2]
    if len(second_half) < 2:
        second_half = checkpoints
    per_machine_day = per_sample(slope([(c["day"], c["history_bytes"]) for c in second_half]), sample)
    schema_per_machine_day = per_sample(slope([(c["day"], c["bytes"]) for c in second_half]), sample)
    enrolled_per_machine = total(enrolled) / p["fleet"]
    projected = (enrolled_per_machine * p["project_machines"] + p["project_machines"] * p["project_days"]
                 * per_machine_day) if per_machine_day is not None and not failure else None
    # what the live rows alone would take (a VACUUM FULL at the end): the same projection
    live_per_machine_day = ((history(vacuumed) - history(enrolled)) / (len(sample) * p["days"])
                            if not failure else None)
    projected_live = (enrolled_per_machine * p["project_machines"] + p["project_machines"] * p["project_days"]
                      * max(0.0, live_per_machine_day)) if live_per_machine_day is not None else None
    state_growth = (total(final) - history(final) - (total(enrolled) - history(enrolled))) / len(sample)
    state_growth_live = (total(vacuumed) - history(vacuumed) - (total(enrolled) - history(enrolled))) / len(sample)
    growth = {name: final[name]["total"] - enrolled.get(name, {"total": 0})["total"] for name in final}
    result = {
        "targets": [
            target(f"projected_storage_{p['project_machines']}_machines_{p['project_days']}_days", "<", GOAL_MB,
                   projected / MB if projected is not None else None, "MB"),
            target("history_growth_per_machine_per_day", None, None, per_machine_day, "bytes"),
            target("schema_growth_per_machine_per_day", None, None, schema_per_machine_day, "bytes"),
            target("state_tables_growth_per_sampled_machine", None, None, state_growth, "bytes"),
            target("state_tables_live_growth_per_sampled_machine", None, None, state_growth_live, "bytes"),
            # the software index's dictionary grows with the distinct versions the fleet has
            # seen, not per machine: here every sampled upgrade is a version no other machine has
            target("software_versions_growth", None, None, (vacuumed.get("software_versions", {}).get("total", 0)
                                                            - enrolled.get("software_versions", {}).get("total", 0)),
                   "bytes"),
            target(f"projected_live_rows_{p['project_machines']}_machines_{p['project_days']}_days",
                   None, None, projected_live / MB if projected_live is not None else None, "MB"),
            target("history_live_growth_per_machine_per_day", None, None, live_per_machine_day, "bytes"),
            target("enrolled_and_inventoried_per_machine", None, None, enrolled_per_machine, "bytes"),
            target("live_share_after_vacuum_full", None, None,
                   total(vacuumed) / total(final) if total(final) else None, "ratio"),
        ],
        "projection": (f"{enrolled_per_machine:.0f} B per enrolled machine (the fleet of {p['fleet']} with its "
                       f"first inventories, after a VACUUM FULL) × {p['project_machines']} + "
                       f"{p['project_machines']} machines × {p['project_days']} days × {per_machine_day or 0:.0f} B "
                       f"per machine-day (least-squares slope of the history tables ({', '.join(HISTORY_TABLES)}), "
                       f"as-is, over the checkpoints from day {p['days'] / 2:g} on, ÷ {len(sample)} sampled "
                       f"machines); the live-rows projection uses (their size after a final VACUUM FULL − enrolled) "
                       f"÷ ({len(sample)} machines × {p['days']} days) instead; the other tables hold a row per "
                       f"machine, rewritten in place: what they gained is reported per sampled machine, and the "
                       f"whole schema's slope beside the history's"),
        "repetitions": "one simulation whatever --reps: a size does not vary between runs as a rate does",
        "heartbeats_replayed": sent, "changed_inventories": changed,
        "postgres_settings": settings,
        "checkpoints": checkpoints,
        "tables_enrolled": enrolled, "tables_final": final, "tables_after_vacuum_full": vacuumed,
        "growth_by_table_bytes": growth,
        "series": {"devices schema (sample)": [[c["day"], round((c["bytes"] - checkpoints[0]["bytes"]) / MB, 3)]
                                               for c in checkpoints],
                   "history tables (sample)": [[c["day"], round((c["history_bytes"] - checkpoints[0]["history_bytes"])
                                                                / MB, 3)] for c in checkpoints]},
        "series_axes": ["simulated day", "MB grown since day 0"],
        "warm_up": {k: v for k, v in warm.items() if not k.startswith("_")},
    }
    if failure:
        result["failure"] = failure
        result["targets"][0]["met"] = False
    return result
