"""The evidence bundle's reading of the trail (app/cli/evidence.py), called directly."""

from typing import cast

from aiokafka import ConsumerRecord

from app.cli.evidence import opened_line
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
