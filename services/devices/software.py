"""The fleet's software index, pure: which packages (name, version) an inventory lists, and
a byte key per version whose order is the version order, so PostgreSQL can answer "which
machines have curl older than 8.5" from an index instead of reading every inventory.

Version order (Debian's, which covers the usual `1.2.10`, `2:1.0-3ubuntu1`, `120.0.6099.109`
and `1.0~rc1`): an optional `epoch:` first, compared as a number (0 when absent); then the
rest, alternating runs of non-digits and digits. Non-digit runs compare character by
character with `~` before everything (even the end: `1.0~rc1` < `1.0`), then the end, then
letters, then the other characters; digit runs compare as numbers (`10` > `9`, `007` = `7`).

Pure: no database.
"""
from __future__ import annotations

import re

MAX_NAME, MAX_VERSION = 200, 200
_PAIRS = re.compile(r"(\D*)(\d*)")
_END = b"\x02"  # a non-digit run's end: after `~` (\x01), before letters (\x04) and the rest (\x05)
_EPOCH = re.compile(r"^(\d+):(.*)$")


def version_key(version: str) -> bytes:
    """Bytes that sort as `version` sorts (see the module's docstring): the epoch, then each
    (non-digit run, digit run) pair as its characters, an end mark and its number — an
    absent run is empty, or 0 — and then one (empty, 0) pair and an end mark: what a version
    that has ended compares as against one that goes on (before `~`, after anything else).
    A version of zeros only is no pair at all (dpkg holds `0` equal to the empty string)."""
    epoch, rest = 0, version
    found = _EPOCH.match(version)
    if found:
        epoch, rest = int(found.group(1)), found.group(2)
    if not rest.strip("0"):  # all zeros: one (empty, 0) pair, which is what the end compares as
        rest = ""
    key = bytearray(_number(epoch))
    for text, digits in _PAIRS.findall(rest):
        if not text and not digits:
            continue
        key += b"".join(_character(c) for c in text) + _END + _number(int(digits or 0))
    # then the (empty, 0) pair every version goes on with, as far as comparing goes
    return bytes(key + _END + _number(0) + _END)


def _number(value: int) -> bytes:
    """A number as bytes that sort numerically: its length first, then its digits."""
    digits = str(value).encode()
    return bytes([min(len(digits), 255)]) + digits


def _character(c: str) -> bytes:
    if c == "~":
        return b"\x01"
    if c.isascii() and c.isalpha():
        return b"\x04" + c.encode()
    return b"\x05" + c.encode("utf-8", "surrogatepass")


def packages(document: dict | None) -> set[tuple[str, str]]:
    """(name, version) of every package an inventory's `software.packages` lists; anything
    malformed there is skipped, not fatal (the inventory was stored whatever its shape)."""
    software = document.get("software") if isinstance(document, dict) else None
    listed = software.get("packages") if isinstance(software, dict) else None
    found = set()
    for package in listed if isinstance(listed, list) else ():
        if not isinstance(package, dict):
            continue
        name, version = package.get("name"), package.get("version")
        if isinstance(name, str) and isinstance(version, str) and 0 < len(name) <= MAX_NAME \
                and len(version) <= MAX_VERSION and "\x00" not in name + version:
            found.add((name, version))
    return found
