"""The bus's JSON, written and read by orjson instead of the standard library: under a list
load the stdlib encoder was 12 % of the tickets process and kombu's per-object decode hook
7 % of the gateway. The wire format stays kombu's `json` (content type application/json), so
processes with either codec understand each other — a test client, an older replica:
- values orjson cannot write natively (datetime, date, time, Decimal, bytes, objects with
  `__json__`) get kombu's envelopes `{"__type__": ..., "__value__": ...}` from kombu's own
  encoder, and a body carrying an envelope is read by kombu's decoder, which opens them;
- two differences: a UUID is written as its text (kombu wrapped it in an envelope and handed
  the receiver a UUID object; every receiver here parses ids from text, they come from HTTP
  bodies too), and a NaN or infinite float as null (the stdlib wrote `NaN`, which is not
  JSON). tests/unit/test_wire.py holds the rest equal.
Installed by `common.bootstrap`."""
from __future__ import annotations

import orjson
from kombu.serialization import registry
from kombu.utils import json as kombu_json

_KOMBU_ENCODER = kombu_json.JSONEncoder()
# datetimes go through `default` (kombu's envelope) instead of orjson's own text, so a
# receiver gets a datetime back as before; int dict keys are written as text, as json does
_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS
_ENVELOPE_MARK = "__type__"


def encode(data) -> bytes | str:
    try:
        return orjson.dumps(data, default=_KOMBU_ENCODER.default, option=_OPTIONS)
    except orjson.JSONEncodeError:
        # what orjson refuses and the stdlib writes (integers past 64 bits, NaN): kombu's
        # encoder decides, raising for what neither can write
        return kombu_json.dumps(data)


def decode(data):
    text = data if isinstance(data, str) else bytes(data).decode("utf-8")
    if _ENVELOPE_MARK in text:
        return kombu_json.loads(text)
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        # what the stdlib reads and orjson does not (NaN, nesting past orjson's limit):
        # kombu's decoder decides, raising for what is not JSON at all
        return kombu_json.loads(text)


def install() -> None:
    registry.register("json", encode, decode, content_type="application/json", content_encoding="utf-8")
