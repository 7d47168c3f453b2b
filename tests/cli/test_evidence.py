"""The evidence bundle's reading of the trail (app/cli/evidence.py), called directly."""

import json
from typing import Any, cast

from aiokafka import ConsumerRecord

from app.cli.evidence import opened_line
from app.kafka.schemas import frame
from app.kafka.serde import canonical_json
from app.privacy.erasure import Erasure
from app.privacy.sealing import SEALED_PREFIX


def test_unit_a_record_nested_too_deep_to_parse_has_no_opened_line() -> None:
    # Anyone who may write the audit topic chooses its bytes: a value nested past the JSON
    # parser's recursion limit (and naming the sealed prefix) is no record with sealed fields,
    # not a RecursionError out of `export`.
    value = b"[" * 100_000 + SEALED_PREFIX.encode()
    record = ConsumerRecord(
        topic="t",
        partition=0,
        offset=0,
        timestamp=0,
        timestamp_type=0,
        key=None,
        value=value,
        checksum=None,
        serialized_key_size=0,
        serialized_value_size=len(value),
        headers=(),
    )
    # No erasure is needed to refuse it: nothing of it is opened.
    assert opened_line(cast(Erasure, None), record) is None


class _Opening:
    """Stands in for `Erasure`: marks each value it is asked to open."""

    def open_value(self, value: dict[str, Any]) -> dict[str, Any]:
        return {**value, "opened": True}


def _record(value: bytes) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic="t",
        partition=0,
        offset=7,
        timestamp=0,
        timestamp_type=0,
        key=None,
        value=value,
        checksum=None,
        serialized_key_size=0,
        serialized_value_size=len(value),
        headers=(),
    )


def test_unit_a_record_in_the_schema_registrys_frame_is_opened_as_a_plain_one() -> None:
    # With schema contracts on, the audit topic's values carry the registry's frame (a zero
    # byte and the schema id) before the event's JSON: their sealed fields are opened too.
    event = canonical_json({"event_id": "e1", "prompt": SEALED_PREFIX + "abc"})
    plain = opened_line(cast(Erasure, _Opening()), _record(event))
    framed = opened_line(cast(Erasure, _Opening()), _record(frame(12, event)))
    assert plain is not None
    assert framed == plain
    assert json.loads(plain)["value"]["opened"] is True
