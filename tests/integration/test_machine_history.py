"""A machine's day of metrics waits in its state row and reaches its day row once, when a
heartbeat of a later day arrives; the API shows the hours wherever they are."""
import uuid
from datetime import datetime, timedelta, timezone

from sqlalchemy import create_engine, text

from services.devices.history import HourMetrics
from tests.harness import Client, backdate_registration, eventually
from tests.integration.test_heartbeat_consumer import enrol, heartbeat_message, heartbeat_states, publish_all
from tests.support.history import hourly_metrics



def test_a_day_of_metrics_goes_to_its_day_row_when_the_next_day_starts(system, tenant):
    client = Client(system.base_url)
    enrolment = enrol(client, tenant.company(), f"days-{uuid.uuid4().hex[:6]}")
    backdate_registration(system.database_url, [enrolment["machine_id"]])  # its heartbeats start in the past
    token, machine_id = enrolment["token"], enrolment["machine_id"]
    midnight = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    sent = [(midnight - timedelta(hours=2, minutes=50), 10.0),  # 21:10 the day before yesterday
            (midnight - timedelta(minutes=50), 20.0),  # 23:10
            (midnight - timedelta(minutes=20), 40.0),  # 23:40
            (midnight + timedelta(minutes=10), 5.0),  # 00:10 yesterday: that day is over
            (midnight + timedelta(hours=1, minutes=10), 7.0)]  # 01:10: 00:00 is an ended hour of yesterday
    engine = create_engine(system.database_url)

    def applied(count):
        return eventually(lambda: heartbeat_states(engine, [machine_id]).get(machine_id) and
                          heartbeat_states(engine, [machine_id])[machine_id].heartbeats == count, timeout=20)
    try:
        for index, (moment, cpu) in enumerate(sent[:3]):
            publish_all(system.amqp_uri, [heartbeat_message(token, {"sent_at": moment.isoformat(),
                                                                    "metrics": {"cpu_percent": cpu}, "inventory_hash": "0" * 64})])
            assert applied(index + 1)
        # the day is not over: 21:00 ended and waits in the state row, 23:00 is still open
        assert hourly_metrics(engine, machine_id, "days") == {}
        assert hourly_metrics(engine, machine_id, "state") == {
            midnight - timedelta(hours=3): HourMetrics(1, 10.0, 10.0, None, None, None)}

        for index, (moment, cpu) in enumerate(sent[3:], start=3):
            publish_all(system.amqp_uri, [heartbeat_message(token, {"sent_at": moment.isoformat(),
                                                                    "metrics": {"cpu_percent": cpu}, "inventory_hash": "0" * 64})])
            assert applied(index + 1)
        before = midnight - timedelta(days=1)
        assert hourly_metrics(engine, machine_id, "days") == {
            midnight - timedelta(hours=3): HourMetrics(1, 10.0, 10.0, None, None, None),
            midnight - timedelta(hours=1): HourMetrics(2, 30.0, 40.0, None, None, None)}
        assert hourly_metrics(engine, machine_id, "state") == {midnight: HourMetrics(1, 5.0, 5.0, None, None, None)}
        with engine.connect() as connection:
            days = connection.execute(text("SELECT day FROM devices.machine_days WHERE machine_id = :m "
                                           "AND metrics IS NOT NULL"), {"m": machine_id}).scalars().all()
        assert days == [before.date()]  # one row for the whole ended day

        metrics = tenant.admin.get(f"/api/admin/machines/{machine_id}/metrics", params={"hours": 168}).json()
        assert [(item["hour"], item["samples"], item["cpu_max"]) for item in metrics["items"]] == [
            ((midnight - timedelta(hours=3)).isoformat(), 1, 10.0),
            ((midnight - timedelta(hours=1)).isoformat(), 2, 40.0),
            (midnight.isoformat(), 1, 5.0), ((midnight + timedelta(hours=1)).isoformat(), 1, 7.0)]
    finally:
        engine.dispose()
