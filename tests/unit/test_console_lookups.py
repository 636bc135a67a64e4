"""services/gateway/console/lookups.py: a page's lookups are fetched at most once a TTL per
person and kind, never shared between people, forgotten at once by a change, and off at 0."""
import eventlet
import pytest

from common.config import ConfigError, Settings
from services.gateway.console.lookups import Lookups, changes_what_pages_show

ANA = {"user_id": "u1", "tenant_id": "t1", "role": "agent"}
BIA = {"user_id": "u2", "tenant_id": "t1", "role": "collaborator"}


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class Source:
    def __init__(self):
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return {"items": [{"name": f"fetch {self.calls}"}]}


def test_a_lookup_is_fetched_once_a_ttl_per_person_and_kind():
    clock, source = Clock(), Source()
    lookups = Lookups(1.0, clock=clock)
    first = lookups.get("queues", ANA, source)
    assert lookups.get("queues", ANA, source) == first and source.calls == 1
    assert lookups.get("companies", ANA, source) != first  # another kind: its own fetch
    assert lookups.get("queues", BIA, source)["items"][0]["name"] == "fetch 3"  # another person
    clock.now += 1.01
    assert lookups.get("queues", ANA, source)["items"][0]["name"] == "fetch 4"


def test_a_change_forgets_everything_and_zero_turns_it_off():
    source = Source()
    lookups = Lookups(1.0, clock=Clock())
    lookups.get("queues", ANA, source)
    lookups.clear()
    lookups.get("queues", ANA, source)
    assert source.calls == 2
    off = Lookups(0, clock=Clock())
    off.get("queues", ANA, source)
    off.get("queues", ANA, source)
    assert source.calls == 4


def test_the_cache_keeps_its_own_copy_and_a_bounded_size():
    lookups = Lookups(1.0, max_entries=2, clock=Clock())
    got = lookups.get("queues", ANA, Source())
    got["items"].append("changed by a page")
    assert lookups.get("queues", ANA, Source()) == {"items": [{"name": "fetch 1"}]}
    for kind in ("a", "b", "c"):
        lookups.get(kind, ANA, Source())
    assert len(lookups.kept.keys()) == 2


@pytest.mark.parametrize("method, principal, machine, changes", [
    ("POST", ANA, False, True), ("PUT", ANA, False, True), ("DELETE", ANA, False, True),
    ("GET", ANA, False, False), ("HEAD", ANA, False, False),
    ("POST", None, False, False),  # sign-in
    ("POST", {"machine_id": "m"}, True, False),  # a heartbeat
])
def test_which_requests_forget_the_lookups(method, principal, machine, changes):
    assert changes_what_pages_show(method, principal, machine) is changes


@pytest.mark.parametrize("raw, seconds", [("0", 0.0), ("1", 1.0), ("2.5", 2.5), ("5", 5.0), ("", 1.0)])
def test_the_setting_takes_zero_to_five_seconds(raw, seconds):  # empty: the default
    assert Settings.from_mapping({"CONSOLE_CACHE_SECONDS": raw}).console_cache_seconds == seconds


@pytest.mark.parametrize("raw", ["-1", "6", "soon", "1e3"])
def test_the_setting_refuses_anything_else(raw):
    with pytest.raises(ConfigError, match="CONSOLE_CACHE_SECONDS"):
        Settings.from_mapping({"CONSOLE_CACHE_SECONDS": raw})


def test_pages_asking_during_a_fetch_wait_for_that_one_fetch():
    lookups, source = Lookups(1.0), Source()

    def slow():
        eventlet.sleep(0.05)
        return source()

    pool = eventlet.GreenPool(5)
    answers = list(pool.imap(lambda _: lookups.get("queues", ANA, slow), range(5)))
    assert source.calls == 1 and all(answer == answers[0] for answer in answers)


def test_a_failed_fetch_fails_its_waiters_and_is_not_kept():
    lookups = Lookups(1.0)

    def failing():
        eventlet.sleep(0.02)
        raise TimeoutError("tickets did not answer")

    pool = eventlet.GreenPool(3)
    threads = [pool.spawn(lookups.get, "queues", ANA, failing) for _ in range(3)]
    for thread in threads:
        with pytest.raises(TimeoutError):
            thread.wait()
    assert lookups.get("queues", ANA, Source()) == {"items": [{"name": "fetch 1"}]}


def test_a_change_during_a_fetch_keeps_the_fetched_value_out():
    lookups, source = Lookups(1.0), Source()

    def changed_meanwhile():
        lookups.clear()
        return source()

    lookups.get("queues", ANA, changed_meanwhile)
    lookups.get("queues", ANA, source)
    assert source.calls == 2
