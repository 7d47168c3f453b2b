"""Backpressure: bounds on what requests in progress hold, in records and in bytes.

Two bounds, one answer. `RG_MAX_IN_FLIGHT` counts the records handed to the producer and not
yet settled; `RG_MAX_IN_FLIGHT_BYTES` counts bytes: the bodies of requests being read and
worked on, plus the records waiting for Kafka. Beyond either the service answers 503
`overloaded` with `Retry-After` at once instead of taking more, so its memory stays bounded
however hard (and with however big records) clients push.

The bytes are counted in `Hold`s taken from one `ByteBudget`:
- a request's hold is taken by the body reader (`app.api.body_limit`) before the body is read,
  for its declared `Content-Length` (a chunked body grows it as it arrives), and released when
  the request is answered;
- a record's hold is taken over from its request's hold when the record is handed to the
  producer (a record is made of its request's body, so the bytes are not counted twice), and
  released once Kafka acknowledged or failed it, also when the client stopped waiting before.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from app.errors import OverloadedError
from app.kafka import Delivery, KafkaProducerClient


@dataclass
class Refusals:
    """How many admissions each bound refused (for the metrics)."""

    records: int = 0
    bytes: int = 0


class ByteBudget:
    """The bytes requests in progress hold, at most `max_bytes` at any time.

    Single-threaded by design (the event loop): a check and its reservation happen with no
    await in between, so the bound holds under any concurrency."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.held = 0
        self.high_water = 0
        self.refusals = Refusals()

    def reserve(self, size: int) -> "Hold":
        """A hold of `size` bytes; `OverloadedError` when the budget cannot take them."""
        self._take(size)
        return Hold(self, size)

    def _take(self, size: int) -> None:
        if size > 0 and self.held + size > self.max_bytes:
            self.refusals.bytes += 1
            raise OverloadedError(
                f"requests in progress already hold {self.held} of {self.max_bytes} bytes "
                f"(RG_MAX_IN_FLIGHT_BYTES), {size} more do not fit; "
                f"retry in {OverloadedError.retry_after_s}s"
            )
        self.held += size
        self.high_water = max(self.high_water, self.held)

    def _give_back(self, size: int) -> None:
        self.held -= size


class Hold:
    """Bytes counted against a `ByteBudget` until `release()` (which may be called again)."""

    def __init__(self, budget: ByteBudget, size: int) -> None:
        self._budget = budget
        self.size = size

    def grow(self, size: int) -> None:
        """Count `size` more bytes (a chunked body as it arrives); `OverloadedError` when
        they do not fit, the hold then stays as it was."""
        self._budget._take(size)
        self.size += size

    def take(self, size: int) -> "Hold":
        """A new hold of `size` bytes, as much of it as there is taken over from this one and
        the rest reserved; `OverloadedError` (and nothing moved) when the rest does not fit."""
        moved = min(size, self.size)
        self._budget._take(size - moved)
        self.size -= moved
        return Hold(self._budget, size)

    def release(self) -> None:
        """Stop counting these bytes."""
        self._budget._give_back(self.size)
        self.size = 0


class Backpressure:
    """Admits a record while fewer than `max_in_flight` are unacknowledged and its bytes fit in
    the `budget`."""

    def __init__(
        self, producer: KafkaProducerClient, *, max_in_flight: int, budget: ByteBudget
    ) -> None:
        self._producer = producer
        self.max_in_flight = max_in_flight
        self.budget = budget

    def admit(self, size: int = 0, *, held: Hold | None = None, ahead: int = 0) -> Hold:
        """A hold of `size` bytes for a record about to be handed to the producer, taken over
        from `held` (its request's hold) as far as it reaches; raise `OverloadedError` when the
        producer already holds `max_in_flight` records or the bytes do not fit.

        Checked right before the record is handed over, with no await in between, so the
        bounds hold under any concurrency. The caller releases the hold once the record is
        settled (or was never handed over). `ahead`: records admitted before this one that
        are to be handed over together with it (a batch's), not counted by the producer yet."""
        if self._producer.stats.pending + ahead >= self.max_in_flight:
            self.budget.refusals.records += 1
            raise OverloadedError(
                f"{self.max_in_flight} records are waiting for Kafka's acknowledgement; "
                f"retry in {OverloadedError.retry_after_s}s"
            )
        if held is not None:
            return held.take(size)
        return self.budget.reserve(size)

    async def hand_over(
        self, size: int, held: Hold | None, queue: Callable[[], Awaitable[Delivery]]
    ) -> Delivery:
        """Admit a record of `size` bytes (`admit()`), then `queue()` it; its bytes stay
        counted until Kafka settles it, also when the client stops waiting before. A record
        refused, or not queued (whatever `queue()` raises), holds nothing.

        `queue()` hands the record over with no await in between when the producer has room,
        so the record is counted as in flight before any other request passes `admit()`."""
        hold = self.admit(size, held=held)
        try:
            delivery = await queue()
        except BaseException:
            hold.release()  # not handed over: the producer holds none of its bytes
            raise
        delivery.add_done_callback(lambda _result, _error: hold.release())
        return delivery
