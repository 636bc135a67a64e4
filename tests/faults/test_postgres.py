"""PostgreSQL restarts (fast: sessions ended cleanly; immediate: a crash and recovery) or
stays down for ~30 s under load: batches that could not commit go back to the queue, nothing
is dead-lettered, and everything confirmed is applied once the database is back."""
import time

import pytest

from tests.faults.helpers import conclude

pytestmark = [pytest.mark.faults, pytest.mark.slow_fault]


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_postgres_restart_under_load(pipeline, mode):
    machines = pipeline.machines(50)
    publisher = pipeline.publish(machines, per_machine=100, rate=200, deadline=240)
    publisher.wait_confirmed(1500)
    mid_batch = pipeline.wait_mid_batch()
    pipeline.postgres.stop(mode)
    restart = pipeline.postgres.start()
    result = publisher.finish(timeout=240)
    outcome = pipeline.account(f"PostgreSQL restart -m {mode}", machines, result,
                               stall_timeout=45, deadline=180)
    outcome.notes.update(mid_batch=mid_batch, postgres_start=f"{restart:.1f}s")
    conclude(outcome, pipeline)


def test_postgres_outage_of_30_seconds(pipeline):
    machines = pipeline.machines(50)
    publisher = pipeline.publish(machines, per_machine=100, rate=200, deadline=240)
    publisher.wait_confirmed(1000)
    pipeline.postgres.stop("fast")
    time.sleep(30)
    pipeline.postgres.start()
    result = publisher.finish(timeout=240)
    outcome = pipeline.account("PostgreSQL down 30 s", machines, result, stall_timeout=45, deadline=180)
    conclude(outcome, pipeline)
