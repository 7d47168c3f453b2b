"""Backpressure: a bound on the records handed to the producer and not yet settled.

Beyond it the service answers 503 with `Retry-After` at once instead of queueing more: the
producer's buffer, and with it the service's memory, stays bounded however hard clients push.
"""

from app.kafka import KafkaProducerClient
from app.problems import UnavailableError

RETRY_AFTER_S = 1


class OverloadedError(UnavailableError):
    """Too many records in flight; the client should retry shortly."""

    code = "overloaded"
    retry_after_s = RETRY_AFTER_S


class Backpressure:
    """Admits a record while fewer than `max_in_flight` are unacknowledged."""

    def __init__(self, producer: KafkaProducerClient, *, max_in_flight: int) -> None:
        self._producer = producer
        self.max_in_flight = max_in_flight

    def admit(self) -> None:
        """Raise `OverloadedError` when the producer already holds `max_in_flight` records.

        Checked right before the record is handed over, with no await in between, so the
        bound holds under any concurrency."""
        if self._producer.stats.pending >= self.max_in_flight:
            raise OverloadedError(
                f"{self.max_in_flight} records are waiting for Kafka's acknowledgement; "
                f"retry in {RETRY_AFTER_S}s"
            )
