"""Checkpoints: the JSON of the spec, signing and verifying, a tampered one failing."""

import base64
import hashlib
import json
import re
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from app.integrity.chain import GENESIS, link_of
from app.integrity.checkpoint import (
    Checkpoint,
    CheckpointFormatError,
    canonical_json,
    new_checkpoint,
    unb64url,
    verify_note,
    verify_signature,
    writer_log,
)
from app.integrity.keys import derived_key_id
from app.integrity.merkle import MerkleTree, leaf_entry, leaf_hash
from app.integrity.note import TreeHead, open_note, sign_note, verifier_key
from app.integrity.note import Verifier as NoteVerifier
from app.integrity.verifier import Verifier
from tests.helpers.cpv1check import CheckpointReader
from tests.helpers.integrity import ChainedWriter, SigningKey, doc_vector, edge_cases
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
    flipped = "B" if body["signature"][0] == "A" else "A"
    body["signature"] = flipped + body["signature"][1:]
    assert not verify_signature(Checkpoint.from_json(body), key.public_key())


def spellings(signature: str) -> dict[str, str]:
    """Other spellings of a signature's bytes (and junk) that lenient base64 readers accept."""
    standard = base64.b64encode(base64.urlsafe_b64decode(signature + "==")).decode()
    return {
        "padded": signature + "==",
        "standard alphabet": standard,
        "standard alphabet unpadded": standard.rstrip("="),
        "junk inside": signature[:40] + "!*!*" + signature[40:],
        "whitespace": signature[:40] + "\n" + signature[40:],
        "unused bits set": signature[:-1] + chr(ord(signature[-1]) + 1),
        "short": signature[:-2],
        "empty": "",
    }


def test_the_signature_is_read_in_its_one_spelling_only() -> None:
    # A signature whose bytes contain + or / in standard base64 (so the alphabets differ).
    key = Ed25519PrivateKey.generate()
    for i in range(100):
        checkpoint = new_checkpoint(writer=WRITER, seq=i, chain=LINK, key_id="k1").sign(key)
        if set(spellings(checkpoint.signature)["standard alphabet"]) & set("+/"):
            break
    body = json.loads(checkpoint.to_bytes())
    assert verify_signature(Checkpoint.from_json(body), key.public_key())
    for name, spelling in spellings(checkpoint.signature).items():
        with pytest.raises(CheckpointFormatError, match="signature"):
            Checkpoint.from_json({**body, "signature": spelling})
        if name not in {"short", "empty"}:  # base64url of other bytes, refused by length
            with pytest.raises(ValueError, match="base64url"):
                unb64url(spelling)
        # Even past the parser, verifying refuses it.
        assert not verify_signature(replace(checkpoint, signature=spelling), key.public_key()), name


def test_upper_case_hex_in_chain_or_void_is_a_format_error() -> None:
    body = json.loads(signed(Ed25519PrivateKey.generate()).to_bytes())
    upper = "sha256:" + LINK.upper()
    for change in ({"chain": upper}, {"void": {"7": upper}}, {"chain": "SHA256:" + LINK}):
        with pytest.raises(CheckpointFormatError, match="lowercase"):
            Checkpoint.from_json({**body, **change})


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
    note = open_note(body["note"].encode(), [NoteVerifier.of(ORIGIN, key.public_key())])
    assert note.text == TreeHead(f"{ORIGIN}/writer/{WRITER}", 42, ROOT).text()
    assert note.text == f"{ORIGIN}/writer/{WRITER}\n42\n{B64_ROOT}\n"
    assert parsed.key_name == ORIGIN
    assert not verify_note(parsed, Ed25519PrivateKey.generate().public_key())
    with pytest.raises(ValueError, match="key name"):
        new_checkpoint(writer=WRITER, seq=0, chain=LINK, key_id="k1", tree=ROOT).sign(key)


B64_ROOT = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
HEAD = f"{ORIGIN}/writer/{WRITER}\n42\n{B64_ROOT}\n"
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
            vector["note_text"]
            == TreeHead(writer_log(name, writer), seq + 1, tree.root(seq + 1)).text()
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
            vector["note"].encode(), writer_log(name, writer), [data["verifier_key"]]
        )
        assert opened == (seq + 1, tree.root(seq + 1)), opened


@pytest.mark.parametrize(
    "time_text",
    [
        "2026-12-01 12:00:04Z",
        "20261201T120004Z",
        "2026-12-01T12:00:04+0100",
        "2026-12-01T12:00:04,5Z",
        "2026-12-01T12:00Z",
        "2026-12-01T12:00:04.1234567890Z",
        "2026-12-01t12:00:04z",
        "2026-12-01T12:00:04",
    ],
)
def test_time_is_read_in_rfc_3339_only(time_text: str) -> None:
    # Python's fromisoformat takes the first five; readers in other languages do not.
    key = Ed25519PrivateKey.generate()
    body = json.loads(signed(key).to_bytes())
    with pytest.raises(CheckpointFormatError, match="RFC 3339"):
        Checkpoint.from_json({**body, "time": time_text})


@pytest.mark.parametrize(
    "time_text",
    ["2026-12-01T12:00:04Z", "2026-12-01T12:00:04.1+01:00", "2026-12-01T12:00:04.123456789-05:30"],
)
def test_rfc_3339_times_are_read(time_text: str) -> None:
    key = Ed25519PrivateKey.generate()
    body = json.loads(signed(key).to_bytes())
    assert Checkpoint.from_json({**body, "time": time_text}).time == time_text


DOC = Path(__file__).parents[2] / "docs" / "integrity.md"


def doc_block(heading: str) -> dict[str, Any]:
    """The JSON block under `heading` in docs/integrity.md."""
    text = DOC.read_text(encoding="utf-8").split(f"\n{heading}\n", 1)[1]
    match = re.search(r"```json\n(.*?)\n```", text, re.DOTALL)
    assert match is not None
    data: dict[str, Any] = json.loads(match.group(1))
    return data


def test_unit_the_checkpoint_vectors_of_the_docs_are_signed_and_verified_alike() -> None:
    vector = doc_block("### Checkpoints")
    chain = doc_block("## Test vectors")
    writer = vector["rg-writer"]
    assert writer == chain["rg-writer"]
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(vector["seed"]))
    public = key.public_key()
    assert public.public_bytes(Encoding.Raw, PublicFormat.Raw).hex() == vector["public_key"]
    pem = public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
    assert pem == vector["public_key_pem"]
    assert derived_key_id(public) == vector["key_id"]
    # The lost record's digest and link, after the last of the chain vectors.
    lost = vector["lost"]
    digest = hashlib.sha256(lost["value"].encode()).hexdigest()
    assert lost["rg-digest"] == f"sha256:{digest}"
    link_2 = chain["records"][2]["rg-chain"].removeprefix("sha256:")
    link_3 = link_of(writer, 3, link_2, digest)
    assert lost["rg-chain"] == f"sha256:{link_3}"
    links = {2: link_2, 3: link_3}
    voids: list[dict[int, str]] = [{}, {3: link_3}]
    verifier = Verifier({vector["key_id"]: public}, require_signed=True, strict=True)
    for i, record in enumerate(chain["records"]):
        headers = [(name, record[name].encode()) for name in ("rg-digest", "rg-seq", "rg-chain")]
        verifier.add_record(
            0, i, record["value"].encode(), [*headers, ("rg-writer", writer.encode())]
        )
    for offset, (expected, void) in enumerate(zip(vector["checkpoints"], voids, strict=True)):
        seq = expected["seq"]
        built = Checkpoint(
            writer=writer,
            seq=seq,
            chain=links[seq],
            time=vector["time"],
            key_id=vector["key_id"],
            void=void,
        ).sign(key)
        assert built.signed_bytes().decode() == expected["signed_bytes"]
        assert built.signature == expected["signature"]
        assert built.to_bytes().decode() == expected["record_value"]
        assert json.loads(expected["signed_bytes"])["void"] == expected["void"]
        parsed = Checkpoint.from_json(expected["record_value"])
        assert parsed == built
        assert verify_signature(parsed, public)
        verifier.add_checkpoint(0, offset, expected["record_value"].encode(), writer.encode())
    report = verifier.finish()
    assert report.clean, report.problems
    assert report.warnings == []
    assert (report.records_valid, report.checkpoints_valid) == (3, 2)


def test_a_reader_written_from_the_docs_in_go_reads_the_vectors_alike(
    checkpoint_reader: CheckpointReader,
) -> None:
    vector = doc_block("### Checkpoints")
    public = bytes.fromhex(vector["public_key"])
    for checkpoint in vector["checkpoints"]:
        value = checkpoint["record_value"].encode()
        answer = checkpoint_reader.read(value, vector["rg-writer"], public)
        assert answer == {"ok": True, "signed": checkpoint["signed_bytes"]}
        other = checkpoint_reader.read(value, "f" * 32, public)
        assert not other["ok"]


def test_go_and_python_agree_on_every_edge_case(checkpoint_reader: CheckpointReader) -> None:
    # The review's cases, free text in key_id, voids: Go's verdict (from the docs) is ours.
    key = SigningKey.generate()
    writer = ChainedWriter()
    records = writer.records(5)
    genuine = key.checkpoint(writer, {2: records[2].header("rg-chain")[7:], 10: "ab" * 32})
    exotic = key.resign({**genuine, "key_id": 'k\x01\x1f\x7f\u2028<&>/é\U0001f600"\\\n'})
    cases = {name: value for name, (value, _) in edge_cases(genuine).items()}
    cases["exotic key id"] = json.dumps(exotic).encode()
    cases["exotic key id, raw UTF-8"] = json.dumps(exotic, ensure_ascii=False).encode()
    cases["re-signed bad count"] = json.dumps(key.resign({**genuine, "count": 3})).encode()
    public = key.private.public_key()
    raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    verdicts = {}
    for name, value in cases.items():
        try:
            parsed = Checkpoint.from_json(value)
        except CheckpointFormatError:
            ours = False
        else:
            ours = verify_signature(parsed, public)
            if ours:
                assert checkpoint_reader.read(value, writer.writer, raw)["signed"] == (
                    parsed.signed_bytes().decode()
                )
        verdicts[name] = (ours, checkpoint_reader.read(value, writer.writer, raw)["ok"])
    assert all(ours == theirs for ours, theirs in verdicts.values()), verdicts
    assert sorted(name for name, (ours, _) in verdicts.items() if ours) == [
        "control",
        "exotic key id",
        "exotic key id, raw UTF-8",
        "value-not-canonical",
    ]


def test_a_v2_void_names_a_framed_lost_record_s_schema_id_in_one_spelling() -> None:
    key = Ed25519PrivateKey.generate()
    checkpoint = signed_v2(key, void={7: "cd" * 32 + "\n4294967295", 9: "ef" * 32})
    body = json.loads(checkpoint.to_bytes())
    assert body["void"] == {
        "7": "sha256:" + "cd" * 32 + ";schema-id=4294967295",
        "9": "sha256:" + "ef" * 32,
    }
    assert Checkpoint.from_json(checkpoint.to_bytes()) == checkpoint
    for spelling in ["007", "4294967296", "-1", "+7", " 7", "7 ", "", "x"]:
        void = {"7": f"sha256:{'cd' * 32};schema-id={spelling}"}
        with pytest.raises(CheckpointFormatError, match="schema-id"):
            Checkpoint.from_json({**body, "void": void})
    for suffix in [";schema=7", ";schema-id=7;schema-id=7", "\n7"]:
        with pytest.raises(CheckpointFormatError):
            Checkpoint.from_json({**body, "void": {"7": f"sha256:{'cd' * 32}{suffix}"}})
    # Version 1 void values are links: never a schema id.
    v1 = json.loads(signed(key).to_bytes())
    with pytest.raises(CheckpointFormatError, match="lowercase hex"):
        Checkpoint.from_json({**v1, "void": {"7": f"sha256:{'cd' * 32};schema-id=7"}})
