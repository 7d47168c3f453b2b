"""Unit tests of the record models."""

import hashlib
import time
import uuid
from typing import Any

import pytest
from pydantic import ValidationError

from app.kafka import KafkaAuditEvent, KafkaMessage, KafkaProduceResult, KafkaPublishRequest
from app.kafka.models import MAX_ID_CHARS, MAX_METADATA_DEPTH, MAX_METADATA_ITEMS

REFERENCE_FIELDS = {
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
def test_unit_reference_fields_exist(model: type) -> None:
    assert REFERENCE_FIELDS[model] <= set(model.model_fields)  # type: ignore[attr-defined]


def event(**overrides: object) -> KafkaAuditEvent:
    fields: dict[str, object] = {"user_id": "u", "model": "m", "prompt": "p", "response": "r"}
    return KafkaAuditEvent(**(fields | overrides))  # type: ignore[arg-type]


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
    ],
    ids=["nan", "infinity-in-list", "too-deep", "too-many-keys", "too-many-items", "long-key"],
)
def test_unit_metadata_outside_the_bounds_is_refused(metadata: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        KafkaAuditEvent(user_id="u", model="m", prompt="p", response="r", metadata=metadata)


def test_unit_metadata_at_the_bounds_is_kept() -> None:
    deep = nested(MAX_METADATA_DEPTH)
    wide = {f"k{i}": i for i in range(MAX_METADATA_ITEMS)}
    for metadata in (deep, wide, {"n": 1.5, "s": "x", "b": True, "z": None}):
        event = KafkaAuditEvent(user_id="u", model="m", prompt="p", response="r", metadata=metadata)
        assert event.metadata == metadata
