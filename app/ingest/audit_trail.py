"""Audit events from the API to Kafka, with a receipt for each: the service's side of
`KafkaAuditLogger` (timing, counting, per-item outcomes of a batch)."""

import asyncio
import logging
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from app.errors import InvalidRequestError, Problem, ServiceError, UnavailableError, problem_for
from app.ingest.backpressure import Backpressure, Hold
from app.ingest.idempotency import RecentReceipts
from app.ingest.redaction import REDACTION_HEADER, Redactor
from app.ingest.spool import Spool, SpooledRecord
from app.integrity import ChainPosition, ChainWriter
from app.kafka import (
    AuditRecord,
    Delivery,
    KafkaAuditEvent,
    KafkaAuditLogger,
    KafkaClientError,
    KafkaProduceResult,
    KafkaTimeoutError,
)
from app.metrics import ServiceMetrics

logger = logging.getLogger(__name__)

ReceiptStatus = Literal["acked", "queued", "spooled"]


class AuditReceipt(BaseModel):
    """Proof that an audit event was accepted: where Kafka stored it (once acknowledged) and
    the digest of the stored bytes, to verify the record later."""

    event_id: str = Field(examples=["01927f0e-8a1c-7cc2-9a53-3f1c2b6f6d0e"])
    topic: str = Field(examples=["ractogateway.audit"])
    partition: int | None = Field(examples=[0])
    offset: int | None = Field(examples=[1234])
    timestamp_utc: str = Field(examples=["2026-09-21T12:00:00.000000Z"])
    digest: str = Field(examples=["sha256:9f2c..."], pattern=r"^sha256:[0-9a-f]{64}$")
    writer: str = Field(
        examples=["0123456789abcdef0123456789abcdef"],
        pattern=r"^[0-9a-f]{32}$",
        description="The writer (service instance) whose hash chain holds the record: its "
        "rg-writer header (docs/integrity.md).",
    )
    seq: int = Field(
        examples=[41],
        ge=0,
        description="The record's position on its writer's chain: its rg-seq header.",
    )
    chain: str = Field(
        examples=["sha256:77e58d19ca3a29becb657e7a3b8fea3f63f6d6304aab8aa29dce4bb607fedb6f"],
        pattern=r"^sha256:[0-9a-f]{64}$",
        description="The record's chain link, committing to every earlier record of its "
        "writer: its rg-chain header.",
    )
    status: ReceiptStatus = Field(
        description="acked: Kafka has it (acks=all); queued: handed to the producer, not yet "
        "acknowledged (?wait=false); spooled: kept on local disk until Kafka is back."
    )


class BatchItemError(BaseModel):
    """Why one item of a batch was not accepted (the contract's error fields, plus status)."""

    status: int = Field(examples=[422])
    code: str = Field(examples=["invalid_request"])
    message: str = Field(examples=["invalid input: prompt"])
    details: list[Any] = Field(default_factory=list)


class BatchItemResult(BaseModel):
    """The outcome of one item, at its index in the request: a receipt or an error."""

    index: int
    receipt: AuditReceipt | None = None
    error: BatchItemError | None = None


class AuditTrail:
    """Writes validated audit events through `KafkaAuditLogger` and answers with receipts.

    With a `spool`, an event Kafka does not acknowledge within `spool_after_s` (or while the
    producer is not connected, or while earlier events still wait in the spool, to keep the
    order per key) is synced to the spool instead and answered "spooled"; the forwarder
    sends it later. Without one, such an event is a `KafkaTimeoutError` (503): a retry with
    the same `event_id` waits for the first attempt rather than writing a second record.
    """

    def __init__(
        self,
        audit_logger: KafkaAuditLogger,
        metrics: ServiceMetrics,
        *,
        timeout_s: float,
        receipts: RecentReceipts[AuditReceipt],
        backpressure: Backpressure,
        spool: Spool | None = None,
        spool_after_s: float = 2.0,
        chain: ChainWriter | None = None,
        redactor: Redactor | None = None,
    ) -> None:
        self.chain = chain or ChainWriter()
        self._redactor = redactor
        self._backpressure = backpressure
        self._logger = audit_logger
        self._metrics = metrics
        self._timeout_s = timeout_s
        self._receipts = receipts
        self._spool = spool
        self._budget_s = min(spool_after_s, timeout_s) if spool is not None else timeout_s

    @property
    def topic(self) -> str:
        """The audit topic."""
        return self._logger.topic

    async def record_once(
        self,
        event: KafkaAuditEvent,
        *,
        wait: bool,
        headers: dict[str, str] | None = None,
        idempotency_key: str | None = None,
        held: Hold | None = None,
    ) -> tuple[AuditReceipt, bool]:
        """`record()` unless the event (by `idempotency_key`, else by `event_id`) was acked
        or spooled within the window: then its first receipt, and nothing is written. Returns
        the receipt and whether it is a replay. With a `redactor`, the event is redacted
        first: the record, its digest and the receipt are of the redacted event."""
        if self._redactor is not None:
            event = self._redactor.event(event)
            headers = {**(headers or {}), REDACTION_HEADER: self._redactor.stamp}
        key = f"key:{idempotency_key}" if idempotency_key else f"event:{event.event_id}"
        return await self._receipts.once(
            key,
            lambda: self.record(event, wait=wait, headers=headers, receipt_key=key, held=held),
            keep=lambda receipt: receipt.status in ("acked", "spooled"),
        )

    async def record(
        self,
        event: KafkaAuditEvent,
        *,
        wait: bool,
        headers: dict[str, str] | None = None,
        receipt_key: str | None = None,
        held: Hold | None = None,
    ) -> AuditReceipt:
        """Write one event. Waits for acks=all unless `wait` is False; raises the library's
        errors, `OverloadedError`, `SpoolFullError` or `SpoolUnavailableError` (see
        `app.errors` for what each means to a client). A record acknowledged after its
        client gave up waiting is remembered under `receipt_key`, so the client's retry gets
        its receipt. The record's bytes are counted until Kafka settles it, taken over from
        `held` (its request's) when given.

        The deadline is the producer's (`queue()`, then `Delivery.wait()` for the rest of it),
        the bounds `Backpressure.hand_over()`'s; decided here: spool or not, what to count, what
        a retry waits for."""
        spool = self._spool
        if spool is not None and (spool.depth or not self._logger.producer.started):
            place, record = self._build(event, headers)
            return await self._to_spool(event, record, place)
        receipt_key = receipt_key or f"event:{event.event_id}"
        # An earlier attempt its client gave up on may still be stored: wait for that one.
        # Before a position is taken: a retry adds nothing to the chain.
        earlier = await self._receipts.earlier(receipt_key, timeout_s=self._budget_s)
        if earlier is not None:
            return earlier
        place, record = self._build(event, headers)
        settled = self._metrics.track_produce("audit")
        try:
            # admit() refuses with no await after _build(): a refused record is always the
            # chain's last and gives its position back.
            delivery = await self._backpressure.hand_over(
                _size_of(record), held, lambda: self._logger.queue(record, timeout_s=self._budget_s)
            )
        except KafkaTimeoutError:  # not queued in time: nothing was sent
            if spool is not None:
                return await self._to_spool(event, record, place)
            self._give_back(place, "not queued in time")
            error = KafkaTimeoutError(
                f"Kafka took more than {self._budget_s}s to take the record; nothing was written"
            )
            settled(None, error)
            raise error from None
        except KafkaClientError as exc:
            self._give_back(place, f"not queued: {exc}")
            settled(None, exc)
            raise
        except BaseException:  # refused (overloaded) or cancelled: nothing was sent
            self._give_back(place, "not queued")
            raise
        outcome = _Settlement(self, place)
        delivery.add_done_callback(settled)
        delivery.add_done_callback(outcome.delivered)
        if not wait:
            return self.receipt(event, None, place)
        try:
            result = await delivery.wait()
        except KafkaTimeoutError:
            if delivery.done():
                raise  # Kafka failed it (with a timeout): no attempt left to wait for
            if spool is not None:
                try:
                    return await self._to_spool(
                        event, record, place, delivery=delivery, outcome=outcome
                    )
                except UnavailableError:
                    # Not spooled, but still in the producer: a retry waits for that attempt.
                    self._keep_for_retries(event, place, delivery, receipt_key)
                    raise
            self._keep_for_retries(event, place, delivery, receipt_key)
            raise KafkaTimeoutError(
                f"no acknowledgement from Kafka within {self._budget_s}s; the record may still "
                "be stored"
            ) from None
        return self.receipt(event, result, place)

    def _build(
        self, event: KafkaAuditEvent, headers: dict[str, str] | None
    ) -> tuple[ChainPosition, AuditRecord]:
        # The next chain position and the record that carries it, with no await in between:
        # positions follow one another in the order records are built.
        place = self.chain.append(event.digest().removeprefix("sha256:"))
        return place, self._logger.record_of(event, headers, place=place)

    def _give_back(self, place: ChainPosition, why: str) -> None:
        """`place`'s record was never sent: take the position back, or (another record took
        the next one meanwhile) settle it as lost."""
        if not self.chain.release(place):
            self.settle_lost(place, why)

    def settle_lost(self, place: ChainPosition, why: str) -> None:
        """`place` is void: its record will not be on the topic (logged once, counted)."""
        lost = self.chain.lost
        self.chain.settled(place.seq, stored=False)
        if self.chain.lost > lost:
            logger.warning(
                "audit chain position %d of writer %s is void (%s); the next checkpoint lists it",
                place.seq,
                place.writer,
                why,
            )

    def _keep_for_retries(
        self, event: KafkaAuditEvent, place: ChainPosition, delivery: Delivery, key: str
    ) -> None:
        self._receipts.keep_for_retries(
            key,
            delivery,
            lambda result: self.receipt(event, result, place),
            name=f"event {event.event_id}",
        )

    async def _to_spool(
        self,
        event: KafkaAuditEvent,
        record: AuditRecord,
        place: ChainPosition,
        *,
        delivery: Delivery | None = None,
        outcome: "_Settlement | None" = None,
    ) -> AuditReceipt:
        assert self._spool is not None  # noqa: S101 - only called with a spool
        if outcome is not None:
            outcome.spooling = True
        appended = asyncio.ensure_future(
            self._spool.append(
                record,
                event_id=event.event_id,
                delivery=delivery.future if delivery is not None else None,
            )
        )

        def spooled(task: "asyncio.Future[SpooledRecord]") -> None:
            # Settled here, not after the await: a client gone meanwhile does not stop the write.
            if not task.cancelled() and task.exception() is None:
                self.chain.settled(place.seq, stored=True)
            elif outcome is not None:
                outcome.spool_failed()
            else:
                self._give_back(place, "not spooled")

        appended.add_done_callback(spooled)
        await asyncio.shield(appended)
        self._metrics.spooled.inc()
        return self.receipt(event, None, place, status="spooled")

    def receipt(
        self,
        event: KafkaAuditEvent,
        result: KafkaProduceResult | None,
        place: ChainPosition,
        *,
        status: ReceiptStatus | None = None,
    ) -> AuditReceipt:
        """The receipt of `event` at `place` on the chain: acked with `result`, else queued
        (or `status`)."""
        return AuditReceipt(
            event_id=event.event_id,
            topic=self.topic,
            partition=result.partition if result else None,
            offset=result.offset if result else None,
            timestamp_utc=event.timestamp_utc,
            digest=event.digest(),
            writer=place.writer,
            seq=place.seq,
            chain=f"sha256:{place.chain}",
            status=status or ("acked" if result else "queued"),
        )

    async def record_batch(
        self,
        items: list[Any],
        *,
        wait: bool,
        headers: dict[str, str] | None = None,
        held: Hold | None = None,
    ) -> list[BatchItemResult]:
        """Validate each item on its own and write the valid ones concurrently (an event acked
        before is not written again); one result per item, in order. A bad or failed item does
        not affect the others. Each record takes its bytes over from `held` (the request's)."""
        results: list[BatchItemResult] = []
        pending: list[tuple[int, KafkaAuditEvent]] = []
        for index, item in enumerate(items):
            try:
                pending.append((index, KafkaAuditEvent.model_validate(item)))
            except ValidationError as exc:
                results.append(BatchItemResult(index=index, error=_invalid(exc)))
        outcomes = await asyncio.gather(
            *(
                self.record_once(event, wait=wait, headers=headers, held=held)
                for _, event in pending
            ),
            return_exceptions=True,
        )
        for (index, _), outcome in zip(pending, outcomes, strict=True):
            if isinstance(outcome, tuple):
                results.append(BatchItemResult(index=index, receipt=outcome[0]))
            elif isinstance(outcome, KafkaClientError | ServiceError):
                results.append(BatchItemResult(index=index, error=_failed(problem_for(outcome))))
            else:
                raise outcome
        results.sort(key=lambda result: result.index)
        return results


class _Settlement:
    """What becomes of a queued record's chain position: stored once Kafka acknowledges it or
    the spool commits it; lost when Kafka fails it and it is not, or could not be, spooled."""

    def __init__(self, trail: AuditTrail, place: ChainPosition) -> None:
        self._trail = trail
        self._place = place
        self._failed = False
        self.spooling = False

    def delivered(self, _result: KafkaProduceResult | None, error: KafkaClientError | None) -> None:
        """The delivery callback."""
        if error is None:
            self._trail.chain.settled(self._place.seq, stored=True)
        elif self.spooling:
            self._failed = True  # the spool decides
        else:
            self._trail.settle_lost(self._place, f"Kafka failed it: {error}")

    def spool_failed(self) -> None:
        """The spool did not take it: Kafka's outcome decides (or decided)."""
        self.spooling = False
        if self._failed:
            self._trail.settle_lost(self._place, "Kafka failed it and the spool did not take it")


def _size_of(record: AuditRecord) -> int:
    # What the producer holds of it: key, value and headers (the short text ones counted in
    # characters, near enough).
    headers = sum(len(name) + len(value) for name, value in record.headers.items())
    return len(record.key) + len(record.value) + headers


def _invalid(exc: ValidationError) -> BatchItemError:
    return _failed(problem_for(InvalidRequestError.from_errors(exc.errors())))


def _failed(problem: Problem) -> BatchItemError:
    # The contract's error fields as the HTTP answer would carry them, plus the status (a
    # batch answers 200 as a whole, so Retry-After has no header to go in).
    return BatchItemError(
        status=problem.status, code=problem.code, message=problem.message, details=problem.details
    )
