"""The tree check `verify` runs while it walks a writer: roots at the signed seqs, a mismatch
only where the chain agrees, nothing checked past an unknown position."""

from app.integrity.tree_check import SignedRoot, TreeCheck
from tests.helpers.integrity import spec_leaf, spec_root

WRITER = "ab" * 16
DIGESTS = [f"{n:064x}" for n in range(20)]


def root(size: int) -> bytes:
    return spec_root([spec_leaf(WRITER, n, DIGESTS[n]) for n in range(size)])


def test_unit_signed_roots_are_checked_at_their_seq() -> None:
    heads = [
        SignedRoot(3, "l3", root(4), "a"),
        SignedRoot(9, "l9", root(9), "b"),  # the root of one position less: wrong
        SignedRoot(12, "other", root(12), "c"),  # wrong, but the chain disagrees too
        SignedRoot(15, "l15", root(16), "d"),
    ]
    check = TreeCheck(WRITER, heads)
    for seq in range(20):
        check.add(seq, DIGESTS[seq], f"l{seq}")
    assert [(m.head.ref, m.matched) for m in check.mismatches] == [("b", 3)]
    assert check.done


def test_unit_an_unknown_position_ends_the_check() -> None:
    check = TreeCheck(WRITER, [SignedRoot(2, "l2", b"x" * 32, "a")])
    check.add(0, DIGESTS[0], "l0")
    check.broken()  # position 1: no record, no void digest
    check.add(2, DIGESTS[2], "l2")
    assert check.mismatches == []
    assert check.done
    skipped = TreeCheck(WRITER, [SignedRoot(1, "l1", b"x" * 32, "a")])
    skipped.add(0, DIGESTS[0], "l0")
    skipped.add(2, DIGESTS[2], "l2")  # not the next position: broken, not a mismatch
    assert skipped.mismatches == []
