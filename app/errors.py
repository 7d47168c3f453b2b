"""The service's errors: every answer it gives on purpose that is not a success, in one tree.

Each class carries what the client sees (status, code and, for a 503, `Retry-After`); an
instance carries the message and `details`. The library's own tree (`app.kafka.errors`) is
translated into this one by `problem_for`, so each code the service can answer with is a class
here, once. Rendering is HTTP's business (`app.api.errors`); raising is the business of the
module that finds the problem.

ServiceError                     500 internal_error       a fault of the service itself
├── BadRequestError              400 bad_request          not an HTTP/1.1 request
├── UnauthorizedError            401 unauthorized         no API key, an unknown one, or two
├── ForbiddenError               403 forbidden            the key lacks the route's scope
├── TopicNotAllowedError         403 topic_not_allowed    a topic POST /publish may not write
├── RequestTimeoutError          408 request_timeout      RG_REQUEST_READ_TIMEOUT_S passed
├── BodyTooLargeError            413 body_too_large       RG_MAX_BODY_BYTES
├── RecordTooLargeError          413 record_too_large     Kafka's size limit (library)
├── InvalidRequestError          422 invalid_request      input that fails validation
├── IdempotencyKeyReusedError    422 idempotency_key_reused  a key used again, other body
├── UnknownPartitionError        422 unknown_partition    no such partition (library)
├── InvalidRecordError           422 invalid_record       cannot be serialized (library)
├── SchemaMismatchError          422 schema_violation     fails its topic's JSON Schema
├── SchemaMissingError           422 schema_required      RG_SCHEMA_REQUIRED, topic has none
├── NoCheckpointError            404 no_checkpoint        no checkpoint written yet
├── UnsignedError                404 unsigned             no signing key configured
├── NoProofError                 404 no_proof             no proof of that record (yet)
├── UnknownSubjectError          404 unknown_subject      no key of that subject (erasure)
├── UnknownErasureError          404 unknown_erasure      no erasure record of that id
├── HeadersTooLargeError         431 headers_too_large    RG_MAX_HEADERS, RG_MAX_HEADER_BYTES
├── KafkaRefusedError            502 kafka_error          Kafka refused for good (library)
├── SchemaUnusableError          502 schema_unusable      the registry's schema cannot be used
└── UnavailableError             503 unavailable          come back later: Retry-After 5 s
    ├── OverloadedError              overloaded               in flight (Retry-After 1 s)
    ├── TooManyConnectionsError      too_many_connections     RG_MAX_CONNECTIONS (1 s)
    ├── TooManySearchesError         too_many_searches        RG_AUDIT_SEARCH_CONCURRENCY (1 s)
    ├── ShuttingDownError            shutting_down            SIGTERM received
    ├── BrokerUnavailableError       broker_unavailable       Kafka does not answer (also library)
    ├── KafkaTooSlowError            kafka_timeout            no acknowledgement in time (library)
    ├── KafkaUnavailableError        kafka_unavailable        Kafka refused for now (library)
    ├── AuditTopicUnavailableError   audit_topic_unavailable  not created or checked yet
    ├── AuditTopicNoncompliantError  audit_topic_noncompliant would not keep audit records
    ├── RegistryUnavailableError     schema_registry_unavailable  the registry does not answer
    ├── AuditSchemaIncompatibleError audit_schema_incompatible    breaks the registered one
    ├── SpoolFullError               spool_full               RG_SPOOL_MAX_BYTES
    ├── SpoolUnavailableError        spool_unavailable        the spool's disk refuses the write
    └── ErasureKeysUnavailableError  erasure_keys_unavailable the keys topic cannot be used now

Besides the tree, `app.api.errors` answers the framework's own errors through the same body
builder: Starlette's (404 not_found, 405 method_not_allowed: the status phrase is the code) and
FastAPI's validation, as `InvalidRequestError`. Not in the tree: `app.ingest.spool.SpoolError`,
a spool that cannot be opened at start, and `app.integrity.keys.SigningKeyError`, a signing key
that cannot be used; no client sees them, the process exits (status 3).
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

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

# Retry-After, in seconds, the only two values the service tells: limits on what is in flight
# and on connections clear within a second; the broker, the audit topic, the spool and a
# restarting instance take longer.
RETRY_SOON_S = 1
RETRY_LATER_S = 5


class ServiceError(Exception):
    """Root of the errors the service answers with. Raised as itself it means the service
    failed (500); every subclass names a problem of the request or of the moment."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    retry_after_s: ClassVar[int | None] = None
    # Response headers the answer always carries (besides Retry-After).
    headers: ClassVar[Mapping[str, str]] = {}

    def __init__(self, message: str, *, details: Sequence[Any] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.details = list(details)


class BadRequestError(ServiceError):
    """Bytes that are not an HTTP/1.1 request (answered by the protocol, before routing)."""

    status = 400
    code = "bad_request"


class UnauthorizedError(ServiceError):
    """No API key, an unknown one, or two that differ (authentication is on)."""

    status = 401
    code = "unauthorized"
    headers: ClassVar[Mapping[str, str]] = {"WWW-Authenticate": "Bearer"}


class ForbiddenError(ServiceError):
    """The API key lacks the scope the route needs."""

    status = 403
    code = "forbidden"


class TopicNotAllowedError(ServiceError):
    """The topic is outside what `/publish` may write; the message says why."""

    status = 403
    code = "topic_not_allowed"


class RequestTimeoutError(ServiceError):
    """The request's head or body was not received within RG_REQUEST_READ_TIMEOUT_S."""

    status = 408
    code = "request_timeout"


class BodyTooLargeError(ServiceError):
    """The request body is larger than RG_MAX_BODY_BYTES."""

    status = 413
    code = "body_too_large"


class RecordTooLargeError(ServiceError):
    """A record above the producer's or the topic's size limit."""

    status = 413
    code = "record_too_large"


class InvalidRequestError(ServiceError):
    """Input that fails validation; `details` names each field (`field`, `message`)."""

    status = 422
    code = "invalid_request"

    @classmethod
    def for_field(cls, name: str, problem: str) -> "InvalidRequestError":
        """About one field, shaped like FastAPI's validation errors, for checks the models
        cannot make."""
        return cls(
            f"invalid input: {name}: {problem}", details=[{"field": name, "message": problem}]
        )

    @classmethod
    def from_errors(cls, errors: Sequence[Mapping[str, Any]]) -> "InvalidRequestError":
        """pydantic's errors as the contract's `details` (`field`, `message`), with a message
        that names the fields."""
        details = [
            {"field": ".".join(str(part) for part in error["loc"]), "message": str(error["msg"])}
            for error in errors
        ]
        return cls("invalid input: " + ", ".join(d["field"] for d in details), details=details)


class IdempotencyKeyReusedError(ServiceError):
    """An `Idempotency-Key` (or `event_id`) its caller already used within the window, sent
    with another body: neither replayed (it is not the same request) nor written (the key
    names the first one); `details` names the header or field."""

    status = 422
    code = "idempotency_key_reused"


class UnknownPartitionError(ServiceError):
    """A record addressed to a partition its topic does not have."""

    status = 422
    code = "unknown_partition"


class InvalidRecordError(ServiceError):
    """A key, value or header that cannot be serialized."""

    status = 422
    code = "invalid_record"


class SchemaMismatchError(ServiceError):
    """A `/publish` value that fails its topic's JSON Schema; `details` names each path
    (`field`, `path`, `rule`, `message`)."""

    status = 422
    code = "schema_violation"


class SchemaMissingError(ServiceError):
    """RG_SCHEMA_REQUIRED is on and the topic's `<topic>-value` subject has no schema."""

    status = 422
    code = "schema_required"


class NoCheckpointError(ServiceError):
    """Signing is on but this writer has written no checkpoint yet (nothing stored so far)."""

    status = 404
    code = "no_checkpoint"


class UnsignedError(ServiceError):
    """No signing key is configured (RG_AUDIT_SIGNING_KEY_FILE): the chain is unsigned."""

    status = 404
    code = "unsigned"


class NoProofError(ServiceError):
    """No inclusion or consistency proof can be given: the record is not indexed (yet), no
    checkpoint covers it yet, or its writer's records disagree with its checkpoint."""

    status = 404
    code = "no_proof"


class UnknownSubjectError(ServiceError):
    """POST /audit/erase for a subject with no key: nothing of it was written sealed (or it
    was erased already)."""

    status = 404
    code = "unknown_subject"


class UnknownErasureError(ServiceError):
    """GET /audit/erase/{id} for an id that names no erasure record."""

    status = 404
    code = "unknown_erasure"


class HeadersTooLargeError(ServiceError):
    """The request head passes RG_MAX_HEADERS or RG_MAX_HEADER_BYTES."""

    status = 431
    code = "headers_too_large"


class KafkaRefusedError(ServiceError):
    """Kafka refused the record, and would again."""

    status = 502
    code = "kafka_error"


class SchemaUnusableError(ServiceError):
    """The topic's schema in the Schema Registry cannot be used (an external `$ref`, or it
    does not compile): the registry's answer is at fault, not the request; the message names
    the schema and why."""

    status = 502
    code = "schema_unusable"


class UnavailableError(ServiceError):
    """The service cannot take this request now; the client retries after `Retry-After`."""

    status = 503
    code = "unavailable"
    retry_after_s = RETRY_LATER_S


class OverloadedError(UnavailableError):
    """Too many records or bytes in flight; the client should retry shortly."""

    code = "overloaded"
    retry_after_s = RETRY_SOON_S


class TooManyConnectionsError(UnavailableError):
    """RG_MAX_CONNECTIONS connections are open already."""

    code = "too_many_connections"
    retry_after_s = RETRY_SOON_S


class TooManySearchesError(UnavailableError):
    """RG_AUDIT_SEARCH_CONCURRENCY searches of GET /audit/records are running already."""

    code = "too_many_searches"
    retry_after_s = RETRY_SOON_S


class ShuttingDownError(UnavailableError):
    """Shutdown has begun: what is accepted is finished, nothing new starts."""

    code = "shutting_down"


class BrokerUnavailableError(UnavailableError):
    """Kafka does not answer, or the producer is not connected yet."""

    code = "broker_unavailable"


class KafkaTooSlowError(UnavailableError):
    """Kafka did not take or acknowledge the record in time; a retry with the same
    `event_id` is safe."""

    code = "kafka_timeout"


class KafkaUnavailableError(UnavailableError):
    """Kafka refused the record for now (a retriable broker error)."""

    code = "kafka_unavailable"


class AuditTopicUnavailableError(UnavailableError):
    """The audit topic is not created or checked yet (the message names the reason)."""

    code = "audit_topic_unavailable"


class AuditTopicNoncompliantError(UnavailableError):
    """The audit topic would not keep audit records; `details` names each setting."""

    code = "audit_topic_noncompliant"


class RegistryUnavailableError(UnavailableError):
    """The Schema Registry does not answer, and the write needs it (a schema not cached, the
    audit schema's id for the Confluent framing)."""

    code = "schema_registry_unavailable"


class AuditSchemaIncompatibleError(UnavailableError):
    """The audit event's JSON Schema breaks the latest one registered for the audit topic
    (BACKWARD): the message names the fields."""

    code = "audit_schema_incompatible"


class SpoolFullError(UnavailableError):
    """The spool holds its maximum size; the client should retry later."""

    code = "spool_full"


class SpoolUnavailableError(UnavailableError):
    """The spool's disk cannot take the write (full, or failing); the client should retry
    later. The message carries SQLite's own error."""

    code = "spool_unavailable"


class ErasureKeysUnavailableError(UnavailableError):
    """RG_ERASURE=on and the keys topic cannot be read or written now: nothing is written
    unsealed, the client retries."""

    code = "erasure_keys_unavailable"


@dataclass(frozen=True)
class Problem:
    """A failure as the client sees it: status, code, message, details, and when to retry."""

    status: int
    code: str
    message: str
    details: list[Any] = field(default_factory=list)
    retry_after_s: int | None = None
    extra_headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        """The response headers the answer carries: `Retry-After` when the client should
        come back later, and any of the error's own (`WWW-Authenticate`)."""
        headers = dict(self.extra_headers)
        if self.retry_after_s is not None:
            headers["Retry-After"] = str(self.retry_after_s)
        return headers


# The library's errors in the service's tree: the first entry whose type matches wins.
_LIBRARY: tuple[tuple[type[KafkaClientError], type[ServiceError], str], ...] = (
    (KafkaNotStartedError, BrokerUnavailableError, "not connected to Kafka yet"),
    (KafkaConnectionError, BrokerUnavailableError, "Kafka unreachable: {error}"),
    # The audit routes' advice; POST /publish, which has no event id, words its own.
    (KafkaTimeoutError, KafkaTooSlowError, "{error}; retry with the same event_id"),
    (KafkaRecordTooLargeError, RecordTooLargeError, "{error}"),
    (KafkaUnknownPartitionError, UnknownPartitionError, "{error}"),
    (KafkaSerializationError, InvalidRecordError, "{error}"),
)


def service_error_for(error: KafkaClientError) -> ServiceError:
    """What a library error means to a client. Nothing here is a 500: either the client sent
    something Kafka cannot take (4xx), or Kafka is not there or refused (502/503)."""
    for kind, meaning, message in _LIBRARY:
        if isinstance(error, kind):
            return meaning(message.format(error=error))
    if isinstance(error, KafkaBrokerError) and error.retriable:
        return KafkaUnavailableError(f"Kafka refused for now: {error}")
    return KafkaRefusedError(f"Kafka refused the record: {error}")


def problem_for(error: ServiceError | KafkaClientError) -> Problem:
    """The client's view of a service or library error, the one source of every error
    answer: the HTTP handler, the items of a batch, the protocol's own answers, and the
    metrics that count failures by code."""
    if isinstance(error, KafkaClientError):
        error = service_error_for(error)
    return Problem(
        status=error.status,
        code=error.code,
        message=error.message,
        details=list(error.details),
        retry_after_s=error.retry_after_s,
        extra_headers=error.headers,
    )
