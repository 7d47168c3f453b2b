"""app/integrity/timestamp_check.py (what `verify --tsa-ca` concludes) called directly, with
tokens of the real authority (OpenSSL's `ts -reply`) over notes signed here; and the verifier
passing the tokens over without it."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.integrity.checkpoint import rfc3339
from app.integrity.merkle import MerkleTree
from app.integrity.timestamp import (
    TimestampRecord,
    check_reply,
    load_tsa_roots,
    note_sha256,
    stamp_time,
    timestamp_query,
)
from app.integrity.timestamp_check import TimestampCheck
from app.integrity.verifier import Verifier
from app.integrity.writers import WritersNote, writers_log
from app.integrity.writers_check import Seen
from tests.helpers.integrity import ChainedWriter, writers_entry
from tests.helpers.tsa import Authority

KEY = Ed25519PrivateKey.generate()
TOKEN_AT = Seen("t.checkpoints", 0, 9)
NOTE_AT = Seen("t.checkpoints", 0, 4)


def note_of(size: int, at: datetime) -> WritersNote:
    tree = MerkleTree()
    for n in range(size):
        tree.append(f"entry {n}".encode())
    return WritersNote.sign("log", size, tree.root(), time=rfc3339(at), key_id="k", key=KEY)


def stamped(authority: Authority, note: WritersNote) -> TimestampRecord:
    """The record the service keeps for a token the authority gives over `note` now."""
    query = timestamp_query(note.note)
    reply = authority.reply(query.der)
    stamp = check_reply(
        reply, note_sha256(note.note), load_tsa_roots(authority.ca_file), nonce=query.nonce
    )
    return TimestampRecord(
        writers_log("log"),
        note.size,
        note.root,
        note_sha256(note.note).hex(),
        note.time,
        "http://tsa/",
        query.nonce,
        reply,
        stamp_time(stamp),
    )


def conclude(
    authority: Authority,
    notes: list[tuple[WritersNote, Seen]],
    records: list[bytes | None],
    skew_s: float = 10.0,
) -> tuple[list[tuple[str, Seen, str]], int]:
    check = TimestampCheck(load_tsa_roots(authority.ca_file), skew_s=skew_s)
    for value in records:
        check.add(TOKEN_AT, value)
    found = check.conclude(notes)
    return [(c.kind, c.where, c.detail) for c in found], check.valid


def test_a_token_over_a_note_just_signed_is_valid(timestamp_authority: Authority) -> None:
    note = note_of(3, datetime.now(UTC))
    record = stamped(timestamp_authority, note)
    assert conclude(timestamp_authority, [(note, NOTE_AT)], [record.to_bytes()]) == ([], 1)


def test_a_note_time_beyond_the_skew_either_way_is_backdated(
    timestamp_authority: Authority,
) -> None:
    now = datetime.now(UTC)
    shifts = [(timedelta(minutes=1), "after the authority"), (-timedelta(minutes=1), "first saw")]
    for shift, said in shifts:
        note = note_of(3, now + shift)
        record = stamped(timestamp_authority, note)
        found, valid = conclude(timestamp_authority, [(note, NOTE_AT)], [record.to_bytes()])
        assert [(kind, where) for kind, where, _ in found] == [("backdated", NOTE_AT)]
        assert said in found[0][2]
        assert valid == 0
    # Within the skew given: valid; a tighter skew finds it.
    note = note_of(3, now - timedelta(seconds=5))
    value = stamped(timestamp_authority, note).to_bytes()
    assert conclude(timestamp_authority, [(note, NOTE_AT)], [value])[1] == 1
    found, _ = conclude(timestamp_authority, [(note, NOTE_AT)], [value], skew_s=2)
    assert [kind for kind, _, _ in found] == ["backdated"]


def test_records_that_do_not_hold_are_bad_timestamps(timestamp_authority: Authority) -> None:
    note = note_of(3, datetime.now(UTC))
    record = stamped(timestamp_authority, note)
    other = note_of(4, datetime.now(UTC))
    cases = {
        "not a record": (b"{}", TOKEN_AT),
        "another time": (replace(record, time="x").to_bytes(), NOTE_AT),
        "another nonce": (
            replace(record, nonce=record.nonce + 1).to_bytes(),
            NOTE_AT,
        ),
        "no such note": (stamped(timestamp_authority, other).to_bytes(), TOKEN_AT),
        "another origin": (
            replace(record, origin="x/writers").to_bytes(),
            NOTE_AT,
        ),
    }
    for name, (value, where) in cases.items():
        found, valid = conclude(timestamp_authority, [(note, NOTE_AT)], [value])
        assert [(kind, at) for kind, at, _ in found] == [("bad_timestamp", where)], name
        assert valid == 0


def test_notes_without_any_token_and_kept_notes(timestamp_authority: Authority) -> None:
    note = note_of(3, datetime.now(UTC))
    found, _ = conclude(timestamp_authority, [(note, NOTE_AT)], [])
    assert [(kind, at) for kind, at, _ in found] == [("bad_timestamp", NOTE_AT)]
    # A note a witness kept (no place on the topic) has no time: no token is asked of it.
    assert conclude(timestamp_authority, [(note, Seen("kept.txt", None, None))], []) == ([], 0)
    assert conclude(timestamp_authority, [], []) == ([], 0)


def test_the_verifier_passes_tokens_over_without_a_ca_and_counts_them_with_one(
    timestamp_authority: Authority,
) -> None:
    note = note_of(1, datetime.now(UTC))
    value = stamped(timestamp_authority, note).to_bytes()
    plain = Verifier({"k": KEY.public_key()}, checkpoints_topic="t.checkpoints")
    plain.add_checkpoint(0, 0, note.to_bytes(), b"writers")
    plain.add_checkpoint(0, 1, value, b"timestamps")
    report = plain.finish()
    assert (report.checkpoints_checked, report.timestamps_checked) == (1, 0)
    assert [p.kind for p in report.problems if p.kind.endswith("timestamp")] == []
    checking = Verifier(
        {"k": KEY.public_key()},
        checkpoints_topic="t.checkpoints",
        timestamps=TimestampCheck(load_tsa_roots(timestamp_authority.ca_file)),
    )
    checking.add_checkpoint(0, 0, note.to_bytes(), b"writers")
    checking.add_checkpoint(0, 1, value, b"timestamps")
    report = checking.finish()
    assert (report.checkpoints_checked, report.timestamps_checked) == (1, 1)
    assert report.timestamps_valid == 1
    assert not [p for p in report.problems if p.kind in ("bad_timestamp", "backdated")]


def test_records_past_the_latest_stamped_note_are_a_warning(
    timestamp_authority: Authority,
) -> None:
    writer = ChainedWriter()
    records = writer.records(5)
    entries = [
        writers_entry("start", writer),
        writers_entry("head", writer, 3),
        writers_entry("head", writer, 5),
    ]
    tree = MerkleTree()
    for entry in entries[:2]:
        tree.append(entry.value)
    # A note of the log's first two entries (the head at size 3), stamped; none of the third.
    note = WritersNote.sign(
        "log", 2, tree.root(), time=rfc3339(datetime.now(UTC)), key_id="k", key=KEY
    )
    verifier = Verifier(
        {"k": KEY.public_key()},
        topic="t",
        checkpoints_topic="t.checkpoints",
        writers_topic="t.writers",
        timestamps=TimestampCheck(load_tsa_roots(timestamp_authority.ca_file)),
    )
    verifier.add_checkpoint(0, 0, note.to_bytes(), b"writers")
    verifier.add_checkpoint(0, 1, stamped(timestamp_authority, note).to_bytes(), b"timestamps")
    for offset, entry in enumerate(entries):
        verifier.add_writers_entry(0, offset, entry.value)
    for offset, record in enumerate(records):
        verifier.add_record(0, offset, record.value, record.headers)
    report = verifier.finish()
    assert report.timestamps_valid == 1
    late = [w for w in report.warnings if w.kind == "not_timestamped"]
    assert [(w.writer, w.seq, w.last_seq, w.offset) for w in late] == [(writer.writer, 3, 4, 3)]
    assert not [p for p in report.problems if p.kind in ("bad_timestamp", "backdated")]
