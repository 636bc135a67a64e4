"""PASSWORD_HASH_PROFILE: argon2's cost for new hashes, by name. Every name the setting
accepts has a hasher, anything else is a configuration error, and a hash made at one cost
verifies at any other (changing the setting locks nobody out)."""
import pytest

from common.config import PASSWORD_HASH_PROFILES, ConfigError, Settings
from services.accounts.passwords import HASHERS


def test_the_default_is_rfc_9106s_low_memory_profile():
    assert Settings.from_mapping({}).password_hash_profile == "rfc9106-low-memory"
    assert HASHERS["rfc9106-low-memory"].memory_cost == 65536


def test_every_accepted_name_has_a_hasher():
    assert set(PASSWORD_HASH_PROFILES) == set(HASHERS)
    for name in PASSWORD_HASH_PROFILES:
        assert Settings.from_mapping({"PASSWORD_HASH_PROFILE": name}).password_hash_profile == name


@pytest.mark.parametrize("value", ["cheap", "RFC9106-LOW-MEMORY", "insecure"])
def test_an_unknown_profile_is_a_configuration_error(value):
    with pytest.raises(ConfigError, match="PASSWORD_HASH_PROFILE must be one of"):
        Settings.from_mapping({"PASSWORD_HASH_PROFILE": value})


def test_a_hash_of_one_cost_verifies_at_another():
    cheap, usual = HASHERS["insecure-for-tests"], HASHERS["rfc9106-low-memory"]
    assert usual.verify(cheap.hash("pass-word-1"), "pass-word-1")
    assert cheap.verify(usual.hash("pass-word-1"), "pass-word-1")
