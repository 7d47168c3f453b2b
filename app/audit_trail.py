"""Audit events from the API to Kafka, with a receipt for each: the service's side of
`KafkaAuditLogger` (timing, counting, per-item outcomes of a batch)."""

import asyncio
import logging
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from app.backpressure import Backpressure, OverloadedError
from app.kafka import (
    KafkaAuditEvent,
    KafkaAuditLogger,
    KafkaClientError,
    KafkaProduceResult,
)
from app.metrics import ServiceMetrics
from app.problems import Problem, problem_for, validation_details
from app.receipts import RecentReceipts

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
    """Writes validated audit events through `KafkaAuditLogger` and answers with receipts."""

    def __init__(
        self,
        audit_logger: KafkaAuditLogger,
        metrics: ServiceMetrics,
        *,
        timeout_s: float,
        receipts: RecentReceipts[AuditReceipt],
        backpressure: Backpressure,
    ) -> None:
        self._backpressure = backpressure
        self._logger = audit_logger
        self._metrics = metrics
        self._timeout_s = timeout_s
        self._receipts = receipts

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
    ) -> tuple[AuditReceipt, bool]:
        """`record()` unless the event (by `idempotency_key`, else by `event_id`) was acked
        within the window: then its first receipt, and nothing is written. Returns the receipt
        and whether it is a replay."""
        key = f"key:{idempotency_key}" if idempotency_key else f"event:{event.event_id}"
        return await self._receipts.once(
            key,
            lambda: self.record(event, wait=wait, headers=headers),
            keep=lambda receipt: receipt.status == "acked",
        )

    async def record(
        self, event: KafkaAuditEvent, *, wait: bool, headers: dict[str, str] | None = None
    ) -> AuditReceipt:
        """Write one event. Waits for acks=all unless `wait` is False; raises the library's
        errors (see `app.problems` for what each means to a client)."""
        self._backpressure.admit()
        settled = self._metrics.track_produce("audit")
        try:
            outcome = await self._logger.log_event(
                event,
                wait=wait,
                timeout_s=self._timeout_s,
                headers=headers,
                on_delivery=None if wait else settled,
            )
        except KafkaClientError as error:
            settled(None, error)
            raise
        if wait:
            settled(outcome.result, None)
        return self.receipt(event, outcome.result)

    def receipt(self, event: KafkaAuditEvent, result: KafkaProduceResult | None) -> AuditReceipt:
        """The receipt of `event`: acked with `result`, else queued."""
        return AuditReceipt(
            event_id=event.event_id,
            topic=self.topic,
            partition=result.partition if result else None,
            offset=result.offset if result else None,
            timestamp_utc=event.timestamp_utc,
            digest=event.digest(),
            status="acked" if result else "queued",
        )

    async def record_batch(
        self, items: list[Any], *, wait: bool, headers: dict[str, str] | None = None
    ) -> list[BatchItemResult]:
        """Validate each item on its own and write the valid ones concurrently (an event acked
        before is not written again); one result per item, in order. A bad or failed item does
        not affect the others."""
        results: list[BatchItemResult] = []
        pending: list[tuple[int, KafkaAuditEvent]] = []
        for index, item in enumerate(items):
            try:
                pending.append((index, KafkaAuditEvent.model_validate(item)))
            except ValidationError as exc:
                results.append(BatchItemResult(index=index, error=_invalid(exc)))
        outcomes = await asyncio.gather(
            *(self.record_once(event, wait=wait, headers=headers) for _, event in pending),
            return_exceptions=True,
        )
        for (index, _), outcome in zip(pending, outcomes, strict=True):
            if isinstance(outcome, tuple):
                results.append(BatchItemResult(index=index, receipt=outcome[0]))
            elif isinstance(outcome, KafkaClientError):
                results.append(BatchItemResult(index=index, error=_failed(problem_for(outcome))))
            elif isinstance(outcome, OverloadedError):
                overloaded = BatchItemError(status=503, code="overloaded", message=str(outcome))
                results.append(BatchItemResult(index=index, error=overloaded))
            else:
                raise outcome
        results.sort(key=lambda result: result.index)
        return results


def _invalid(exc: ValidationError) -> BatchItemError:
    message, details = validation_details(exc.errors())
    return BatchItemError(status=422, code="invalid_request", message=message, details=details)


def _failed(problem: Problem) -> BatchItemError:
    return BatchItemError(status=problem.status, code=problem.code, message=problem.message)
