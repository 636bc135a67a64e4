"""Reading the devices' day rows (services/devices/history.py) the way the service does, for
tests that check what a heartbeat wrote in PostgreSQL."""
from __future__ import annotations

import uuid

from sqlalchemy import text

from services.devices.history import ChangeRecord, HourMetrics, day_of, hour_starts, unpack_changes


def change_records(engine, machine_ids) -> dict[str, list[ChangeRecord]]:
    """Each machine's inventory change records, in version order."""
    found: dict[str, list[ChangeRecord]] = {str(machine_id): [] for machine_id in machine_ids}
    with engine.connect() as connection:
        for row in connection.execute(text(
                "SELECT machine_id, day, changes FROM devices.machine_days "
                "WHERE machine_id = ANY(:ids) AND changes IS NOT NULL ORDER BY machine_id, day"),
                {"ids": [uuid.UUID(str(m)) for m in machine_ids]}):
            found[str(row.machine_id)].extend(unpack_changes(row.changes, row.day))
    return found


def hourly_metrics(engine, machine_id, where: str = "both") -> dict:
    """{hour start: HourMetrics} of the machine's ended hours: in its day rows ("days"), in
    its state row's current day ("state"), or both."""
    machine = {"m": uuid.UUID(str(machine_id))}
    found: dict = {}
    with engine.connect() as connection:
        if where in ("days", "both"):
            for row in connection.execute(text(
                    "SELECT day, metrics FROM devices.machine_days WHERE machine_id = :m AND metrics IS NOT NULL"),
                    machine):
                found.update(hour_starts(row.day, row.metrics))
        if where in ("state", "both"):
            state = connection.execute(text(
                "SELECT agg_hour, day_metrics FROM devices.heartbeat_state WHERE machine_id = :m"), machine).first()
            if state is not None and state.day_metrics:
                found.update(hour_starts(day_of(state.agg_hour), state.day_metrics))
    return found


__all__ = ["ChangeRecord", "HourMetrics", "change_records", "hourly_metrics"]
