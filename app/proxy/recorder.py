"""A proxied call's event on the audit trail, through the same write path as `POST /audit`
(`AuditTrail.record_once`: redaction, erasure, the chain, idempotency by event id), and the
receipt the answer carries.

Fail-closed (`record`): the caller waits for Kafka's acknowledgement (or the spool's commit) and
gets the write path's error when neither comes in time. Fail-open (`record_later`): the event is
written by a task of its own, retried with the same event id until the trail takes it (a retry
waits for an attempt still under way rather than write a second record); those still trying
when the service stops get until `close()`'s deadline."""

import asyncio
import json
import logging
from collections.abc import Coroutine
from typing import Final

from app.errors import ServiceError, problem_for
from app.ingest.audit_trail import AuditTrail
from app.ingest.receipts import AuditReceipt
from app.kafka import KafkaAuditEvent, KafkaClientError
from app.metrics import ServiceMetrics

logger = logging.getLogger(__name__)

# The statuses of the write path worth another try: the broker or the service busy or away.
_RETRYABLE: Final = frozenset({429, 502, 503, 504})
_FIRST_RETRY_S: Final = 0.25
_LAST_RETRY_S: Final = 5.0
RECEIPT_COMMENT: Final = "rg-receipt"


def proof_path(receipt: AuditReceipt) -> str:
    """Where the record's inclusion proof is served (GET /audit/proof, once a checkpoint
    covers it)."""
    return f"/audit/proof?writer={receipt.writer}&seq={receipt.seq}"


def receipt_headers(receipt: AuditReceipt) -> dict[str, str]:
    """The receipt as response headers (partition and offset once Kafka acknowledged)."""
    headers = {
        "x-rg-event-id": receipt.event_id,
        "x-rg-status": receipt.status,
        "x-rg-topic": receipt.topic,
        "x-rg-writer": receipt.writer,
        "x-rg-seq": str(receipt.seq),
        "x-rg-digest": receipt.digest,
        "x-rg-proof": proof_path(receipt),
    }
    if receipt.partition is not None and receipt.offset is not None:
        headers["x-rg-partition"] = str(receipt.partition)
        headers["x-rg-offset"] = str(receipt.offset)
    return headers


def receipt_comment(receipt: AuditReceipt | None, event_id: str) -> bytes:
    """The receipt as an SSE comment line (`: rg-receipt {json}`), which SSE clients skip; for
    a record still on its way, its event id and status `queued`."""
    if receipt is None:
        payload: dict[str, object] = {"event_id": event_id, "status": "queued"}
    else:
        payload = {**receipt.model_dump(mode="json"), "proof": proof_path(receipt)}
    return f": {RECEIPT_COMMENT} {json.dumps(payload, separators=(',', ':'))}\n\n".encode()


class ProxyRecorder:
    """Writes the proxy's events to the audit trail, fail-closed or fail-open."""

    def __init__(self, trail: AuditTrail, metrics: ServiceMetrics) -> None:
        self._trail = trail
        self._metrics = metrics
        self._pending: set[asyncio.Task[None]] = set()

    @property
    def pending(self) -> int:
        """Fail-open events not on the trail yet."""
        return len(self._pending)

    async def record(self, event: KafkaAuditEvent, caller: str) -> AuditReceipt:
        """Write `event` and wait for the trail to take it: its receipt (acked, or spooled with
        a spool). Raises the write path's errors (`ServiceError`, `KafkaClientError`).

        Cancelled while waiting (the app went away, its request ended), the write goes on and
        is retried in the background as a fail-open one is: the upstream answered, so the call
        is recorded whether or not the app stayed for the receipt."""
        loop = asyncio.get_running_loop()
        attempt = loop.create_task(self._trail.record_once(event, wait=True, caller=caller))
        try:
            receipt, _ = await asyncio.shield(attempt)
        except asyncio.CancelledError:
            self._start(self._until_recorded(event, caller, attempt))
            raise
        return receipt

    def record_later(self, event: KafkaAuditEvent, caller: str) -> None:
        """Write `event` in the background, retrying until the trail takes it."""
        self._start(self._until_recorded(event, caller))

    def _start(self, writing: Coroutine[None, None, None]) -> None:
        task = asyncio.get_running_loop().create_task(writing)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _until_recorded(
        self,
        event: KafkaAuditEvent,
        caller: str,
        attempt: "asyncio.Task[tuple[AuditReceipt, bool]] | None" = None,
    ) -> None:
        pause = _FIRST_RETRY_S
        while True:
            try:
                # An attempt under way (its caller gone) is awaited before any retry.
                if attempt is not None:
                    await attempt
                else:
                    await self._trail.record_once(event, wait=True, caller=caller)
                return
            except (ServiceError, KafkaClientError) as exc:
                problem = problem_for(exc)
                if problem.status not in _RETRYABLE:
                    # The trail refuses this event for good (as it would refuse it over
                    # POST /audit): said once, with the event id only.
                    logger.warning(
                        "proxy: event %s not recorded: %s (%s)",
                        event.event_id,
                        problem.code,
                        problem.message,
                    )
                    self._metrics.proxied.labels("any", "not_recorded").inc()
                    return
            attempt = None
            await asyncio.sleep(pause)
            pause = min(pause * 2, _LAST_RETRY_S)

    async def close(self, timeout_s: float) -> None:
        """Give the fail-open events still trying up to `timeout_s`; those left are logged as
        lost."""
        if not self._pending:
            return
        _, left = await asyncio.wait(set(self._pending), timeout=timeout_s)
        for task in left:
            task.cancel()
        if left:
            logger.warning("proxy: %d fail-open event(s) not recorded before shutdown", len(left))
