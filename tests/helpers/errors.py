"""The answer each class of the service's error tree stands for, written out by hand."""

from app.errors import (
    AuditSchemaIncompatibleError,
    AuditTopicNoncompliantError,
    AuditTopicUnavailableError,
    BadRequestError,
    BodyTooLargeError,
    BrokerUnavailableError,
    ForbiddenError,
    HeadersTooLargeError,
    InvalidRecordError,
    InvalidRequestError,
    KafkaRefusedError,
    KafkaTooSlowError,
    KafkaUnavailableError,
    NoCheckpointError,
    OverloadedError,
    RecordTooLargeError,
    RegistryUnavailableError,
    RequestTimeoutError,
    SchemaMismatchError,
    SchemaMissingError,
    ServiceError,
    ShuttingDownError,
    SpoolFullError,
    SpoolUnavailableError,
    TooManyConnectionsError,
    TopicNotAllowedError,
    UnauthorizedError,
    UnavailableError,
    UnknownPartitionError,
    UnsignedError,
)

# Every class of the tree with the answer it stands for: (status, code, Retry-After). Written
# out here, not read from the classes, so a changed answer fails a test.
ANSWERS: dict[type[ServiceError], tuple[int, str, int | None]] = {
    ServiceError: (500, "internal_error", None),
    BadRequestError: (400, "bad_request", None),
    UnauthorizedError: (401, "unauthorized", None),
    ForbiddenError: (403, "forbidden", None),
    TopicNotAllowedError: (403, "topic_not_allowed", None),
    RequestTimeoutError: (408, "request_timeout", None),
    BodyTooLargeError: (413, "body_too_large", None),
    RecordTooLargeError: (413, "record_too_large", None),
    InvalidRequestError: (422, "invalid_request", None),
    UnknownPartitionError: (422, "unknown_partition", None),
    InvalidRecordError: (422, "invalid_record", None),
    SchemaMismatchError: (422, "schema_violation", None),
    SchemaMissingError: (422, "schema_required", None),
    NoCheckpointError: (404, "no_checkpoint", None),
    UnsignedError: (404, "unsigned", None),
    HeadersTooLargeError: (431, "headers_too_large", None),
    KafkaRefusedError: (502, "kafka_error", None),
    UnavailableError: (503, "unavailable", 5),
    OverloadedError: (503, "overloaded", 1),
    TooManyConnectionsError: (503, "too_many_connections", 1),
    ShuttingDownError: (503, "shutting_down", 5),
    BrokerUnavailableError: (503, "broker_unavailable", 5),
    KafkaTooSlowError: (503, "kafka_timeout", 5),
    KafkaUnavailableError: (503, "kafka_unavailable", 5),
    AuditTopicUnavailableError: (503, "audit_topic_unavailable", 5),
    AuditTopicNoncompliantError: (503, "audit_topic_noncompliant", 5),
    RegistryUnavailableError: (503, "schema_registry_unavailable", 5),
    AuditSchemaIncompatibleError: (503, "audit_schema_incompatible", 5),
    SpoolFullError: (503, "spool_full", 5),
    SpoolUnavailableError: (503, "spool_unavailable", 5),
}


def tree(root: type[ServiceError] = ServiceError) -> list[type[ServiceError]]:
    """`root` and every class below it."""
    return [root, *(kind for sub in root.__subclasses__() for kind in tree(sub))]
