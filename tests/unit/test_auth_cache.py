"""services/gateway/auth_cache.py: a verified token is trusted for at most the setting's
seconds, a sign-out forgets it at once, and nobody can change the cache's copy."""
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
    assert len(cache._entries) == 3 and cache.get("token") is None
    assert all("other" not in key for key in cache._entries)  # kept by hash, not in clear


def test_clear_forgets_every_token():
    cache = TokenCache(1.0, clock=Clock())
    cache.put("one", PRINCIPAL)
    cache.put("two", PRINCIPAL)
    cache.clear()
    assert cache.get("one") is None and cache.get("two") is None
