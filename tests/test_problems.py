"""What each library error means to a client (unit, no broker)."""

import pytest

from app.kafka import (
    KafkaBrokerError,
    KafkaClientError,
    KafkaConnectionError,
    KafkaNotStartedError,
    KafkaRecordTooLargeError,
    KafkaSerializationError,
    KafkaTimeoutError,
    KafkaUnknownPartitionError,
)
from app.problems import problem_for, validation_details


@pytest.mark.parametrize(
    ("error", "status", "code", "retry"),
    [
        (KafkaNotStartedError("x"), 503, "broker_unavailable", True),
        (KafkaConnectionError("x"), 503, "broker_unavailable", True),
        (KafkaTimeoutError("x"), 503, "kafka_timeout", True),
        (KafkaRecordTooLargeError("x"), 413, "record_too_large", False),
        (KafkaUnknownPartitionError("x"), 422, "unknown_partition", False),
        (KafkaSerializationError("x"), 422, "invalid_record", False),
        (KafkaBrokerError("x", retriable=True), 503, "kafka_unavailable", True),
        (KafkaBrokerError("x"), 502, "kafka_error", False),
        (KafkaClientError("x"), 502, "kafka_error", False),
    ],
)
def test_each_error_has_a_status_a_code_and_maybe_a_retry_after(
    error: KafkaClientError, status: int, code: str, retry: bool
) -> None:
    problem = problem_for(error)
    assert (problem.status, problem.code) == (status, code)
    assert problem.status != 500
    assert (problem.headers is not None) == retry
    if problem.headers:
        assert int(problem.headers["Retry-After"]) > 0


def test_validation_details_name_each_field() -> None:
    message, details = validation_details(
        [
            {"loc": ("body", "prompt"), "msg": "Field required"},
            {"loc": ("query", "wait"), "msg": "bad"},
        ]
    )
    assert details == [
        {"field": "body.prompt", "message": "Field required"},
        {"field": "query.wait", "message": "bad"},
    ]
    assert message == "invalid input: body.prompt, query.wait"
