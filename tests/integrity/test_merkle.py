"""RFC 6962 trees, inclusion and consistency proofs, checked against Go's
golang.org/x/mod/sumdb/tlog (tests/helpers/tlog.py), an implementation this project did not
write, and against the RFC's own recursive definition."""

import hashlib
import random

import pytest

from app.integrity.merkle import (
    EMPTY_ROOT,
    Frontier,
    MerkleTree,
    ProofError,
    frame_schema_id,
    leaf_entry,
    leaf_hash,
    leaf_tail,
    node_hash,
    read_leaf_entry,
    root_from_inclusion,
    verify_consistency,
    verify_inclusion,
)
from tests.helpers.tlog import TlogCheck

ENTRIES = [f"entry {i}".encode() for i in range(2049)]


def mth(entries: list[bytes]) -> bytes:
    """RFC 9162 §2.1.1 written as the RFC writes it, recursively."""
    n = len(entries)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaf_hash(entries[0])
    k = 1
    while k * 2 < n:
        k *= 2
    return node_hash(mth(entries[:k]), mth(entries[k:]))


@pytest.fixture(scope="module")
def tree() -> MerkleTree:
    built = MerkleTree()
    for entry in ENTRIES:
        built.append(entry)
    return built


def flipped(value: bytes, bit: int) -> bytes:
    changed = bytearray(value)
    changed[bit // 8] ^= 1 << (bit % 8)
    return bytes(changed)


def test_roots_of_every_size_up_to_2048_equal_go_tlog(
    tree: MerkleTree, tlogcheck: TlogCheck
) -> None:
    expected = tlogcheck.roots(ENTRIES)
    assert len(expected) == len(ENTRIES) + 1
    assert expected[0] == EMPTY_ROOT
    for size, root in enumerate(expected):
        assert tree.root(size) == root, size


def test_unit_the_frontier_has_the_tree_s_root_at_every_size(tree: MerkleTree) -> None:
    frontier = Frontier()
    assert frontier.root() == EMPTY_ROOT
    for size in range(1, len(tree) + 1):
        frontier.append_hash(tree.leaf(size - 1))
        assert frontier.size == size
        assert frontier.root() == tree.root(size), size
    assert len(frontier._peaks) == bin(len(tree)).count("1")


def test_unit_roots_follow_the_rfc_definition(tree: MerkleTree) -> None:
    for size in [*range(70), 127, 128, 129, 1000, 2048]:
        assert tree.root(size) == mth(ENTRIES[:size]), size


def test_inclusion_proofs_are_accepted_by_go_tlog(tree: MerkleTree, tlogcheck: TlogCheck) -> None:
    sizes = [*range(1, 70), 127, 128, 129, 255, 256, 257, 1000, 2048, 2049]
    rng = random.Random(6962)
    for size in sizes:
        root = tree.root(size)
        indexes = range(size) if size <= 70 else rng.sample(range(size), 40)
        for index in indexes:
            proof = tree.inclusion(index, size)
            leaf = tree.leaf(index)
            verify_inclusion(index, size, leaf, proof, root)
            assert tlogcheck.inclusion(index, size, leaf, proof, root) is None, (index, size)


def test_consistency_proofs_are_accepted_by_go_tlog(tree: MerkleTree, tlogcheck: TlogCheck) -> None:
    pairs = [(m, n) for n in range(1, 40) for m in range(1, n + 1)]
    rng = random.Random(9162)
    pairs += [tuple(sorted(rng.sample(range(1, 2050), 2))) for _ in range(200)]  # type: ignore[misc]
    for old, new in pairs:
        proof = tree.consistency(old, new)
        verify_consistency(old, new, tree.root(old), tree.root(new), proof)
        assert tlogcheck.consistency(old, new, tree.root(old), tree.root(new), proof) is None, (
            old,
            new,
        )


def test_every_single_bit_change_of_an_inclusion_proof_is_rejected_by_both(
    tree: MerkleTree, tlogcheck: TlogCheck
) -> None:
    index, size = 1337, 2049
    root, leaf, proof = tree.root(size), tree.leaf(index), tree.inclusion(index, size)
    for position in range(len(proof)):
        for bit in range(0, 256, 7):
            bad = [*proof]
            bad[position] = flipped(proof[position], bit)
            with pytest.raises(ProofError):
                verify_inclusion(index, size, leaf, bad, root)
            assert tlogcheck.inclusion(index, size, leaf, bad, root) is not None
    for bit in range(256):
        with pytest.raises(ProofError):
            verify_inclusion(index, size, flipped(leaf, bit), proof, root)
        with pytest.raises(ProofError):
            verify_inclusion(index, size, leaf, proof, flipped(root, bit))
        assert tlogcheck.inclusion(index, size, flipped(leaf, bit), proof, root) is not None
        assert tlogcheck.inclusion(index, size, leaf, proof, flipped(root, bit)) is not None


def test_every_single_bit_change_of_a_consistency_proof_is_rejected_by_both(
    tree: MerkleTree, tlogcheck: TlogCheck
) -> None:
    old, new = 700, 2049
    old_root, new_root, proof = tree.root(old), tree.root(new), tree.consistency(old, new)
    for position in range(len(proof)):
        for bit in range(0, 256, 5):
            bad = [*proof]
            bad[position] = flipped(proof[position], bit)
            with pytest.raises(ProofError):
                verify_consistency(old, new, old_root, new_root, bad)
            assert tlogcheck.consistency(old, new, old_root, new_root, bad) is not None
    for bit in range(0, 256, 3):
        with pytest.raises(ProofError):
            verify_consistency(old, new, flipped(old_root, bit), new_root, proof)
        with pytest.raises(ProofError):
            verify_consistency(old, new, old_root, flipped(new_root, bit), proof)
        assert tlogcheck.consistency(old, new, flipped(old_root, bit), new_root, proof) is not None


def test_unit_proofs_of_the_wrong_shape_are_rejected(tree: MerkleTree) -> None:
    size, index = 100, 37
    root, leaf, proof = tree.root(size), tree.leaf(index), tree.inclusion(index, size)
    for bad_index, bad_size in [(index + 1, size), (index, size - 40), (size, size), (-1, size)]:
        with pytest.raises(ProofError):
            verify_inclusion(bad_index, bad_size, leaf, proof, root)
    with pytest.raises(ProofError):
        root_from_inclusion(index, size, leaf, [*proof, proof[0]])
    with pytest.raises(ProofError):
        root_from_inclusion(index, size, leaf, proof[:-1])
    with pytest.raises(ProofError):
        root_from_inclusion(index, size, leaf, [proof[0][:31], *proof[1:]])
    consistency = tree.consistency(40, 100)
    with pytest.raises(ProofError):
        verify_consistency(40, 100, tree.root(40), root, [])
    with pytest.raises(ProofError):
        verify_consistency(40, 100, tree.root(40), root, [*consistency, consistency[0]])
    with pytest.raises(ProofError):
        verify_consistency(100, 40, root, tree.root(40), consistency)
    with pytest.raises(ProofError):
        verify_consistency(100, 100, root, tree.root(99), [])
    verify_consistency(100, 100, root, root, [])
    verify_consistency(0, 100, EMPTY_ROOT, root, [])
    assert tree.consistency(0, 100) == tree.consistency(100, 100) == []


def test_unit_sizes_beyond_the_tree_are_refused(tree: MerkleTree) -> None:
    with pytest.raises(ValueError, match="entries"):
        tree.root(len(tree) + 1)
    with pytest.raises(ValueError, match="not in a tree"):
        tree.inclusion(5, 5)
    with pytest.raises(ValueError, match="no consistency"):
        tree.consistency(6, 5)
    with pytest.raises(ValueError, match="32 bytes"):
        MerkleTree().append_hash(b"short")


def test_unit_a_leaf_entry_commits_to_writer_position_and_digest() -> None:
    entry = leaf_entry("0123456789abcdef0123456789abcdef", 7, "ab" * 32)
    assert entry == b"rg-leaf-v1\n0123456789abcdef0123456789abcdef\n7\n" + b"ab" * 32
    assert leaf_hash(entry) == hashlib.sha256(b"\x00" + entry).digest()


def test_unit_a_framed_value_s_leaf_entry_has_its_schema_id_as_a_fifth_line() -> None:
    digest = "ab" * 32
    assert leaf_tail(digest) == digest
    assert leaf_tail(digest, 0) == digest + "\n0"
    writer = "0123456789abcdef0123456789abcdef"
    entry = leaf_entry(writer, 7, leaf_tail(digest, 4242))
    assert entry == f"rg-leaf-v1\n{writer}\n7\n{digest}\n4242".encode()
    assert frame_schema_id(b"\x00\x00\x00\x10\x92{}") == 4242
    assert frame_schema_id(b"\x00\xff\xff\xff\xff") == 2**32 - 1
    for plain in [b"{}", b"", b"\x00\x00\x00\x01", b'{"a":1}']:
        assert frame_schema_id(plain) is None


def test_unit_a_leaf_entry_is_read_back_only_in_its_one_spelling() -> None:
    writer, digest = "0123456789abcdef0123456789abcdef", "ab" * 32
    for schema_id in (None, 0, 42, 2**32 - 1):
        entry = leaf_entry(writer, 9, leaf_tail(digest, schema_id))
        assert read_leaf_entry(entry) == (writer, 9, leaf_tail(digest, schema_id))
    good = f"rg-leaf-v1\n{writer}\n9\n{digest}"
    for bad in [
        good.replace("rg-leaf-v1", "rg-leaf-v2"),
        good.replace("\n9\n", "\n09\n"),
        good.replace("\n9\n", "\n+9\n"),
        good.replace(writer, writer.upper()),
        good + "\n",
        good + "\n007",
        good + "\n4294967296",
        good + "\n1\n2",
        good[:-1],
        good.replace("\n9\n", "\n\u0669\n"),  # a decimal digit, not ASCII
    ]:
        with pytest.raises(ValueError, match="leaf entry"):
            read_leaf_entry(bad.encode())
