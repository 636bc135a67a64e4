"""Two devices replicas consume the same heartbeat queue: their batches interleave the same
machines and commit in any order, and every heartbeat is still counted exactly once."""
import pytest

from tests.faults.helpers import conclude

pytestmark = pytest.mark.faults


def test_two_replicas_under_load(pipeline):
    pipeline.start_replica()
    pipeline.wait_consuming(2)
    machines = pipeline.machines(50)
    publisher = pipeline.publish(machines, per_machine=40, rate=400, deadline=120)
    result = publisher.finish(timeout=120)
    outcome = pipeline.account("two replicas under load", machines, result, stall_timeout=20, deadline=90)
    conclude(outcome, pipeline)


@pytest.mark.slow_fault
def test_two_replicas_through_a_postgres_restart(pipeline):
    pipeline.start_replica()
    pipeline.wait_consuming(2)
    machines = pipeline.machines(50)
    publisher = pipeline.publish(machines, per_machine=100, rate=250, deadline=240)
    publisher.wait_confirmed(1500)
    mid_batch = pipeline.wait_mid_batch()
    pipeline.postgres.stop("fast")
    restart = pipeline.postgres.start()
    result = publisher.finish(timeout=240)
    outcome = pipeline.account("two replicas, PostgreSQL restart", machines, result,
                               stall_timeout=45, deadline=180)
    outcome.notes.update(mid_batch=mid_batch, postgres_start=f"{restart:.1f}s")
    conclude(outcome, pipeline)


def test_two_replicas_with_a_backlog_one_loses_its_connection_mid_batch(pipeline):
    """A backlog of few machines (an agent replaying its spool; the queue after an outage):
    each replica holds a full prefetch of them. The broker closes one replica's connection
    while its batch is in its transaction: the batch commits, its ack is gone, the broker
    gives the messages back — after the other replica applied hundreds of newer heartbeats of
    the same machines. Those copies must still be recognised, not counted a second time."""
    pipeline.start_replica()
    pipeline.wait_consuming(2)
    connections = pipeline.heartbeat_connections()
    machines = pipeline.machines(2)
    with pipeline.devices_frozen():  # the backlog builds up in front of both replicas
        result = pipeline.publish(machines, per_machine=1500, rate=5000, deadline=120).finish(timeout=120)
    holder = pipeline.batch_holder(timeout=10)
    assert holder, "no replica was seen inside a heartbeat batch"
    pipeline.close_connection(connections[holder])
    outcome = pipeline.account("two replicas, backlog, one connection closed mid-batch", machines, result,
                               stall_timeout=30, deadline=90)
    outcome.notes.update(closed=holder, outcomes=pipeline.heartbeat_outcomes())
    conclude(outcome, pipeline)
