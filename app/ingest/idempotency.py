"""Retry de-duplication, all of it: a retry of an audit event writes nothing new.

A client that did not see its answer (a timeout, a dropped connection) sends the same event
again. Three cases, one place:
- the first attempt was acknowledged (or spooled) within the window: the retry gets its receipt
  back (`once`, `remember`);
- the first attempt is still being answered: the retry waits for it (`once`);
- the first attempt's client gave up waiting while the record was still in the producer: the
  record may yet be stored, so the retry waits for that delivery instead of writing a second
  record (`keep_for_retries`, `earlier`); acknowledged later, its receipt is remembered.

A key names one request: each is kept with the request's `fingerprint`, and the same key
with another fingerprint (another body sent under a key already used) is refused, 422
`idempotency_key_reused`, rather than answered with a receipt for something else. Scoping
keys by caller is the key's business (`app.ingest.receipts.request_of` prefixes the caller).
"""

import asyncio
import collections
import hashlib
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from app.errors import IdempotencyKeyReusedError
from app.kafka import Delivery, KafkaProduceResult, KafkaTimeoutError

Receipt = TypeVar("Receipt")

FINGERPRINT_BYTES = 16
# A packed receipt's expiry time (monotonic seconds), first in its bytes.
_EXPIRY = struct.Struct("<d")
# For callers that bind nothing to their keys: every request under a key is the same one.
NO_FINGERPRINT = bytes(FINGERPRINT_BYTES)


def fingerprint(request: bytes) -> bytes:
    """A request's fingerprint: 128 bits of SHA-256, enough to tell two bodies apart, small
    enough to keep beside tens of thousands of receipts. (SHA-256 rather than BLAKE2b: with
    the processor's SHA instructions, which OpenSSL uses, it hashes an event in half the time.)"""
    return hashlib.sha256(request).digest()[:FINGERPRINT_BYTES]


class Attempt(Generic[Receipt]):
    """A delivery its client stopped waiting for: how to make its receipt, and its name."""

    # A plain class: one is made per record answered 202, and a frozen dataclass's
    # __init__ (a setattr call per field) cost five times as much.
    __slots__ = ("delivery", "fingerprint", "name", "receipt")

    def __init__(
        self,
        delivery: Delivery,
        receipt: Callable[[KafkaProduceResult], Receipt],
        name: str,
        fingerprint: bytes,
    ) -> None:
        self.delivery = delivery
        self.receipt = receipt
        self.name = name
        self.fingerprint = fingerprint


@dataclass(frozen=True)
class ReceiptCodec(Generic[Receipt]):
    """How kept receipts are stored. Tens of thousands wait for a retry that mostly never
    comes: packed into one bytes object each they take about a third of the memory of a model
    object, and the garbage collector does not walk them; a replay unpacks one."""

    pack: Callable[[Receipt], bytes]
    unpack: Callable[[bytes], Receipt]


class RecentReceipts(Generic[Receipt]):
    """Acknowledged receipts by idempotency key, kept `window_s` seconds and at most
    `max_entries` (the oldest go first), so memory stays bounded whatever clients send; and the
    deliveries their clients stopped waiting for, until they settle (bounded by the producer's
    in-flight bound). With a `codec`, kept receipts are stored packed."""

    def __init__(
        self,
        *,
        window_s: float,
        max_entries: int,
        clock: Callable[[], float] = time.monotonic,
        codec: ReceiptCodec[Receipt] | None = None,
    ) -> None:
        self._window_s = window_s
        self._max_entries = max_entries
        self._clock = clock
        self._codec = codec
        # In the order kept (oldest first). Packed (with a codec): one bytes object, the
        # expiry time (`_EXPIRY`), the fingerprint, then the receipt; else (expiry,
        # (fingerprint, receipt)): a tuple and a float beside each packed receipt were a
        # fifth of their memory. An ordered dict, not a plain one: taking the oldest out of a
        # plain dict skips every entry deleted before it (until the dict is rebuilt), which
        # made each new receipt cost tens of microseconds once 50,000 were kept.
        self._done: collections.OrderedDict[str, bytes | tuple[float, tuple[bytes, Receipt]]] = (
            collections.OrderedDict()
        )
        self._in_flight: dict[str, tuple[asyncio.Future[Receipt], bytes]] = {}
        self._unsettled: dict[str, Attempt[Receipt]] = {}

    def __len__(self) -> int:
        return len(self._done)

    async def once(
        self,
        key: str,
        produce: Callable[[], Awaitable[Receipt]],
        *,
        fingerprint: bytes = NO_FINGERPRINT,
        name: str | None = None,
        field: str = "",
        keep: Callable[[Receipt], bool] = lambda _: True,
    ) -> tuple[Receipt, bool]:
        """`(receipt, replayed)`: the receipt kept for `key`, or the one of an identical request
        in flight, or else `produce()`'s, kept when `keep(receipt)` says so (e.g. acked only).
        A failure is not kept: the next attempt produces again. `IdempotencyKeyReusedError`
        (naming `name`, or the key, and `field`) when `key` is known with another
        `fingerprint`."""
        self._expire()
        if (kept := self._done.get(key)) is not None:
            kept_print, receipt = self._unpacked(kept)
            self._check(kept_print, fingerprint, name or key, field)
            return receipt, True
        if (pending := self._in_flight.get(key)) is not None:
            self._check(pending[1], fingerprint, name or key, field)
            try:
                return await asyncio.shield(pending[0]), True
            except Exception:  # noqa: S110 - the first attempt failed: make our own below
                pass
            except asyncio.CancelledError:
                if not pending[0].cancelled():
                    raise  # it is this request that is being cancelled
        if (attempt := self._unsettled.get(key)) is not None:
            self._check(attempt.fingerprint, fingerprint, name or key, field)
        return await self._produce(key, produce, keep, fingerprint), False

    @staticmethod
    def _check(kept: bytes, sent: bytes, name: str, field: str) -> None:
        if kept != sent:
            message = (
                f"{name} was already used for a different request within the idempotency "
                "window; a retry must repeat the request as sent, a new request needs a new one"
            )
            raise IdempotencyKeyReusedError(
                message, details=[{"field": field, "message": "already used for another request"}]
            )

    async def _produce(
        self,
        key: str,
        produce: Callable[[], Awaitable[Receipt]],
        keep: Callable[[Receipt], bool],
        fingerprint: bytes,
    ) -> Receipt:
        future: asyncio.Future[Receipt] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = (future, fingerprint)
        try:
            receipt = await produce()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning without waiters
            raise
        finally:
            if (current := self._in_flight.get(key)) is not None and current[0] is future:
                del self._in_flight[key]
        future.set_result(receipt)
        if keep(receipt):
            self.remember(key, receipt, fingerprint)
        return receipt

    def claim(
        self, key: str, fingerprint: bytes = NO_FINGERPRINT
    ) -> "asyncio.Future[Receipt] | None":
        """For a caller that produces many at once without awaiting each (a batch): None when
        `key` has a history (a receipt kept, a request in flight, an earlier attempt still
        unsettled), and then `once()` is the way (it also refuses another fingerprint); else a
        future registered as the request in flight under `key`, so identical requests wait for
        it. The caller settles it with `settle()`, whatever happens."""
        if key in self._done or key in self._in_flight or key in self._unsettled:
            return None
        future: asyncio.Future[Receipt] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = (future, fingerprint)
        return future

    def settle(
        self,
        key: str,
        future: "asyncio.Future[Receipt]",
        receipt: Receipt | None = None,
        *,
        error: BaseException | None = None,
        keep: bool = True,
    ) -> None:
        """End what `claim()` began: `receipt` (kept when `keep`) or `error` (not kept, the next
        attempt produces again; a `CancelledError` cancels it)."""
        sent = NO_FINGERPRINT
        if (current := self._in_flight.get(key)) is not None and current[0] is future:
            sent = current[1]
            del self._in_flight[key]
        if future.done():
            return
        if isinstance(error, asyncio.CancelledError):
            future.cancel()
        elif error is not None:
            future.set_exception(error)
            future.exception()  # retrieved: no "never retrieved" warning without waiters
        elif receipt is not None:
            future.set_result(receipt)
            if keep:
                self.remember(key, receipt, sent)

    def expire(self) -> None:
        """Forget the receipts whose window is over (`once()` does it on every call)."""
        self._expire()

    def remember(self, key: str, receipt: Receipt, fingerprint: bytes = NO_FINGERPRINT) -> None:
        """Keep `receipt` for `key` and the request it answers (e.g. a record acknowledged
        after its client gave up)."""
        expires = self._clock() + self._window_s
        self._done[key] = (
            (expires, (fingerprint, receipt))
            if self._codec is None
            else _EXPIRY.pack(expires) + fingerprint + self._codec.pack(receipt)
        )
        self._done.move_to_end(key)  # kept again: it goes last
        while len(self._done) > self._max_entries:
            self._done.popitem(last=False)

    def keep_for_retries(
        self,
        key: str,
        delivery: Delivery,
        receipt: Callable[[KafkaProduceResult], Receipt],
        *,
        name: str,
    ) -> None:
        """`delivery` was not acknowledged in time and its client stopped waiting: until it
        settles, `earlier(key)` waits for it; once Kafka acknowledges it, `receipt(result)` is
        remembered for `key`. `name` says what it is in errors (e.g. "event <id>"). Called
        while producing under `key` (`once()`, `claim()`): the attempt keeps that request's
        fingerprint."""
        attempt = self.hold_attempt(key, delivery, receipt, name=name)
        delivery.add_done_callback(lambda result, _: self.attempt_settled(key, attempt, result))

    def hold_attempt(
        self,
        key: str,
        delivery: Delivery,
        receipt: Callable[[KafkaProduceResult], Receipt],
        *,
        name: str,
    ) -> "Attempt[Receipt]":
        """`keep_for_retries()` for a caller that already has a callback on `delivery`: it
        calls `attempt_settled()` from there (a callback less per record)."""
        pending = self._in_flight.get(key)
        attempt = Attempt(delivery, receipt, name, pending[1] if pending else NO_FINGERPRINT)
        self._unsettled[key] = attempt
        return attempt

    def attempt_settled(
        self, key: str, attempt: "Attempt[Receipt]", result: KafkaProduceResult | None
    ) -> None:
        """`attempt`'s delivery settled: no more waiting for it; acknowledged (`result`), its
        receipt is remembered for `key`."""
        if self._unsettled.get(key) is attempt:
            del self._unsettled[key]
        if result is not None:
            self.remember(key, attempt.receipt(result), attempt.fingerprint)

    async def earlier(self, key: str, *, timeout_s: float) -> Receipt | None:
        """None when no earlier attempt under `key` is still under way. Else that attempt's
        record may still be stored, so wait for it (up to `timeout_s`) rather than write a
        second: its receipt once acknowledged, its error when it failed, `KafkaTimeoutError`
        when it is still not acknowledged."""
        attempt = self._unsettled.get(key)
        if attempt is None:
            return None
        try:
            result = await attempt.delivery.wait(timeout_s)
        except KafkaTimeoutError:
            if attempt.delivery.done():
                raise  # the attempt itself failed with a timeout
            raise KafkaTimeoutError(
                f"an earlier attempt of {attempt.name} is still not acknowledged after "
                f"another {timeout_s}s"
            ) from None
        return attempt.receipt(result)

    def kept_bytes(self, key: str) -> int:
        """How many bytes the packed receipt kept for `key` takes (its fingerprint included);
        0 without a codec or a receipt."""
        kept = self._done.get(key)
        return len(kept) - _EXPIRY.size if isinstance(kept, bytes) else 0

    def _unpacked(
        self, stored: "bytes | tuple[float, tuple[bytes, Receipt]]"
    ) -> tuple[bytes, Receipt]:
        if not isinstance(stored, bytes):
            return stored[1]
        assert self._codec is not None  # noqa: S101 - bytes are stored only with a codec
        at = _EXPIRY.size
        kept_print = stored[at : at + FINGERPRINT_BYTES]
        return kept_print, self._codec.unpack(stored[at + FINGERPRINT_BYTES :])

    def _expire(self) -> None:
        now = self._clock()
        while self._done:
            key, kept = next(iter(self._done.items()))  # an ordered dict's first: no scan
            expires = _EXPIRY.unpack_from(kept)[0] if isinstance(kept, bytes) else kept[0]
            if expires > now:
                return
            del self._done[key]
