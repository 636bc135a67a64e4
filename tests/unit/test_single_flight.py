"""services/gateway/single_flight.py, the one TTL cache behind verified tokens and console
lookups: a miss is fetched once for every caller at that moment, a failed fetch or one that a
change overtook is not kept, values are copies, and the size is bounded."""
import eventlet
import pytest

from services.gateway.single_flight import SingleFlightCache


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class Fetch:
    """Counts its calls; pauses so that callers overlap; raises `error` if given."""

    def __init__(self, error=None, pause=0.05):
        self.calls, self.error, self.pause = 0, error, pause

    def __call__(self):
        self.calls += 1
        eventlet.sleep(self.pause)
        if self.error is not None:
            raise self.error
        return {"answer": self.calls}


def test_callers_at_the_same_moment_share_one_fetch_and_it_is_kept_a_ttl():
    clock, fetch = Clock(), Fetch()
    cache = SingleFlightCache(1.0, clock=clock)
    answers = list(eventlet.GreenPool().imap(lambda _: cache.value("k", fetch), range(6)))
    assert answers == [{"answer": 1}] * 6 and fetch.calls == 1
    clock.now += 0.99
    assert cache.value("k", fetch) == {"answer": 1} and fetch.calls == 1
    clock.now += 0.01
    assert cache.value("k", fetch) == {"answer": 2} and fetch.calls == 2


def test_a_failed_fetch_raises_in_every_waiting_caller_and_is_not_kept():
    fetch = Fetch(LookupError("down"))
    cache = SingleFlightCache(1.0)
    pool = eventlet.GreenPool()
    waiting = [pool.spawn(cache.value, "k", fetch) for _ in range(4)]
    for thread in waiting:
        with pytest.raises(LookupError):
            thread.wait()
    assert fetch.calls == 1 and cache.get("k") is None


@pytest.mark.parametrize("change", ["forget", "clear"])
def test_a_value_fetched_while_a_change_happened_is_answered_but_not_kept(change):
    cache = SingleFlightCache(1.0)

    def fetch_overtaken_by_a_change():
        getattr(cache, change)(*(["k"] if change == "forget" else []))
        return {"answer": "stale"}

    assert cache.value("k", fetch_overtaken_by_a_change) == {"answer": "stale"}
    assert cache.get("k") is None


def test_values_are_copies_and_the_oldest_entries_go_past_the_bound():
    cache = SingleFlightCache(1.0, max_entries=2, clock=Clock())
    value = {"items": [1]}
    cache.put("a", value)
    value["items"].append(2)
    cache.get("a")["items"].append(3)
    assert cache.get("a") == {"items": [1]}
    cache.put("b", 1)
    cache.put("c", 2)
    assert cache.keys() == ["b", "c"]


def test_off_at_zero_every_call_fetches():
    fetch = Fetch(pause=0)
    cache = SingleFlightCache(0)
    cache.value("k", fetch)
    cache.value("k", fetch)
    cache.put("k", 1)
    assert fetch.calls == 2 and cache.get("k") is None and cache.keys() == []
