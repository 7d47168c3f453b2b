"""The checkpointer, fed positions directly (a stand-in for the chain, no broker)."""

import asyncio
from dataclasses import dataclass, field

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.integrity.checkpoint import Checkpoint, verify_note, verify_signature
from app.integrity.checkpointer import Checkpointer
from app.integrity.keys import SigningKey
from tests.helpers.unit_chain import At, UnitChain

WRITER = "a" * 32
ORIGIN = "example.test/audit"


@dataclass
class Written:
    records: list[tuple[str, bytes]] = field(default_factory=list)
    fail: bool = False

    async def __call__(self, key: str, value: bytes) -> None:
        if self.fail:
            raise ConnectionError("broker away")
        self.records.append((key, value))


def checkpointer(chain: UnitChain, written: Written) -> tuple[Checkpointer, SigningKey]:
    key = SigningKey("k1", Ed25519PrivateKey.generate())
    return Checkpointer(chain, key, written, origin=ORIGIN, interval_s=0.01), key


async def test_unit_a_checkpoint_only_when_the_head_advanced() -> None:
    chain, written = UnitChain(), Written()
    writer, key = checkpointer(chain, written)
    assert await writer.checkpoint() is None  # nothing yet
    chain.head, chain.tree = At(4, "11" * 32), b"\x07" * 32
    first = await writer.checkpoint()
    assert first is not None
    assert (first.version, first.seq, first.chain, first.tree) == (2, 4, "11" * 32, "07" * 32)
    assert await writer.checkpoint() is None  # nothing new
    chain.head = At(9, "22" * 32)
    assert await writer.checkpoint() is not None
    assert writer.written == 2
    assert len(written.records) == 2
    record_key, value = written.records[-1]
    parsed = Checkpoint.from_json(value)
    assert record_key == WRITER
    assert parsed == writer.latest
    assert verify_signature(parsed, key.public)
    assert verify_note(parsed, key.public)
    assert parsed.key_name == ORIGIN
    assert parsed.note.startswith(f"{ORIGIN}/writer/{WRITER}\n10\n")


async def test_unit_each_checkpoint_lists_every_lost_position_up_to_its_seq_retried() -> None:
    chain, written = UnitChain(head=At(3, "11" * 32)), Written()
    writer, _ = checkpointer(chain, written)
    chain.void = {2: "33" * 32, 5: "55" * 32}
    first = await writer.checkpoint()
    assert first is not None
    assert first.void == {2: "33" * 32}  # 5 is above its seq
    assert await writer.checkpoint() is None  # the head did not advance: nothing new
    chain.head = At(6, "66" * 32)
    written.fail = True
    with pytest.raises(ConnectionError):
        await writer.checkpoint()
    written.fail = False
    latest = await writer.checkpoint()
    assert latest is not None
    assert latest.void == {2: "33" * 32, 5: "55" * 32}  # cumulative


async def test_unit_close_writes_the_last_checkpoint_and_the_timer_writes_meanwhile() -> None:
    chain, written = UnitChain(head=At(0, "11" * 32)), Written()
    writer, _ = checkpointer(chain, written)
    writer.start()
    for _ in range(200):
        if written.records:
            break
        await asyncio.sleep(0.01)
    assert len(written.records) == 1
    chain.head = At(5, "55" * 32)
    await writer.close()
    assert writer.latest is not None
    assert writer.latest.seq == 5
