"""Receipts kept for retries: replay, racing retries, failures, window and bound, attempts a
client stopped waiting for (unit, no broker: a delivery is a plain future here)."""

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from app.errors import IdempotencyKeyReusedError
from app.ingest.idempotency import ReceiptCodec, RecentReceipts, fingerprint
from app.ingest.receipts import AuditReceipt, receipt_codec
from app.kafka import Delivery, KafkaBrokerError, KafkaProduceResult, KafkaTimeoutError
from tests.helpers.ingest import a_receipt


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def counting(value: str, calls: list[str], delay_s: float = 0) -> Callable[[], Awaitable[str]]:
    async def produce() -> str:
        calls.append(value)
        await asyncio.sleep(delay_s)
        return value

    return produce


async def test_unit_a_retry_gets_the_first_receipt_without_producing_again() -> None:
    receipts: RecentReceipts[str] = RecentReceipts(window_s=60, max_entries=10)
    calls: list[str] = []
    assert await receipts.once("k", counting("first", calls)) == ("first", False)
    assert await receipts.once("k", counting("second", calls)) == ("first", True)
    assert calls == ["first"]


async def test_unit_a_retry_racing_the_original_waits_for_it() -> None:
    receipts: RecentReceipts[str] = RecentReceipts(window_s=60, max_entries=10)
    calls: list[str] = []
    results = await asyncio.gather(
        receipts.once("k", counting("a", calls, 0.05)),
        receipts.once("k", counting("b", calls, 0.05)),
    )
    # gather() answers a list; its stubs say a tuple.
    assert results == [("a", False), ("a", True)]  # type: ignore[comparison-overlap]
    assert calls == ["a"]


async def test_unit_a_failure_is_not_kept_and_a_racing_retry_produces_its_own() -> None:
    receipts: RecentReceipts[str] = RecentReceipts(window_s=60, max_entries=10)

    async def failing() -> str:
        await asyncio.sleep(0.05)
        raise RuntimeError("no ack")

    calls: list[str] = []
    first, second = await asyncio.gather(
        receipts.once("k", failing),
        receipts.once("k", counting("b", calls)),
        return_exceptions=True,
    )
    assert isinstance(first, RuntimeError)
    assert second == ("b", False)
    assert await receipts.once("k", counting("c", calls)) == ("b", True)


async def test_unit_keep_decides_what_is_remembered() -> None:
    receipts: RecentReceipts[str] = RecentReceipts(window_s=60, max_entries=10)
    calls: list[str] = []

    def keep_acked(receipt: str) -> bool:
        return receipt == "acked"

    assert await receipts.once("k", counting("queued", calls), keep=keep_acked) == ("queued", False)
    assert await receipts.once("k", counting("acked", calls), keep=keep_acked) == ("acked", False)
    assert await receipts.once("k", counting("x", calls), keep=keep_acked) == ("acked", True)


async def test_unit_receipts_expire_after_the_window_and_stay_bounded() -> None:
    clock = Clock()
    receipts: RecentReceipts[str] = RecentReceipts(window_s=10, max_entries=3, clock=clock)
    calls: list[str] = []
    await receipts.once("old", counting("old", calls))
    clock.now = 11
    assert await receipts.once("old", counting("new", calls)) == ("new", False)
    for i in range(10):
        await receipts.once(f"k{i}", counting(str(i), calls))
        assert len(receipts) <= 3
    assert await receipts.once("k9", counting("again", calls)) == ("9", True)
    assert await receipts.once("k0", counting("again", calls)) == ("again", False)


async def test_unit_a_cancelled_original_lets_the_waiting_retry_produce() -> None:
    receipts: RecentReceipts[str] = RecentReceipts(window_s=60, max_entries=10)
    calls: list[str] = []
    original = asyncio.create_task(receipts.once("k", counting("a", calls, 10)))
    await asyncio.sleep(0.01)
    retry = asyncio.create_task(receipts.once("k", counting("b", calls)))
    await asyncio.sleep(0.01)
    original.cancel()
    with pytest.raises(asyncio.CancelledError):
        await original
    assert await retry == ("b", False)


def pending_delivery() -> tuple[Delivery, "asyncio.Future[KafkaProduceResult]"]:
    future: asyncio.Future[KafkaProduceResult] = asyncio.get_running_loop().create_future()
    return Delivery("audit", future), future


def receipt_of(result: KafkaProduceResult) -> str:
    return f"acked@{result.offset}"


async def test_unit_a_retry_waits_for_an_attempt_its_client_gave_up_on() -> None:
    receipts: RecentReceipts[str] = RecentReceipts(window_s=60, max_entries=10)
    assert await receipts.earlier("k", timeout_s=1) is None
    delivery, future = pending_delivery()
    receipts.keep_for_retries("k", delivery, receipt_of, name="event e1")
    retry = asyncio.create_task(receipts.earlier("k", timeout_s=10))
    await asyncio.sleep(0.01)
    assert not retry.done()
    future.set_result(KafkaProduceResult(topic="audit", partition=0, offset=7))
    assert await retry == "acked@7"
    # Acknowledged: no attempt to wait for any more, and its receipt is kept for the next retry.
    assert await receipts.earlier("k", timeout_s=1) is None
    calls: list[str] = []
    assert await receipts.once("k", counting("new", calls)) == ("acked@7", True)
    assert calls == []


async def test_unit_an_attempt_still_unacknowledged_is_named_and_a_failed_one_is_forgotten() -> (
    None
):
    receipts: RecentReceipts[str] = RecentReceipts(window_s=60, max_entries=10)
    delivery, future = pending_delivery()
    receipts.keep_for_retries("k", delivery, receipt_of, name="event e1")
    with pytest.raises(KafkaTimeoutError, match=r"earlier attempt of event e1 .* another 0\.01s"):
        await receipts.earlier("k", timeout_s=0.01)
    assert not future.cancelled()  # waiting for it never cancels it
    future.set_exception(KafkaBrokerError("refused"))
    with pytest.raises(KafkaBrokerError, match="refused"):
        await receipts.earlier("k", timeout_s=1)
    await asyncio.sleep(0)
    assert await receipts.earlier("k", timeout_s=1) is None
    assert len(receipts) == 0


async def test_unit_with_a_codec_kept_receipts_are_packed_and_a_replay_unpacks_one() -> None:
    packed: list[str] = []

    def pack(receipt: str) -> bytes:
        packed.append(receipt)
        return receipt.encode()

    codec: ReceiptCodec[str] = ReceiptCodec(pack=pack, unpack=bytes.decode)
    receipts: RecentReceipts[str] = RecentReceipts(window_s=60, max_entries=10, codec=codec)
    calls: list[str] = []
    assert await receipts.once("k", counting("first", calls)) == ("first", False)
    receipts.remember("late", "acked later")
    assert packed == ["first", "acked later"]
    assert await receipts.once("k", counting("second", calls)) == ("first", True)
    assert await receipts.once("late", counting("again", calls)) == ("acked later", True)
    assert calls == ["first"]


A, B = fingerprint(b"request A"), fingerprint(b"request B")
NAME, FIELD = "Idempotency-Key 'retry-42'", "header.idempotency-key"


async def test_unit_a_key_sent_again_for_another_request_is_refused_naming_it() -> None:
    receipts: RecentReceipts[str] = RecentReceipts(window_s=60, max_entries=10)
    calls: list[str] = []
    assert await receipts.once(
        "k", counting("a", calls), fingerprint=A, name=NAME, field=FIELD
    ) == ("a", False)
    with pytest.raises(IdempotencyKeyReusedError, match="'retry-42'") as refused:
        await receipts.once("k", counting("b", calls), fingerprint=B, name=NAME, field=FIELD)
    assert refused.value.details[0]["field"] == "header.idempotency-key"
    assert await receipts.once(
        "k", counting("c", calls), fingerprint=A, name=NAME, field=FIELD
    ) == ("a", True)
    assert calls == ["a"]


async def test_unit_a_racing_request_with_another_body_is_refused_not_given_the_first_receipt() -> (
    None
):
    receipts: RecentReceipts[str] = RecentReceipts(window_s=60, max_entries=10)
    calls: list[str] = []
    first = asyncio.create_task(receipts.once("k", counting("a", calls, 0.05), fingerprint=A))
    await asyncio.sleep(0.01)
    with pytest.raises(IdempotencyKeyReusedError):
        await receipts.once("k", counting("b", calls), fingerprint=B)
    assert await first == ("a", False)
    assert calls == ["a"]


async def test_unit_an_attempt_its_client_gave_up_on_keeps_its_request_s_fingerprint() -> None:
    receipts: RecentReceipts[str] = RecentReceipts(window_s=60, max_entries=10)
    delivery, future = pending_delivery()

    async def gives_up() -> str:
        receipts.keep_for_retries("k", delivery, receipt_of, name="event e1")
        raise KafkaTimeoutError("no acknowledgement")

    with pytest.raises(KafkaTimeoutError):
        await receipts.once("k", gives_up, fingerprint=A)
    assert receipts.claim("k", B) is None  # a batch sends it the single way, which refuses
    with pytest.raises(IdempotencyKeyReusedError):
        await receipts.once("k", counting("b", []), fingerprint=B)
    future.set_result(KafkaProduceResult(topic="audit", partition=0, offset=7))
    await asyncio.sleep(0)
    with pytest.raises(IdempotencyKeyReusedError):
        await receipts.once("k", counting("b", []), fingerprint=B)
    assert await receipts.once("k", counting("c", []), fingerprint=A) == ("acked@7", True)


async def test_unit_a_batch_s_claim_keeps_its_fingerprint_with_the_receipt() -> None:
    receipts: RecentReceipts[str] = RecentReceipts(window_s=60, max_entries=10)
    claim = receipts.claim("k", A)
    assert claim is not None
    receipts.settle("k", claim, "a")
    with pytest.raises(IdempotencyKeyReusedError):
        await receipts.once("k", counting("b", []), fingerprint=B)
    assert await receipts.once("k", counting("c", []), fingerprint=A) == ("a", True)


async def test_unit_packed_a_kept_receipt_grows_by_its_fingerprint_only() -> None:
    codec = receipt_codec()
    receipts: RecentReceipts[AuditReceipt] = RecentReceipts(
        window_s=60, max_entries=10, codec=codec
    )
    receipt = a_receipt()

    async def produce() -> AuditReceipt:
        return receipt

    assert await receipts.once("k", produce, fingerprint=A) == (receipt, False)
    assert receipts.kept_bytes("k") == len(codec.pack(receipt)) + len(A) < 200
    with pytest.raises(IdempotencyKeyReusedError):
        await receipts.once("k", produce, fingerprint=B)
    assert await receipts.once("k", produce, fingerprint=A) == (receipt, True)


async def test_unit_packed_receipts_expire_stay_bounded_and_keep_their_fingerprints() -> None:
    # Packed, a receipt is one bytes object: its expiry, fingerprint and receipt together.
    clock = Clock()
    codec: ReceiptCodec[str] = ReceiptCodec(pack=str.encode, unpack=bytes.decode)
    receipts: RecentReceipts[str] = RecentReceipts(
        window_s=10, max_entries=3, clock=clock, codec=codec
    )
    calls: list[str] = []
    await receipts.once("old", counting("old", calls), fingerprint=A)
    assert receipts.kept_bytes("old") == len(A) + len("old")
    with pytest.raises(IdempotencyKeyReusedError):
        await receipts.once("old", counting("other", calls), fingerprint=B)
    clock.now = 11
    assert await receipts.once("old", counting("new", calls), fingerprint=B) == ("new", False)
    for i in range(3):
        await receipts.once(f"k{i}", counting(str(i), calls))
    receipts.remember("k0", "0 again")  # kept again: now the newest
    await receipts.once("k3", counting("3", calls))
    assert len(receipts) == 3
    assert await receipts.once("k0", counting("x", calls)) == ("0 again", True)
    assert await receipts.once("k1", counting("1 anew", calls)) == ("1 anew", False)
