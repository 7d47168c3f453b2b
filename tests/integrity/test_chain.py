"""The chain construction: the test vectors of docs/integrity.md, and `ChainWriter`'s
bookkeeping (release, settlement out of order, void, the tree over positions 0..head)."""

import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any

from app.integrity import GENESIS, ChainWriter, link_of
from app.integrity.merkle import EMPTY_ROOT, Frontier, MerkleTree, leaf_entry, leaf_hash

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


def test_unit_void_lists_every_lost_position_up_to_the_head_with_its_digest() -> None:
    chain = ChainWriter("d" * 32)
    positions = [chain.append(f"{n:064x}") for n in range(3)]
    chain.settled(0, stored=False)
    chain.settled(2, stored=False)
    chain.settled(2, stored=True)  # only the first settlement counts
    head = chain.durable()
    assert head is not None
    assert (head.seq, head.void) == (0, {0: f"{0:064x}"})  # 2 is above the head
    assert chain.lost == 2
    chain.settled(1, stored=True)
    head = chain.durable()
    assert head is not None
    assert (head.seq, head.chain) == (2, positions[2].chain)
    assert head.void == {0: f"{0:064x}", 2: f"{2:064x}"}
    # Cumulative: every later head lists them again, one kept checkpoint explains them all.
    chain.settled(chain.append("e" * 64).seq, stored=True)
    later = chain.durable()
    assert later is not None
    assert later.void == head.void


def test_unit_the_tree_has_one_leaf_per_position_up_to_the_head_stored_or_lost() -> None:
    writer = "e" * 32
    chain = ChainWriter(writer)
    assert chain.durable() is None
    digests = [hashlib.sha256(bytes([n])).hexdigest() for n in range(40)]
    reference = MerkleTree()
    released = chain.append("9" * 64)
    assert chain.release(released)  # taken back: no leaf
    positions = [chain.append(digest) for digest in digests]
    # Settled out of order, some lost: the tree follows seq order, and a lost position's leaf
    # commits to the lost record's digest.
    for seq in [*range(1, 40, 2), *range(0, 40, 2)]:
        chain.settled(seq, stored=seq % 7 != 3)
        head = chain.durable()
        expected_seq = -1 if head is None else head.seq
        while len(reference) <= expected_seq:
            n = len(reference)
            reference.append(leaf_entry(writer, n, digests[n]))
        if head is not None:
            assert head.tree == reference.root(head.seq + 1)
            assert head.chain == positions[head.seq].chain
    head = chain.durable()
    assert head is not None
    assert head.seq == 39
    assert head.void == {seq: digests[seq] for seq in range(40) if seq % 7 == 3}
    assert head.tree == reference.root()
    assert chain._digests == {}  # nothing kept below the head
    assert Frontier().root() == EMPTY_ROOT


def test_unit_a_framed_position_s_leaf_and_void_carry_its_schema_id() -> None:
    writer = "f" * 32
    chain = ChainWriter(writer)
    plain = chain.append("1" * 64)
    framed = chain.append("2" * 64, 77)
    lost = chain.append("3" * 64, 77)
    # The link covers the digest alone, framed or not: the chain is as it always was.
    assert framed.chain == link_of(writer, 1, plain.chain, "2" * 64)
    assert lost.chain == link_of(writer, 2, framed.chain, "3" * 64)
    for seq, stored in [(0, True), (1, True), (2, False)]:
        chain.settled(seq, stored=stored)
    head = chain.durable()
    assert head is not None
    assert head.void == {2: "3" * 64 + "\n77"}
    entries = [
        f"rg-leaf-v1\n{writer}\n0\n{'1' * 64}".encode(),
        f"rg-leaf-v1\n{writer}\n1\n{'2' * 64}\n77".encode(),
        f"rg-leaf-v1\n{writer}\n2\n{'3' * 64}\n77".encode(),
    ]
    reference = MerkleTree()
    for entry in entries:
        reference.append(entry)
    assert head.tree == reference.root()


def test_unit_append_and_settle_cost_prints_its_figure() -> None:
    # The hot path's share: one SHA-256 of ~200 bytes for the link, a leaf hash and on average
    # one node hash for the tree, and a few dict operations per record.
    chain = ChainWriter()
    records = 100_000
    started = time.process_time()
    for n in range(records):
        chain.settled(chain.append(f"{n:064x}").seq, stored=True)
    took = time.process_time() - started
    # The same work without the tree: the chain's share, to tell the tree's cost.
    started = time.process_time()
    prev = GENESIS
    for n in range(records):
        prev = link_of(chain.writer_id, n, prev, f"{n:064x}")
    chain_only = time.process_time() - started
    tree = Frontier()
    started = time.process_time()
    for n in range(records):
        tree.append_hash(leaf_hash(leaf_entry(chain.writer_id, n, f"{n:064x}")))
    tree_only = time.process_time() - started
    print(
        f"\n[chain] append + settle: {took / records * 1e6:.2f} us CPU per record ({records}); "
        f"links alone {chain_only / records * 1e6:.2f} us, tree alone "
        f"{tree_only / records * 1e6:.2f} us"
    )
    head = chain.durable()
    assert head is not None
    assert head.seq == records - 1
    assert head.tree == tree.root()
    assert len(chain._links) == 1  # nothing kept below the head
    assert chain._digests == {}
