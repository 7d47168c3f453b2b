"""The spool's forwarder: sends spooled audit records to Kafka once it answers again.

Records go in the order they were spooled (so in order per key), a batch at a time, exactly as
they were written, through `KafkaAuditLogger.send` (the service's idempotent producer); each is
removed from the spool only once Kafka acknowledged it.
A record still waiting for an earlier attempt is not sent again: the forwarder waits for that
attempt. What fails stays in the spool and is tried again after a backoff; a record the producer
refuses for good (too large for it: the service refuses such events before they are spooled, but
an older spool may hold one) stays too, logged once at ERROR, and the records after it go on.
Nothing new is read while the removal of acknowledged records is still on its way to disk (or
cannot be written: see `app.ingest.spool`), so a full disk stops forwarding instead of repeating
records.
"""

import asyncio
import logging
from collections.abc import Callable

from app.errors import SpoolUnavailableError
from app.ingest.spool import Spool, SpoolError
from app.kafka import (
    KafkaAuditLogger,
    KafkaClientError,
    KafkaProduceResult,
    KafkaRecordTooLargeError,
    outcome_of,
)
from app.tasks import BackgroundTask, Backoff

logger = logging.getLogger(__name__)

_CONNECT_POLL_S = 0.5


class SpoolForwarder:
    """A background task draining `spool` into Kafka through `audit_logger` (each record to
    the topic it was spooled for).

    `on_forwarded(n)` learns how many records each batch delivered (for metrics)."""

    def __init__(
        self,
        spool: Spool,
        audit_logger: KafkaAuditLogger,
        *,
        batch_size: int = 500,
        on_forwarded: Callable[[int], None] | None = None,
    ) -> None:
        self._spool = spool
        self._logger = audit_logger
        self._batch_size = batch_size
        self._on_forwarded = on_forwarded
        self._task = BackgroundTask("spool-forwarder", self._run)
        # Spool positions of records the producer refused for good (each logged once).
        self._refused: set[int] = set()

    def start(self) -> None:
        """Begin forwarding in the background."""
        self._task.start()

    async def close(self) -> None:
        """Stop forwarding. Records sent and not yet acknowledged stay in the spool until
        their acknowledgement arrives (the producer's flush at shutdown) or the next run."""
        await self._task.close()

    async def _run(self) -> None:
        backoff = Backoff(max_s=10.0)
        while True:
            await self._spool.wait_not_empty()
            await self._spool.wait_removed()
            if not self._logger.producer.started:
                await asyncio.sleep(_CONNECT_POLL_S)
                continue
            try:
                delivered, failure = await self._forward_batch()
            except (SpoolError, SpoolUnavailableError) as exc:
                delivered, failure = 0, str(exc)
            if delivered and self._on_forwarded is not None:
                self._on_forwarded(delivered)
            if failure is None:
                backoff.reset()
                continue
            logger.warning(
                "spool: %d record(s) left to forward (%s); retrying in %.1fs",
                self._spool.depth,
                failure,
                backoff.delay_s,
            )
            await backoff.wait()

    async def _forward_batch(self) -> tuple[int, str | None]:
        batch = await self._spool.read(self._batch_size)
        if not batch:
            # Counted but not committed yet: an append is on its way to disk.
            await asyncio.sleep(0.01)
            return 0, None
        deliveries: list[asyncio.Future[KafkaProduceResult]] = []
        failure: str | None = None
        refused = 0
        for entry in batch:
            if entry.delivery is not None:
                deliveries.append(entry.delivery)
                continue
            try:
                delivery = await self._logger.send(entry.record)
            except KafkaClientError as exc:
                if isinstance(exc, KafkaRecordTooLargeError):
                    # The producer will never take it (its size): kept in the spool, said
                    # once, and not in the way of the records after it.
                    self._refused_once(entry.seq, entry.event_id, exc)
                    refused += 1
                    continue
                # Later records of the batch wait for this one: order per key.
                failure = f"could not queue a record: {exc}"
                break
            self._spool.watch(entry.seq, delivery)
            deliveries.append(delivery)
        if deliveries:
            # asyncio.wait, not gather: stopping the forwarder must not cancel deliveries.
            await asyncio.wait(deliveries)
        errors = [error for _, error in map(outcome_of, deliveries) if error is not None]
        if errors and failure is None:
            failure = f"not delivered: {errors[0]}"
        delivered = len(deliveries) - len(errors)
        if refused and not delivered and failure is None:
            failure = f"{refused} record(s) the producer refuses for good"  # then back off
        return delivered, failure

    def _refused_once(self, seq: int, event_id: str, error: KafkaClientError) -> None:
        if seq in self._refused:
            return
        self._refused.add(seq)
        logger.error(
            "spool: the producer refuses record %d (event %s) for good, so it stays in the "
            "spool and the records after it go on: %s",
            seq,
            event_id,
            error,
        )
