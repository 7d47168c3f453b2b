"""The service's error tree and what each error means to a client (unit, no broker)."""

import pytest

from app.errors import (
    ForbiddenError,
    InvalidRequestError,
    ServiceError,
    UnauthorizedError,
    UnavailableError,
    problem_for,
)
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
from tests.helpers.errors import ANSWERS, tree


def test_unit_every_code_in_the_tree_is_unique() -> None:
    codes = [kind.code for kind in tree()]
    assert len(codes) == len(set(codes)), sorted(codes)
    assert all(code.isidentifier() and code == code.lower() for code in codes)


def test_unit_every_class_in_the_tree_has_its_answer_listed() -> None:
    assert set(tree()) == set(ANSWERS)
    assert all(kind.__module__ == "app.errors" for kind in tree())


@pytest.mark.parametrize("kind", list(ANSWERS), ids=lambda kind: kind.__name__)
def test_unit_each_error_means_its_status_code_and_retry_after(kind: type[ServiceError]) -> None:
    status, code, retry_after_s = ANSWERS[kind]
    problem = problem_for(kind("what happened", details=[{"field": "f", "message": "m"}]))
    assert (problem.status, problem.code, problem.retry_after_s) == (status, code, retry_after_s)
    assert problem.message == "what happened"
    assert problem.details == [{"field": "f", "message": "m"}]
    assert ("Retry-After" in problem.headers) == (status == 503)
    if retry_after_s is not None:
        assert problem.headers["Retry-After"] == str(retry_after_s)
    assert isinstance(kind("x"), UnavailableError) == (status == 503)


def test_unit_a_401_asks_for_a_bearer_key() -> None:
    assert problem_for(UnauthorizedError("no key")).headers == {"WWW-Authenticate": "Bearer"}
    assert problem_for(ForbiddenError("no scope")).headers == {}


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
    assert ("Retry-After" in problem.headers) == retry
    if "Retry-After" in problem.headers:
        assert int(problem.headers["Retry-After"]) > 0


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (KafkaNotStartedError("x"), "not connected to Kafka yet"),
        (KafkaConnectionError("down"), "Kafka unreachable: down"),
        (KafkaTimeoutError("slow"), "slow; retry with the same event_id"),
        (KafkaRecordTooLargeError("big"), "big"),
        (KafkaBrokerError("later", retriable=True), "Kafka refused for now: later"),
        (KafkaBrokerError("never"), "Kafka refused the record: never"),
    ],
)
def test_unit_a_library_error_keeps_its_words(error: KafkaClientError, message: str) -> None:
    assert problem_for(error).message == message


def test_validation_details_name_each_field() -> None:
    error = InvalidRequestError.from_errors(
        [
            {"loc": ("body", "prompt"), "msg": "Field required"},
            {"loc": ("query", "wait"), "msg": "bad"},
        ]
    )
    assert error.details == [
        {"field": "body.prompt", "message": "Field required"},
        {"field": "query.wait", "message": "bad"},
    ]
    assert error.message == "invalid input: body.prompt, query.wait"


def test_unit_an_invalid_field_is_named_in_the_message_and_the_details() -> None:
    error = InvalidRequestError.for_field("query.since", "not a time")
    assert error.message == "invalid input: query.since: not a time"
    assert error.details == [{"field": "query.since", "message": "not a time"}]
