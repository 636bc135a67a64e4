"""services/gateway/auth_cache.py: a verified token is trusted for at most the setting's
seconds, a sign-out forgets it at once, and nobody can change the cache's copy."""
import eventlet
import pytest

from common.errors import Unauthorized
from services.gateway.auth_cache import TokenCache

PRINCIPAL = {"user_id": "u1", "tenant_id": "t1", "role": "agent"}


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_a_token_is_trusted_for_the_ttl_then_asked_again():
    clock = Clock()
    cache = TokenCache(1.0, clock=clock)
    assert cache.get("token") is None
    cache.put("token", PRINCIPAL)
    clock.now += 0.99
    assert cache.get("token") == PRINCIPAL
    clock.now += 0.02
    assert cache.get("token") is None


def test_forget_is_immediate_and_zero_turns_it_off():
    cache = TokenCache(1.0, clock=Clock())
    cache.put("token", PRINCIPAL)
    cache.forget("token")
    assert cache.get("token") is None
    off = TokenCache(0, clock=Clock())
    off.put("token", PRINCIPAL)
    assert off.get("token") is None


def test_the_cache_keeps_its_own_copy_and_a_bounded_size():
    cache = TokenCache(1.0, max_entries=3, clock=Clock())
    principal = dict(PRINCIPAL)
    cache.put("token", principal)
    principal["role"] = "admin"
    cache.get("token")["role"] = "admin"
    assert cache.get("token")["role"] == "agent"
    for number in range(5):
        cache.put(f"other-{number}", PRINCIPAL)
    assert len(cache.kept.keys()) == 3 and cache.get("token") is None
    assert all("other" not in key for key in cache.kept.keys())  # kept by hash, not in clear


def test_clear_forgets_every_token():
    cache = TokenCache(1.0, clock=Clock())
    cache.put("one", PRINCIPAL)
    cache.put("two", PRINCIPAL)
    cache.clear()
    assert cache.get("one") is None and cache.get("two") is None


class Accounts:
    def __init__(self, answer=PRINCIPAL, pause=0.05):
        self.calls, self.answer, self.pause = 0, answer, pause

    def __call__(self):
        self.calls += 1
        eventlet.sleep(self.pause)
        if isinstance(self.answer, Exception):
            raise self.answer
        return dict(self.answer)


def test_requests_arriving_together_ask_accounts_once():
    cache, accounts = TokenCache(1.0), Accounts()
    pool = eventlet.GreenPool(8)
    answers = list(pool.imap(lambda _: cache.verified("token", accounts), range(8)))
    assert accounts.calls == 1 and all(answer == PRINCIPAL for answer in answers)
    assert cache.verified("token", accounts) == PRINCIPAL and accounts.calls == 1


def test_a_refusal_reaches_every_waiter_and_is_not_kept():
    cache, refusing = TokenCache(1.0), Accounts(Unauthorized("session expired"))
    pool = eventlet.GreenPool(3)
    threads = [pool.spawn(cache.verified, "token", refusing) for _ in range(3)]
    for thread in threads:
        with pytest.raises(Unauthorized):
            thread.wait()
    assert refusing.calls == 1 and cache.get("token") is None


def test_a_sign_out_while_accounts_answers_keeps_the_answer_out():
    cache = TokenCache(1.0)

    def signed_out_meanwhile():
        cache.forget("token")
        return dict(PRINCIPAL)

    assert cache.verified("token", signed_out_meanwhile) == PRINCIPAL
    assert cache.get("token") is None


def test_zero_asks_accounts_every_time():
    cache, accounts = TokenCache(0), Accounts(pause=0)
    cache.verified("token", accounts)
    cache.verified("token", accounts)
    assert accounts.calls == 2
