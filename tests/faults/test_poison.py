"""Poison messages mixed into good traffic: the good heartbeats are all applied, each poison
message is dead-lettered exactly once with its reason, and ingestion never stalls. A text
token nobody issued (`bytes_authorization` reads as one) is not poison but a refused
heartbeat: answered, counted and dropped, never parked."""
import pytest

from tests.faults.helpers import conclude
from tests.faults.publisher import POISON_KINDS

pytestmark = pytest.mark.faults

# least to most disruptive to the consumer, so that one which stalls it hides the fewest others
ORDER = ("future_sent_at", "malformed_json", "long_message_id", "deep_inventory",
         "bytes_authorization", "list_authorization", "table_authorization", "int_authorization")
# what must be parked: all but the refused token (chamados_heartbeats_refused_total counts it)
PARKED = tuple(kind for kind in ORDER if kind != "bytes_authorization")


def test_poison_messages_are_parked_once_and_good_traffic_is_applied(pipeline):
    assert sorted(ORDER) == sorted(POISON_KINDS)
    machines = pipeline.machines(50)
    # spread over the run, each with a token of a real machine (an applied one would show)
    poison = [{"kind": kind, "machine": machines[index * 6]["id"], "at": 150 + index * 120}
              for index, kind in enumerate(ORDER)]
    publisher = pipeline.publish(machines, per_machine=30, rate=300, poison=poison, deadline=60)
    result = publisher.finish(timeout=90)
    outcome = pipeline.account("poison messages", machines, result, stall_timeout=20, deadline=60)
    conclude(outcome, pipeline, poison=PARKED)
