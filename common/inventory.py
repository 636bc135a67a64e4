"""The inventory's canonical form, hash and diff — one implementation for the agent and the
devices service, so both always agree on whether an inventory changed.

Canonical: keys sorted, volatile fields (uptime, free space, usage percentages, collection
times) left out, lists sorted by their canonical JSON. The hash is SHA-256 of the canonical
JSON. The diff flattens both documents into `path -> value` and reports what was added,
removed (with the old value) and changed: a change record grows with the change, not with
the inventory.
Only the standard library and orjson: this module ships to desktops with the agent.
"""
from __future__ import annotations

import hashlib

import orjson

VOLATILE_KEYS = frozenset({
    "uptime", "uptime_seconds", "boot_time", "collected_at", "timestamp", "last_seen",
    "free", "free_bytes", "available", "available_bytes", "used", "used_bytes", "percent",
    "used_percent", "load_average", "temperature", "cpu_percent", "memory_percent",
})
# list items that carry one of these are addressed by it in diff paths (packages[name=x]);
# a qualifier tells apart items that share it (libc6 for amd64 and for i386)
IDENTITY_KEYS = ("name", "id", "mount", "mountpoint", "device", "mac", "serial", "path")
QUALIFIER_KEYS = ("arch", "architecture")


def _sort_key(value) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def canonical(value):
    """Volatile keys dropped and lists sorted, recursively; object keys are sorted when the
    canonical JSON is written (OPT_SORT_KEYS), so they are left in place here."""
    if isinstance(value, dict):
        return {key if isinstance(key, str) else str(key): canonical(item)
                for key, item in value.items() if key not in VOLATILE_KEYS}
    if isinstance(value, (list, tuple)):
        return sorted([canonical(item) for item in value], key=_sort_key)
    return value


def canonical_form(inventory: dict) -> tuple[dict, bytes, str]:
    """The canonical document, its JSON and that JSON's SHA-256, canonicalising once (a
    92 KB inventory costs about a millisecond a pass)."""
    document = canonical(inventory)
    encoded = orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
    return document, encoded, hashlib.sha256(encoded).hexdigest()


def canonical_bytes(inventory: dict) -> bytes:
    return canonical_form(inventory)[1]


def inventory_hash(inventory: dict) -> str:
    return canonical_form(inventory)[2]


def canonical_with_hash(inventory: dict) -> tuple[bytes, str]:
    _, encoded, digest = canonical_form(inventory)
    return encoded, digest


def _flatten_into(flat: dict, value, path: str) -> None:
    if isinstance(value, dict):
        if not value:
            if path:
                flat[path] = {}
            return
        for key, item in value.items():
            _flatten_into(flat, item, f"{path}/{key}" if path else str(key))
    elif isinstance(value, list):
        if not value:
            flat[path] = []
            return
        seen = set()
        for index, item in enumerate(value):
            label = str(index)
            if isinstance(item, dict):
                key = next((k for k in IDENTITY_KEYS if isinstance(item.get(k), (str, int))), None)
                if key is not None:
                    label = f"{key}={item[key]}" + "".join(
                        f",{q}={item[q]}" for q in QUALIFIER_KEYS if isinstance(item.get(q), str))
            if label in seen:  # two items with the same identity: fall back to the position
                label = f"{label}#{index}"
            seen.add(label)
            _flatten_into(flat, item, f"{path}[{label}]")
    else:
        flat[path] = value


def flatten(value, path: str = "") -> dict:
    """`path -> value` for every leaf (empty objects and lists are leaves too)."""
    flat: dict = {}
    _flatten_into(flat, value, path)
    return flat


def diff_canonical(before: dict | None, after: dict) -> dict:
    """`diff` of two documents already in canonical form (as stored, or from
    `canonical_form`): each is flattened once, nothing is canonicalised again.
    {"added": {path: value}, "removed": {path: old value}, "changed": {path: [old, new]}}."""
    old, new = flatten(before or {}), flatten(after)
    return {
        "added": {path: new[path] for path in sorted(new.keys() - old.keys())},
        "removed": {path: old[path] for path in sorted(old.keys() - new.keys())},
        "changed": {path: [old[path], new[path]]
                    for path in sorted(old.keys() & new.keys()) if old[path] != new[path]},
    }


def diff(old: dict | None, new: dict) -> dict:
    """What changed between two inventories in any form."""
    return diff_canonical(canonical(old or {}), canonical(new))
