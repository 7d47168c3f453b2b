"""Files a witness kept (app/integrity/kept.py) and what the verifier makes of a writer's kept
tree head, on trails built in memory from the spec: the four forms read strictly, every
single-bit change of a kept proof or note rejected, and the rules of docs/integrity.md ("Kept
checkpoints"): root, rollback, truncated, covered, fork."""

import base64
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.integrity.kept import KeptFormatError, open_kept, read_kept
from app.integrity.merkle import MerkleTree
from app.integrity.note import TlogProof
from app.integrity.report import Report
from app.integrity.verifier import Verifier
from tests.helpers.integrity import (
    ORIGIN,
    ChainedWriter,
    Record,
    SigningKey,
    checkpoint_v2,
    spec_leaf,
    spec_note,
)


def writer_note(
    key: Ed25519PrivateKey, writer: ChainedWriter, size: int, *, origin: str = ORIGIN
) -> bytes:
    """The text GET /audit/checkpoint?log=<writer id> serves: the writer's note of `size`."""
    root = base64.b64encode(writer.tree(size - 1)).decode()
    return spec_note(f"{origin}/writer/{writer.writer}\n{size}\n{root}\n", origin, key).encode()


def kept_proof(key: Ed25519PrivateKey, writer: ChainedWriter, seq: int, size: int) -> bytes:
    """The tlog-proof GET /audit/proof serves for `seq` in the tree of `size`."""
    tree = MerkleTree()
    for n in range(size):
        tree.append(spec_leaf(writer.writer, n, writer.digests[n]))
    return TlogProof(
        seq,
        tuple(tree.inclusion(seq)),
        writer_note(key, writer, size),
        spec_leaf(writer.writer, seq, writer.digests[seq]),
    ).encode()


def verify(
    key: SigningKey,
    records: list[Record],
    *kept: bytes,
    checkpoints: tuple[bytes, ...] = (),
    strict: bool = False,
) -> Report:
    """Verify `records` (partition 0, offsets in order) with `kept` files given to verify."""
    verifier = Verifier({key.key_id: key.private.public_key()}, topic="t", strict=strict)
    for offset, checkpoint in enumerate(checkpoints):
        verifier.add_checkpoint(0, offset, checkpoint, json.loads(checkpoint)["writer"].encode())
    for offset, record in enumerate(records):
        verifier.add_record(0, offset, record.value, record.headers)
    for n, data in enumerate(kept):
        verifier.add_witness_checkpoint(f"kept-{n}", data)
    return verifier.finish()


def kinds(report: Report) -> list[tuple[str, int | None, int | None]]:
    return sorted((p.kind, p.seq, p.last_seq) for p in report.problems)


def test_unit_the_four_forms_are_told_apart() -> None:
    key, writer = SigningKey.generate(), ChainedWriter()
    writer.records(5)
    checkpoint = json.dumps(checkpoint_v2(key, writer)).encode()
    assert read_kept(checkpoint).form == "checkpoint"
    writers = spec_note(f"{ORIGIN}/writers\n0\n{'A' * 43}=\n", ORIGIN, key.private)
    assert read_kept(writers.encode()).form == "writers"
    note = read_kept(writer_note(key.private, writer, 5))
    assert note.form == "writer"
    assert note.head is not None
    assert (note.head.writer, note.head.size, note.head.root) == (writer.writer, 5, writer.tree())
    assert note.head.proven is None
    proof = read_kept(kept_proof(key.private, writer, 3, 5))
    assert proof.form == "proof"
    assert proof.head is not None
    assert proof.head.proven == (3, writer.digests[3])
    assert open_kept(proof.head, [key.private.public_key()]) is None
    stranger = Ed25519PrivateKey.generate().public_key()
    assert "does not open" in str(open_kept(proof.head, [stranger]))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda note: b"not a note", "a note is its text"),
        (lambda note: b"{}", "not a checkpoint"),
        (lambda note: note.replace(b"/writer/", b"/author/"), "neither <name>/writers"),
        (lambda note: note.replace(f"{ORIGIN}/".encode(), b"other.test/", 1), "key name"),
        (lambda note: note.replace(b"\n5\n", b"\n05\n"), "leading zeros"),
        (lambda note: note.replace(b"\n5\n", b"\n0\n"), "size 0"),
    ],
)
def test_unit_what_is_none_of_the_forms_says_why(change: object, message: str) -> None:
    key, writer = SigningKey.generate(), ChainedWriter()
    writer.records(5)
    assert callable(change)
    with pytest.raises(KeptFormatError, match=message):
        read_kept(change(writer_note(key.private, writer, 5)))


def test_unit_a_proof_that_does_not_hold_is_none_of_the_forms() -> None:
    key, writer = SigningKey.generate(), ChainedWriter()
    writer.records(6)
    proof = TlogProof.parse(kept_proof(key.private, writer, 2, 6))
    hashes = (proof.hashes[0][::-1], *proof.hashes[1:])
    with pytest.raises(KeptFormatError, match="inclusion proof does not hold"):
        read_kept(TlogProof(2, hashes, proof.checkpoint, proof.extra).encode())
    other = spec_leaf(writer.writer, 3, writer.digests[3])
    with pytest.raises(KeptFormatError, match="another writer or position"):
        read_kept(TlogProof(2, proof.hashes, proof.checkpoint, other).encode())
    with pytest.raises(KeptFormatError, match="no extra line"):
        read_kept(TlogProof(2, proof.hashes, proof.checkpoint).encode())
    beyond = spec_leaf(writer.writer, 6, writer.digests[5])
    with pytest.raises(KeptFormatError, match="not below the tree size"):
        read_kept(TlogProof(6, (), proof.checkpoint, beyond).encode())


def test_unit_every_single_bit_change_of_a_kept_proof_or_note_is_rejected() -> None:
    key, writer = SigningKey.generate(), ChainedWriter()
    records = writer.records(9)
    for kept in (kept_proof(key.private, writer, 6, 9), writer_note(key.private, writer, 9)):
        report = verify(key, records, kept, strict=True)
        assert report.clean, report.problems
        assert (report.checkpoints_checked, report.checkpoints_valid) == (1, 1)
        for bit in range(len(kept) * 8):
            flipped = bytearray(kept)
            flipped[bit // 8] ^= 1 << (bit % 8)
            try:
                read_kept(bytes(flipped))
            except KeptFormatError:
                continue  # verify exits 2 on it
            report = verify(key, records, bytes(flipped), strict=True)
            assert not report.clean, f"bit {bit} of {kept!r}"
            assert report.checkpoints_valid == 0, f"bit {bit}"


def test_unit_a_kept_head_alone_covers_its_writer_under_strict() -> None:
    key, writer = SigningKey.generate(), ChainedWriter()
    records = writer.records(10)
    report = verify(key, records, writer_note(key.private, writer, 7), strict=True)
    assert kinds(report) == [("not_covered", 7, 9)]
    assert report.signed
    report = verify(key, records, kept_proof(key.private, writer, 9, 10), strict=True)
    assert report.clean, report.problems


def test_unit_a_trail_cut_back_below_a_kept_head_is_a_rollback() -> None:
    key, writer = SigningKey.generate(), ChainedWriter()
    records = writer.records(10)
    note = writer_note(key.private, writer, 10)
    report = verify(key, records[:6], note)
    assert kinds(report) == [("rollback", 6, 9)]
    (problem,) = report.problems
    assert (problem.topic, problem.writer) == ("kept-0", writer.writer)
    # None of its records left at all: back to size 0.
    assert kinds(verify(key, [], note)) == [("rollback", 0, 9)]


def test_unit_a_gap_below_a_kept_head_is_truncated_unless_a_void_explains_it() -> None:
    key, writer = SigningKey.generate(), ChainedWriter()
    first = writer.records(3)
    writer.lose()  # seq 3, lost for good
    rest = writer.records(4)
    note = writer_note(key.private, writer, 8)
    # Without the checkpoint listing the void: seq 3 is truncated (and the tree unchecked).
    report = verify(key, first + rest, note)
    assert kinds(report) == [("truncated", 3, 3)]
    # With a JSON checkpoint below the note listing it (found on the topic): clean, and the
    # note's root is checked through the void's digest.
    voided = checkpoint_v2(key, writer, {3: writer.digests[3]}, seq=4)
    report = verify(key, first + rest, note, checkpoints=(json.dumps(voided).encode(),))
    assert report.clean, report.problems
    # A record dropped in the middle, with the void explained: only that one is truncated.
    report = verify(
        key, first + rest[:1] + rest[2:], note, checkpoints=(json.dumps(voided).encode(),)
    )
    assert kinds(report) == [("truncated", 5, 5)]


def test_unit_a_rewritten_history_under_a_kept_head_is_a_conflict_or_fork() -> None:
    key, honest = SigningKey.generate(), ChainedWriter()
    for n in range(8):
        honest.record({"n": n, "rewritten": False})
    note = writer_note(key.private, honest, 8)
    proof = kept_proof(key.private, honest, 5, 8)
    # Someone who can write the topics rewrites record 2 and re-links every record after it.
    forged = ChainedWriter(writer=honest.writer)
    records = [forged.record({"n": n, "rewritten": n == 2}) for n in range(8)]
    report = verify(key, records, note)
    assert [(p.kind, p.seq, p.topic) for p in report.problems] == [("conflict", 7, "kept-0")]
    assert "not the root of the trail's positions 0..7" in report.problems[0].detail
    report = verify(key, records, proof)
    assert [(p.kind, p.seq) for p in report.problems] == [("conflict", 7)]
    # A proof of the rewritten record itself names the record it proves, too.
    report = verify(key, records, kept_proof(key.private, honest, 2, 8))
    assert sorted((p.kind, p.seq) for p in report.problems) == [("conflict", 2), ("conflict", 7)]
    # The key holder also re-signs a checkpoint of the same size: two signed roots, a fork.
    resigned = json.dumps(checkpoint_v2(key, forged)).encode()
    report = verify(key, records, note, checkpoints=(resigned,))
    assert ("fork", 7, None) in kinds(report)
