"""The software index's pure parts (services/devices/software.py): version order as Debian
orders versions, and the packages an inventory lists."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.devices.software import packages, version_key

ORDERED = ["0.9", "1.0~alpha", "1.0~rc1", "1.0", "1.0a", "1.0-1ubuntu1", "1.0.1", "1.2", "1.2.9",
           "1.2.10", "1.10", "2:0.1", "2:0.1-1"]


def test_versions_sort_as_debian_sorts_them():
    assert sorted(ORDERED, key=version_key) == ORDERED


@pytest.mark.parametrize("left, right", [("007", "7"), ("1.00", "1.0"), ("0:1.2", "1.2"), ("1.", "1.0")])
def test_equal_versions_have_equal_keys(left, right):
    assert version_key(left) == version_key(right)


def debian_compare(a: str, b: str) -> int:
    """dpkg's algorithm, written out plainly, to hold the keys to (epochs aside)."""
    def order(c: str) -> int:
        return -1 if c == "~" else 0 if c == "" else ord(c) if c.isalpha() else ord(c) + 256

    while a or b:
        i = 0
        while i < len(a) and not a[i].isdigit():
            i += 1
        j = 0
        while j < len(b) and not b[j].isdigit():
            j += 1
        a_text, b_text, a, b = a[:i], b[:j], a[i:], b[j:]
        for k in range(max(len(a_text), len(b_text))):
            x, y = order(a_text[k] if k < len(a_text) else ""), order(b_text[k] if k < len(b_text) else "")
            if x != y:
                return -1 if x < y else 1
        i = 0
        while i < len(a) and a[i].isdigit():
            i += 1
        j = 0
        while j < len(b) and b[j].isdigit():
            j += 1
        x, y, a, b = int(a[:i] or 0), int(b[:j] or 0), a[i:], b[j:]
        if x != y:
            return -1 if x < y else 1
    return 0


versions = st.text(alphabet="0123456789.-+~abcXYZ", max_size=12)


@given(versions, versions)
def test_keys_order_like_dpkg(left, right):
    keys = version_key(left), version_key(right)
    assert (keys[0] > keys[1]) - (keys[0] < keys[1]) == debian_compare(left, right)


def test_an_inventory_lists_its_packages_and_malformed_entries_are_skipped():
    document = {"software": {"manager": "dpkg", "packages": [
        {"name": "curl", "version": "8.5.0-2ubuntu10.1", "arch": "amd64"}, {"name": "vim", "version": "2:9.1"},
        {"name": "", "version": "1"}, {"name": "x", "version": 3}, "junk", {"name": "n\x00ul", "version": "1"}]}}
    assert packages(document) == {("curl", "8.5.0-2ubuntu10.1"), ("vim", "2:9.1")}
    assert packages({"software": {"packages": "no"}}) == set() == packages(None) == packages({})
