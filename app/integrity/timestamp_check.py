"""What `verify --tsa-ca` concludes from the timestamp tokens on the checkpoints topic (records
keyed `timestamps`, app/integrity/timestamp.py): the part of app/integrity/verifier.py that
checks trusted time (docs/integrity.md, "Trusted time").

- `bad_timestamp`: a record that is not a timestamp record; a token that does not check against
  the CA (status, signature chain, timeStamping key usage, imprint = `note_sha256`, nonce = the
  record's); a `time` that is not the token's genTime; a token naming no trusted note of the log
  of writers on the topic (by SHA-256, size, root and `time`); and, when the topic holds notes
  of the log of writers, no token at all.
- `backdated`: the note's `time` T and the token's genTime G differ by more than the skew S:
  T > G + S (the note claims to be signed after the authority saw it) or G > T + S (it claims
  to be older than it was when the authority saw it; the service signs a note just before asking).

Each finding names the note it concerns (where it was read) when that note is on the topic, the
token's record otherwise.
"""

from collections.abc import Sequence
from datetime import datetime, timedelta

from cryptography import x509

from app.integrity.report import DEFAULT_SKEW_S
from app.integrity.timestamp import (
    Stamp,
    TimestampError,
    TimestampRecord,
    check_reply,
    note_sha256,
    stamp_time,
)
from app.integrity.writers import WritersNote
from app.integrity.writers_check import Conclusion, Seen


class TimestampCheck:
    """Collects the records keyed `timestamps`; `conclude()` checks them against the notes."""

    def __init__(self, roots: list[x509.Certificate], *, skew_s: float = DEFAULT_SKEW_S) -> None:
        self._roots = roots
        self._skew = timedelta(seconds=skew_s)
        self._tokens: list[tuple[Seen, bytes | None]] = []
        self.valid = 0
        # The largest size of the log of writers a valid token's note has (0: none).
        self.stamped_size = 0

    def add(self, where: Seen, value: bytes | None) -> None:
        """One record of the checkpoints topic keyed `timestamps`."""
        self._tokens.append((where, value))

    @property
    def checked(self) -> int:
        """The records keyed `timestamps` read."""
        return len(self._tokens)

    def conclude(self, notes: Sequence[tuple[WritersNote, Seen]]) -> list[Conclusion]:
        """The problems, given the trusted notes of the log of writers read off the topic."""
        # Not the notes a witness kept (`verify --checkpoint`): those have no time.
        on_topic = [(note, where) for note, where in notes if where.partition is not None]
        by_digest: dict[str, list[tuple[WritersNote, Seen]]] = {}
        for note, where in on_topic:
            by_digest.setdefault(note_sha256(note.note).hex(), []).append((note, where))
        found: list[Conclusion] = []
        for where, value in self._tokens:
            problem = self._check(where, value, by_digest)
            if isinstance(problem, Conclusion):
                found.append(problem)
            else:
                self.valid += 1
                self.stamped_size = max(self.stamped_size, problem)
        if on_topic and not self._tokens:
            found.append(
                Conclusion(
                    "bad_timestamp",
                    "notes of the log of writers but no timestamp token at all",
                    on_topic[-1][1],
                )
            )
        return found

    def _check(
        self,
        token_at: Seen,
        value: bytes | None,
        by_digest: dict[str, list[tuple[WritersNote, Seen]]],
    ) -> Conclusion | int:
        """A problem, or the size of the note a valid token stamps."""
        where = _shown(token_at)
        try:
            record = TimestampRecord.from_json(value)
        except TimestampError as exc:
            return Conclusion("bad_timestamp", f"timestamp record at {where}: {exc}", token_at)
        matches = by_digest.get(record.note_sha256, [])
        named = [
            (note, seen)
            for note, seen in matches
            if (note.size, note.root, note.time) == (record.size, record.root, record.note_time)
        ]
        note, at = named[0] if named else (None, token_at)
        stamp = self._token(record, where, at)
        if isinstance(stamp, Conclusion):
            return stamp
        if note is None:
            return Conclusion(
                "bad_timestamp",
                f"the token at {where} stamps a note of the log of writers of size "
                f"{record.size} and time {record.note_time[:40]!r} that no trusted note on the "
                "checkpoints topic is (by its SHA-256, size, root and time)",
                token_at,
            )
        return self._against_note(record, stamp, note, where, at) or note.size

    def _token(self, record: TimestampRecord, where: str, at: Seen) -> Stamp | Conclusion:
        try:
            stamp = check_reply(
                record.token, bytes.fromhex(record.note_sha256), self._roots, nonce=record.nonce
            )
        except TimestampError as exc:
            return Conclusion("bad_timestamp", f"the token at {where}: {exc}", at)
        if record.time != stamp_time(stamp):
            return Conclusion(
                "bad_timestamp",
                f"the token at {where} says time {record.time[:40]!r}; its genTime is "
                f"{stamp_time(stamp)}",
                at,
            )
        return stamp

    def _against_note(
        self, record: TimestampRecord, stamp: Stamp, note: WritersNote, where: str, at: Seen
    ) -> Conclusion | None:
        if record.origin != note.note.split("\n", 1)[0]:  # the note's first line
            return Conclusion(
                "bad_timestamp", f"the token at {where} names origin {record.origin[:80]!r}", at
            )
        try:
            signed = datetime.fromisoformat(note.time)
        except ValueError:
            return Conclusion("backdated", f"the note's time {note.time[:40]!r} is no time", at)
        if signed.tzinfo is None:
            return Conclusion("backdated", f"the note's time {note.time[:40]!r} has no offset", at)
        skew = f"token at {where}; skew {self._skew.total_seconds():g}s"
        if signed > stamp.gen_time + self._skew:
            return Conclusion(
                "backdated",
                f"the note says it was signed at {note.time}, after the authority stamped it "
                f"at {stamp_time(stamp)} ({skew})",
                at,
            )
        if stamp.gen_time > signed + self._skew:
            return Conclusion(
                "backdated",
                f"the note says it was signed at {note.time}; the authority first saw it at "
                f"{stamp_time(stamp)} ({skew})",
                at,
            )
        return None


def _shown(where: Seen) -> str:
    if where.partition is None:
        return where.topic or "?"
    return f"{where.topic}[{where.partition}]@{where.offset}"
