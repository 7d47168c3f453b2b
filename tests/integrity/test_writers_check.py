"""verify's conclusions from the log of writers (app/integrity/writers_check.py), fed by hand;
the same on a real broker is in tests/cli/test_verify.py and tests/integrity/test_end_to_end.py."""

import json

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.integrity.merkle import MerkleTree
from app.integrity.note import TreeHead
from app.integrity.witness import CosignatureRecord, cosign, witness_key_text
from app.integrity.witness_policy import WitnessPolicy
from app.integrity.writers import WritersNote, writers_log
from app.integrity.writers_check import Conclusion, Seen, SignedHead, WritersCheck

A, B = "a" * 32, "b" * 32


def entry(kind: str, writer: str, size: int = 0) -> bytes:
    body: dict[str, object] = {"kind": kind, "writer": writer, "time": "t"}
    if kind == "start":
        body["origin"] = f"o/writer/{writer}"
    else:
        body |= {"size": size, "root": "sha256:" + "0" * 64}
    return json.dumps(body).encode()


def kinds(found: list[Conclusion]) -> list[tuple[str, str | None, int | None, int | None]]:
    return [(f.kind, f.writer, f.seq, f.last_seq) for f in found]


def check(*values: bytes) -> WritersCheck:
    log = WritersCheck({}, topic="w")
    for offset, value in enumerate(values):
        log.add_entry(0, offset, value)
    return log


def test_unit_missing_rolled_back_and_unknown_writers() -> None:
    log = check(entry("start", A), entry("start", B), entry("head", A, 5), entry("stop", B, 3))
    problems, warnings = log.conclude({A: 4, "c" * 32: 1}, [], from_start=True, strict=False)
    assert kinds(problems) == [("rollback", A, 4, 4), ("writer_missing", B, 0, 2)]
    assert kinds(warnings) == [("unknown_writer", "c" * 32, None, None)]
    problems, warnings = log.conclude({A: 5, B: 3}, [], from_start=True, strict=True)
    assert (problems, warnings) == ([], [])


def test_unit_a_window_does_not_call_a_writer_missing_and_a_start_alone_needs_nothing() -> None:
    log = check(entry("start", A), entry("head", A, 5), entry("start", B))
    assert log.conclude({}, [], from_start=False, strict=True) == ([], [])
    problems, _ = log.conclude({}, [], from_start=True, strict=True)
    assert kinds(problems) == [("writer_missing", A, 0, 4)]


def test_unit_no_log_no_conclusion_and_a_hole_is_a_rollback() -> None:
    assert WritersCheck({}, topic="w").conclude({A: 1}, [], from_start=True, strict=True) == (
        [],
        [],
    )
    log = WritersCheck({}, topic="w")
    log.add_entry(0, 1, entry("start", A))  # offset 0 is gone
    problems, _ = log.conclude({A: 1}, [], from_start=True, strict=False)
    assert [p.kind for p in problems] == ["rollback"]


def test_unit_two_heads_of_one_size_with_different_roots_fork() -> None:
    where = Seen("c", 0, 1)
    heads = [
        SignedHead(A, 3, b"\x01" * 32, Seen("c", 0, 0)),
        SignedHead(A, 3, b"\x01" * 32, where),
        SignedHead(A, 3, b"\x02" * 32, where),
        SignedHead(B, 3, b"\x02" * 32, where),
    ]
    problems, _ = WritersCheck({}, topic="w").conclude({}, heads, from_start=True, strict=False)
    assert kinds(problems) == [("fork", A, 2, None)]


def test_unit_a_malformed_entry_is_forged() -> None:
    problems, _ = check(b"{}").conclude({}, [], from_start=True, strict=False)
    assert [p.kind for p in problems] == ["forged"]


def test_unit_uncosigned_notes_under_a_witness_policy() -> None:
    key = Ed25519PrivateKey.generate()
    witness_key = Ed25519PrivateKey.generate()
    vkey = witness_key_text("w.test/one", witness_key.public_key())
    policy = WitnessPolicy.model_validate({"k": 1, "witnesses": [{"url": "http://w", "key": vkey}]})
    values = [entry("start", A), entry("head", A, 1), entry("head", A, 2), entry("head", A, 3)]
    log = WritersCheck({"k": key.public_key()}, topic="w", witnesses=policy)
    tree = MerkleTree()
    for offset, value in enumerate(values):
        log.add_entry(0, offset, value)
        tree.append(value)

    def note(size: int, root: bytes | None = None) -> WritersNote:
        return WritersNote.sign("o", size, root or tree.root(size), time="t", key_id="k", key=key)

    def cosignature(head: WritersNote, name: str = "w.test/one") -> bytes:
        text = TreeHead(writers_log("o"), head.size, head.root_bytes).text()
        line = cosign(name, witness_key, text, 7)
        return CosignatureRecord(writers_log("o"), head.size, head.root, name, line).to_bytes()

    two, three, four = note(2), note(3), note(4)
    forked = note(3, bytes(32))
    for offset, signed in enumerate([two, three, four, forked]):
        assert log.add_note(Seen("c", 0, offset), signed.to_bytes())
    # The note of size 3 cosigned: it vouches for 2 (a prefix the topic shows), not for 4
    # (later) nor for the fork; a line by a name the policy does not know counts for nothing.
    log.add_cosignature(Seen("c", 0, 10), cosignature(three))
    log.add_cosignature(Seen("c", 0, 11), cosignature(four, "w.test/other"))
    log.add_cosignature(Seen("c", 0, 12), b"{}")
    problems, _ = log.conclude({A: 3}, [], from_start=True, strict=False)
    uncosigned = [p for p in problems if p.kind == "uncosigned"]
    assert [p.where.offset for p in uncosigned] == [2, 3]
    assert uncosigned[0].detail == (
        "checkpoint 4 of o/writers has 0 valid cosignature(s) of the 1 the witness policy asks for"
    )
    assert [p.kind for p in problems if p.where.offset == 12] == ["malformed_checkpoint"]
    # Without a policy nothing is said of cosignatures.
    plain = WritersCheck({"k": key.public_key()}, topic="w")
    plain.add_cosignature(Seen("c", 0, 10), cosignature(three))
    assert plain.conclude({}, [], from_start=True, strict=False) == ([], [])


def test_unit_a_kept_cosigned_note_brings_its_own_cosignatures() -> None:
    key = Ed25519PrivateKey.generate()
    witness_key = Ed25519PrivateKey.generate()
    vkey = witness_key_text("w.test/one", witness_key.public_key())
    policy = WitnessPolicy.model_validate({"k": 1, "witnesses": [{"url": "http://w", "key": vkey}]})
    values = [entry("start", A), entry("head", A, 1)]
    tree = MerkleTree()
    for value in values:
        tree.append(value)
    note = WritersNote.sign("o", 2, tree.root(), time="t", key_id="k", key=key).note
    text = TreeHead(writers_log("o"), 2, tree.root()).text()
    for lines, expected in (([cosign("w.test/one", witness_key, text, 7)], []), ([], [0])):
        log = WritersCheck({"k": key.public_key()}, topic="w", witnesses=policy)
        for offset, value in enumerate(values):
            log.add_entry(0, offset, value)
        kept = (note + "".join(line + "\n" for line in lines)).encode()
        assert log.add_kept_note(Seen("kept.note", None, 0), kept)
        problems, _ = log.conclude({A: 1}, [], from_start=True, strict=False)
        assert [p.where.offset for p in problems if p.kind == "uncosigned"] == expected
