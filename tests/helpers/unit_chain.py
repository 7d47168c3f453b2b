"""A stand-in for app/integrity/chain.py's ChainWriter in unit tests of the checkpointer: the
test sets the durable head, its tree root and the lost positions itself (test names say
`unit`)."""

from dataclasses import dataclass, field

from app.integrity.chain import DurableHead


@dataclass(frozen=True)
class At:
    """A chain position: seq and its link (64 hex)."""

    seq: int
    chain: str


@dataclass
class UnitChain:
    """What the checkpointer reads of a chain, set by the test: the head, the tree's root at
    the head, and every lost position (seq -> digest), listed up to the head."""

    writer_id: str = "a" * 32
    head: At | None = None
    tree: bytes = bytes(32)
    void: dict[int, str] = field(default_factory=dict)

    def durable(self) -> DurableHead | None:
        if self.head is None:
            return None
        void = {seq: digest for seq, digest in self.void.items() if seq <= self.head.seq}
        return DurableHead(self.head.seq, self.head.chain, self.tree, void)
