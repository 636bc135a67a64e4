"""Every word the console shows, by language. Templates and views hold keys, never text,
so another language is one more module here (same keys) and a LANGUAGE setting."""
from __future__ import annotations

import logging

from services.gateway.console.catalogue import pt_BR

log = logging.getLogger(__name__)

CATALOGUES = {"pt-BR": pt_BR.MESSAGES}
LANGUAGE = "pt-BR"
_missing_seen: set[str] = set()


def translate(key: str, **params) -> str:
    """The text for `key`, with `{name}` placeholders filled; the key itself when absent
    (logged once, and caught by tests/unit/test_console_catalogue.py)."""
    text = CATALOGUES[LANGUAGE].get(key)
    if text is None:
        if key not in _missing_seen:
            _missing_seen.add(key)
            log.warning("console: no text for %r in %s", key, LANGUAGE)
        return key
    return text.format(**params) if params else text


def has(key: str) -> bool:
    return key in CATALOGUES[LANGUAGE]


def translate_error(code: str, fallback: str) -> str:
    """A domain error's code in the reader's words; the service's message when the
    catalogue has none for that code."""
    key = f"error.{code}"
    return translate(key) if has(key) else fallback


def translate_field(name: str) -> str:
    key = f"field.{name}"
    return translate(key) if has(key) else name


def translate_problem(text: str) -> str:
    """A validation problem as the schemas word it (marshmallow's English), in the reader's
    words when the catalogue knows it (`problem.<text>`, or `problem.<start>…` for those
    that go on with values)."""
    if has(f"problem.{text}"):
        return translate(f"problem.{text}")
    for key, words in CATALOGUES[LANGUAGE].items():
        if key.startswith("problem.") and key.endswith("…") and text.startswith(key[8:-1]):
            # words ending in ":" go on with the schema's own list ("A, B.")
            return words + text[len(key) - 9:] if words.endswith(":") else words
    return text
