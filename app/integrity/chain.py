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
  `stored=False` when it is definitively lost. Lost positions are the checkpoints' `void`
  (`take_void()`): a verifier continues the chain past them with their links;
- `durable_head()` is the highest position with every position up to it settled: what a
  checkpoint may cover.
"""

import hashlib
import secrets
from dataclasses import dataclass

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
        self._void: dict[int, str] = {}

    def append(self, digest_hex: str) -> ChainPosition:
        """The next position, for a record whose value has SHA-256 `digest_hex`."""
        seq = self.count
        link = link_of(self.writer_id, seq, self._links.get(seq - 1, GENESIS), digest_hex)
        self.count += 1
        self._links[seq] = link
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
        self.count -= 1
        return True

    def settled(self, seq: int, *, stored: bool) -> None:
        """Position `seq` is final: stored (acked or spooled) or lost (then listed by
        `take_void()`). Only the first call for a position counts."""
        if seq not in self._pending:
            return
        self._pending.remove(seq)
        if not stored:
            self._void[seq] = self._links[seq]
            self.lost += 1
        # Advance the head over every settled position; keep the links from the head up.
        head = self._head
        while head + 1 < self.count and head + 1 not in self._pending:
            self._links.pop(head, None)
            head += 1
        self._head = head

    def durable_head(self) -> ChainPosition | None:
        """The highest position with every position up to it settled; None before any."""
        if self._head < 0:
            return None
        return ChainPosition(self.writer_id, self._head, self._links[self._head])

    def take_void(self) -> dict[int, str]:
        """The positions settled as lost since the last call (seq -> link hex)."""
        void, self._void = self._void, {}
        return void
