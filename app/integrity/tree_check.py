"""Recomputing a writer's Merkle tree while `verify` walks its chain, to check the `tree` of its
signed checkpoints (version 2; docs/integrity.md).

The verifier walks a writer's positions in seq order, records and void positions alike, and
hands each position's digest here; the tree is a `Frontier` (log2 n hashes), so checking costs
one leaf hash and on average one node hash per record and no memory per record. When the walk
reaches a checkpoint's seq, the root over positions 0..seq is compared with the checkpoint's.
A position whose digest is unknown (no record and no void digest: missing, truncated, or void
with a link only, version 1) ends the check for that writer: the checkpoints above it are left
unchecked, their gap is reported by the chain walk already.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from app.integrity.merkle import Frontier, leaf_entry, leaf_hash

Ref = TypeVar("Ref")


@dataclass(frozen=True)
class SignedRoot(Generic[Ref]):
    """A signed checkpoint's claim: at `seq`, link `chain` (64 hex; None for a kept note or
    proof, which names no link) and tree `root`; `ref` is the caller's handle for its
    findings."""

    seq: int
    chain: str | None
    root: bytes
    ref: Ref


@dataclass(frozen=True)
class Mismatch(Generic[Ref]):
    """A checkpoint whose tree is not the root of the trail's positions 0..seq although its
    chain link is the trail's; `matched` is the highest seq of an earlier checkpoint of the
    writer whose tree matched (-1: none)."""

    head: SignedRoot[Ref]
    matched: int


class TreeCheck(Generic[Ref]):
    """Feed positions 0, 1, 2, … of one writer with `add`; mismatches collect in `mismatches`."""

    def __init__(self, writer: str, heads: Iterable[SignedRoot[Ref]]) -> None:
        self._writer = writer
        self._heads = sorted(heads, key=lambda head: head.seq, reverse=True)  # next one last
        self._tree: Frontier | None = Frontier()
        self._matched = -1
        self.mismatches: list[Mismatch[Ref]] = []

    @property
    def done(self) -> bool:
        """True once nothing is left to check (every head checked, or the tree broken)."""
        return self._tree is None or not self._heads

    def add(self, seq: int, digest_hex: str, link: str | None) -> None:
        """Position `seq` (the next one) has a record or void digest `digest_hex`; `link` is its
        link as the walk knows it (None when it cannot be computed)."""
        tree = self._tree
        if tree is None or seq != tree.size:
            self.broken()
            return
        tree.append_hash(leaf_hash(leaf_entry(self._writer, seq, digest_hex)))
        heads = self._heads
        while heads and heads[-1].seq <= seq:
            head = heads.pop()
            if head.seq < seq:
                continue  # a head below the first position walked (not from the start)
            if head.root == tree.root():
                self._matched = seq
            elif link is None or head.chain is None or link == head.chain:
                # The chain agrees (or is unknown here, or the head names none), the tree
                # does not; when the chain disagrees too, the walk reports that conflict.
                self.mismatches.append(Mismatch(head, self._matched))

    def broken(self) -> None:
        """A position's digest is unknown: the tree cannot be recomputed past it."""
        self._tree = None
