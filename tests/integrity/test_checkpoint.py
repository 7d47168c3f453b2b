"""Checkpoints: the JSON of the spec, signing and verifying, a tampered one failing."""

import hashlib
import json
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from app.integrity.chain import GENESIS, link_of
from app.integrity.checkpoint import (
    Checkpoint,
    CheckpointFormatError,
    canonical_json,
    new_checkpoint,
    verify_note,
    verify_signature,
)
from app.integrity.keys import derived_key_id
from app.integrity.merkle import MerkleTree, leaf_entry, leaf_hash
from app.integrity.note import TreeHead, Verifier, open_note, sign_note, verifier_key
from tests.helpers.integrity import doc_vector
from tests.helpers.tlog import TlogCheck

WRITER = "0123456789abcdef0123456789abcdef"
LINK = "ab" * 32


def signed(key: Ed25519PrivateKey, **fields: object) -> Checkpoint:
    return new_checkpoint(writer=WRITER, seq=41, chain=LINK, key_id="k1", **fields).sign(key)  # type: ignore[arg-type]


def test_a_signed_checkpoint_verifies_and_round_trips_through_its_json() -> None:
    key = Ed25519PrivateKey.generate()
    checkpoint = signed(key, void={7: "cd" * 32})
    parsed = Checkpoint.from_json(checkpoint.to_bytes())
    assert parsed == checkpoint
    assert verify_signature(parsed, key.public_key())
    body = json.loads(checkpoint.to_bytes())
    assert body["count"] == 42
    assert body["chain"] == "sha256:" + LINK
    assert body["void"] == {"7": "sha256:" + "cd" * 32}
    assert body["time"].endswith("Z")
    assert len(body["time"]) == len("2026-01-01T00:00:00.000000Z")
    assert "=" not in body["signature"]


def test_signed_bytes_are_the_canonical_json_without_the_signature() -> None:
    checkpoint = signed(Ed25519PrivateKey.generate())
    body = json.loads(checkpoint.to_bytes())
    del body["signature"]
    expected = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert checkpoint.signed_bytes() == expected.encode() == canonical_json(body)


@pytest.mark.parametrize(
    ("field", "value"),
    [("seq", 40), ("chain", "sha256:" + "ac" * 32), ("writer", "f" * 32), ("key_id", "k2")],
)
def test_a_tampered_checkpoint_fails_verification(field: str, value: object) -> None:
    key = Ed25519PrivateKey.generate()
    body = json.loads(signed(key).to_bytes())
    body[field] = value
    if field == "seq":
        body["count"] = value + 1  # type: ignore[operator]
    assert not verify_signature(Checkpoint.from_json(body), key.public_key())


def test_another_keys_signature_or_a_garbled_one_fails() -> None:
    key = Ed25519PrivateKey.generate()
    checkpoint = signed(key)
    assert not verify_signature(checkpoint, Ed25519PrivateKey.generate().public_key())
    body = json.loads(checkpoint.to_bytes())
    body["signature"] = "not*base64"
    assert not verify_signature(Checkpoint.from_json(body), key.public_key())


@pytest.mark.parametrize(
    "change",
    [
        {"count": 7},
        {"seq": "41"},
        {"seq": True},
        {"chain": LINK},
        {"void": {"x": "sha256:" + LINK}},
    ],
)
def test_a_malformed_checkpoint_is_a_format_error(change: dict[str, object]) -> None:
    body = {**json.loads(signed(Ed25519PrivateKey.generate()).to_bytes()), **change}
    with pytest.raises(CheckpointFormatError):
        Checkpoint.from_json(body)
    with pytest.raises(CheckpointFormatError):
        Checkpoint.from_json(b"[1]")


def test_unit_signing_and_verifying_cost_figures() -> None:
    # A figure for the report (rule 4: printed, not asserted): one checkpoint a second is cheap.
    key = Ed25519PrivateKey.generate()
    started = time.perf_counter()
    for seq in range(1000):
        checkpoint = new_checkpoint(writer=WRITER, seq=seq, chain=LINK, key_id="k1").sign(key)
    signed_s = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(1000):
        assert verify_signature(checkpoint, key.public_key())
    verified_s = time.perf_counter() - started
    print(f"checkpoint build+sign {signed_s * 1000:.0f} us, verify {verified_s * 1000:.0f} us each")


# Bytes anyone with write access to the checkpoints topic can put there (POST /publish, Kafka).
POISON: list[object] = [
    b"[" * 5000,
    b"{" * 5000,
    b'{"void":' * 5000,
    b"\xff\xfe\x00not utf-8",
    b"not json",
    b"",
    None,
    b"[1]",
    b"null",
    b'"a string"',
    b"1e999999",
    b'{"seq": ' + b"9" * 5000 + b"}",
    b'{"version": 1, "writer": "' + b"a" * 2_000_000 + b'"}',
    {"version": 1},
    ["a", "list"],
    42,
]


@pytest.mark.parametrize("value", POISON, ids=lambda v: repr(v)[:30])
def test_unit_any_bytes_are_a_checkpoint_or_a_format_error(value: object) -> None:
    with pytest.raises(CheckpointFormatError):
        Checkpoint.from_json(value)


@pytest.mark.parametrize(
    "change",
    [
        {"void": []},
        {"void": {"1": 5}},
        {"void": {"1": None}},
        {"writer": 7},
        {"time": None},
        {"signature": ["x"]},
        {"version": "1"},
        {"seq": 1.5, "count": 2.5},
        {"seq": -1, "count": 0},
    ],
)
def test_unit_fields_of_the_wrong_type_are_a_format_error(change: dict[str, object]) -> None:
    body = {**json.loads(signed(Ed25519PrivateKey.generate()).to_bytes()), **change}
    with pytest.raises(CheckpointFormatError):
        Checkpoint.from_json(json.dumps(body).encode())


def test_unit_unknown_fields_and_duplicate_keys_are_format_errors() -> None:
    genuine = signed(Ed25519PrivateKey.generate()).to_bytes()
    body = json.loads(genuine)
    for value in (
        json.dumps({**body, "note": "x"}).encode(),
        genuine.replace(b'{"chain"', b'{"seq":999,"chain"', 1),
        genuine.replace(
            b'"void":{}',
            b'"void":{"1":"sha256:' + b"a" * 64 + b'","1":"sha256:' + b"b" * 64 + b'"}',
        ),
        json.dumps({**body, "void": {"07": "sha256:" + "a" * 64}}).encode(),
        json.dumps({**body, "writer": "W" * 32}).encode(),
        json.dumps({**body, "version": 2}).encode(),
        json.dumps({**body, "time": "yesterday"}).encode(),
    ):
        with pytest.raises(CheckpointFormatError):
            Checkpoint.from_json(value)
    assert Checkpoint.from_json(genuine).to_bytes() == genuine


# -- version 2 -------------------------------------------------------------------------------

ORIGIN = "example.test/audit"
ROOT = bytes(range(32))


def signed_v2(key: Ed25519PrivateKey, void: dict[int, str] | None = None) -> Checkpoint:
    return new_checkpoint(
        writer=WRITER, seq=41, chain=LINK, key_id="k1", tree=ROOT, void=void
    ).sign(key, name=ORIGIN)


def test_a_v2_checkpoint_carries_its_tree_and_a_note_that_says_the_same() -> None:
    key = Ed25519PrivateKey.generate()
    checkpoint = signed_v2(key, void={7: "cd" * 32})
    parsed = Checkpoint.from_json(checkpoint.to_bytes())
    assert parsed == checkpoint
    assert verify_signature(parsed, key.public_key())
    assert verify_note(parsed, key.public_key())
    body = json.loads(checkpoint.to_bytes())
    assert set(body) == {
        "version", "writer", "seq", "count", "chain", "tree", "time", "key_id", "void", "note",
        "signature",
    }  # fmt: skip
    assert (body["version"], body["tree"]) == (2, "sha256:" + ROOT.hex())
    assert body["void"] == {"7": "sha256:" + "cd" * 32}
    note = open_note(body["note"].encode(), [Verifier.of(ORIGIN, key.public_key())])
    assert note.text == TreeHead(f"{ORIGIN}/{WRITER}", 42, ROOT).text()
    assert note.text == f"{ORIGIN}/{WRITER}\n42\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"
    assert parsed.key_name == ORIGIN
    assert not verify_note(parsed, Ed25519PrivateKey.generate().public_key())
    with pytest.raises(ValueError, match="key name"):
        new_checkpoint(writer=WRITER, seq=0, chain=LINK, key_id="k1", tree=ROOT).sign(key)


B64_ROOT = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
HEAD = f"{ORIGIN}/{WRITER}\n42\n{B64_ROOT}\n"
OTHER_SIGNATURE = "\u2014 other " + "A" * 88 + "\n"


@pytest.mark.parametrize(
    ("text", "name", "extra"),
    [
        (HEAD.replace(WRITER, "f" * 32), ORIGIN, ""),  # another writer
        (HEAD.replace("\n42\n", "\n41\n"), ORIGIN, ""),  # size not count
        (HEAD.replace("Hh8=", "Hh4="), ORIGIN, ""),  # root not tree
        (HEAD.replace("\n42\n", "\n042\n"), ORIGIN, ""),  # size with a leading zero
        (HEAD + "x\n", ORIGIN, ""),  # an extension line
        (HEAD, "other", ""),  # origin not <key name>/<writer>
        (HEAD, ORIGIN, OTHER_SIGNATURE),  # two signature lines
        ("", ORIGIN, "not a note"),
    ],
)
def test_unit_a_v2_note_that_does_not_say_what_the_json_says_is_a_format_error(
    text: str, name: str, extra: str
) -> None:
    key = Ed25519PrivateKey.generate()
    body = json.loads(signed_v2(key).to_bytes())
    body["note"] = (sign_note(text, name, key) if text else "") + extra
    with pytest.raises(CheckpointFormatError):
        Checkpoint.from_json(json.dumps(body).encode())
    with pytest.raises(CheckpointFormatError):
        Checkpoint.from_json({**body, "note": 42})


def test_unit_a_v2_checkpoint_has_every_field_and_no_other() -> None:
    genuine = json.loads(signed_v2(Ed25519PrivateKey.generate()).to_bytes())
    for name in ("tree", "note", "void", "count"):
        with pytest.raises(CheckpointFormatError):
            Checkpoint.from_json({k: v for k, v in genuine.items() if k != name})
    for change in (
        {"extra": 1},
        {"tree": ROOT.hex()},
        {"tree": "sha256:" + ROOT.hex().upper()},
        {"version": 3},
    ):
        with pytest.raises(CheckpointFormatError):
            Checkpoint.from_json({**genuine, **change})
    v1 = {k: v for k, v in genuine.items() if k not in ("tree", "note")}
    assert Checkpoint.from_json({**v1, "version": 1}).version == 1  # a v1 object is read as v1


def test_the_v2_vector_of_the_docs_is_what_the_service_signs_and_go_opens(
    tlogcheck: TlogCheck,
) -> None:
    # The block of docs/integrity.md, recomputed byte for byte, the notes opened by Go.
    data = doc_vector("Test vector: a version 2 checkpoint")
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(data["seed_hex"]))
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert raw.hex() == data["public_key_raw_hex"]
    assert derived_key_id(key.public_key()) == data["key_id"]
    name, writer = data["key_name"], data["rg-writer"]
    assert verifier_key(name, key.public_key()) == data["verifier_key"]
    # The positions: the chain vectors' three records, then the lost one.
    chain = doc_vector("Test vectors")
    digests = [r["rg-digest"].removeprefix("sha256:") for r in chain["records"]]
    digests.append(hashlib.sha256(data["lost_record_value"].encode()).hexdigest())
    assert chain["rg-writer"] == writer
    tree = MerkleTree()
    for seq, (leaf, digest) in enumerate(zip(data["leaves"], digests, strict=True)):
        entry = leaf_entry(writer, seq, digest)
        assert (leaf["seq"], leaf["entry"].encode()) == (seq, entry)
        assert leaf["leaf_hash"] == leaf_hash(entry).hex()
        tree.append(entry)
    go_roots = tlogcheck.roots([leaf_entry(writer, n, d) for n, d in enumerate(digests)])
    links, prev = [], GENESIS
    for seq, digest in enumerate(digests):
        prev = link_of(writer, seq, prev, digest)
        links.append(prev)
    for vector in data["checkpoints"]:
        seq = vector["seq"]
        void = {3: digests[3]} if seq >= 3 else {}
        checkpoint = Checkpoint(
            writer=writer,
            seq=seq,
            chain=links[seq],
            time="2026-12-01T12:00:04.000000Z",
            key_id=data["key_id"],
            void=void,
            version=2,
            tree=tree.root(seq + 1).hex(),
        ).sign(key, name=name)
        assert vector["tree"] == checkpoint.tree == go_roots[seq + 1].hex()
        assert (
            vector["note_text"] == TreeHead(f"{name}/{writer}", seq + 1, tree.root(seq + 1)).text()
        )
        assert vector["note"] == checkpoint.note
        assert vector["signed_bytes"].encode() == checkpoint.signed_bytes()
        assert vector["signature"] == checkpoint.signature
        assert vector["record_value"].encode() == checkpoint.to_bytes()
        parsed = Checkpoint.from_json(vector["record_value"].encode())
        assert parsed == checkpoint
        assert verify_signature(parsed, key.public_key())
        assert verify_note(parsed, key.public_key())
        # Go (formats/log.ParseCheckpoint over sumdb/note) opens the note with the verifier key.
        opened = tlogcheck.checkpoint(
            vector["note"].encode(), f"{name}/{writer}", [data["verifier_key"]]
        )
        assert opened == (seq + 1, tree.root(seq + 1)), opened
