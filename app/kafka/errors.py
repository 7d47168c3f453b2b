"""The library's exceptions. aiokafka's errors are translated here, once, by `translate()`.

KafkaClientError                 anything this library raises
├── KafkaConfigError             a configuration that cannot work (also a ValueError)
├── KafkaNotStartedError         a client used before start() or after close()
├── KafkaSerializationError      a key, value or header that cannot be encoded or decoded
├── KafkaConnectionError         no broker could be reached
├── KafkaTimeoutError            no answer in time; a record may still be delivered later
├── KafkaBrokerError             the cluster refused the request (see `retriable`)
│   ├── KafkaRecordTooLargeError a record above the producer's or the topic's size limit
│   └── KafkaUnknownPartitionError a partition the topic does not have
├── KafkaCommitError             offsets could not be committed
│   ├── KafkaNoGroupError        a commit without a consumer group
│   └── KafkaRebalancedError     the group gave the partitions to another member meanwhile
├── KafkaHandlerError            a stream handler failed (the original error is `__cause__`)
└── KafkaFencedError             a transactional producer whose id another instance took over
"""

from aiokafka import errors as aioerrors


class KafkaClientError(Exception):
    """Base of every error the library raises."""

    retriable: bool = False


class KafkaConfigError(KafkaClientError, ValueError):
    """A configuration that cannot work."""


class KafkaNotStartedError(KafkaClientError):
    """A client was used before `start()` or after `close()`."""


class KafkaSerializationError(KafkaClientError, ValueError):
    """A key, value or header could not be encoded or decoded."""


class KafkaConnectionError(KafkaClientError):
    """No broker of the cluster could be reached."""

    retriable = True


class KafkaTimeoutError(KafkaClientError):
    """No answer within the time allowed. A produced record may still be delivered later."""

    retriable = True


class KafkaBrokerError(KafkaClientError):
    """The cluster answered with an error."""

    def __init__(self, message: str = "", *, retriable: bool = False) -> None:
        super().__init__(message)
        self.retriable = retriable


class KafkaRecordTooLargeError(KafkaBrokerError):
    """A record larger than the producer's `max_request_size` or the topic's `max.message.bytes`."""


class KafkaUnknownPartitionError(KafkaBrokerError):
    """A record addressed to a partition its topic does not have."""


class KafkaCommitError(KafkaClientError):
    """Offsets could not be committed."""


class KafkaNoGroupError(KafkaCommitError):
    """Offsets can only be committed by a consumer with a `group_id`."""


class KafkaRebalancedError(KafkaCommitError):
    """The group rebalanced since the records were read: their partitions may be another
    member's now, and the commit was refused. Whoever holds them next reads them again."""


class KafkaHandlerError(KafkaClientError):
    """A stream handler raised or returned something that cannot be published."""


class KafkaFencedError(KafkaClientError):
    """Another producer started with this one's transactional id: this one may never write
    again (the other instance owns the input partitions now). Not retriable: stop."""


_TRANSLATIONS: tuple[tuple[tuple[type[BaseException], ...], type[KafkaClientError], str], ...] = (
    ((aioerrors.KafkaConnectionError, aioerrors.NoBrokersAvailable), KafkaConnectionError, ""),
    (
        (aioerrors.KafkaTimeoutError, aioerrors.RequestTimedOutError, TimeoutError),
        KafkaTimeoutError,
        "",
    ),
    (
        (
            aioerrors.MessageSizeTooLargeError,
            aioerrors.RecordTooLargeError,
            aioerrors.RecordListTooLargeError,
        ),
        KafkaRecordTooLargeError,
        "record too large: ",
    ),
    # aiokafka raises CommitFailedError only for a commit the group refused after a rebalance.
    ((aioerrors.CommitFailedError,), KafkaRebalancedError, ""),
    (
        (aioerrors.ProducerFenced, aioerrors.InvalidProducerEpoch),
        KafkaFencedError,
        "fenced: another instance took over the transactional id: ",
    ),
)


def translate(exc: BaseException) -> KafkaClientError:
    """Map an aiokafka (or asyncio) error to the library's tree; library errors pass unchanged."""
    if isinstance(exc, KafkaClientError):
        return exc
    message = str(exc) or type(exc).__name__
    for sources, target, prefix in _TRANSLATIONS:
        if isinstance(exc, sources):
            return target(prefix + message)
    if isinstance(exc, aioerrors.KafkaError):
        return KafkaBrokerError(f"{type(exc).__name__}: {message}", retriable=exc.retriable)
    return KafkaClientError(f"{type(exc).__name__}: {message}")
