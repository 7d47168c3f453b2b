"""The witness protocol (app/integrity/witness.py): the policy, the add-checkpoint body, the
answers and cosignatures, in unit tests; then against a real litewitness (filippo.io/torchwood,
no broker): it cosigns our notes, our code verifies its cosignatures, and no rewritten history
re-signed with our real key is ever cosigned once a genuine checkpoint was."""

import base64
import json
import random
import struct

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.integrity.merkle import MerkleTree
from app.integrity.note import TreeHead, sign_note, verifier_key
from app.integrity.witness import (
    Answer,
    CosignatureRecord,
    Cosigned,
    Failed,
    Refused,
    SizeConflict,
    WitnessError,
    WitnessKey,
    add_checkpoint_body,
    cosign,
    interpret,
    with_cosignatures,
    witness_key_text,
)
from app.integrity.writers import writers_log
from tests.helpers.witness import CosigCheck, MakeWitness, rewritten, submit

NAME = "example.test/audit"
ORIGIN = writers_log(NAME)
WITNESS_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
WITNESS = witness_key_text("witness.example/w1", WITNESS_KEY.public_key())
TEXT = TreeHead(ORIGIN, 5, bytes(32)).text()
FORK_TRIALS = 120


def test_unit_witness_key_reads_the_spec_form() -> None:
    key = WitnessKey.parse(WITNESS)
    assert key.name == "witness.example/w1"
    assert key.text() == WITNESS
    encoded = WITNESS.split("+", 2)[2]
    assert base64.b64decode(encoded)[0] == 0x04
    name, hex_id, _ = WITNESS.split("+", 2)
    log_form = verifier_key(name, WITNESS_KEY.public_key())  # type 0x01: a log's key
    for bad in (log_form, "w+00000000+" + encoded, "nope", f"{name}+{hex_id}+!!", "a b+1+2"):
        with pytest.raises(WitnessError):
            WitnessKey.parse(bad)


def test_unit_cosignature_verifies_over_the_spec_message() -> None:
    line = cosign("witness.example/w1", WITNESS_KEY, TEXT, 1_700_000_000)
    raw = base64.b64decode(line.split(" ")[2])
    assert len(raw) == 76
    assert struct.unpack(">Q", raw[4:12]) == (1_700_000_000,)
    # The signature is over "cosignature/v1\ntime <t>\n" and the note text, nothing else.
    WITNESS_KEY.public_key().verify(raw[12:], b"cosignature/v1\ntime 1700000000\n" + TEXT.encode())
    found = WitnessKey.parse(WITNESS).verify(line, TEXT)
    assert (found.name, found.time, found.line) == ("witness.example/w1", 1_700_000_000, line)
    other_text = TreeHead(ORIGIN, 6, bytes(32)).text()
    with pytest.raises(WitnessError, match="does not verify"):
        WitnessKey.parse(WITNESS).verify(line, other_text)
    timed = base64.b64encode(raw[:4] + struct.pack(">Q", 1) + raw[12:]).decode()
    with pytest.raises(WitnessError, match="does not verify"):
        WitnessKey.parse(WITNESS).verify(f"\u2014 witness.example/w1 {timed}", TEXT)
    other = witness_key_text("witness.example/w2", Ed25519PrivateKey.generate().public_key())
    with pytest.raises(WitnessError, match="not by witness"):
        WitnessKey.parse(other).verify(line, TEXT)


def test_unit_add_checkpoint_body_is_old_proof_blank_note() -> None:
    note = sign_note(TEXT, NAME, Ed25519PrivateKey.generate())
    body = add_checkpoint_body(3, [b"\x01" * 32, b"\x02" * 32], note)
    lines = body.decode().split("\n")
    assert lines[:4] == [
        "old 3",
        base64.b64encode(b"\x01" * 32).decode(),
        base64.b64encode(b"\x02" * 32).decode(),
        "",
    ]
    assert body.endswith(note.encode())
    assert add_checkpoint_body(0, [], note) == b"old 0\n\n" + note.encode()
    with pytest.raises(WitnessError):
        add_checkpoint_body(0, [bytes(32)] * 64, note)


def test_unit_answers_are_read_as_the_spec_says() -> None:
    key = WitnessKey.parse(WITNESS)
    line = cosign(key.name, WITNESS_KEY, TEXT, 5)
    foreign = cosign("other/w", Ed25519PrivateKey.generate(), TEXT, 5)
    body = f"{foreign}\n{line}\n".encode()

    def read(status: int, content_type: str, data: bytes, old: int = 2) -> Answer:
        return interpret(status, content_type, data, key=key, text=TEXT, old=old)

    cosigned = read(200, "text/plain", body)
    assert isinstance(cosigned, Cosigned)
    assert [c.line for c in cosigned.cosignatures] == [line]
    assert isinstance(read(200, "text/plain", foreign.encode()), Failed)
    assert read(409, "text/x.tlog.size", b"7\n") == SizeConflict(7)
    assert isinstance(read(409, "text/x.tlog.size", b"2\n"), Refused)  # same size, other tree
    assert isinstance(read(409, "text/x.tlog.size", b"07\n"), Failed)
    for status in (403, 404, 422):
        assert isinstance(read(status, "text/plain", b"no"), Refused)
    for status in (400, 500, 503):
        assert isinstance(read(status, "text/plain", b"no"), Failed)


def test_unit_cosigned_note_and_record() -> None:
    note = sign_note(TEXT, NAME, Ed25519PrivateKey.generate())
    line = cosign("witness.example/w1", WITNESS_KEY, TEXT, 5)
    cosigned = with_cosignatures(note, [line, line])
    assert cosigned == note + line + "\n"
    assert with_cosignatures(cosigned, [line]) == cosigned
    record = CosignatureRecord(ORIGIN, 5, "00" * 32, "witness.example/w1", line)
    assert CosignatureRecord.from_json(record.to_bytes()) == record
    assert record.head().text() == TEXT
    value = json.loads(record.to_bytes())
    assert value["root"] == "sha256:" + "00" * 32
    for broken in ({**value, "size": -1}, {**value, "root": "00"}, {**value, "extra": 1}):
        with pytest.raises(WitnessError):
            CosignatureRecord.from_json(json.dumps(broken).encode())


class _Log:
    """Our log of writers as the tests drive it: a tree, its key, its notes."""

    def __init__(self, entries: int) -> None:
        self.key = Ed25519PrivateKey.generate()
        self.vkey = verifier_key(NAME, self.key.public_key())
        self.entries = [f"entry {i}".encode() for i in range(entries)]
        self.tree = MerkleTree()
        for entry in self.entries:
            self.tree.append(entry)

    def note(self, size: int, tree: MerkleTree | None = None) -> tuple[str, str]:
        text = TreeHead(ORIGIN, size, (tree or self.tree).root(size)).text()
        return text, sign_note(text, NAME, self.key)


def _submit(
    url: str,
    old: int,
    proof: list[bytes],
    note: str,
    key: WitnessKey,
    text: str,
    client: httpx.Client | None = None,
) -> Answer:
    return submit(url, old, proof, note, key=key, text=text, client=client)


def test_our_cosigned_notes_open_in_go_with_the_witness_keys(cosigcheck: CosigCheck) -> None:
    log = _Log(3)
    text, note = log.note(3)
    line = cosign("witness.example/w1", WITNESS_KEY, text, 1_700_000_000)
    other = Ed25519PrivateKey.generate()
    second = cosign("witness.example/w2", other, text, 1_700_000_001)
    keys = [WITNESS, witness_key_text("witness.example/w2", other.public_key())]
    answer = cosigcheck.open(
        with_cosignatures(note, [line, second]).encode(), ORIGIN, log.vkey, keys
    )
    assert answer["ok"], answer
    assert (answer["size"], answer["cosigned_by"]) == (
        3,
        ["witness.example/w1", "witness.example/w2"],
    )
    # A cosignature over another checkpoint fails the note in Go as in our code.
    wrong = cosign("witness.example/w1", WITNESS_KEY, log.note(2)[0], 1_700_000_000)
    answer = cosigcheck.open(with_cosignatures(note, [wrong]).encode(), ORIGIN, log.vkey, keys)
    assert not answer["ok"], answer
    with pytest.raises(WitnessError):
        WitnessKey.parse(WITNESS).verify(wrong, text)


def test_litewitness_cosigns_our_notes_and_we_verify_its_cosignatures(
    make_witness: MakeWitness, cosigcheck: CosigCheck
) -> None:
    log = _Log(10)
    witness = make_witness("witness.test/one", ORIGIN, log.vkey)
    key = WitnessKey.parse(witness.vkey)
    text, note = log.note(4)
    first = _submit(witness.url, 0, [], note, key, text)
    assert isinstance(first, Cosigned), first
    assert first.cosignatures[0].name == "witness.test/one"
    # What litewitness signed, Go's transparency-dev/formats verifies with the key it logged.
    cosigned = with_cosignatures(note, [first.cosignatures[0].line]).encode()
    answer = cosigcheck.open(cosigned, ORIGIN, log.vkey, [witness.vkey])
    assert answer["ok"], answer
    assert answer["cosigned_by"] == ["witness.test/one"]
    # A later checkpoint with the consistency proof from the size it cosigned.
    text, note = log.note(10)
    second = _submit(witness.url, 4, log.tree.consistency(4, 10), note, key, text)
    assert isinstance(second, Cosigned), second
    # A wrong `old` is answered with the size it holds; from there it cosigns again.
    assert _submit(witness.url, 4, log.tree.consistency(4, 10), note, key, text) == SizeConflict(10)
    again = _submit(witness.url, 10, [], note, key, text)
    assert isinstance(again, Cosigned), again
    # A note signed by another key than the one it trusts for our origin: 403.
    stranger = sign_note(text, NAME, Ed25519PrivateKey.generate())
    assert isinstance(_submit(witness.url, 10, [], stranger, key, text), Refused)


def _fork(log: _Log, rng: random.Random, cosigned: int) -> tuple[MerkleTree, int]:
    tree = rewritten(log.entries, cosigned, rng)
    return tree, len(tree)


def test_fork_trials_no_rewritten_history_is_ever_cosigned(make_witness: MakeWitness) -> None:
    log = _Log(200)
    witness = make_witness("witness.test/forks", ORIGIN, log.vkey)
    key = WitnessKey.parse(witness.vkey)
    rng = random.Random(27)
    text, note = log.note(100)
    assert isinstance(_submit(witness.url, 0, [], note, key, text), Cosigned)
    refused = 0
    with httpx.Client() as client:
        for _ in range(FORK_TRIALS):
            fork, size = _fork(log, rng, 100)
            assert fork.root(100) != log.tree.root(100)
            text, note = log.note(size, fork)  # re-signed with our real key
            # As an operator would: the proof from the size the witness holds, in the forged
            # tree; sometimes a stale `old` first, then the size the witness answers with.
            old = rng.choice([100, 100, 0, 50])
            proof = fork.consistency(old, size)
            answer = _submit(witness.url, old, proof, note, key, text, client)
            if isinstance(answer, SizeConflict):
                old = answer.size
                proof = fork.consistency(old, size)
                answer = _submit(witness.url, old, proof, note, key, text, client)
            assert isinstance(answer, Refused), (size, answer)
            refused += 1
    assert refused == FORK_TRIALS
    # The witness still holds the genuine checkpoint and cosigns the genuine extension.
    text, note = log.note(200)
    genuine = _submit(witness.url, 100, log.tree.consistency(100, 200), note, key, text)
    assert isinstance(genuine, Cosigned), genuine
