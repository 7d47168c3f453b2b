"""The log of writers' formats (app/integrity/writers.py): entries and the signed envelope of
its notes, parsed strictly; the notes open in Go with origin `<name>/writers`."""

import hashlib
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.integrity.writers import WriterEntry, WritersFormatError, WritersNote, writers_log
from tests.helpers.integrity import spec_root, spec_verifier_key
from tests.helpers.tlog import TlogCheck

WRITER = "4f1c0a9e2b7d4c3a8e6f5d1b0c9a8e7f"
NAME = "example.test/audit"
TIME = "2026-12-07T09:00:00.000000Z"


def test_unit_entries_are_canonical_json_of_the_spec() -> None:
    start = WriterEntry("start", WRITER, TIME, origin=f"{NAME}/writer/{WRITER}")
    head = WriterEntry("head", WRITER, TIME, size=3, root="ab" * 32)
    assert start.to_bytes() == (
        b'{"kind":"start","origin":"example.test/audit/writer/' + WRITER.encode() + b'",'
        b'"time":"' + TIME.encode() + b'","writer":"' + WRITER.encode() + b'"}'
    )
    assert json.loads(head.to_bytes()) == {
        "kind": "head",
        "writer": WRITER,
        "time": TIME,
        "size": 3,
        "root": "sha256:" + "ab" * 32,
    }
    for entry in (start, head, WriterEntry("stop", WRITER, TIME, size=0, root="cd" * 32)):
        assert WriterEntry.from_json(entry.to_bytes()) == entry


@pytest.mark.parametrize(
    "value",
    [
        None,
        b"",
        b"not json",
        b"[]",
        b'{"kind":"pause","writer":"' + WRITER.encode() + b'","time":"t"}',
        b'{"kind":"start","writer":"' + WRITER.encode() + b'","time":"t"}',
        b'{"kind":"start","writer":"ABC","time":"t","origin":"o"}',
        b'{"kind":"start","writer":"' + WRITER.encode() + b'","time":"t","origin":"o","x":1}',
        b'{"kind":"head","writer":"'
        + WRITER.encode()
        + b'","time":"t","size":-1,"root":"sha256:'
        + b"a" * 64
        + b'"}',
        b'{"kind":"head","writer":"'
        + WRITER.encode()
        + b'","time":"t","size":true,"root":"sha256:'
        + b"a" * 64
        + b'"}',
        b'{"kind":"stop","writer":"' + WRITER.encode() + b'","time":"t","size":1,"root":"a"}',
        b"[" * 5000,
    ],
)
def test_unit_what_is_not_an_entry_is_refused(value: bytes | None) -> None:
    with pytest.raises(WritersFormatError):
        WriterEntry.from_json(value)


def test_unit_a_note_round_trips_and_verifies_only_with_its_key() -> None:
    key = Ed25519PrivateKey.generate()
    root = hashlib.sha256(b"x").digest()
    note = WritersNote.sign(NAME, 7, root, time=TIME, key_id="k1", key=key)
    assert note.note.startswith(f"{writers_log(NAME)}\n7\n")
    parsed = WritersNote.from_json(note.to_bytes())
    assert parsed == note
    assert parsed.verifies(key.public_key())
    assert not parsed.verifies(Ed25519PrivateKey.generate().public_key())
    # A size or root the note does not say is refused; a changed time breaks the signature.
    body = json.loads(note.to_bytes())
    with pytest.raises(WritersFormatError, match="tree head"):
        WritersNote.from_json(json.dumps({**body, "size": 8}).encode())
    later = WritersNote.from_json(json.dumps({**body, "time": "later"}).encode())
    assert not later.verifies(key.public_key())
    for broken in ({**body, "log": "other"}, {**body, "extra": 1}, {**body, "size": "7"}):
        with pytest.raises(WritersFormatError):
            WritersNote.from_json(json.dumps(broken).encode())


def test_notes_of_the_log_of_writers_open_in_go(tlogcheck: TlogCheck) -> None:
    key = Ed25519PrivateKey.generate()
    values = [f'{{"kind":"start","n":{n}}}'.encode() for n in range(5)]
    for size in range(1, 6):
        note = WritersNote.sign(
            NAME, size, spec_root(values[:size]), time=TIME, key_id="k", key=key
        )
        opened = tlogcheck.checkpoint(
            note.note.encode(), f"{NAME}/writers", [spec_verifier_key(NAME, key)]
        )
        assert opened == (size, tlogcheck.roots(values)[size])
