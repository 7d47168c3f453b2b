"""The chain walk (app/integrity/chain_walk.py), called directly: one writer's positions, a gap
reported as truncated, a link that does not follow reported as forged."""

from typing import Any

from app.integrity.chain import GENESIS, link_of
from app.integrity.chain_walk import ChainWalk, Entry, TrailCheckpoint, Voids
from app.integrity.report import Finding, Report

WRITER = "0123456789abcdef0123456789abcdef"


def positions(count: int) -> dict[int, Entry]:
    found: dict[int, Entry] = {}
    prev = GENESIS
    for seq in range(count):
        digest = f"{seq:064x}"
        prev = link_of(WRITER, seq, prev, digest)
        found[seq] = (digest, prev, 0, seq, False, seq, digest)
    return found


def walked(held: dict[int, Entry], checkpoint: TrailCheckpoint | None = None) -> Report:
    report = Report(records_checked=len(held), records_valid=len(held), signed=True)

    def problem(kind: str, detail: str, partition: int, offset: int, **where: Any) -> None:
        report.problems.append(Finding(kind, detail, "t", partition, offset, **where))

    walk = ChainWalk(
        report,
        topic="t",
        from_start=True,
        strict=False,
        extra={},
        problem=problem,
        where=lambda partition, offset: ("t", partition, offset),
    )
    walk.walk(WRITER, held, Voids(), checkpoint, None)
    return report


def test_unit_a_whole_chain_walks_clean() -> None:
    held = positions(5)
    covering = TrailCheckpoint("t.checkpoints", 0, 0, WRITER, 4, held[4][1], {})
    report = walked(held, covering)
    assert report.problems == []
    assert report.warnings == []


def test_unit_gaps_are_missing_or_truncated_and_a_broken_link_forged() -> None:
    held = positions(8)
    del held[2]
    covering = TrailCheckpoint("t.checkpoints", 0, 0, WRITER, 7, held[7][1], {})
    del held[7]
    report = walked(held, covering)
    # After a gap the next record's own link is the anchor: seq 3 is not forged.
    assert [(p.kind, p.seq, p.last_seq) for p in report.problems] == [
        ("truncated", 2, 2),
        ("truncated", 7, 7),
    ]
    relinked = positions(5)
    relinked[3] = (relinked[3][0], "ab" * 32, *relinked[3][2:])
    assert [(p.kind, p.seq) for p in walked(relinked).problems] == [("forged", 3)]
    uncovered = walked(positions(3))
    assert [(w.kind, w.seq, w.last_seq) for w in uncovered.warnings] == [("not_covered", 0, 2)]
