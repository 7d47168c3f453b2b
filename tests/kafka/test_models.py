"""Unit tests of the record models."""

import enum
import hashlib
import json
import re
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import BaseModel, ValidationError

from app.kafka import KafkaAuditEvent, KafkaMessage, KafkaProduceResult, KafkaPublishRequest
from app.kafka.json_bounds import MAX_ID_CHARS, MAX_METADATA_DEPTH, MAX_METADATA_ITEMS
from app.kafka.models import TOPIC_NAME_PATTERN, check_topic_name

REFERENCE_FIELDS: dict[type[BaseModel], set[str]] = {
    KafkaMessage: {"topic", "partition", "offset", "timestamp_ms", "key", "value", "headers"},
    KafkaProduceResult: {"topic", "partition", "offset", "timestamp_ms"},
    KafkaPublishRequest: {"topic", "value", "key", "headers", "partition", "timestamp_ms"},
    KafkaAuditEvent: {
        "user_id",
        "model",
        "prompt",
        "response",
        "request_id",
        "metadata",
        "timestamp_utc",
    },
}


@pytest.mark.parametrize("model", list(REFERENCE_FIELDS))
def test_unit_reference_fields_exist(model: type[BaseModel]) -> None:
    assert REFERENCE_FIELDS[model] <= set(model.model_fields)


def event(**overrides: object) -> KafkaAuditEvent:
    fields: dict[str, object] = {"user_id": "u", "model": "m", "prompt": "p", "response": "r"}
    return KafkaAuditEvent(**(fields | overrides))


def test_unit_audit_event_is_frozen() -> None:
    with pytest.raises(ValidationError, match="frozen"):
        event().prompt = "changed"  # type: ignore[misc]


def test_unit_event_ids_are_uuid7_and_sort_by_creation_time() -> None:
    first = event()
    time.sleep(0.002)
    second = event()
    assert uuid.UUID(first.event_id).version == 7
    assert first.event_id < second.event_id
    assert event(event_id="given").event_id == "given"


def test_unit_timestamps_are_filled_and_normalized_to_utc() -> None:
    assert event().timestamp_utc.endswith("Z")
    assert event(timestamp_utc="2026-01-31T14:00:00+02:00").timestamp_utc == (
        "2026-01-31T12:00:00.000000Z"
    )
    with pytest.raises(ValidationError, match="ISO-8601"):
        event(timestamp_utc="yesterday")


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("2026-01-31t12:00:00z", "2026-01-31T12:00:00.000000Z"),
        ("2026-01-31T12:00:00.123456789Z", "2026-01-31T12:00:00.123456Z"),
        ("2026-01-31 12:00:00", "2026-01-31T12:00:00.000000Z"),
        ("0001-01-01T00:00:00-01:00", "0001-01-01T01:00:00.000000Z"),
    ],
)
def test_unit_rfc_3339_times_are_read(given: str, stored: str) -> None:
    assert event(timestamp_utc=given).timestamp_utc == stored


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        ("", "ISO-8601"),
        ("2026-02-30T00:00:00Z", "ISO-8601"),
        ("2026-12-31T23:59:60Z", "ISO-8601"),
        ("0001-01-01T00:00:00+01:00", "between the years 1 and 9999"),
        ("9999-12-31T23:59:59-01:00", "between the years 1 and 9999"),
    ],
)
def test_unit_times_outside_the_calendar_are_refused(given: str, reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        event(timestamp_utc=given)


@pytest.mark.parametrize(
    "fields",
    [
        {"schema_version": True},
        {"schema_version": "1"},
        {"user_id": 7},
        {"metadata": [["a", 1]]},
    ],
)
def test_unit_audit_fields_are_not_coerced(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        event(**fields)


@pytest.mark.parametrize(
    "fields",
    [{"partition": True}, {"timestamp_ms": False}, {"partition": "1"}, {"timestamp_ms": 1.5}],
)
def test_unit_publish_numbers_are_not_coerced(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        KafkaPublishRequest(topic="t", **fields)


def test_unit_integers_written_with_a_fraction_of_zero_are_integers() -> None:
    # JSON (and JSON Schema's `integer`) has one number 3, however it is written.
    request = KafkaPublishRequest(topic="t", partition=3.0, timestamp_ms=1e12)
    assert (request.partition, request.timestamp_ms) == (3, 10**12)
    assert event(schema_version=1.0).schema_version == 1


def test_unit_digest_is_sha256_of_the_canonical_json() -> None:
    audit = event(metadata={"b": 1, "a": "é"})
    data = audit.canonical_json()
    assert data.startswith(b'{"event_id":')
    assert b" " not in data
    assert "é".encode() in data
    assert audit.digest() == "sha256:" + hashlib.sha256(data).hexdigest()
    assert audit.schema_version == 1


def test_unit_unknown_audit_fields_are_rejected() -> None:
    with pytest.raises(ValidationError, match="extra"):
        event(surprise=True)


def test_unit_message_header_helper() -> None:
    message = KafkaMessage(topic="t", partition=0, offset=1, headers={"a": b"x", "b": None})
    assert message.header("a") == "x"
    assert message.header("b") is None
    assert message.header("missing") is None


def test_a_copy_with_changes_gets_its_own_canonical_json_and_digest() -> None:
    event = KafkaAuditEvent(user_id="u", model="m", prompt="p", response="r")
    digest = event.digest()
    changed = event.model_copy(update={"prompt": "other"})
    assert changed.digest() != digest
    assert b'"prompt":"other"' in changed.canonical_json()
    assert event.model_copy().digest() == digest


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"k": value}
    return value


@pytest.mark.parametrize(
    ("metadata", "reason"),
    [
        ({"x": float("nan")}, "finite"),
        ({"x": [1.0, float("inf")]}, "finite"),
        (nested(MAX_METADATA_DEPTH + 1), "deeper"),
        ({f"k{i}": i for i in range(MAX_METADATA_ITEMS + 1)}, "keys and items"),
        ({"list": list(range(MAX_METADATA_ITEMS))}, "keys and items"),
        ({"k" * (MAX_ID_CHARS + 1): 1}, "key is longer"),
        ({"n": 2**63}, "64 bits"),
        ({"n": [-(2**63) - 1]}, "64 bits"),
    ],
    ids=[
        "nan",
        "infinity-in-list",
        "too-deep",
        "too-many-keys",
        "too-many-items",
        "long-key",
        "int-too-large",
        "int-too-small",
    ],
)
def test_unit_metadata_outside_the_bounds_is_refused(metadata: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        KafkaAuditEvent(user_id="u", model="m", prompt="p", response="r", metadata=metadata)


def test_unit_metadata_at_the_bounds_is_kept() -> None:
    deep = nested(MAX_METADATA_DEPTH)
    wide = {f"k{i}": i for i in range(MAX_METADATA_ITEMS)}
    numbers = {"max": 2**63 - 1, "min": -(2**63), "float": 1e300}
    for metadata in (deep, wide, numbers, {"n": 1.5, "s": "x", "b": True, "z": None}):
        event = KafkaAuditEvent(user_id="u", model="m", prompt="p", response="r", metadata=metadata)
        assert event.metadata == metadata


@pytest.mark.parametrize(
    "fields",
    [
        {"prompt": "half a pair \ud800"},
        {"metadata": {"k\udfff": 1}},
        {"metadata": {"k": ["\ud83d"]}},
    ],
)
def test_unit_text_that_is_no_unicode_is_refused_when_validated(fields: dict[str, Any]) -> None:
    # A lone surrogate passes JSON parsing but cannot be written as UTF-8.
    with pytest.raises(ValidationError, match=r"unicode string|surrogates not allowed"):
        event(**fields)


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("a", True),
        ("_", True),
        (".a", True),
        ("a.", True),
        ("...", True),
        ("x" * 249, True),
        (".", False),
        ("..", False),
        ("", False),
        ("x" * 250, False),
        ("a b", False),
        ("a\n", False),
        ("tōpic", False),
    ],
)
def test_unit_topic_names_follow_kafkas_rule(name: str, valid: bool) -> None:
    # The same rule is the pattern in openapi.json, so clients can check names before sending.
    assert bool(re.fullmatch(TOPIC_NAME_PATTERN, name)) is valid
    if valid:
        assert check_topic_name(name) == name
    else:
        with pytest.raises(ValueError, match="topic name"):
            check_topic_name(name)


def test_unit_the_record_value_vector_of_the_docs_is_what_the_service_stores() -> None:
    doc = Path(__file__).parents[2] / "docs" / "integrity.md"
    text = doc.read_text(encoding="utf-8").split("\n### Record value\n", 1)[1]
    match = re.search(r"```json\n(.*?)\n```", text, re.DOTALL)
    assert match is not None
    vector = json.loads(match.group(1))
    event = KafkaAuditEvent.model_validate_json(vector["request"])
    assert event.canonical_json() == vector["value"].encode()
    assert event.digest() == vector["rg-digest"]
    assert vector["rg-digest"] == "sha256:" + hashlib.sha256(vector["value"].encode()).hexdigest()
    # The spellings the docs name, each in the stored bytes.
    for spelled in (
        '"a":0.00001',
        "1e-7",
        "1e+16",
        "100.0",
        "-0.0",
        "123.456",
        "\\u0001",
        "\u2028<b>&amp;</b>\u007f",
        " / ",
        "\U0001f600",
    ):
        assert spelled in vector["value"], spelled


def test_schema_v2_fields_make_a_version_2_record_and_v1_records_are_unchanged() -> None:
    plain = KafkaAuditEvent(user_id="u", model="m", prompt="p", response="r")
    # No v2 field: the stored JSON has exactly the fields of version 1.
    assert set(orjson.loads(plain.canonical_json())) == {
        "event_id", "metadata", "model", "prompt", "request_id", "response",
        "schema_version", "timestamp_utc", "user_id",
    }  # fmt: skip
    assert plain.schema_version == 1
    used = KafkaAuditEvent(
        user_id="u",
        model="m",
        operation="chat",
        input_tokens=4,
        start_time_utc="2026-01-01T00:00:00+01:00",
        input_messages=[{"role": "user", "parts": [{"type": "text", "content": "hi"}]}],
        verified_by=["dr-a"],
    )
    stored = orjson.loads(used.canonical_json())
    assert stored["schema_version"] == 2
    assert stored["start_time_utc"] == "2025-12-31T23:00:00.000000Z"
    assert "prompt" not in stored  # a use recorded without its content
    with pytest.raises(ValidationError, match="schema_version 1 has no field 'operation'"):
        KafkaAuditEvent(
            user_id="u", model="m", prompt="p", response="r", schema_version=1, operation="chat"
        )
    with pytest.raises(ValidationError, match="prompt"):
        KafkaAuditEvent(user_id="u", model="m", response="r")
    with pytest.raises(ValidationError, match="parts"):
        KafkaAuditEvent(user_id="u", model="m", input_messages=[{"role": "user", "parts": "x"}])


class _Colour(enum.Enum):
    RED = "red"


class _Level(enum.IntEnum):
    HIGH = 3


@pytest.mark.parametrize(
    "value",
    [
        True,
        0.1,
        -0.0,
        1e16,
        2**62,
        "é\u2028",
        uuid.UUID(int=7),
        _Colour.RED,
        _Level.HIGH,
        (1, "a"),
        {"nested": {"list": [1, 2.5, None]}},
        datetime(2026, 1, 31, 12, tzinfo=UTC),
        b"bytes",
    ],
)
def test_unit_the_canonical_json_is_pydantic_s_dump_sorted_whatever_the_values(
    value: object,
) -> None:
    made = event(metadata={"value": value})
    dumped = KafkaAuditEvent.model_dump(made, mode="json")
    assert made.canonical_json() == orjson.dumps(dumped, option=orjson.OPT_SORT_KEYS)


def test_unit_a_message_of_the_consumer_s_own_decoding_is_the_validated_one() -> None:
    fields: dict[str, Any] = {
        "topic": "t",
        "partition": 2,
        "offset": 41,
        "timestamp_ms": 1_790_000_000_000,
        "key": "user-42",
        "value": b'{"a":1}',
        "headers": {"content-type": b"application/json", "empty": None},
    }
    validated = KafkaMessage(**fields, schema_id=None, schema_version=None)
    decoded = KafkaMessage.decoded(**fields)
    assert decoded == validated
    assert decoded.model_fields_set == validated.model_fields_set
    assert decoded.model_dump() == validated.model_dump()
    assert decoded.header("content-type") == "application/json"
    with pytest.raises(ValidationError, match="frozen"):
        decoded.offset = 1  # type: ignore[misc]


def test_unit_flat_metadata_is_held_to_the_same_bounds_as_nested() -> None:
    for bad, reason in (
        ({"\ud800": 1}, "Unicode"),
        ({"x": float("-inf")}, "finite"),
        ({"n": -(2**63) - 1}, "64 bits"),
    ):
        with pytest.raises(ValidationError, match=reason):
            event(metadata=bad)
        with pytest.raises(ValidationError, match=reason):
            event(metadata={"nested": bad})
    kept = {"clé": "é", "n": -(2**63), "f": -0.0, "b": False, "z": None}
    assert event(metadata=kept).metadata == kept
