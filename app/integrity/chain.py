"""The hash chain of one writer: every audit record a service instance writes takes the next
position (writer id, sequence number) and a link that commits to the previous link, so a
record removed, inserted or rewritten breaks the chain (docs/integrity.md states it exactly).

link(seq) = SHA-256 of the UTF-8 text `rg-chain-v1\\n<writer>\\n<seq>\\n<prev>\\n<digest-hex>`,
prev being `GENESIS` for seq 0, else link(seq - 1).

`ChainWriter` hands out positions synchronously (no await: call `append()` where the record is
built, so no two records get one position) and follows what became of each:
- `release()` takes back the last position when its record was never sent (a refusal), so a
  refused request leaves no gap;
- `settled(seq, stored=True)` once Kafka acknowledged the record or the spool committed it;
  `stored=False` when it is definitively lost. Lost positions are the checkpoints' `void`: a
  verifier continues the chain past them with the digest of the record that was lost;
- `durable_head()` is the highest position with every position up to it settled: what a
  checkpoint may cover; `durable()` adds the writer's Merkle tree over positions 0..head and
  the lost positions up to it, what a checkpoint (v2) signs.

The tree (RFC 6962, app/integrity/merkle.py) has one leaf per position in seq order, stored or
lost alike: `leaf_entry(writer, seq, leaf_tail(digest, schema_id))`, a lost position's leaf
committing to the record that was lost. Leaves are appended as the durable head passes them,
so only the leaf tails of positions above the head are kept, and the tree is a `Frontier`
(log2 n hashes).
"""

import hashlib
import secrets
from dataclasses import dataclass

from app.integrity.merkle import Frontier, leaf_entry, leaf_hash, leaf_tail

CHAIN_VERSION = "rg-chain-v1"
GENESIS = "0" * 64


def link_of(writer: str, seq: int, prev: str, digest_hex: str) -> str:
    """The link (64 lowercase hex) of position `seq` of `writer`, after `prev` (64 hex; GENESIS
    for seq 0), for a record whose value has SHA-256 `digest_hex` (64 hex, no prefix)."""
    text = f"{CHAIN_VERSION}\n{writer}\n{seq}\n{prev}\n{digest_hex}"
    return hashlib.sha256(text.encode()).hexdigest()


def new_writer_id() -> str:
    """A fresh writer id: 16 random bytes as 32 lowercase hex characters."""
    return secrets.token_hex(16)


@dataclass(frozen=True)
class ChainPosition:
    """Where a record stands on its writer's chain; `chain` is its link (64 hex, no prefix)."""

    writer: str
    seq: int
    chain: str


@dataclass(frozen=True)
class DurableHead:
    """What a checkpoint signs: position `seq` with its link `chain` (64 hex), `tree` the root
    (32 bytes) of the writer's tree over positions 0..seq, and `void` every position up to
    `seq` lost in the writer's life (seq -> the lost record's leaf tail: its digest, 64 hex,
    and a framed value's schema id after a LF; see `merkle.leaf_tail`)."""

    seq: int
    chain: str
    tree: bytes
    void: dict[int, str]


class ChainWriter:
    """The chain of one service process (see the module docstring). Single-threaded by design:
    the event loop's; every method is synchronous."""

    def __init__(self, writer_id: str | None = None) -> None:
        self.writer_id = writer_id or new_writer_id()
        self.count = 0  # positions assigned (the next seq)
        self.lost = 0  # positions settled as lost, ever
        self._links: dict[int, str] = {}  # the links of the head and of every seq above it
        self._pending: set[int] = set()  # assigned, not yet settled
        self._head = -1  # every seq <= it is settled
        # The leaf tails (digest, and schema id when framed) of the positions above the head:
        # their leaves are added as it passes.
        self._digests: dict[int, str] = {}
        self._tree = Frontier()  # over positions 0..head
        # Every position lost in this writer's life (seq -> leaf tail): rare, and each checkpoint
        # lists all of them up to its seq, so one kept checkpoint explains every lost position.
        self._void: dict[int, str] = {}

    def append(self, digest_hex: str, schema_id: int | None = None) -> ChainPosition:
        """The next position, for a record whose value has SHA-256 `digest_hex`; `schema_id`
        for a value in the Confluent wire format (its leaf covers the id, the digest does not)."""
        seq = self.count
        link = link_of(self.writer_id, seq, self._links.get(seq - 1, GENESIS), digest_hex)
        self.count += 1
        self._links[seq] = link
        self._digests[seq] = leaf_tail(digest_hex, schema_id)
        self._pending.add(seq)
        return ChainPosition(self.writer_id, seq, link)

    def release(self, position: ChainPosition) -> bool:
        """Take back `position` when its record was never sent: only the last one can be (the
        next record then takes its seq). False when another was appended since: the caller
        then settles it as lost."""
        seq = position.seq
        if seq != self.count - 1 or seq not in self._pending or self._links[seq] != position.chain:
            return False
        self._pending.remove(seq)
        del self._links[seq]
        del self._digests[seq]
        self.count -= 1
        return True

    def settled(self, seq: int, *, stored: bool) -> None:
        """Position `seq` is final: stored (acked or spooled) or lost (then void in every later
        checkpoint). Only the first call for a position counts."""
        if seq not in self._pending:
            return
        self._pending.remove(seq)
        if not stored:
            self._void[seq] = self._digests[seq]
            self.lost += 1
        # Advance the head over every settled position, adding its leaf to the tree; keep the
        # links from the head up.
        head, writer, digests, tree = self._head, self.writer_id, self._digests, self._tree
        while head + 1 < self.count and head + 1 not in self._pending:
            self._links.pop(head, None)
            head += 1
            tree.append_hash(leaf_hash(leaf_entry(writer, head, digests.pop(head))))
        self._head = head

    def durable_head(self) -> ChainPosition | None:
        """The highest position with every position up to it settled; None before any."""
        if self._head < 0:
            return None
        return ChainPosition(self.writer_id, self._head, self._links[self._head])

    def durable(self) -> DurableHead | None:
        """The durable head with the tree's root over positions 0..head and every position up
        to it that was lost; None before any."""
        if self._head < 0:
            return None
        head = self._head
        void = {seq: digest for seq, digest in self._void.items() if seq <= head}
        return DurableHead(head, self._links[head], self._tree.root(), void)
