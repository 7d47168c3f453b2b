"""Turning keys, values and headers into bytes and back.

Encoding: bytes pass as they are, `str` becomes UTF-8, `None` stays `None` (no key; a tombstone
value), anything else becomes compact JSON with sorted keys, so the same value always gives the
same bytes. A JSON-encoded value is marked with the header `content-type: application/json`.

Decoding is explicit: a value becomes JSON only when its record says `content-type:
application/json` (or the consumer is configured for JSON); otherwise it stays text, or bytes
when it is not UTF-8. The string "42" comes back as "42". A JSON value in the Confluent wire
format (a schema id in front, app/kafka/schemas.py) decodes to its JSON.
"""

import hashlib
from collections.abc import Callable, Mapping
from typing import Any, Literal

import orjson

from app.kafka.errors import KafkaSerializationError

CONTENT_TYPE = "content-type"
JSON_CONTENT_TYPE = "application/json"

Serializer = Callable[[Any], bytes | None]
Deserializer = Callable[[bytes | None], Any]
ValueFormat = Literal["auto", "json", "text", "bytes"]
HeaderInput = Mapping[str, str | bytes | None]


def canonical_json(value: Any) -> bytes:
    """Compact JSON with sorted keys, UTF-8: equal values give equal bytes."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError as exc:
        raise KafkaSerializationError(f"not JSON-serializable: {exc}") from exc


# Anything but JSON's own types (and orjson's UUID and Enum, which pydantic writes alike) goes
# to `_not_plain`: datetimes, dataclasses, subclasses of str, int, dict and list included.
_PLAIN = (
    orjson.OPT_SORT_KEYS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)


def _not_plain(value: Any) -> Any:
    raise TypeError(type(value).__name__)


def plain_json(value: Any) -> bytes | None:
    """`canonical_json(value)` when `value` holds JSON's own types only (dicts with text keys,
    lists, tuples, text, numbers, booleans, None), else None (where another serializer may
    have something to say about the others: pydantic's `mode="json"`)."""
    try:
        return orjson.dumps(value, default=_not_plain, option=_PLAIN)
    except TypeError:
        return None


def sha256_digest(data: bytes) -> str:
    """`sha256:<hex>` of `data`."""
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def serialize(value: Any) -> bytes | None:
    """The default key and value serializer (see the module docstring)."""
    if value is None:
        return None
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    return canonical_json(value)


def is_json_encoded(value: Any) -> bool:
    """True when `serialize` encodes `value` as JSON (not bytes, text or a tombstone)."""
    return value is not None and not isinstance(value, bytes | bytearray | memoryview | str)


def encode_headers(headers: HeaderInput | None) -> list[tuple[str, bytes | None]]:
    """Header values may be str (sent as UTF-8), bytes, or None (a header without a value)."""
    encoded: list[tuple[str, bytes | None]] = []
    for name, value in (headers or {}).items():
        if type(value) is str and type(name) is str and name:  # the common case, first
            encoded.append((name, value.encode("utf-8")))
            continue
        if not isinstance(name, str) or not name:
            raise KafkaSerializationError(f"header names must be non-empty strings, got {name!r}")
        if value is None or isinstance(value, bytes):
            encoded.append((name, value))
        elif isinstance(value, str):
            encoded.append((name, value.encode("utf-8")))
        else:
            raise KafkaSerializationError(
                f"header {name!r} must be str, bytes or None, got {type(value).__name__}"
            )
    return encoded


def decode_key(raw: bytes | None) -> str | bytes | None:
    """Keys come back as text when they are UTF-8, else as bytes."""
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


def unframed(raw: bytes) -> bytes:
    """The JSON of a value in the Confluent wire format (magic byte 0, 4-byte schema id; see
    app/kafka/schemas.py), or `raw` as it is: JSON text never starts with a zero byte."""
    return raw[5:] if len(raw) >= 5 and raw[0] == 0 else raw


def decode_value(raw: bytes | None, headers: Mapping[str, bytes | None], fmt: ValueFormat) -> Any:
    """Decode a record value as `fmt` says; "auto" follows the record's content-type header."""
    if raw is None or fmt == "bytes":
        return raw
    content_type = headers.get(CONTENT_TYPE) or b""
    if fmt == "json" or (fmt == "auto" and content_type.startswith(JSON_CONTENT_TYPE.encode())):
        try:
            return orjson.loads(unframed(raw))
        except orjson.JSONDecodeError as exc:
            if fmt == "json":
                raise KafkaSerializationError(f"value is not valid JSON: {exc}") from exc
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        if fmt == "text":
            raise KafkaSerializationError("value is not valid UTF-8 text") from None
        return raw
