"""What a Kafka failure means for a client: one mapping from the library's errors to an HTTP
status and an error code, used by the error handler and by each item of a batch."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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

RETRY_AFTER_S = 5


class UnavailableError(Exception):
    """The service cannot take this request now (a 503 with `code` and `Retry-After`)."""

    code = "unavailable"
    retry_after_s = RETRY_AFTER_S


@dataclass(frozen=True)
class Problem:
    """A failure as the client sees it: status, code, message, and when to retry."""

    status: int
    code: str
    message: str
    retry_after_s: int | None = None

    @property
    def headers(self) -> dict[str, str] | None:
        """`Retry-After` when the client should come back later."""
        return {"Retry-After": str(self.retry_after_s)} if self.retry_after_s else None


# The first entry whose type matches wins: (type, status, code, message, retry later?).
_PROBLEMS: tuple[tuple[type[KafkaClientError], int, str, str, bool], ...] = (
    (KafkaNotStartedError, 503, "broker_unavailable", "not connected to Kafka yet", True),
    (KafkaConnectionError, 503, "broker_unavailable", "Kafka unreachable: {error}", True),
    (KafkaTimeoutError, 503, "kafka_timeout", "{error}; retry with the same event_id", True),
    (KafkaRecordTooLargeError, 413, "record_too_large", "{error}", False),
    (KafkaUnknownPartitionError, 422, "unknown_partition", "{error}", False),
    (KafkaSerializationError, 422, "invalid_record", "{error}", False),
)


def problem_for(error: KafkaClientError) -> Problem:
    """The client's view of a library error. Nothing here is a 500: either the client sent
    something Kafka cannot take (4xx), or Kafka is not there or refused (502/503)."""
    for kind, status, code, message, retry in _PROBLEMS:
        if isinstance(error, kind):
            return Problem(
                status, code, message.format(error=error), RETRY_AFTER_S if retry else None
            )
    if isinstance(error, KafkaBrokerError) and error.retriable:
        return Problem(503, "kafka_unavailable", f"Kafka refused for now: {error}", RETRY_AFTER_S)
    return Problem(502, "kafka_error", f"Kafka refused the record: {error}")


def validation_details(errors: Sequence[Mapping[str, Any]]) -> tuple[str, list[dict[str, str]]]:
    """pydantic's errors as the contract's `details` (`field`, `message`), and a message that
    names the fields."""
    details = [
        {"field": ".".join(str(part) for part in error["loc"]), "message": str(error["msg"])}
        for error in errors
    ]
    return "invalid input: " + ", ".join(d["field"] for d in details), details
