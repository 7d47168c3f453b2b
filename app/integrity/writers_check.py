"""What `verify` concludes from the log of writers (app/integrity/writers.py) and from signed
tree heads seen twice: the part of app/integrity/verifier.py that looks across writers.

- `writer_missing`: a writer the log knows with a head of size > 0 of which the audit topic holds
  no record (read from the beginning): its records were deleted whole.
- `rollback`: the highest position the trail holds (records, or voids trusted checkpoints list)
  of a writer is below the size the log says its durable head reached: the audit topic was cut
  back; also a signed note of the log of writers larger than the writers topic holds, and a
  writer's trail ending below the size of a tree head a witness kept (`verify --checkpoint`: a
  writer's note or a tlog-proof).
- `fork`: two signed tree heads of one log with the same size and different roots (two
  trusted checkpoints of a writer, or two notes of the log of writers), or a note of the log
  of writers whose root is not the root of the writers topic's first `size` entries.
- `unknown_writer`: a writer with records that the log of writers does not know, once it
  exists (a warning; a problem with `strict`: a writer started before the log existed is one too).
- `uncosigned` (with a witness policy, `verify --witness-policy`): a signed note of the log of
  writers without `k` valid cosignatures by the policy's witnesses, neither its own (records
  keyed `cosignatures` on the checkpoints topic, or lines of a kept note) nor those of a later
  note; a later note counts for it when both are the roots of the writers topic's first entries
  (this check recomputes them), so a witness that lagged and cosigned the next one is enough.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from app.integrity.merkle import MerkleTree
from app.integrity.note import DASH, NoteError, TreeHead, Verifier, open_note, parse_note
from app.integrity.witness import CosignatureRecord, WitnessError
from app.integrity.witness_policy import WitnessPolicy
from app.integrity.writers import WriterEntry, WritersFormatError, WritersNote, writers_log


@dataclass(frozen=True)
class Seen:
    """Where a finding of the log of writers points: topic, partition, offset."""

    topic: str | None
    partition: int | None
    offset: int | None


@dataclass(frozen=True)
class Conclusion:
    """A finding to report: its kind, detail, place, writer and seqs."""

    kind: str
    detail: str
    where: Seen
    writer: str | None = None
    seq: int | None = None
    last_seq: int | None = None


@dataclass
class _Known:
    size: int = 0  # the largest size a head or stop entry gave
    where: Seen = field(default_factory=lambda: Seen(None, None, None))


@dataclass(frozen=True)
class SignedHead:
    """A trusted signed tree head of a writer's log: its size, root, and where it was read;
    `kept`: from a file a witness kept (a writer's note or a tlog-proof), whose size the trail
    must reach."""

    writer: str
    size: int
    root: bytes
    where: Seen
    kept: bool = False


class WritersCheck:
    """Collects the log of writers and its notes; `conclude()` gives the findings."""

    def __init__(
        self,
        keys: Mapping[str, Ed25519PublicKey],
        *,
        topic: str | None,
        witnesses: WitnessPolicy | None = None,
    ) -> None:
        self._keys = keys
        self._witnesses = witnesses
        # (origin, size, root hex) -> witness key name -> a cosignature line to check.
        self._cosignatures: dict[tuple[str, int, str], dict[str, list[str]]] = {}
        self._topic = topic
        self.read = False  # the writers topic exists and was read
        self._tree = MerkleTree()
        self._hole: str | None = None
        self._known: dict[str, _Known] = {}
        self._notes: list[tuple[WritersNote, Seen]] = []
        # Per leaf of the tree (offset order): the writer and the size its head or stop gave.
        self._heads: list[tuple[str, int] | None] = []
        self.findings: list[Conclusion] = []

    @property
    def notes(self) -> list[tuple[WritersNote, Seen]]:
        """The trusted notes of the log of writers read so far, each with where it was read."""
        return self._notes

    def sizes_within(self, size: int) -> dict[str, int]:
        """Per writer, the largest size a head or stop among the log's first `size` entries
        gives: what a note of that size covers."""
        sizes: dict[str, int] = {}
        for head in self._heads[:size]:
            if head is not None and head[1] > sizes.get(head[0], 0):
                sizes[head[0]] = head[1]
        return sizes

    def add_entry(self, partition: int, offset: int, value: bytes | None) -> None:
        """One record of the writers topic, in offset order."""
        self.read = True
        where = Seen(self._topic, partition, offset)
        if self._hole is None and (partition != 0 or offset != len(self._tree)):
            self._hole = f"partition {partition} offset {offset} after {len(self._tree)} entries"
        if self._hole is None:
            self._tree.append(value or b"")
            self._heads.append(None)
        try:
            entry = WriterEntry.from_json(value)
        except WritersFormatError as exc:
            self.findings.append(Conclusion("forged", f"log of writers: {exc}", where))
            return
        if self._hole is None and entry.kind != "start":
            self._heads[-1] = (entry.writer, entry.size)
        known = self._known.setdefault(entry.writer, _Known(where=where))
        if entry.kind != "start" and entry.size >= known.size:
            known.size, known.where = entry.size, where

    def add_note(self, where: Seen, value: bytes | None) -> bool:
        """A record of the checkpoints topic keyed `writers`; True when trusted."""
        try:
            note = WritersNote.from_json(value)
        except WritersFormatError as exc:
            self.findings.append(Conclusion("malformed_checkpoint", str(exc), where))
            return False
        key = self._keys.get(note.key_id)
        if key is None or not note.verifies(key):
            detail = (
                f"unknown key id {note.key_id!r}"
                if key is None
                else f"the writers note does not verify with key {note.key_id!r}"
            )
            self.findings.append(Conclusion("bad_signature", detail, where))
            return False
        self._notes.append((note, where))
        return True

    def add_cosignature(self, where: Seen, value: bytes | None) -> None:
        """A record of the checkpoints topic keyed `cosignatures` (a witness's line)."""
        try:
            record = CosignatureRecord.from_json(value)
        except WitnessError as exc:
            self.findings.append(Conclusion("malformed_checkpoint", str(exc)[:200], where))
            return
        self._cosigned(record.origin, record.size, record.root, record.witness, record.line)

    def _cosigned(self, origin: str, size: int, root: str, witness: str, line: str) -> None:
        lines = self._cosignatures.setdefault((origin, size, root), {})
        lines.setdefault(witness, []).append(line)

    def add_kept_note(self, where: Seen, data: bytes) -> bool:
        """A note of the log of writers a witness kept (the text GET /audit/checkpoint?log=
        writers serves); True when it opens with a key given under its key name."""
        try:
            note = parse_note(data)
            head = TreeHead.parse(note.text)
            name = note.signatures[0].name
            if head.origin != writers_log(name) or head.extensions:
                raise NoteError(f"not a note of the log of writers: origin {head.origin[:80]!r}")
        except (NoteError, IndexError) as exc:
            self.findings.append(Conclusion("malformed_checkpoint", str(exc)[:200], where))
            return False
        for key in self._keys.values():
            try:
                open_note(data, [Verifier.of(name, key)])
            except NoteError:
                continue
            self._notes.append((WritersNote(head.size, head.root.hex(), "", "", note.text), where))
            # Its other lines may be witnesses' cosignatures (GET ...?log=writers serves them).
            for line in data.decode().split("\n\n")[-1].splitlines():
                if line.startswith(DASH) and line.count(" ") == 2:
                    name = line[len(DASH) :].split(" ")[0]
                    self._cosigned(head.origin, head.size, head.root.hex(), name, line)
            return True
        self.findings.append(
            Conclusion("bad_signature", "the note does not open with any key given", where)
        )
        return False

    def conclude(
        self,
        held: Mapping[str, int],
        heads: Iterable[SignedHead],
        *,
        from_start: bool,
        strict: bool,
    ) -> tuple[list[Conclusion], list[Conclusion]]:
        """Problems and warnings. `held`: per writer with records, the highest position the
        trail holds + 1 (records or trusted voids); `heads`: the trusted signed heads of
        writers' logs."""
        problems: list[Conclusion] = list(self.findings)
        warnings: list[Conclusion] = []
        heads = list(heads)
        problems += self._forks(heads)
        problems += self._kept_heads(held, heads, from_start=from_start)
        problems += self._notes_against_topic()
        if self._witnesses is not None:
            problems += self._uncosigned(self._witnesses)
        for writer, known in self._known.items():
            size = held.get(writer)
            if size is None:
                if from_start and known.size > 0:
                    problems.append(
                        Conclusion(
                            "writer_missing",
                            f"the log of writers says writer {writer} reached size "
                            f"{known.size}; the audit topic holds none of its records",
                            known.where,
                            writer,
                            0,
                            known.size - 1,
                        )
                    )
            elif size < known.size:
                problems.append(
                    Conclusion(
                        "rollback",
                        f"the log of writers says writer {writer} reached size {known.size}; "
                        f"the audit topic ends at size {size}",
                        known.where,
                        writer,
                        size,
                        known.size - 1,
                    )
                )
        if self.read and self._known:
            for writer in sorted(held.keys() - self._known.keys()):
                finding = Conclusion(
                    "unknown_writer",
                    f"writer {writer} has records but the log of writers does not know it",
                    Seen(self._topic, None, None),
                    writer,
                )
                (problems if strict else warnings).append(finding)
        return problems, warnings

    @staticmethod
    def _kept_heads(
        held: Mapping[str, int], heads: list[SignedHead], *, from_start: bool
    ) -> list[Conclusion]:
        """A writer whose trail ends below the largest size a kept head of it says: rolled
        back (none of its records at all, read from the beginning: back to size 0)."""
        largest: dict[str, SignedHead] = {}
        for head in heads:
            known = largest.get(head.writer)
            if head.kept and (known is None or head.size > known.size):
                largest[head.writer] = head
        found: list[Conclusion] = []
        for writer, head in largest.items():
            size = held.get(writer)
            if size is None and not from_start:
                continue  # a window (--since) without the writer says nothing of its end
            size = size or 0
            if size < head.size:
                found.append(
                    Conclusion(
                        "rollback",
                        f"a kept checkpoint says writer {writer} reached size {head.size}; "
                        f"the audit topic ends at size {size}",
                        head.where,
                        writer,
                        size,
                        head.size - 1,
                    )
                )
        return found

    def _forks(self, heads: Iterable[SignedHead]) -> list[Conclusion]:
        found: list[Conclusion] = []
        first: dict[tuple[str, int], SignedHead] = {}
        for head in heads:
            seen = first.setdefault((head.writer, head.size), head)
            if seen.root != head.root:
                found.append(
                    Conclusion(
                        "fork",
                        f"two signed trees of writer {head.writer} of size {head.size}: root "
                        f"{seen.root.hex()} and {head.root.hex()}",
                        head.where,
                        head.writer,
                        head.size - 1,
                    )
                )
        notes: dict[int, WritersNote] = {}
        for note, where in self._notes:
            kept = notes.setdefault(note.size, note)
            if kept.root != note.root:
                found.append(
                    Conclusion(
                        "fork",
                        f"two signed notes of the log of writers of size {note.size}: root "
                        f"{kept.root} and {note.root}",
                        where,
                    )
                )
        return found

    def _notes_against_topic(self) -> list[Conclusion]:
        if self._hole is not None:
            return [self._hole_finding()]
        if not self.read:
            return [
                Conclusion(
                    "rollback",
                    f"a signed note of the log of writers has size {note.size}; the writers "
                    "topic is not there",
                    where,
                )
                for note, where in self._notes[-1:]
            ]
        found: list[Conclusion] = []
        for note, where in self._notes:
            if note.size > len(self._tree):
                found.append(
                    Conclusion(
                        "rollback",
                        f"a signed note of the log of writers has size {note.size}; the writers "
                        f"topic holds {len(self._tree)} entries",
                        where,
                    )
                )
            elif self._tree.root(note.size) != note.root_bytes:
                found.append(
                    Conclusion(
                        "fork",
                        f"the writers topic's first {note.size} entries have another root "
                        "than the signed note of that size",
                        where,
                    )
                )
        return found

    def _quorum(self, policy: WitnessPolicy, head: TreeHead) -> int:
        """How many of the policy's witnesses validly cosigned `head`."""
        found = self._cosignatures.get((head.origin, head.size, head.root.hex()), {})
        text = head.text()
        count = 0
        for key in policy.witness_keys():
            for line in found.get(key.name, []):
                try:
                    key.verify(line, text)
                except WitnessError:
                    continue
                count += 1
                break
        return count

    def _uncosigned(self, policy: WitnessPolicy) -> list[Conclusion]:
        heads: list[tuple[TreeHead, Seen]] = []
        for note, where in self._notes:
            # A kept note is held as its text alone; one of the topic, signed.
            text = note.note if not note.signature else parse_note(note.note.encode()).text
            heads.append((TreeHead.parse(text), where))
        # The largest size with a quorum whose root is the topic's (a later note vouches for
        # the earlier ones that are the topic's roots too).
        on_topic = self.read and self._hole is None
        vouched = -1
        for head, _ in heads:
            if (
                on_topic
                and head.size <= len(self._tree)
                and self._tree.root(head.size) == head.root
                and self._quorum(policy, head) >= policy.k
            ):
                vouched = max(vouched, head.size)
        found: list[Conclusion] = []
        for head, where in heads:
            count = self._quorum(policy, head)
            if count >= policy.k:
                continue
            if (
                on_topic
                and head.size <= vouched
                and head.size <= len(self._tree)
                and self._tree.root(head.size) == head.root
            ):
                continue
            found.append(
                Conclusion(
                    "uncosigned",
                    f"checkpoint {head.size} of {head.origin} has {count} valid cosignature(s) "
                    f"of the {policy.k} the witness policy asks for",
                    where,
                )
            )
        return found

    def _hole_finding(self) -> Conclusion:
        return Conclusion(
            "rollback",
            f"the writers topic does not run from offset 0 without a hole ({self._hole}): "
            "entries of the log of writers were deleted",
            Seen(self._topic, None, None),
        )
