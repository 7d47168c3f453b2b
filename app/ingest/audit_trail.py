"""Audit events from the API to Kafka, with a receipt for each: the service's side of
`KafkaAuditLogger` (timing, counting, per-item outcomes of a batch)."""

import asyncio
import logging
import struct
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from app.errors import (
    InvalidRequestError,
    OverloadedError,
    Problem,
    ServiceError,
    UnavailableError,
    problem_for,
)
from app.ingest.backpressure import Backpressure, Hold
from app.ingest.idempotency import ReceiptCodec, RecentReceipts, fingerprint
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
    outcome_of,
)
from app.kafka.serde import canonical_json
from app.metrics import ServiceMetrics
from app.runtime import RECORD_COST

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


class _PackedReceipts:
    """Receipts kept for retries, packed into about 190 bytes each (their JSON took 420, the
    model object 1,600): the digest and the chain link as their 32 raw bytes, the numbers in
    fixed fields, the topic and the writer as indexes into a small table (one audit topic, one
    writer per process: a few names at most). A receipt whose names would overflow the table is
    kept as its JSON instead."""

    _FIXED = struct.Struct("<BBBqqq32s32sH")  # topic, writer, status, partition, offset, seq,
    # digest, chain, length of the timestamp; then the timestamp and the event id (UTF-8)
    _STATUSES: tuple[ReceiptStatus, ...] = ("acked", "queued", "spooled")
    _MAX_NAMES = 255
    _PACKED, _JSON = b"P", b"J"

    def __init__(self) -> None:
        self._names: list[str] = []
        self._index: dict[str, int] = {}

    def _name(self, name: str) -> int | None:
        if (known := self._index.get(name)) is not None:
            return known
        if len(self._names) >= self._MAX_NAMES:
            return None
        self._index[name] = len(self._names)
        self._names.append(name)
        return self._index[name]

    def pack(self, receipt: AuditReceipt) -> bytes:
        """The receipt as bytes (see the class)."""
        topic, writer = self._name(receipt.topic), self._name(receipt.writer)
        if topic is None or writer is None:
            return self._JSON + AuditReceipt.__pydantic_serializer__.to_json(receipt)
        stamp = receipt.timestamp_utc.encode()
        fixed = self._FIXED.pack(
            topic,
            writer,
            self._STATUSES.index(receipt.status),
            -1 if receipt.partition is None else receipt.partition,
            -1 if receipt.offset is None else receipt.offset,
            receipt.seq,
            bytes.fromhex(receipt.digest.removeprefix("sha256:")),
            bytes.fromhex(receipt.chain.removeprefix("sha256:")),
            len(stamp),
        )
        return self._PACKED + fixed + stamp + receipt.event_id.encode()

    def unpack(self, stored: bytes) -> AuditReceipt:
        """The receipt `pack` made these bytes of."""
        if stored[:1] == self._JSON:
            return AuditReceipt.model_validate_json(stored[1:])
        end = 1 + self._FIXED.size
        topic, writer, status, partition, offset, seq, digest, chain, stamp_len = (
            self._FIXED.unpack(stored[1:end])
        )
        return AuditReceipt.model_construct(
            event_id=stored[end + stamp_len :].decode(),
            topic=self._names[topic],
            partition=None if partition < 0 else partition,
            offset=None if offset < 0 else offset,
            timestamp_utc=stored[end : end + stamp_len].decode(),
            digest="sha256:" + digest.hex(),
            writer=self._names[writer],
            seq=seq,
            chain="sha256:" + chain.hex(),
            status=self._STATUSES[status],
        )


def receipt_codec() -> ReceiptCodec[AuditReceipt]:
    """How a trail's kept receipts are stored: packed (see `_PackedReceipts`)."""
    packed = _PackedReceipts()
    return ReceiptCodec(pack=packed.pack, unpack=packed.unpack)


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
        caller: str = "",
    ) -> tuple[AuditReceipt, bool]:
        """`record()` unless the event (by `idempotency_key`, else by `event_id`, both within
        `caller`'s own namespace) was acked or spooled within the window: then its first
        receipt, and nothing is written; the same key with another body is
        `IdempotencyKeyReusedError`. Returns the receipt and whether it is a replay. With a
        `redactor`, the event is redacted first: the record, its digest and the receipt are of
        the redacted event."""
        sent = _request_of(event, caller, idempotency_key)
        if self._redactor is not None:
            event = await self._redactor.event_async(event)
            headers = {**(headers or {}), REDACTION_HEADER: self._redactor.stamp}
        key = sent.key
        return await self._receipts.once(
            key,
            lambda: self.record(event, wait=wait, headers=headers, receipt_key=key, held=held),
            fingerprint=sent.fingerprint,
            name=sent.name,
            field=sent.field,
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
        receipt_key = receipt_key or f"|event:{event.event_id}"
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
        caller: str = "",
    ) -> list[BatchItemResult]:
        """Write a batch: one result per item, in order, a receipt or an error; a bad or failed
        item does not affect the others, and an event acked before is not written again.

        In one pass (`_Batch`): every item is validated (and redacted), then the valid ones are
        handed to the producer in order, each taking the next chain position as it is queued,
        within one deadline for the whole batch, and with `wait` their acknowledgements are
        awaited together, up to the same deadline. No task, timeout or future of ours per
        event. Events with a history (an identical request in flight, an earlier attempt
        still unsettled, a receipt to replay) and everything while the spool holds records go
        the single-event way (`record_once()`), concurrently. Each record takes its bytes over
        from `held` (the request's). Event ids are `caller`'s own, as in `record_once()`."""
        return await _Batch(self, wait=wait, headers=headers, held=held, caller=caller).run(items)


@dataclass(frozen=True, slots=True)
class _Item:
    """One valid event of a batch that the batch writes itself, claimed on the receipts."""

    index: int
    event: KafkaAuditEvent
    key: str
    claim: "asyncio.Future[AuditReceipt]"


@dataclass(frozen=True, slots=True)
class _Queued:
    """An item handed to the producer: its chain position, its record, its delivery."""

    item: _Item
    place: ChainPosition
    record: AuditRecord
    future: "asyncio.Future[KafkaProduceResult]"
    outcome: "_Settlement"


class _Batch:
    """`AuditTrail.record_batch()` for one request: validate, queue, wait, answer."""

    def __init__(
        self,
        trail: AuditTrail,
        *,
        wait: bool,
        headers: dict[str, str] | None,
        held: Hold | None,
        caller: str,
    ) -> None:
        self._trail = trail
        self._caller = caller
        self._wait = wait
        self._headers = headers  # as the request gave them (the detour's)
        self._record_headers = headers  # on this batch's own records (plus redaction's)
        self._held = held
        self._deadline = 0.0
        self._results: dict[int, BatchItemResult] = {}

    async def run(self, items: list[Any]) -> list[BatchItemResult]:
        """Every item's result, in order."""
        trail = self._trail
        events: list[tuple[int, KafkaAuditEvent]] = []
        for index, item in enumerate(items):
            try:
                events.append((index, KafkaAuditEvent.model_validate(item)))
            except ValidationError as exc:
                self._results[index] = BatchItemResult(index=index, error=_invalid(exc))
        claimed, detour = await self._claim(events)
        # The detour first: its tasks run while this one queues and waits.
        detoured = asyncio.gather(
            *(
                trail.record_once(
                    event,
                    wait=self._wait,
                    headers=self._headers,
                    held=self._held,
                    caller=self._caller,
                )
                for _, event in detour
            ),
            return_exceptions=True,
        )
        try:
            await self._answer(await self._queue(claimed))
            for (index, _), outcome in zip(detour, await detoured, strict=True):
                if isinstance(outcome, tuple):
                    self._results[index] = BatchItemResult(index=index, receipt=outcome[0])
                elif isinstance(outcome, KafkaClientError | ServiceError):
                    self._results[index] = BatchItemResult(index=index, error=_failed_by(outcome))
                else:
                    raise outcome
        finally:
            detoured.cancel()  # done by now, unless this request was cancelled
            # Whatever stopped us (a cancelled request), no identical request waits forever.
            for item in claimed:
                trail._receipts.settle(item.key, item.claim, error=asyncio.CancelledError())
        return [self._results[index] for index in sorted(self._results)]

    async def _claim(
        self, events: list[tuple[int, KafkaAuditEvent]]
    ) -> tuple[list[_Item], list[tuple[int, KafkaAuditEvent]]]:
        """The events this batch writes itself (redacted, claimed on the receipts), and those
        that go the single-event way (as sent: `record_once()` redacts them)."""
        trail = self._trail
        spool = trail._spool
        if spool is not None and (spool.depth or not trail._logger.producer.started):
            return [], events  # the spool's order per key comes first
        redactor = trail._redactor
        if redactor is not None:
            self._record_headers = {**(self._headers or {}), REDACTION_HEADER: redactor.stamp}
        as_sent = [event for _, event in events]
        redacted = await redactor.events(as_sent) if redactor is not None else as_sent
        trail._receipts.expire()
        claimed: list[_Item] = []
        detour: list[tuple[int, KafkaAuditEvent]] = []
        for (index, event), written in zip(events, redacted, strict=True):
            sent = _request_of(event, self._caller, None)
            claim = trail._receipts.claim(sent.key, sent.fingerprint)
            if claim is None:
                detour.append((index, event))
            else:
                claimed.append(_Item(index, written, sent.key, claim))
        return claimed, detour

    async def _queue(self, claimed: list[_Item]) -> list[_Queued]:
        """Hand the claimed events to the producer in order, within one deadline; the ones it
        took. A refused or failed one gets its error and gives its chain position back."""
        budget_s = self._trail._budget_s
        self._deadline = asyncio.get_running_loop().time() + budget_s
        queued: list[_Queued] = []
        done = 0
        try:
            async with asyncio.timeout_at(self._deadline):
                for item in claimed:
                    if (sent := await self._send(item)) is not None:
                        queued.append(sent)
                    done += 1
        except TimeoutError:
            # Not queued in time (the producer's buffer stayed full): nothing of these was
            # sent; the one under way gave its position back.
            late = claimed[done:]
            if self._trail._spool is not None:
                await asyncio.gather(*(self._spool_unsent(item) for item in late))
            else:
                error = KafkaTimeoutError(
                    f"Kafka took more than {budget_s}s to take the record; nothing was written"
                )
                for item in late:
                    self._trail._metrics.track_produce("audit")(None, error)
                    self._fail(item, error)
        return queued

    async def _send(self, item: _Item) -> _Queued | None:
        trail = self._trail
        # The chain position and the record, then the bounds, then the producer: no await
        # before it, so a refused record is the chain's last and gives its position back.
        place, record = trail._build(item.event, self._record_headers)
        try:
            hold = trail._backpressure.admit(_size_of(record), held=self._held)
        except OverloadedError as exc:
            trail._give_back(place, "not queued")
            self._fail(item, exc)
            return None
        settled = trail._metrics.track_produce("audit")
        try:
            # Returns at once when the partition's batch has room: no wait per record.
            future = await trail._logger.send(record)
        except KafkaClientError as exc:
            hold.release()
            trail._give_back(place, f"not queued: {exc}")
            settled(None, exc)
            self._fail(item, exc)
            return None
        except BaseException:  # the batch's deadline (or the request) ended it: not sent
            hold.release()
            trail._give_back(place, "not queued")
            raise
        outcome = _Settlement(trail, place)

        def delivered(future: "asyncio.Future[KafkaProduceResult]") -> None:
            # One callback for all that waits on the record: its bytes, metrics and position.
            hold.release()
            fate = outcome_of(future)  # (unpacked in two steps: mypy infers it better)
            acked, failure = fate
            settled(acked, failure)
            outcome.delivered(acked, failure)

        future.add_done_callback(delivered)
        return _Queued(item, place, record, future, outcome)

    async def _answer(self, queued: list[_Queued]) -> None:
        """Receipts for the queued events: "queued" at once (`wait` False), else "acked" as
        Kafka acknowledges them, up to the batch's deadline; later ones spooled or failed."""
        trail = self._trail
        if not self._wait:
            for sent in queued:
                self._succeed(
                    sent.item, trail.receipt(sent.item.event, None, sent.place), keep=False
                )
            return
        if queued:
            # One wait for them all, up to the batch's deadline; it cancels none of them.
            remaining_s = self._deadline - asyncio.get_running_loop().time()
            await asyncio.wait([sent.future for sent in queued], timeout=max(remaining_s, 0.0))
        late: list[_Queued] = []
        for sent in queued:
            if not sent.future.done():
                late.append(sent)
                continue
            fate = outcome_of(sent.future)
            acked, failure = fate
            if failure is not None:
                self._fail(sent.item, failure)
            else:
                self._succeed(sent.item, trail.receipt(sent.item.event, acked, sent.place))
        if late:
            await asyncio.gather(*(self._late(sent) for sent in late))

    async def _late(self, sent: _Queued) -> None:
        # Not acknowledged in time, still in the producer: as AuditTrail.record() does.
        trail, item = self._trail, sent.item
        delivery = Delivery(trail.topic, sent.future, timeout_s=trail._budget_s)
        if trail._spool is not None:
            try:
                receipt = await trail._to_spool(
                    item.event, sent.record, sent.place, delivery=delivery, outcome=sent.outcome
                )
            except UnavailableError as exc:
                trail._keep_for_retries(item.event, sent.place, delivery, item.key)
                self._fail(item, exc)
                return
            self._succeed(item, receipt)
            return
        trail._keep_for_retries(item.event, sent.place, delivery, item.key)
        self._fail(
            item,
            KafkaTimeoutError(
                f"no acknowledgement from Kafka within {trail._budget_s}s; the record may still "
                "be stored"
            ),
        )

    async def _spool_unsent(self, item: _Item) -> None:
        trail = self._trail
        place, record = trail._build(item.event, self._record_headers)
        try:
            receipt = await trail._to_spool(item.event, record, place)
        except (KafkaClientError, ServiceError) as exc:
            self._fail(item, exc)
            return
        self._succeed(item, receipt)

    def _succeed(self, item: _Item, receipt: AuditReceipt, *, keep: bool = True) -> None:
        self._trail._receipts.settle(item.key, item.claim, receipt, keep=keep)
        self._results[item.index] = BatchItemResult(index=item.index, receipt=receipt)

    def _fail(self, item: _Item, error: KafkaClientError | ServiceError) -> None:
        self._trail._receipts.settle(item.key, item.claim, error=error)
        self._results[item.index] = BatchItemResult(index=item.index, error=_failed_by(error))


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
    # What the record costs in memory until Kafka settles it (app.runtime.RECORD_COST): key,
    # value and headers (the short text ones counted in characters, near enough).
    headers = sum(len(name) + len(value) for name, value in record.headers.items())
    return RECORD_COST * (len(record.key) + len(record.value) + headers)


def _failed_by(error: KafkaClientError | ServiceError) -> BatchItemError:
    return _failed(problem_for(error))


def _invalid(exc: ValidationError) -> BatchItemError:
    return _failed(problem_for(InvalidRequestError.from_errors(exc.errors())))


def _failed(problem: Problem) -> BatchItemError:
    # The contract's error fields as the HTTP answer would carry them, plus the status (a
    # batch answers 200 as a whole, so Retry-After has no header to go in).
    return BatchItemError(
        status=problem.status, code=problem.code, message=problem.message, details=problem.details
    )


@dataclass(frozen=True, slots=True)
class _Request:
    """What names an audit request for retries: its key, the fingerprint of its body, and
    how an error names the key (message and field)."""

    key: str
    fingerprint: bytes
    name: str
    field: str


def _request_of(event: KafkaAuditEvent, caller: str, idempotency_key: str | None) -> _Request:
    # Keys are the caller's own (IETF Idempotency-Key: unique per client): another caller's
    # event with the same id is its own record, not a replay. The fingerprint is of the fields
    # as sent (before redaction; not the event_id or time the service filled in, nor the
    # event_id that is the key itself), so a retry of the same body matches whatever the
    # service chose the first time.
    sent = event.model_fields_set
    if idempotency_key:
        body = canonical_json(event.model_dump(mode="json", include=sent))
        return _Request(
            f"{caller}|key:{idempotency_key}",
            fingerprint(body),
            f"Idempotency-Key {idempotency_key!r}",
            "header.idempotency-key",
        )
    body = canonical_json(event.model_dump(mode="json", include=sent - {"event_id"}))
    return _Request(
        f"{caller}|event:{event.event_id}",
        fingerprint(body),
        f"event_id {event.event_id!r}",
        "body.event_id",
    )
