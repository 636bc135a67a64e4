"""Sign-in throttling (issue 12 item 7), the pure policy with a fake clock: per-key counts in
a window, lock-outs that double up to a cap, keys that never hold a raw email or address."""
from datetime import datetime, timedelta, timezone

import pytest

from common.config import ConfigError, Settings
from services.accounts import throttle
from services.accounts.throttle import Count, Limit, Policy, after_failure, lock_for, retry_after_seconds

T0 = datetime(2026, 12, 3, 12, 0, tzinfo=timezone.utc)
ACCOUNT = Limit(5, timedelta(hours=1), timedelta(seconds=30), timedelta(minutes=15))
ADDRESS = Limit(20, timedelta(minutes=10), timedelta(seconds=30), timedelta(minutes=15))


def seconds(n: float) -> timedelta:
    return timedelta(seconds=n)


def fail(count, limit, now, times=1):
    for _ in range(times):
        count = after_failure(count, limit, now)
    return count


def test_below_the_limit_nothing_is_locked():
    count = fail(None, ACCOUNT, T0, times=4)
    assert count == Count(4, T0, None)
    assert retry_after_seconds([count], T0) is None


def test_the_fifth_failure_locks_for_30_seconds_and_the_lock_then_ends():
    count = fail(None, ACCOUNT, T0, times=5)
    assert count.locked_until == T0 + seconds(30)
    assert retry_after_seconds([count], T0) == 30
    assert retry_after_seconds([count], T0 + seconds(29.5)) == 1  # rounded up, never 0
    assert retry_after_seconds([count], T0 + seconds(30)) is None


def test_each_further_failure_doubles_the_lock_up_to_15_minutes():
    count, now, locks = fail(None, ACCOUNT, T0, times=4), T0, []
    for _ in range(8):
        count = after_failure(count, ACCOUNT, now)
        locks.append((count.locked_until - now).total_seconds())
        now = count.locked_until  # the next guess as soon as the lock is over
    assert locks == [30, 60, 120, 240, 480, 900, 900, 900]


def test_lock_for_never_overflows():
    assert lock_for(ACCOUNT, 4) is None
    assert lock_for(ACCOUNT, 10_000) == timedelta(minutes=15)


def test_a_new_window_starts_the_count_over():
    count = fail(None, ACCOUNT, T0, times=4)
    later = T0 + timedelta(hours=1)
    assert after_failure(count, ACCOUNT, later) == Count(1, later, None)


def test_a_lock_that_outlasts_the_window_keeps_the_count():
    short = Limit(2, seconds(60), seconds(100), seconds(100))
    count = fail(None, short, T0, times=2)
    assert count.locked_until == T0 + seconds(100)
    # a failure still recorded while locked (two attempts checked at once) keeps counting
    assert after_failure(count, short, T0 + seconds(70)).failures == 3


def test_the_address_limit_is_higher():
    count = fail(None, ADDRESS, T0, times=19)
    assert retry_after_seconds([count], T0) is None
    assert retry_after_seconds([after_failure(count, ADDRESS, T0)], T0) == 30


def test_the_longest_lock_among_the_keys_decides():
    account = fail(None, ACCOUNT, T0, times=6)  # 60 s
    address = fail(None, ADDRESS, T0, times=20)  # 30 s
    assert retry_after_seconds([account, address, None], T0) == 60
    assert retry_after_seconds([None, Count(3, T0)], T0) is None


def test_a_row_expires_when_its_window_closed_and_its_lock_is_over():
    assert Count(2, T0).expires_at(ACCOUNT) == T0 + timedelta(hours=1)
    locked = Count(9, T0, T0 + timedelta(hours=2))
    assert locked.expires_at(ACCOUNT) == T0 + timedelta(hours=2)


def test_keys_are_hashes_of_normalised_values():
    key = throttle.account_key("Tenant-A", "maria@x.com")
    assert len(key) == 64 and "maria" not in key
    assert key == throttle.account_key(" tenant-a ", "maria@x.com")
    assert key != throttle.account_key(None, "maria@x.com")
    assert key != throttle.account_key("tenant-a", "joao@x.com")
    assert throttle.address_key("10.0.0.1") != key


def test_address_keys():
    assert throttle.address_key(None) is None
    assert throttle.address_key("not an address") is None
    assert throttle.address_key("::ffff:10.0.0.1") == throttle.address_key("10.0.0.1")
    # one IPv6 host usually holds its whole /64
    assert throttle.address_key("2001:db8::1") == throttle.address_key("2001:db8:0:0:ffff::2")
    assert throttle.address_key("2001:db8::1") != throttle.address_key("2001:db8:0:1::1")


def test_limits_are_validated():
    with pytest.raises(ValueError):
        Limit(0, seconds(60), seconds(30), seconds(60))
    with pytest.raises(ValueError):
        Limit(5, seconds(60), seconds(30), seconds(10))


def test_policy_from_settings_defaults():
    policy = Policy.from_settings(Settings.from_mapping({}))
    assert policy.account == ACCOUNT
    assert policy.address == ADDRESS


def test_settings_of_the_throttle():
    settings = Settings.from_mapping({"SIGN_IN_ACCOUNT_FAILURES": "3", "SIGN_IN_LOCK_SECONDS": "2",
                                      "SIGN_IN_MAX_LOCK_SECONDS": "4", "PASSWORD_HASH_SLOTS": "2",
                                      "TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/8"})
    assert (settings.sign_in_account_failures, settings.sign_in_lock_seconds,
            settings.sign_in_max_lock_seconds, settings.password_hash_slots) == (3, 2, 4, 2)
    assert [str(network) for network in settings.trusted_proxies] == ["127.0.0.1/32", "10.0.0.0/8"]
    assert Settings.from_mapping({}).trusted_proxies == ()
    with pytest.raises(ConfigError, match="SIGN_IN_MAX_LOCK_SECONDS"):
        Settings.from_mapping({"SIGN_IN_LOCK_SECONDS": "60", "SIGN_IN_MAX_LOCK_SECONDS": "30"})
    with pytest.raises(ConfigError, match="TRUSTED_PROXIES"):
        Settings.from_mapping({"TRUSTED_PROXIES": "proxy.example.com"})
    with pytest.raises(ConfigError, match="SIGN_IN_ACCOUNT_FAILURES"):
        Settings.from_mapping({"SIGN_IN_ACCOUNT_FAILURES": "0"})


class FakeRequest:
    def __init__(self, remote_addr, forwarded=None):
        self.remote_addr = remote_addr
        self.headers = {"X-Forwarded-For": forwarded} if forwarded is not None else {}


def test_client_address_believes_x_forwarded_for_only_from_trusted_proxies():
    from services.gateway.http import client_address

    proxies = Settings.from_mapping({"TRUSTED_PROXIES": "10.0.0.0/8"}).trusted_proxies
    assert client_address(FakeRequest("203.0.113.9", "1.2.3.4")) == "203.0.113.9"  # off by default
    assert client_address(FakeRequest("203.0.113.9", "1.2.3.4"), proxies) == "203.0.113.9"
    assert client_address(FakeRequest("10.0.0.2", "1.2.3.4"), proxies) == "1.2.3.4"
    # the right-most hop that is not a proxy of ours: what the client wrote further left is ignored
    assert client_address(FakeRequest("10.0.0.2", "6.6.6.6, 1.2.3.4, 10.0.0.3"), proxies) == "1.2.3.4"
    assert client_address(FakeRequest("10.0.0.2", "garbage"), proxies) == "10.0.0.2"
    assert client_address(FakeRequest("10.0.0.2"), proxies) == "10.0.0.2"
