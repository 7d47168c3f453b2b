"""The proof index: every writer's Merkle tree, rebuilt from what the audit and checkpoints topics
hold, so that an inclusion proof can be given for any record still in the topic — of this
process's writer, of writers that stopped long ago and of other replicas alike.

It is fed in any order (`add_record`, `add_void`, `add_checkpoint`): records of one writer reach
it spread over partitions, so each writer's leaves wait in `pending` until every position below
them is known, then go into the writer's tree in seq order (a position lost for good becomes
known from a checkpoint's `void`). A checkpoint is kept (the latest one per writer) once the
tree has reached its size and their roots agree; a root that disagrees is a `TreeMismatch`:
that writer's proofs are refused from then on, since tree and checkpoint cannot both be right.

The trees live in files (`TreeFiles`, one folder per writer under `directory`); they are a
cache: the index is rebuilt from the topics whenever it is lost. Event ids map to positions in
a SQLite table beside them, for proofs asked by event id.
"""

import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from app.integrity.checkpoint import writer_log
from app.integrity.merkle import (
    LEAF_VERSION,
    ProofError,
    leaf_entry,
    leaf_hash,
    leaf_tail,
    verify_inclusion,
)
from app.integrity.note import NoteError, TlogProof, TreeHead, Verifier, open_note, parse_note
from app.integrity.tree_store import TreeFiles


class ProofUnavailableError(LookupError):
    """No proof can be given (yet): the position is unknown, not covered by a checkpoint the
    index holds, or its writer's tree disagrees with a checkpoint. The message says which."""


@dataclass(frozen=True)
class KnownCheckpoint:
    """A checkpoint the index can prove against: its size, root and signed note."""

    size: int
    root: bytes
    note: bytes


class _Digests:
    """The record digests of one writer's positions in seq order, 32 bytes each, in a file:
    a proof's leaf entry is rebuilt from them (the tree keeps only leaf hashes)."""

    def __init__(self, path: Path, count: int) -> None:
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        # The tree is what counts: digests past it were written by a flush the tree's missed.
        os.ftruncate(self._fd, min(os.fstat(self._fd).st_size // 32, count) * 32)
        self._written = os.fstat(self._fd).st_size // 32
        self._pending: list[bytes] = []

    def append(self, digest: bytes) -> None:
        self._pending.append(digest)

    def get(self, seq: int) -> bytes:
        if seq >= self._written:
            return self._pending[seq - self._written]
        return os.pread(self._fd, 32, seq * 32)

    def flush(self) -> None:
        if self._pending:
            os.pwrite(self._fd, b"".join(self._pending), self._written * 32)
            self._written += len(self._pending)
            self._pending.clear()

    def close(self) -> None:
        self.flush()
        os.close(self._fd)


@dataclass
class _Writer:
    tree: TreeFiles
    digests: _Digests
    # seq -> digest and a framed value's schema id, above the tree
    pending: dict[int, tuple[bytes, int | None]] = field(default_factory=dict)
    waiting: list[KnownCheckpoint] = field(default_factory=list)  # beyond the tree, by size
    latest: KnownCheckpoint | None = None
    mismatch: str | None = None


class ProofIndex:
    """Per-writer trees under `directory`, and the event ids' positions."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self._writers: dict[str, _Writer] = {}
        self._events = sqlite3.connect(directory / "events.sqlite3", isolation_level=None)
        self._events.execute("PRAGMA journal_mode=WAL")
        self._events.execute("PRAGMA synchronous=OFF")  # a cache, rebuilt when lost
        self._events.execute(
            "CREATE TABLE IF NOT EXISTS events "
            "(event_id TEXT PRIMARY KEY, writer TEXT NOT NULL, seq INTEGER NOT NULL) WITHOUT ROWID"
        )
        # The schema ids of framed values (the leaf covers them; the digests file does not).
        self._events.execute(
            "CREATE TABLE IF NOT EXISTS frames (writer TEXT NOT NULL, seq INTEGER NOT NULL, "
            "schema_id INTEGER NOT NULL, PRIMARY KEY (writer, seq)) WITHOUT ROWID"
        )
        self._batch: list[tuple[str, str, int]] = []
        self._frames: list[tuple[str, int, int]] = []

    def _writer(self, writer: str) -> _Writer:
        found = self._writers.get(writer)
        if found is None:
            tree = TreeFiles(self.directory / writer)
            digests = _Digests(self.directory / writer / "digests", len(tree))
            found = self._writers[writer] = _Writer(tree, digests)
        return found

    def writers(self) -> list[str]:
        """The writers seen so far."""
        return sorted(self._writers)

    def size(self, writer: str) -> int:
        """How many positions of `writer` are in its tree (0 for a writer not seen)."""
        known = self._writers.get(writer)
        return 0 if known is None else len(known.tree)

    def add_record(self, writer: str, seq: int, tail: str, event_id: str | None) -> None:
        """A record of the audit topic at `writer`'s position `seq`; `tail` is its leaf tail
        (`merkle.leaf_tail`: the digest, and a framed value's schema id)."""
        self._place(writer, seq, tail)
        if event_id is not None:
            self._batch.append((event_id, writer, seq))

    def add_void(self, writer: str, seq: int, tail: str) -> None:
        """A position a checkpoint lists as lost for good, with its record's leaf tail."""
        self._place(writer, seq, tail)

    def _place(self, writer: str, seq: int, tail: str) -> None:
        known = self._writer(writer)
        if seq < len(known.tree) or seq in known.pending:
            return  # a duplicate (retries) or a void also read as a record: the first counts
        digest_hex, _, schema = tail.partition("\n")
        known.pending[seq] = (bytes.fromhex(digest_hex), int(schema) if schema else None)
        tree = known.tree
        while (next_seq := len(tree)) in known.pending:
            digest, schema_id = known.pending.pop(next_seq)
            # Digests first: at open, the digests file is cut to the tree, never the reverse.
            known.digests.append(digest)
            if schema_id is not None:
                self._frames.append((writer, next_seq, schema_id))
            tree.append_hash(
                leaf_hash(leaf_entry(writer, next_seq, leaf_tail(digest.hex(), schema_id)))
            )
        self._settle(writer, known)

    def add_checkpoint(self, writer: str, checkpoint: KnownCheckpoint) -> None:
        """A trusted checkpoint of `writer` (size, root, its signed note)."""
        known = self._writer(writer)
        known.waiting.append(checkpoint)
        known.waiting.sort(key=lambda c: c.size)
        self._settle(writer, known)

    def _settle(self, writer: str, known: _Writer) -> None:
        """Check the checkpoints the tree has reached against its roots."""
        while known.waiting and known.waiting[0].size <= len(known.tree):
            checkpoint = known.waiting.pop(0)
            if known.tree.root(checkpoint.size) != checkpoint.root:
                known.mismatch = (
                    f"writer {writer}'s records do not have the root its checkpoint of size "
                    f"{checkpoint.size} signed"
                )
            elif known.latest is None or checkpoint.size >= known.latest.size:
                known.latest = checkpoint

    def flush(self) -> None:
        """Write the trees' new hashes and the event ids read since the last call."""
        for known in self._writers.values():
            known.digests.flush()
            known.tree.flush()
        if self._batch or self._frames:
            # One transaction per flush: in autocommit each row would be one (~20 us each).
            with self._events:
                self._events.execute("BEGIN")
                self._events.executemany(
                    "INSERT OR IGNORE INTO events VALUES (?, ?, ?)", self._batch
                )
                self._events.executemany(
                    "INSERT OR REPLACE INTO frames VALUES (?, ?, ?)", self._frames
                )
            self._batch.clear()
            self._frames.clear()

    def locate(self, event_id: str) -> tuple[str, int]:
        """The writer and seq of the record with `event_id`."""
        self.flush()
        row = self._events.execute(
            "SELECT writer, seq FROM events WHERE event_id = ?", (event_id,)
        ).fetchone()
        if row is None:
            raise ProofUnavailableError(f"no record with event_id {event_id!r} is indexed")
        return str(row[0]), int(row[1])

    def proof(self, writer: str, seq: int) -> TlogProof:
        """The tlog-proof of `writer`'s position `seq` against the latest checkpoint covering it;
        its `extra` is the position's leaf entry, so the proof says what it proves."""
        known = self._checked(writer)
        latest = known.latest
        if latest is None or seq >= latest.size:
            raise ProofUnavailableError(
                f"position {seq} of writer {writer} is not covered by a checkpoint yet"
            )
        self.flush()
        row = self._events.execute(
            "SELECT schema_id FROM frames WHERE writer = ? AND seq = ?", (writer, seq)
        ).fetchone()
        tail = leaf_tail(known.digests.get(seq).hex(), None if row is None else int(row[0]))
        entry = leaf_entry(writer, seq, tail)
        return TlogProof(
            index=seq,
            hashes=tuple(known.tree.inclusion(seq, latest.size)),
            checkpoint=latest.note,
            extra=entry,
        )

    def consistency(self, writer: str, old: int, new: int) -> list[bytes]:
        """The consistency proof of `writer`'s tree from size `old` to `new` (both at most the
        size of the latest checkpoint the index holds)."""
        known = self._checked(writer)
        limit = known.latest.size if known.latest is not None else 0
        if not 0 <= old <= new <= limit:
            raise ProofUnavailableError(
                f"writer {writer} has checkpoints up to size {limit}: no proof from {old} to {new}"
            )
        return known.tree.consistency(old, new)

    def root(self, writer: str) -> bytes:
        """The root of `writer`'s tree as indexed so far."""
        return self._checked(writer).tree.root()

    def latest(self, writer: str) -> KnownCheckpoint | None:
        """The latest checkpoint of `writer` the index has checked its tree against."""
        known = self._writers.get(writer)
        return None if known is None else known.latest

    def _checked(self, writer: str) -> _Writer:
        known = self._writers.get(writer)
        if known is None:
            raise ProofUnavailableError(f"no record of writer {writer} is indexed")
        if known.mismatch is not None:
            raise ProofUnavailableError(known.mismatch)
        return known

    def close(self) -> None:
        """Flush and close the files."""
        self.flush()
        for known in self._writers.values():
            known.digests.close()
            known.tree.close()
        self._events.close()


@dataclass(frozen=True)
class ProvenRecord:
    """What a tlog-proof proves: the record with `digest` (stored framed with `schema_id`, or
    not framed: None) is at `seq` of `writer`'s tree, which the checkpoint of `size` entries
    signed under the key name `name` holds."""

    name: str
    writer: str
    seq: int
    digest: str
    size: int
    schema_id: int | None = None


def check_tlog_proof(
    data: bytes,
    keys: list[Ed25519PublicKey],
    opened: dict[bytes, tuple[str, TreeHead]] | None = None,
) -> ProvenRecord:
    """Check a kept tlog-proof offline: its checkpoint note is signed by one of `keys` (under
    the key name it carries), its origin is `<name>/writer/<writer>`, its `extra` is the leaf
    entry of position `index`, and the hashes lead from that leaf to the checkpoint's root.
    NoteError or ProofError says what does not hold. `opened`: notes already opened with
    these keys (many proofs share one checkpoint; an Ed25519 check is most of a proof's cost),
    filled as notes open."""
    proof = TlogProof.parse(data)
    known = None if opened is None else opened.get(proof.checkpoint)
    if known is None:
        names = {signature.name for signature in parse_note(proof.checkpoint).signatures}
        note = open_note(proof.checkpoint, [Verifier.of(n, k) for n in names for k in keys])
        known = (note.verified[0], TreeHead.parse(note.text))
        if opened is not None:
            opened[proof.checkpoint] = known
    name, head = known
    if proof.extra is None:
        raise NoteError("the proof has no extra line: it does not say which record it proves")
    fields = proof.extra.decode("utf-8", "replace").split("\n")
    if len(fields) not in (4, 5) or fields[0] != LEAF_VERSION:
        raise NoteError(f"the extra data is not a {LEAF_VERSION} leaf entry")
    writer, seq_text, digest = fields[1:4]
    schema_id = None
    if len(fields) == 5:
        if not fields[4].isascii() or not fields[4].isdecimal() or int(fields[4]) >= 2**32:
            raise NoteError("the leaf entry's schema id is not a decimal below 2^32")
        schema_id = int(fields[4])
    expected = leaf_entry(writer, proof.index, leaf_tail(digest, schema_id))
    if expected != proof.extra or seq_text != str(proof.index):
        raise ProofError("the leaf entry names another position than the proof's index")
    if head.origin != writer_log(name, writer):
        raise NoteError(
            f"the checkpoint's origin {head.origin!r} is not {writer_log(name, writer)}"
        )
    verify_inclusion(proof.index, head.size, leaf_hash(proof.extra), proof.hashes, head.root)
    return ProvenRecord(name, writer, proof.index, digest, head.size, schema_id)
