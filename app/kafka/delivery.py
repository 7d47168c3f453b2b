"""What happens to a record once `KafkaProducerClient.queue()` handed it over.

`Delivery` is the acknowledgement to come of one record; `outcome_of()` reads any settled
delivery future as `(result, error)`; `ProducerStats` counts the fates of every record one client
sent, with the last failures.
"""

import asyncio
import collections
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from app.kafka.errors import KafkaClientError, KafkaTimeoutError, translate
from app.kafka.models import KafkaProduceResult

# A delivery's lines are the producer's: one logger name to filter on, as before this module
# was split from `producer.py`.
logger = logging.getLogger("app.kafka.producer")

DeliveryCallback = Callable[[KafkaProduceResult | None, KafkaClientError | None], None]
_RECENT_FAILURES = 100

T = TypeVar("T")


def outcome_of(future: "asyncio.Future[T]") -> tuple[T | None, KafkaClientError | None]:
    """A settled delivery future as `(result, error)`: exactly one of them is None. A cancelled
    delivery is an error too, and any error is one of the library's (see `translate`)."""
    if future.cancelled():
        return None, KafkaClientError("delivery was cancelled")
    error = future.exception()
    if error is not None:
        return None, translate(error)
    return future.result(), None


class Delivery:
    """The acknowledgement to come of one record `KafkaProducerClient.queue()` queued.

    `wait()` waits for it without ever cancelling it: a caller that stops waiting leaves the
    record to the producer, and its fate still reaches the callbacks and the producer's
    `stats`. `future` is the underlying future (for `asyncio.wait` over many).
    """

    def __init__(
        self,
        topic: str,
        future: "asyncio.Future[KafkaProduceResult]",
        *,
        timeout_s: float | None = None,
        deadline: float | None = None,
    ) -> None:
        self.topic = topic
        self._future = future
        self._timeout_s = timeout_s
        self._deadline = deadline

    @property
    def future(self) -> "asyncio.Future[KafkaProduceResult]":
        """The future of the record's `KafkaProduceResult`."""
        return self._future

    def done(self) -> bool:
        """True once Kafka acknowledged or failed the record."""
        return self._future.done()

    def outcome(self) -> tuple[KafkaProduceResult | None, KafkaClientError | None]:
        """`(result, error)` of a settled delivery (`asyncio.InvalidStateError` before)."""
        if not self._future.done():
            raise asyncio.InvalidStateError(f"the record to {self.topic!r} is not settled yet")
        return outcome_of(self._future)

    def add_done_callback(self, callback: DeliveryCallback) -> None:
        """Call `callback(result, error)` once the record is settled (soon, when it is). A
        failing callback is logged; it does not stop the others."""

        def settled(future: "asyncio.Future[KafkaProduceResult]") -> None:
            try:
                callback(*outcome_of(future))
            except Exception:
                logger.exception("a delivery callback failed for a record to %r", self.topic)

        self._future.add_done_callback(settled)

    def log_failure(self) -> None:
        """Log the record's failure, should it fail: for a delivery nobody waits for."""

        def log(_: KafkaProduceResult | None, error: KafkaClientError | None) -> None:
            if error is not None:
                logger.error("record to %r was not delivered: %s", self.topic, error)

        self.add_done_callback(log)

    async def wait(self, timeout_s: float | None = None) -> KafkaProduceResult:
        """The record's `KafkaProduceResult` once acknowledged, or its error. Waits `timeout_s`,
        or without it what is left of the deadline `queue()` was given (without either, as
        long as it takes); past that, `KafkaTimeoutError`: the record may still be delivered."""
        budget_s = timeout_s if timeout_s is not None else self._timeout_s
        if timeout_s is not None:
            remaining_s: float | None = timeout_s
        elif self._deadline is not None:
            remaining_s = self._deadline - asyncio.get_running_loop().time()
        else:
            remaining_s = None
        future = self._future
        if not future.done():
            if remaining_s is None or remaining_s > 0:
                await _settled_within(future, remaining_s)
            if not future.done():
                raise KafkaTimeoutError(
                    f"no acknowledgement for a record to {self.topic!r} within {budget_s}s; "
                    "it may still be delivered"
                )
        return future.result()


async def _settled_within(future: "asyncio.Future[T]", timeout_s: float | None) -> None:
    """Return once `future` is settled or `timeout_s` has passed, whichever comes first; never
    cancel `future` (cancelled, the waiter stops waiting and leaves it be). What
    `wait_for(shield(future))` does, with one future and one timer rather than four objects
    and their callbacks per wait: this runs for every record a request waits for."""
    loop = asyncio.get_running_loop()
    waiter = loop.create_future()

    def wake(_: object = None) -> None:
        if not waiter.done():
            waiter.set_result(None)

    future.add_done_callback(wake)
    timer = loop.call_later(timeout_s, wake) if timeout_s is not None else None
    try:
        await waiter
    finally:
        if timer is not None:
            timer.cancel()
        future.remove_done_callback(wake)


@dataclass(frozen=True)
class DeliveryFailure:
    """A record the cluster did not acknowledge."""

    topic: str
    error: KafkaClientError


@dataclass
class ProducerStats:
    """Counters of what happened to the records sent through one client."""

    sent: int = 0
    delivered: int = 0
    failed: int = 0
    recent_failures: collections.deque[DeliveryFailure] = field(
        default_factory=lambda: collections.deque(maxlen=_RECENT_FAILURES)
    )

    @property
    def pending(self) -> int:
        """Records sent but neither acknowledged nor failed yet."""
        return self.sent - self.delivered - self.failed
