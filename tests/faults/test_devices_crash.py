"""The devices process dies or is stopped in the middle of a batch: the batch comes back from
the broker, and what was already committed is recognised as a copy, never counted twice."""
import signal

import pytest

from tests.faults.helpers import conclude

pytestmark = pytest.mark.faults


def stop_devices_mid_batch(pipeline, signum: int, case: str) -> None:
    machines = pipeline.machines(50)
    publisher = pipeline.publish(machines, per_machine=40, rate=250, deadline=120)
    publisher.wait_confirmed(600)
    mid_batch = pipeline.wait_mid_batch()
    exit_seconds = pipeline.signal_devices(signum)
    pipeline.start_devices()
    result = publisher.finish(timeout=120)
    outcome = pipeline.account(case, machines, result, stall_timeout=30, deadline=90)
    outcome.notes.update(mid_batch=mid_batch, exited_in=f"{exit_seconds:.1f}s")
    conclude(outcome, pipeline)


def test_devices_killed_mid_batch(pipeline):
    stop_devices_mid_batch(pipeline, signal.SIGKILL, "devices SIGKILL mid-batch")


@pytest.mark.slow_fault
def test_devices_terminated_mid_batch(pipeline):
    stop_devices_mid_batch(pipeline, signal.SIGTERM, "devices SIGTERM mid-batch")
