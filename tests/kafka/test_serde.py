"""Unit tests of encoding and decoding."""

import pytest

from app.kafka import KafkaSerializationError
from app.kafka.serde import (
    canonical_json,
    decode_key,
    decode_value,
    encode_headers,
    is_json_encoded,
    serialize,
)

JSON = {"content-type": b"application/json"}


def test_unit_serialize() -> None:
    assert serialize(None) is None
    assert serialize(b"\x00") == b"\x00"
    assert serialize("é") == "é".encode()
    assert serialize({"b": 1, "a": [True, None]}) == b'{"a":[true,null],"b":1}'
    assert serialize(42) == b"42"
    assert is_json_encoded(42)
    assert not is_json_encoded("42")
    assert not is_json_encoded(None)


def test_unit_unserializable_values_raise_the_library_error() -> None:
    with pytest.raises(KafkaSerializationError):
        canonical_json(object())


def test_unit_headers() -> None:
    assert encode_headers({"a": "x", "b": b"y", "c": None}) == [
        ("a", b"x"),
        ("b", b"y"),
        ("c", None),
    ]
    with pytest.raises(KafkaSerializationError, match="'n'"):
        encode_headers({"n": 5})  # type: ignore[dict-item]
    assert encode_headers(None) == []


def test_unit_decoding_is_explicit() -> None:
    assert decode_value(b"42", {}, "auto") == "42"
    assert decode_value(b"42", JSON, "auto") == 42
    assert decode_value(b"42", {}, "json") == 42
    assert decode_value(b"42", JSON, "text") == "42"
    assert decode_value(b"42", JSON, "bytes") == b"42"
    assert decode_value(b"\xff", {}, "auto") == b"\xff"
    assert decode_value(None, JSON, "auto") is None
    with pytest.raises(KafkaSerializationError):
        decode_value(b"\xff", {}, "text")
    with pytest.raises(KafkaSerializationError):
        decode_value(b"{", {}, "json")


def test_unit_keys() -> None:
    assert decode_key(None) is None
    assert decode_key(b"user") == "user"
    assert decode_key(b"\xff") == b"\xff"
