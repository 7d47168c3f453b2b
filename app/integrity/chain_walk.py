"""The chain walk of `verify`: every writer's positions in seq order, each record's link
checked against the one before, gaps reported as missing or truncated (a signed checkpoint
covers them), void positions continued through (version 1 lists their links, version 2 the lost
records' digests), duplicates and conflicts at one position settled, records after the last
checkpoint reported (`not_covered`), and the writer's tree recomputed for its version 2
checkpoints (`TreeCheck`). app/integrity/verifier.py collects the records and checkpoints and
hands each writer's positions here in `finish()`.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Protocol

from app.integrity.chain import GENESIS, link_of
from app.integrity.report import Finding, Report
from app.integrity.tree_check import TreeCheck

# Fields of a position entry (a plain tuple: millions of them, cheap to build).
DIGEST: Final = 0
LINK: Final = 1
PARTITION: Final = 2
OFFSET: Final = 3
ALTERED: Final = 4
IDENTITY: Final = 5
LEAF: Final = 6  # the leaf tail (merkle.leaf_tail): the digest, and a framed value's schema id
Entry = tuple[str, str, int, int, bool, int, str]


@dataclass(frozen=True)
class TrailCheckpoint:
    """A trusted checkpoint as the walk uses it: where it was read and what it covers."""

    topic: str
    partition: int | None  # None: a witness's file (`topic` is its name)
    offset: int | None
    writer: str
    seq: int
    chain: str | None  # 64 hex; None: a tree head a witness kept (a note or proof), no link
    void: dict[int, str]  # seq -> link (version 1, 64 hex) or leaf tail (version 2)
    tree: bytes | None = None  # version 2: the root over positions 0..seq

    @property
    def void_links(self) -> dict[int, str]:
        return self.void if self.tree is None else {}

    @property
    def void_digests(self) -> dict[int, str]:
        return {} if self.tree is None else self.void


@dataclass
class Voids:
    """A writer's void positions as its trusted checkpoints list them."""

    links: dict[int, str] = field(default_factory=dict)  # version 1
    digests: dict[int, str] = field(default_factory=dict)  # version 2: leaf tails

    def __contains__(self, seq: int) -> bool:
        return seq in self.links or seq in self.digests


class ProblemAt(Protocol):
    """How the walk reports a problem at a record (the verifier's `_problem`)."""

    def __call__(
        self,
        kind: str,
        detail: str,
        partition: int,
        offset: int,
        *,
        writer: str | None = None,
        seq: int | None = None,
    ) -> None: ...


class ChainWalk:
    """Walks the writers of one trail into `report` (see the module docstring)."""

    def __init__(
        self,
        report: Report,
        *,
        topic: str | None,
        from_start: bool,
        strict: bool,
        extra: dict[tuple[str, int], list["Entry"]],
        problem: ProblemAt,
        where: Callable[[int, int], tuple[str | None, int, int]],
    ) -> None:
        self._report = report
        self._topic = topic
        self._from_start = from_start
        self._strict = strict
        # Records beyond the first at one position (duplicates, conflicts).
        self._extra = extra
        self._problem = problem
        self._where = where

    def walk(
        self,
        writer: str,
        positions: dict[int, Entry],
        void: Voids,
        checkpoint: TrailCheckpoint | None,
        tree: TreeCheck[TrailCheckpoint] | None,
        *,
        kept: TrailCheckpoint | None = None,
    ) -> None:
        """Walk one writer. `checkpoint`: its trusted checkpoint of the highest seq; `kept`: its
        largest tree head a witness kept (no link, no voids). Both vouch for the positions up to
        their seq (a gap there is truncated, a record there covered); positions past the last
        record up to `checkpoint` are truncated here, up to `kept` a rollback (writers_check)."""
        report = self._report
        extra = self._extra
        seqs = sorted(positions)
        covered_to = checkpoint.seq if checkpoint is not None else -1
        vouching = checkpoint
        if kept is not None and kept.seq > covered_to:
            vouching = kept
        vouched_to = vouching.seq if vouching is not None else -1
        expected = 0 if self._from_start else seqs[0]
        prev: str | None = GENESIS if self._from_start else None
        for seq in seqs:
            if seq > expected:
                prev = self._skip(
                    writer,
                    expected,
                    seq,
                    void=void,
                    prev=prev,
                    after=positions[seq],
                    checkpoint=vouching,
                    tree=tree,
                )
            entry = positions[seq]
            others = extra.get((writer, seq))
            if others is not None:
                entry = self._settle(writer, seq, prev, entry, others)
            link = entry[LINK]
            if prev is not None and link_of(writer, seq, prev, entry[DIGEST]) != link:
                self._problem(
                    "forged",
                    "rg-chain does not follow from the previous link and this digest",
                    entry[PARTITION],
                    entry[OFFSET],
                    writer=writer,
                    seq=seq,
                )
                if not entry[ALTERED]:
                    report.records_valid -= 1
                # What follows cannot be checked against a forged link.
                prev = None
            else:
                prev = link
            if tree is not None:
                tree.add(seq, entry[LEAF], link)
            expected = seq + 1
        last = seqs[-1]
        if covered_to > last:
            self._skip(
                writer,
                last + 1,
                covered_to + 1,
                void=void,
                prev=prev,
                after=None,
                checkpoint=checkpoint,
                tree=tree,
            )
        if report.signed and last > vouched_to:
            first_uncovered = max(vouched_to + 1, seqs[0])
            entry = positions.get(first_uncovered) or positions[last]
            (report.problems if self._strict else report.warnings).append(
                Finding(
                    "not_covered",
                    f"{sum(1 for s in seqs if s > vouched_to)} record(s) after the last "
                    "signed checkpoint",
                    self._topic,
                    entry[PARTITION],
                    entry[OFFSET],
                    writer,
                    first_uncovered,
                    last,
                )
            )

    def _skip(
        self,
        writer: str,
        start: int,
        stop: int,
        *,
        void: Voids,
        prev: str | None,
        after: Entry | None,
        checkpoint: TrailCheckpoint | None,
        tree: TreeCheck[TrailCheckpoint] | None,
    ) -> str | None:
        """Seqs start..stop-1 have no record: continue through void positions, report the rest
        (truncated when a checkpoint covers them, else missing); return the link before stop."""
        covered_to = checkpoint.seq if checkpoint is not None else -1
        run_start: int | None = None
        for seq in range(start, stop):
            if seq in void:
                if run_start is not None:
                    self._gap_run(
                        writer, run_start, seq - 1, covered_to, after=after, checkpoint=checkpoint
                    )
                    run_start = None
                # Version 1 lists the link; version 2 the lost record's leaf tail (its digest
                # first), its link following from the one before (unknown after a break).
                tail = void.digests.get(seq)
                computed = None
                if tail is not None and prev is not None:
                    computed = link_of(writer, seq, prev, tail[:64])
                prev = void.links.get(seq, computed)
                if tree is not None:
                    if tail is None:
                        tree.broken()
                    else:
                        tree.add(seq, tail, prev)
                continue
            if tree is not None:
                tree.broken()
            if run_start is None:
                run_start = seq
            prev = None
        if run_start is not None:
            self._gap_run(
                writer, run_start, stop - 1, covered_to, after=after, checkpoint=checkpoint
            )
        return prev

    def _gap_run(
        self,
        writer: str,
        first: int,
        last: int,
        covered_to: int,
        *,
        after: Entry | None,
        checkpoint: TrailCheckpoint | None,
    ) -> None:
        if first <= covered_to:
            self.gap(
                "truncated",
                writer,
                first,
                min(last, covered_to),
                after=after,
                checkpoint=checkpoint,
            )
        if last > covered_to:
            self.gap(
                "missing", writer, max(first, covered_to + 1), last, after=after, checkpoint=None
            )

    def gap(
        self,
        kind: str,
        writer: str,
        first: int,
        last: int,
        *,
        after: Entry | None,
        checkpoint: TrailCheckpoint | None,
    ) -> None:
        # Where: the record after the gap; at the end of a chain, the checkpoint covering it.
        count = last - first + 1
        what = "seq" if count == 1 else "seqs"
        span = str(first) if count == 1 else f"{first}..{last}"
        if kind == "truncated":
            detail = f"{what} {span} covered by a signed checkpoint but not on the topic"
        else:
            detail = f"{what} {span} not on the topic (a gap in the writer's sequence)"
        where: tuple[str | None, int | None, int | None]
        if after is not None:
            where = self._where(after[PARTITION], after[OFFSET])
        elif checkpoint is not None:
            where = (checkpoint.topic, checkpoint.partition, checkpoint.offset)
        else:
            where = (self._topic, None, None)
        topic, partition, offset = where
        self._report.problems.append(
            Finding(kind, detail, topic, partition, offset, writer=writer, seq=first, last_seq=last)
        )

    def report_trees(self, writer: str, tree: TreeCheck[TrailCheckpoint]) -> None:
        for mismatch in tree.mismatches:
            checkpoint = mismatch.head.ref
            since = (
                f"; the tree of seq {mismatch.matched} (an earlier checkpoint) matches"
                if mismatch.matched >= 0
                else ""
            )
            what = (
                f"the root of this kept tree head (size {checkpoint.seq + 1})"
                if checkpoint.chain is None
                else "the tree of this signed checkpoint"
            )
            link = "" if checkpoint.chain is None else " (its chain link is the trail's)"
            self._report.problems.append(
                Finding(
                    "conflict",
                    f"{what} is not the root of the trail's "
                    f"positions 0..{checkpoint.seq}{link}{since}",
                    checkpoint.topic,
                    checkpoint.partition,
                    checkpoint.offset,
                    writer,
                    checkpoint.seq,
                )
            )

    def _settle(
        self, writer: str, seq: int, prev: str | None, first: Entry, others: list[Entry]
    ) -> Entry:
        """Several records at one position: report duplicates and conflicts, keep the one the
        chain continues with (an intact record whose link follows from prev)."""
        report = self._report
        entries = [first, *others]
        intact = [e for e in entries if not e[ALTERED]]
        if prev is not None:
            linked = [e for e in intact if link_of(writer, seq, prev, e[DIGEST]) == e[LINK]]
        else:
            linked = intact
        keep = (linked or intact or entries)[0]
        for entry in entries:
            if entry is keep or entry[ALTERED]:
                continue  # an altered copy is reported as such
            if entry[IDENTITY] == keep[IDENTITY] or (
                entry[DIGEST] == keep[DIGEST]
                and entry[LINK] == keep[LINK]
                and entry[LEAF] == keep[LEAF]
            ):
                self._problem(
                    "duplicate",
                    f"same record as partition {keep[PARTITION]} offset {keep[OFFSET]}",
                    entry[PARTITION],
                    entry[OFFSET],
                    writer=writer,
                    seq=seq,
                )
            elif entry in linked:
                self._problem(
                    "conflict",
                    f"another record at this position: partition {keep[PARTITION]} "
                    f"offset {keep[OFFSET]}",
                    entry[PARTITION],
                    entry[OFFSET],
                    writer=writer,
                    seq=seq,
                )
                report.records_valid -= 1
            else:
                self._problem(
                    "forged",
                    "rg-chain does not follow from the previous link and this digest",
                    entry[PARTITION],
                    entry[OFFSET],
                    writer=writer,
                    seq=seq,
                )
                report.records_valid -= 1
        return keep


def named(checkpoint: TrailCheckpoint) -> str:
    if checkpoint.partition is None:
        return checkpoint.topic
    return f"partition {checkpoint.partition} offset {checkpoint.offset}"
