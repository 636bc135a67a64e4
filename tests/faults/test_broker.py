"""The broker goes away under load — a clean stop, or kill -9 of its VM — and comes back on
the same data: confirmed heartbeats survive it, the publisher re-sends what was not
confirmed (copies the consumer absorbs), and the consumer reconnects by itself."""
import time

import pytest

from tests.faults.helpers import conclude

pytestmark = [pytest.mark.faults]


# `make test` runs the kill (the harder case: nothing is flushed); both run in `make test-faults`
@pytest.mark.parametrize("how", [pytest.param("stop", marks=pytest.mark.slow_fault), "kill -9"])
def test_broker_goes_away_and_comes_back(pipeline, how):
    machines = pipeline.machines(50)
    publisher = pipeline.publish(machines, per_machine=100, rate=200, deadline=240)
    publisher.wait_confirmed(1500)
    if how == "stop":
        pipeline.rabbit.stop()
    else:
        pipeline.rabbit.kill()
    time.sleep(3)
    boot = pipeline.rabbit.start()
    result = publisher.finish(timeout=240)
    outcome = pipeline.account(f"broker {how}", machines, result, stall_timeout=45, deadline=180)
    outcome.notes.update(broker_boot=f"{boot:.1f}s")
    conclude(outcome, pipeline)
