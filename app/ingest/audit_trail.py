"""Audit events from the API to Kafka, with a receipt for each: the service's side of
`KafkaAuditLogger` (timing, counting, what a retry finds).

The receipt and its codec are `app.ingest.receipts`'; a batch (`app.ingest.audit_batch`) orders
and times its events itself on this module's public surface: `spool_first`, `redact`, `send`,
`not_queued`, `after_timeout`, `receipt` and the kept `receipts`, the same decisions a single
event takes."""

import asyncio
import logging
from dataclasses import dataclass

from app.errors import OverloadedError, UnavailableError
from app.ingest.backpressure import Backpressure, Hold
from app.ingest.idempotency import Attempt, RecentReceipts
from app.ingest.receipts import AuditReceipt, ReceiptStatus, request_of
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
from app.kafka.audit import EVENT_ID_HEADER
from app.kafka.delivery import DeliveryCallback
from app.kafka.record_batches import Queuing
from app.metrics import ServiceMetrics
from app.privacy.erasure import ERASURE_HEADER, Erasure
from app.runtime import RECORD_COST

logger = logging.getLogger(__name__)


class AuditTrail:
    """Writes validated audit events through `KafkaAuditLogger` and answers with receipts.

    With a `spool`, an event Kafka does not acknowledge within `spool_after_s` (or while the
    producer is not connected, or while earlier events still wait in the spool, to keep the
    order per key) is synced to the spool instead and answered "spooled"; the forwarder
    sends it later. Without one, such an event is a `KafkaTimeoutError`: a retry with the
    same `event_id` waits for the first attempt rather than writing a second record. With a
    spool, the records answered 202 "queued" that Kafka has not acknowledged when the service
    stops go to the spool too (`spool_queued()`).
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
        erasure: Erasure | None = None,
    ) -> None:
        self.chain = chain or ChainWriter()
        # RG_ERASURE=on: fields sealed under their subject's key after redaction.
        self._erasure = erasure
        # The receipts kept for retries (a batch claims and settles its events on them).
        self.receipts = receipts
        self._redactor = redactor
        self._backpressure = backpressure
        self._logger = audit_logger
        self._metrics = metrics
        self._spool = spool
        self._budget_s = min(spool_after_s, timeout_s) if spool is not None else timeout_s
        # With a spool, the records answered 202 "queued" until Kafka settles them, by chain
        # position: for `spool_queued()` at shutdown. (The record's bytes are counted until it
        # settles either way: RECORD_COST.)
        self._answered: dict[int, tuple[AuditRecord, Delivery, _Settlement]] = {}

    @property
    def topic(self) -> str:
        """The audit topic."""
        return self._logger.topic

    @property
    def budget_s(self) -> float:
        """How long a record may take to be queued and acknowledged before it is spooled (with
        a spool) or its client is told to retry: one event's deadline, or a whole batch's."""
        return self._budget_s

    def spool_first(self) -> bool:
        """Whether events go straight to the spool: while it holds records (their order per
        key comes first) or while the producer is not connected."""
        spool = self._spool
        return spool is not None and bool(spool.depth or not self._logger.producer.started)

    async def redact(
        self, events: list[KafkaAuditEvent], headers: dict[str, str] | None
    ) -> tuple[list[KafkaAuditEvent], dict[str, str] | None]:
        """`events` as they are written (redacted, with a redactor; then sealed, with erasure
        on: before the canonical JSON, so digest, chain and leaf cover the sealed value) and
        the headers their records carry (with the redaction's stamp, the erasure's version).
        Sealing raises `KeyStoreUnavailableError` rather than pass anything on unsealed."""
        redactor = self._redactor
        if redactor is not None:
            events = await redactor.events(events)
            headers = {**(headers or {}), REDACTION_HEADER: redactor.stamp}
        if self._erasure is not None:
            events = await self._erasure.seal_events(events)
            headers = {**(headers or {}), ERASURE_HEADER: "v1"}
        return events, headers

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
        sent = request_of(event, caller, idempotency_key)
        [event], headers = await self.redact([event], headers)
        key = sent.key
        return await self.receipts.once(
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
        receipt_key = receipt_key or f"|event:{event.event_id}"
        # An earlier attempt its client gave up on (or answered 202) may still be stored: wait
        # for that one. Before a position is taken, and before the spool: a retry adds
        # nothing to the chain.
        earlier = await self.receipts.earlier(receipt_key, timeout_s=self._budget_s)
        if earlier is not None:
            return earlier
        if self.spool_first():
            place, record = self._build(event, headers)
            return await self._to_spool(event, record, place)
        place, record = self._build(event, headers)
        settled = self._metrics.track_produce("audit")
        try:
            # admit() refuses with no await after _build(): a refused record is always the
            # chain's last and gives its position back.
            delivery = await self._backpressure.hand_over(
                _size_of(record), held, lambda: self._logger.queue(record, timeout_s=self._budget_s)
            )
        except KafkaTimeoutError:  # not queued in time: nothing was sent
            return await self.not_queued(event, headers, built=(place, record), settled=settled)
        except KafkaClientError as exc:
            self._give_back(place, f"not queued: {exc}")
            settled(None, exc)
            raise
        except BaseException:  # refused (overloaded) or cancelled: nothing was sent
            self._give_back(place, "not queued")
            raise
        # One callback for what waits on the record: its metrics, then its position.
        outcome = _Settlement(self, place, settled)
        delivery.add_done_callback(outcome.delivered)
        if not wait:
            receipt = self.receipt(event, None, place)
            self.keep_queued(receipt, Queued(event, place, record, delivery, outcome), receipt_key)
            return receipt
        try:
            result = await delivery.wait()
        except KafkaTimeoutError:
            if delivery.done():
                raise  # Kafka failed it (with a timeout): no attempt left to wait for
            return await self.after_timeout(
                Queued(event, place, record, delivery, outcome), receipt_key
            )
        return self.receipt(event, result, place)

    async def send(
        self, event: KafkaAuditEvent, headers: dict[str, str] | None, held: Hold | None
    ) -> "Queued":
        """Hand `event` to the producer at once, a batch's way: no wait for room and no
        deadline of its own (the caller's bounds it). Its bytes are taken over from `held` and
        counted until Kafka settles it. Raises `OverloadedError` or the library's error with
        its chain position given back; cancelled (the caller's deadline), it gives it back
        too."""
        # The chain position and the record, then the bounds, then the producer: no await
        # before it, so a refused record is the chain's last and gives its position back.
        place, record = self._build(event, headers)
        try:
            hold = self._backpressure.admit(_size_of(record), held=held)
        except OverloadedError:
            self._give_back(place, "not queued")
            raise
        settled = self._metrics.track_produce("audit")
        try:
            # Returns at once when the partition's batch has room: no wait per record.
            future = await self._logger.send(record)
        except KafkaClientError as exc:
            hold.release()
            self._give_back(place, f"not queued: {exc}")
            settled(None, exc)
            raise
        except BaseException:  # the caller's deadline (or the request) ended it: not sent
            hold.release()
            self._give_back(place, "not queued")
            raise
        return self._queued(Built(event, place, record, hold, settled), future)

    async def send_many(
        self,
        events: list[KafkaAuditEvent],
        headers: dict[str, str] | None,
        held: Hold | None,
        *,
        timeout_s: float,
    ) -> "list[Queued | Built | OverloadedError | KafkaClientError]":
        """`send()` of many events at once, in prepared batches per partition (the producer's
        `send_batch`), all within `timeout_s`: per event its `Queued`, its error (its chain
        position given back), or its `Built` record when the producer did not take it in
        time (nothing was sent: for `not_queued()`). Cancelled, the records not yet queued
        give their positions back."""
        results: list[Queued | Built | OverloadedError | KafkaClientError] = []
        built: list[tuple[int, Built]] = []
        for event in events:  # no await in between: positions follow the events' order
            place, record = self._build(event, headers)
            try:
                hold = self._backpressure.admit(_size_of(record), held=held, ahead=len(built))
            except OverloadedError as exc:
                self._give_back(place, "not queued")
                results.append(exc)
                continue
            one = Built(event, place, record, hold, self._metrics.track_produce("audit"))
            built.append((len(results), one))
            results.append(one)
        if not built:
            return results
        outcomes: list[Queuing] = [None] * len(built)
        cancelled = True
        try:
            await self._logger.send_batch(
                [one.record for _, one in built], outcomes, timeout_s=timeout_s
            )
            cancelled = False
        finally:
            # Backwards: the chain takes back its last positions, voids the others.
            for (index, one), outcome in zip(reversed(built), reversed(outcomes), strict=True):
                if isinstance(outcome, asyncio.Future):
                    results[index] = self._queued(one, outcome)
                    continue
                one.hold.release()
                if outcome is not None:
                    self._give_back(one.place, f"not queued: {outcome}")
                    one.settled(None, outcome)
                    results[index] = outcome
                elif cancelled:
                    self._give_back(one.place, "not queued")
                # else: not queued in time, for not_queued() to decide
        return results

    def _queued(self, built: "Built", future: "asyncio.Future[KafkaProduceResult]") -> "Queued":
        hold, settled = built.hold, built.settled
        outcome = _Settlement(self, built.place)

        def delivered(future: "asyncio.Future[KafkaProduceResult]") -> None:
            # One callback for all that waits on the record: its bytes, metrics and position.
            hold.release()
            fate = outcome_of(future)  # (unpacked in two steps: mypy infers it better)
            acked, failure = fate
            settled(acked, failure)
            outcome.delivered(acked, failure)

        future.add_done_callback(delivered)
        delivery = Delivery(self.topic, future, timeout_s=self._budget_s)
        return Queued(built.event, built.place, built.record, delivery, outcome)

    async def not_queued(
        self,
        event: KafkaAuditEvent,
        headers: dict[str, str] | None,
        *,
        built: tuple[ChainPosition, AuditRecord] | None = None,
        settled: DeliveryCallback | None = None,
    ) -> AuditReceipt:
        """The producer did not take `event` within the budget, so nothing of it was sent: its
        receipt "spooled" with a spool (its record `built` before, else built now), else
        `KafkaTimeoutError`, its position (if `built`) given back and the failure counted (on
        `settled`, the record's metrics, when given). Raises the spool's errors too."""
        if self._spool is not None:
            place, record = built or self._build(event, headers)
            return await self._to_spool(event, record, place)
        if built is not None:
            self._give_back(built[0], "not queued in time")
        error = KafkaTimeoutError(
            f"Kafka took more than {self._budget_s}s to take the record; nothing was written"
        )
        (settled or self._metrics.track_produce("audit"))(None, error)
        raise error from None

    async def after_timeout(self, queued: "Queued", key: str) -> AuditReceipt:
        """`queued` was not acknowledged within the budget and is still in the producer: its
        receipt "spooled" with a spool (the attempt under way still counts), else
        `KafkaTimeoutError`. Unless it was spooled, a retry under `key` waits for the attempt
        under way instead of writing a second record. Raises the spool's `UnavailableError`
        when the spool does not take it."""
        event, place, delivery = queued.event, queued.place, queued.delivery
        if self._spool is not None:
            try:
                return await self._to_spool(
                    event, queued.record, place, delivery=delivery, outcome=queued.outcome
                )
            except UnavailableError:
                # Not spooled, but still in the producer: a retry waits for that attempt.
                self._keep_for_retries(event, place, delivery, key)
                raise
        self._keep_for_retries(event, place, delivery, key)
        raise KafkaTimeoutError(
            f"no acknowledgement from Kafka within {self._budget_s}s; the record may still "
            "be stored"
        ) from None

    def _build(
        self, event: KafkaAuditEvent, headers: dict[str, str] | None
    ) -> tuple[ChainPosition, AuditRecord]:
        # The next chain position and the record that carries it, with no await in between:
        # positions follow one another in the order records are built.
        # A framed value's schema id goes into its leaf: the digest leaves the frame out.
        place = self.chain.append(
            event.digest().removeprefix("sha256:"), self._logger.frame_schema_id
        )
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

    def keep_queued(self, receipt: AuditReceipt, queued: "Queued", key: str) -> None:
        """A record answered with its "queued" `receipt` (`wait` False): until Kafka settles
        it, a retry under `key` (its 202 lost on the way) waits for it instead of writing a
        second record; acknowledged, its receipt is kept for retries. Called while the request
        under `key` is in flight (it keeps that request's fingerprint)."""
        # Made from the receipt, not the event: the event's text is not kept meanwhile. Settled
        # by the record's own callback (`_Settlement`), not one more.
        attempt = self.receipts.hold_attempt(
            key, queued.delivery, receipt.acked, name=f"event {receipt.event_id}"
        )
        if queued.delivery.done():  # its callback ran already (a batch's earlier records)
            self.receipts.attempt_settled(key, attempt, queued.delivery.outcome()[0])
            return
        queued.outcome.retries = (key, attempt)
        if self._spool is not None:
            # Kept without its event (the text is in the record's bytes): the event's model is
            # not held after the 202.
            self._answered[queued.place.seq] = (queued.record, queued.delivery, queued.outcome)

    async def spool_queued(self) -> int:
        """At shutdown, after the producer's flush: the records answered 202 "queued" that
        Kafka has not settled go to the spool (with one), so the next start sends them, rather
        than being dropped with the producer; how many the spool took. Each stays tied to its
        delivery, so one acknowledged after all (the producer's last flush) leaves the spool
        again."""
        if self._spool is None or not self._answered:
            return 0
        queued = [(seq, *held) for seq, held in self._answered.items() if not held[1].done()]
        self._answered.clear()
        for _, _, _, outcome in queued:
            outcome.spooling = True
        # In chain order (the order they were answered): the spool keeps it, per key too.
        appended = await asyncio.gather(
            *(
                self._spool.append(
                    record,
                    event_id=record.headers.get(EVENT_ID_HEADER, ""),
                    delivery=delivery.future,
                )
                for _, record, delivery, _ in queued
            ),
            return_exceptions=True,
        )
        taken = 0
        for (seq, _, _, outcome), result in zip(queued, appended, strict=True):
            if isinstance(result, BaseException):
                outcome.spool_failed()
                logger.error(
                    "audit chain position %d was answered 202, is not acknowledged, and the "
                    "spool did not take it: %s",
                    seq,
                    result,
                )
            else:
                taken += 1
                self.chain.settled(seq, stored=True)
        self._metrics.spooled.inc(taken)
        return taken

    def settled_queued(self, place: ChainPosition) -> None:
        """The record at `place`, answered 202 "queued", is settled: no longer for the spool."""
        self._answered.pop(place.seq, None)

    def _keep_for_retries(
        self, event: KafkaAuditEvent, place: ChainPosition, delivery: Delivery, key: str
    ) -> None:
        self.receipts.keep_for_retries(
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
        if delivery is None:
            # Never sent yet: one the producer will not take is refused now, as it is without
            # a spool. Spooled, the forwarder could never send it, and every record spooled
            # after it would wait behind it.
            try:
                self._logger.check_size(record)
            except KafkaClientError:
                self._give_back(place, "too large for the producer")
                raise
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
        # Built of values made here (the digest, the chain's hex): no validation per receipt.
        return AuditReceipt.made(
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


@dataclass(frozen=True, slots=True)
class Built:
    """A record of a batch, built and admitted, before the producer takes it: its event,
    chain position, record, bytes held and metrics callback."""

    event: KafkaAuditEvent
    place: ChainPosition
    record: AuditRecord
    hold: Hold
    settled: DeliveryCallback


@dataclass(frozen=True, slots=True)
class Queued:
    """A record handed to the producer: its event, chain position and record, its delivery,
    and what becomes of its position (`_Settlement`)."""

    event: KafkaAuditEvent
    place: ChainPosition
    record: AuditRecord
    delivery: Delivery
    outcome: "_Settlement"


class _Settlement:
    """What becomes of a queued record's chain position: stored once Kafka acknowledges it or
    the spool commits it; lost when Kafka fails it and it is not, or could not be, spooled."""

    def __init__(
        self, trail: AuditTrail, place: ChainPosition, metrics: DeliveryCallback | None = None
    ) -> None:
        self._trail = trail
        self._place = place
        self._metrics = metrics
        self._failed = False
        self.spooling = False
        # A queued record's attempt, kept for retries under its key (`keep_queued`).
        self.retries: tuple[str, Attempt[AuditReceipt]] | None = None

    def delivered(self, result: KafkaProduceResult | None, error: KafkaClientError | None) -> None:
        """The delivery callback: the record's metrics (when given), its chain position, and
        the retries waiting for it."""
        if self._metrics is not None:
            self._metrics(result, error)
        if error is None:
            self._trail.chain.settled(self._place.seq, stored=True)
        elif self.spooling:
            self._failed = True  # the spool decides
        else:
            self._trail.settle_lost(self._place, f"Kafka failed it: {error}")
        if self.retries is not None:
            self._trail.receipts.attempt_settled(*self.retries, result)
            self._trail.settled_queued(self._place)

    def spool_failed(self) -> None:
        """The spool did not take it: Kafka's outcome decides (or decided)."""
        self.spooling = False
        if self._failed:
            self._trail.settle_lost(self._place, "Kafka failed it and the spool did not take it")


def _size_of(record: AuditRecord) -> int:
    # What the record costs in memory until Kafka settles it (app.runtime.RECORD_COST): key,
    # value and headers (the short text ones counted in characters, near enough).
    headers = sum(map(len, record.headers)) + sum(map(len, record.headers.values()))
    return RECORD_COST * (len(record.key) + len(record.value) + headers)
