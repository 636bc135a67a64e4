"""The canonical inventory hash is the same for a key-reordered, volatile-field-changed
inventory (the agent and the server share this code), and diffs name only what changed."""
import copy
import json
import random

from hypothesis import given, settings
from hypothesis import strategies as st

import orjson

from chamados_protocol.inventory import (canonical_bytes, canonical_form, diff, diff_canonical, flatten,
                              inventory_hash)

INVENTORY = {
    "hardware": {"cpu": {"model": "Intel i5-1135G7", "cores": 4}, "memory_bytes": 17179869184,
                 "uptime_seconds": 1234},
    "disks": [{"device": "/dev/sda", "size_bytes": 512110190592, "free_bytes": 1000,
               "partitions": [{"mount": "/", "fs": "ext4", "percent": 40.5}]}],
    "network": [{"name": "eth0", "mac": "001a2b3c4d5e"}, {"name": "wlan0", "mac": "001a2b3c4d5f"}],
    "software": {"packages": [{"name": f"pkg{i}", "version": f"1.{i}"} for i in range(300)]},
    "os": {"name": "Ubuntu", "version": "22.04"},
    "collected_at": "2026-11-28T10:00:00Z",
}


def reordered(value, rng):
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {key: reordered(item, rng) for key, item in items}
    if isinstance(value, list):
        items = [reordered(item, rng) for item in value]
        rng.shuffle(items)
        return items
    return value


def test_reordered_and_volatile_changes_hash_the_same():
    other = reordered(copy.deepcopy(INVENTORY), random.Random(7))
    other["hardware"]["uptime_seconds"] = 99999
    other["disks"][0]["free_bytes"] = 5
    other["disks"][0]["partitions"][0]["percent"] = 99.9
    other["collected_at"] = "2026-11-29T00:00:00Z"
    assert inventory_hash(other) == inventory_hash(INVENTORY)
    assert len(inventory_hash(INVENTORY)) == 64


def test_a_real_change_changes_the_hash():
    other = copy.deepcopy(INVENTORY)
    other["software"]["packages"][10]["version"] = "9.9"
    assert inventory_hash(other) != inventory_hash(INVENTORY)


def test_canonical_form_leaves_volatile_fields_out():
    text = canonical_bytes(INVENTORY).decode()
    for volatile in ("uptime_seconds", "free_bytes", "percent", "collected_at"):
        assert volatile not in text
    assert json.loads(text)["os"] == {"name": "Ubuntu", "version": "22.04"}


def test_one_package_change_is_a_small_diff_naming_it():
    other = copy.deepcopy(INVENTORY)
    other["software"]["packages"][10]["version"] = "9.9"
    other["software"]["packages"].append({"name": "newpkg", "version": "0.1"})
    changes = diff(INVENTORY, other)
    assert changes["changed"] == {"software/packages[name=pkg10]/version": ["1.10", "9.9"]}
    assert set(changes["added"]) == {"software/packages[name=newpkg]/name",
                                     "software/packages[name=newpkg]/version"}
    assert changes["removed"] == {}
    assert len(json.dumps(changes)) < 1024 < len(json.dumps(INVENTORY))


def test_no_change_is_an_empty_diff_even_reordered():
    other = reordered(copy.deepcopy(INVENTORY), random.Random(3))
    assert diff(INVENTORY, other) == {"added": {}, "removed": {}, "changed": {}}


def test_removed_paths_keep_their_old_values():
    other = copy.deepcopy(INVENTORY)
    other["network"] = [n for n in other["network"] if n["name"] != "wlan0"]
    assert diff(INVENTORY, other)["removed"] == {"network[name=wlan0]/mac": "001a2b3c4d5f",
                                                 "network[name=wlan0]/name": "wlan0"}


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=5), st.integers(-2**63, 2**63 - 1) | st.text(max_size=5), max_size=5),
       st.dictionaries(st.text(max_size=5), st.integers(-2**63, 2**63 - 1) | st.text(max_size=5), max_size=5))
def test_the_canonical_form_matches_its_json_and_diffs_agree(before, after):
    document, encoded, digest = canonical_form(after)
    assert orjson.loads(encoded) == document and digest == inventory_hash(after)
    # a stored document (canonical JSON read back) diffs like the original
    assert diff_canonical(orjson.loads(canonical_bytes(before)), document) == diff(before, after)


def test_items_sharing_an_identity_are_kept_apart():
    flat = flatten({"x": [{"name": "a", "v": 1}, {"name": "a", "v": 2}]})
    assert len(flat) == 4


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=20)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=5), json_values, max_size=5), st.integers(0, 1000))
def test_hash_ignores_order_for_any_document(document, seed):
    assert inventory_hash(reordered(copy.deepcopy(document), random.Random(seed))) == inventory_hash(document)


def test_packages_of_two_architectures_keep_their_own_paths():
    """Adding an unrelated package must not reshuffle multi-arch ones into remove/add pairs."""
    before = {"packages": [{"name": "libc6", "arch": "amd64", "version": "2.36"},
                           {"name": "libc6", "arch": "i386", "version": "2.36"}]}
    after = {"packages": before["packages"] + [{"name": "aaa", "arch": "amd64", "version": "1"}]}
    changes = diff(before, after)
    assert changes["removed"] == {} and changes["changed"] == {}
    assert set(changes["added"]) == {"packages[name=aaa,arch=amd64]/name", "packages[name=aaa,arch=amd64]/arch",
                                     "packages[name=aaa,arch=amd64]/version"}


def flat_diff(before, after) -> dict:
    """The definition: flatten both canonical documents, compare path by path."""
    old, new = flatten(before), flatten(after)
    return {"added": {p: new[p] for p in sorted(new.keys() - old.keys())},
            "removed": {p: old[p] for p in sorted(old.keys() - new.keys())},
            "changed": {p: [old[p], new[p]] for p in sorted(old.keys() & new.keys()) if old[p] != new[p]}}


plain_keys = st.sampled_from(["a", "b", "name", "mount", "arch", "id", "v"])
documents = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.sampled_from(["x", "y", "z"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(plain_keys, children, max_size=4),
    max_leaves=25)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(plain_keys, documents, max_size=4), st.dictionaries(plain_keys, documents, max_size=4))
def test_the_walking_diff_equals_the_flattened_definition(before, after):
    from chamados_protocol.inventory import canonical

    before, after = canonical(before), canonical(after)
    assert diff_canonical(before, after) == flat_diff(before, after)
