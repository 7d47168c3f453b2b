"""A stand-in for app/integrity/chain.py's ChainWriter in unit tests of the checkpointer: the
test sets the durable head and the void positions itself (test names say `unit`)."""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class At:
    """A chain position: seq and its link (64 hex)."""

    seq: int
    chain: str


@dataclass
class UnitChain:
    """What the checkpointer reads of a chain, set by the test."""

    writer_id: str = "a" * 32
    head: At | None = None
    void: dict[int, str] = field(default_factory=dict)

    def durable_head(self) -> At | None:
        return self.head

    def take_void(self) -> dict[int, str]:
        taken, self.void = self.void, {}
        return taken
