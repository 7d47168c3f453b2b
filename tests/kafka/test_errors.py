"""Unit tests of the error translation."""

import pytest
from aiokafka import errors as aioerrors

from app.kafka import (
    KafkaBrokerError,
    KafkaClientError,
    KafkaConnectionError,
    KafkaFencedError,
    KafkaRebalancedError,
    KafkaRecordTooLargeError,
    KafkaTimeoutError,
)
from app.kafka.errors import translate


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (aioerrors.KafkaConnectionError("down"), KafkaConnectionError),
        (aioerrors.KafkaTimeoutError(), KafkaTimeoutError),
        (TimeoutError(), KafkaTimeoutError),
        (aioerrors.MessageSizeTooLargeError(), KafkaRecordTooLargeError),
        (aioerrors.NotLeaderForPartitionError(), KafkaBrokerError),
        (aioerrors.ProducerFenced(), KafkaFencedError),
        (aioerrors.CommitFailedError(), KafkaRebalancedError),
        (aioerrors.InvalidProducerEpoch(), KafkaFencedError),
        (RuntimeError("odd"), KafkaClientError),
    ],
)
def test_unit_translate(raised: BaseException, expected: type[KafkaClientError]) -> None:
    error = translate(raised)
    assert type(error) is expected
    assert str(error)


def test_unit_retriable_is_carried_over() -> None:
    assert translate(aioerrors.NotLeaderForPartitionError()).retriable
    assert not translate(aioerrors.TopicAuthorizationFailedError()).retriable


def test_unit_library_errors_pass_unchanged() -> None:
    error = KafkaTimeoutError("x")
    assert translate(error) is error
