"""A batch of audit events written in one pass (`record_batch`), on `AuditTrail`'s public
surface: the batch decides the order and the one deadline, the trail what each record costs,
where it is kept and what a retry finds, as for a single event.

Each item's outcome is a value: its receipt, or the error that refused it (the service's tree,
`app.errors`, or the library's); rendering it for a client is the API's business."""

import asyncio
from dataclasses import dataclass
from typing import Any, TypeAlias

from pydantic import ValidationError

from app.errors import InvalidRequestError, ServiceError, UnavailableError
from app.ingest.audit_trail import AuditTrail, Built, Queued
from app.ingest.backpressure import Hold
from app.ingest.receipts import AuditReceipt, request_of
from app.kafka import KafkaAuditEvent, KafkaClientError, KafkaTimeoutError

ItemError: TypeAlias = KafkaClientError | ServiceError
ItemOutcome: TypeAlias = AuditReceipt | ItemError


async def record_batch(
    trail: AuditTrail,
    items: list[Any],
    *,
    wait: bool,
    headers: dict[str, str] | None = None,
    held: Hold | None = None,
    caller: str = "",
) -> list[ItemOutcome]:
    """Write a batch on `trail`: one outcome per item, in order, a receipt or an error; a bad
    or failed item does not affect the others, and an event acked before is not written again.

    In one pass (`_Batch`): every item is validated (and redacted), then the valid ones are
    handed to the producer in order, each taking the next chain position as it is queued,
    within one deadline for the whole batch, and with `wait` their acknowledgements are
    awaited together, up to the same deadline. No task, timeout or future of ours per
    event. Events with a history (an identical request in flight, an earlier attempt
    still unsettled, a receipt to replay) and everything while the spool holds records go
    the single-event way (`record_once()`), concurrently. Each record takes its bytes over
    from `held` (the request's). Event ids are `caller`'s own, as in `record_once()`."""
    return await _Batch(trail, wait=wait, headers=headers, held=held, caller=caller).run(items)


@dataclass(frozen=True, slots=True)
class _Item:
    """One valid event of a batch that the batch writes itself, claimed on the receipts."""

    index: int
    event: KafkaAuditEvent
    key: str
    claim: "asyncio.Future[AuditReceipt]"


class _Batch:
    """`record_batch()` for one request: validate, queue, wait, answer."""

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
        self._results: dict[int, ItemOutcome] = {}

    async def run(self, items: list[Any]) -> list[ItemOutcome]:
        """Every item's outcome, in order."""
        trail = self._trail
        events: list[tuple[int, KafkaAuditEvent]] = []
        for index, item in enumerate(items):
            try:
                # The lean handler's events are validated already: validating an instance
                # again would run its model's checks again.
                event = (
                    item if type(item) is KafkaAuditEvent else KafkaAuditEvent.model_validate(item)
                )
                events.append((index, event))
            except ValidationError as exc:
                self._results[index] = InvalidRequestError.from_errors(exc.errors())
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
                    self._results[index] = outcome[0]
                elif isinstance(outcome, KafkaClientError | ServiceError):
                    self._results[index] = outcome
                else:
                    raise outcome
        finally:
            detoured.cancel()  # done by now, unless this request was cancelled
            # Whatever stopped us (a cancelled request), no identical request waits forever.
            for item in claimed:
                trail.receipts.settle(item.key, item.claim, error=asyncio.CancelledError())
        return [self._results[index] for index in sorted(self._results)]

    async def _claim(
        self, events: list[tuple[int, KafkaAuditEvent]]
    ) -> tuple[list[_Item], list[tuple[int, KafkaAuditEvent]]]:
        """The events this batch writes itself (redacted, claimed on the receipts), and those
        that go the single-event way (as sent: `record_once()` redacts them)."""
        trail = self._trail
        if trail.spool_first():
            return [], events  # the spool's order per key comes first
        as_sent = [event for _, event in events]
        redacted, self._record_headers = await trail.redact(as_sent, self._headers)
        trail.receipts.expire()
        claimed: list[_Item] = []
        detour: list[tuple[int, KafkaAuditEvent]] = []
        for (index, event), written in zip(events, redacted, strict=True):
            sent = request_of(event, self._caller, None)
            claim = trail.receipts.claim(sent.key, sent.fingerprint)
            if claim is None:
                detour.append((index, event))
            else:
                claimed.append(_Item(index, written, sent.key, claim))
        return claimed, detour

    async def _queue(self, claimed: list[_Item]) -> list[tuple[_Item, Queued]]:
        """Hand the claimed events to the producer in order, at once (prepared batches per
        partition), within one deadline; the ones it took. A refused or failed one gets its
        error; one not taken in time goes to `not_queued()` with its chain position."""
        self._deadline = asyncio.get_running_loop().time() + self._trail.budget_s
        if not claimed:
            return []
        sent = await self._trail.send_many(
            [item.event for item in claimed],
            self._record_headers,
            self._held,
            timeout_s=self._trail.budget_s,
        )
        queued: list[tuple[_Item, Queued]] = []
        late: list[tuple[_Item, Built]] = []
        for item, outcome in zip(claimed, sent, strict=True):
            if isinstance(outcome, Queued):
                queued.append((item, outcome))
            elif isinstance(outcome, Built):
                late.append((item, outcome))
            else:
                self._fail(item, outcome)
        if late:
            # Not queued in time (the producer's buffer stayed full): nothing of these was
            # sent. Backwards, so the chain can take back its last positions.
            await asyncio.gather(*(self._not_queued(item, built) for item, built in late[::-1]))
        return queued

    async def _answer(self, queued: list[tuple[_Item, Queued]]) -> None:
        """Receipts for the queued events: "queued" at once (`wait` False), else "acked" as
        Kafka acknowledges them, up to the batch's deadline; later ones spooled or failed."""
        trail = self._trail
        if not self._wait:
            for item, sent in queued:
                receipt = trail.receipt(item.event, None, sent.place)
                trail.keep_queued(receipt, sent, item.key)  # while claimed
                self._succeed(item, receipt, keep=False)
            return
        if queued:
            # One wait for them all, up to the batch's deadline; it cancels none of them.
            remaining_s = self._deadline - asyncio.get_running_loop().time()
            futures = [sent.delivery.future for _, sent in queued]
            await asyncio.wait(futures, timeout=max(remaining_s, 0.0))
        late: list[tuple[_Item, Queued]] = []
        for item, sent in queued:
            if not sent.delivery.done():
                late.append((item, sent))
                continue
            acked, failure = sent.delivery.outcome()
            if failure is not None:
                self._fail(item, failure)
            else:
                self._succeed(item, trail.receipt(item.event, acked, sent.place))
        if late:
            await asyncio.gather(*(self._late(item, sent) for item, sent in late))

    async def _late(self, item: _Item, sent: Queued) -> None:
        # Not acknowledged in time, still in the producer: as a single event's.
        try:
            receipt = await self._trail.after_timeout(sent, item.key)
        except (UnavailableError, KafkaTimeoutError) as exc:
            self._fail(item, exc)
            return
        self._succeed(item, receipt)

    async def _not_queued(self, item: _Item, built: Built) -> None:
        try:
            receipt = await self._trail.not_queued(
                item.event,
                self._record_headers,
                built=(built.place, built.record),
                settled=built.settled,
            )
        except (KafkaClientError, ServiceError) as exc:
            self._fail(item, exc)
            return
        self._succeed(item, receipt)

    def _succeed(self, item: _Item, receipt: AuditReceipt, *, keep: bool = True) -> None:
        self._trail.receipts.settle(item.key, item.claim, receipt, keep=keep)
        self._results[item.index] = receipt

    def _fail(self, item: _Item, error: ItemError) -> None:
        self._trail.receipts.settle(item.key, item.claim, error=error)
        self._results[item.index] = error
