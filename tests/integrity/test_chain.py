"""The chain construction: the test vectors of docs/integrity.md, and `ChainWriter`'s
bookkeeping (release, settlement out of order, void)."""

import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any

from app.integrity import GENESIS, ChainWriter, link_of

DOC = Path(__file__).parents[2] / "docs" / "integrity.md"


def vectors() -> dict[str, Any]:
    """The JSON block under "Test vectors" in docs/integrity.md."""
    text = DOC.read_text(encoding="utf-8").split("## Test vectors", 1)[1]
    match = re.search(r"```json\n(.*?)\n```", text, re.DOTALL)
    assert match is not None
    data: dict[str, Any] = json.loads(match.group(1))
    return data


def test_unit_vectors_of_the_docs_match_link_of() -> None:
    data = vectors()
    writer = data["rg-writer"]
    prev = GENESIS
    assert len(data["records"]) == 3
    for seq, record in enumerate(data["records"]):
        digest = hashlib.sha256(record["value"].encode()).hexdigest()
        assert record["rg-digest"] == f"sha256:{digest}"
        assert record["rg-seq"] == str(seq)
        assert record["link_input"] == f"rg-chain-v1\n{writer}\n{seq}\n{prev}\n{digest}"
        link = link_of(writer, seq, prev, digest)
        assert link == hashlib.sha256(record["link_input"].encode()).hexdigest()
        assert record["rg-chain"] == f"sha256:{link}"
        prev = link


def test_unit_chain_writer_follows_the_vectors() -> None:
    data = vectors()
    chain = ChainWriter(data["rg-writer"])
    for record in data["records"]:
        position = chain.append(record["rg-digest"].removeprefix("sha256:"))
        assert (position.writer, str(position.seq)) == (data["rg-writer"], record["rg-seq"])
        assert f"sha256:{position.chain}" == record["rg-chain"]
    assert chain.count == 3


def test_unit_writer_ids_are_fresh_32_hex() -> None:
    ids = {ChainWriter().writer_id for _ in range(20)}
    assert len(ids) == 20
    assert all(re.fullmatch(r"[0-9a-f]{32}", writer) for writer in ids)


def test_unit_release_takes_back_only_the_last_position() -> None:
    chain = ChainWriter("a" * 32)
    first = chain.append("1" * 64)
    second = chain.append("2" * 64)
    assert not chain.release(first)  # another was appended since
    assert chain.release(second)
    again = chain.append("3" * 64)
    assert again.seq == 1
    assert again.chain == link_of("a" * 32, 1, first.chain, "3" * 64)
    assert chain.count == 2
    assert not chain.release(second)  # already taken back: not again
    chain.settled(again.seq, stored=True)
    assert not chain.release(again)  # settled: it was sent


def test_unit_release_of_the_first_position_restarts_at_genesis() -> None:
    chain = ChainWriter("b" * 32)
    assert chain.release(chain.append("1" * 64))
    position = chain.append("2" * 64)
    assert position.seq == 0
    assert position.chain == link_of("b" * 32, 0, GENESIS, "2" * 64)


def test_unit_durable_head_waits_for_every_earlier_position() -> None:
    chain = ChainWriter("c" * 32)
    positions = [chain.append(f"{n:064x}") for n in range(5)]
    assert chain.durable_head() is None
    chain.settled(2, stored=True)
    chain.settled(1, stored=True)
    assert chain.durable_head() is None  # seq 0 still open
    chain.settled(0, stored=True)
    assert chain.durable_head() == positions[2]
    chain.settled(4, stored=True)
    assert chain.durable_head() == positions[2]
    chain.settled(3, stored=False)  # lost positions count as settled (they are void)
    assert chain.durable_head() == positions[4]
    # The chain goes on from the last link, whatever was settled.
    after = chain.append("f" * 64)
    assert after.chain == link_of("c" * 32, 5, positions[4].chain, "f" * 64)


def test_unit_take_void_lists_lost_positions_once() -> None:
    chain = ChainWriter("d" * 32)
    positions = [chain.append(f"{n:064x}") for n in range(3)]
    chain.settled(0, stored=False)
    chain.settled(2, stored=False)
    chain.settled(2, stored=True)  # only the first settlement counts
    assert chain.take_void() == {0: positions[0].chain, 2: positions[2].chain}
    assert chain.take_void() == {}
    assert chain.lost == 2
    chain.settled(1, stored=True)
    assert chain.durable_head() == positions[2]


def test_unit_append_and_settle_cost_prints_its_figure() -> None:
    # The hot path's share: one SHA-256 of ~200 bytes and a few dict operations per record.
    chain = ChainWriter()
    records = 100_000
    started = time.process_time()
    for n in range(records):
        chain.settled(chain.append(f"{n:064x}").seq, stored=True)
    took = time.process_time() - started
    print(f"\n[chain] append + settle: {took / records * 1e6:.2f} us CPU per record ({records})")
    head = chain.durable_head()
    assert head is not None
    assert head.seq == records - 1
    assert len(chain._links) == 1  # nothing kept below the head
