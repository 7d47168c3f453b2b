"""The proof index (app/integrity/proofs.py), fed records in any order: its tlog-proofs and
consistency proofs are checked with Go's transparency-dev/formats and sumdb/tlog
(tests/helpers/tlog.py), which this project did not write."""

import hashlib
import random
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.integrity.checkpoint import writer_log
from app.integrity.merkle import MerkleTree, ProofError, leaf_entry, leaf_hash
from app.integrity.note import NoteError, TlogProof, TreeHead, sign_note, verifier_key
from app.integrity.proofs import (
    KnownCheckpoint,
    ProofIndex,
    ProofUnavailableError,
    ProvenRecord,
    check_tlog_proof,
)
from tests.helpers.tlog import TlogCheck

NAME = "ractogateway-kafka/test.audit"
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
WRITERS = ["0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"]


def digest(writer: str, seq: int) -> str:
    return hashlib.sha256(f"{writer}/{seq}".encode()).hexdigest()


def checkpoint(writer: str, size: int) -> KnownCheckpoint:
    tree = MerkleTree()
    for seq in range(size):
        tree.append(leaf_entry(writer, seq, digest(writer, seq)))
    root = tree.root()
    note = sign_note(TreeHead(writer_log(NAME, writer), size, root).text(), NAME, KEY)
    return KnownCheckpoint(size, root, note.encode())


def fed(
    directory: Path, size: int = 300, void: frozenset[int] = frozenset({17, 200})
) -> ProofIndex:
    """An index fed two writers' records shuffled, their voids and a checkpoint each."""
    index = ProofIndex(directory)
    items = [(w, s) for w in WRITERS for s in range(size)]
    random.Random(5).shuffle(items)
    for writer, seq in items:
        if seq in void:
            continue
        index.add_record(writer, seq, digest(writer, seq), f"evt-{writer[:4]}-{seq}")
    for writer in WRITERS:
        index.add_checkpoint(writer, checkpoint(writer, 250))
        for seq in sorted(void):
            index.add_void(writer, seq, digest(writer, seq))
    return index


def test_proofs_of_any_record_are_accepted_by_go(tmp_path: Path, tlogcheck: TlogCheck) -> None:
    index = fed(tmp_path)
    for writer in WRITERS:
        assert index.size(writer) == 300
        vkey = verifier_key(NAME, KEY.public_key())
        for seq in (0, 17, 131, 200, 249):
            proof = index.proof(writer, seq)
            assert proof.extra == leaf_entry(writer, seq, digest(writer, seq))
            encoded = proof.encode()
            assert TlogProof.parse(encoded) == proof
            origin = writer_log(NAME, writer)
            assert tlogcheck.tlog_proof(encoded, origin, [vkey], leaf_hash(proof.extra)) is None
            other = leaf_hash(leaf_entry(writer, seq, digest(writer, seq + 1)))
            assert tlogcheck.tlog_proof(encoded, origin, [vkey], other) is not None
    index.close()


def test_consistency_proofs_are_accepted_by_go(tmp_path: Path, tlogcheck: TlogCheck) -> None:
    index = fed(tmp_path)
    writer = WRITERS[1]
    for old, new in [(1, 250), (100, 200), (128, 250), (250, 250)]:
        proof = index.consistency(writer, old, new)
        old_root = checkpoint(writer, old).root
        new_root = checkpoint(writer, new).root
        assert tlogcheck.consistency(old, new, old_root, new_root, proof) is None
    with pytest.raises(ProofUnavailableError, match="up to size 250"):
        index.consistency(writer, 10, 251)
    index.close()


def test_unit_what_cannot_be_proven_is_said(tmp_path: Path) -> None:
    index = fed(tmp_path)
    with pytest.raises(ProofUnavailableError, match="not covered by a checkpoint yet"):
        index.proof(WRITERS[0], 250)
    with pytest.raises(ProofUnavailableError, match="no record of writer"):
        index.proof("00" * 16, 0)
    assert index.locate(f"evt-{WRITERS[0][:4]}-42") == (WRITERS[0], 42)
    with pytest.raises(ProofUnavailableError, match="no record with event_id"):
        index.locate("nope")
    # A checkpoint whose root the records do not have: no proof of that writer from then on.
    forged = checkpoint(WRITERS[1], 260)
    index.add_checkpoint(WRITERS[1], KnownCheckpoint(260, bytes(32), forged.note))
    with pytest.raises(ProofUnavailableError, match="do not have the root"):
        index.proof(WRITERS[1], 3)
    index.proof(WRITERS[0], 3)
    index.close()


def test_unit_a_reopened_index_keeps_its_trees(tmp_path: Path) -> None:
    fed(tmp_path).close()
    reopened = ProofIndex(tmp_path)
    # Records read again (a restart reads the topic again) are the same positions.
    for writer in WRITERS:
        reopened.add_record(writer, 0, digest(writer, 0), None)
        assert reopened.size(writer) == 300
        reopened.add_checkpoint(writer, checkpoint(writer, 280))
        assert reopened.proof(writer, 279).extra == leaf_entry(writer, 279, digest(writer, 279))
    assert reopened.locate(f"evt-{WRITERS[1][:4]}-7") == (WRITERS[1], 7)
    reopened.close()


def test_unit_a_kept_proof_is_checked_offline_and_every_bit_of_it_counts(tmp_path: Path) -> None:
    index = fed(tmp_path)
    writer = WRITERS[0]
    proof = index.proof(writer, 131).encode()
    index.close()
    assert check_tlog_proof(proof, [KEY.public_key()]) == ProvenRecord(
        NAME, writer, 131, digest(writer, 131), 250
    )
    other_key = Ed25519PrivateKey.from_private_bytes(bytes(range(2, 34))).public_key()
    with pytest.raises(NoteError, match="no signature by a trusted key"):
        check_tlog_proof(proof, [other_key])
    for bit in range(len(proof) * 8):
        changed = bytearray(proof)
        changed[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises((NoteError, ProofError)):
            check_tlog_proof(bytes(changed), [KEY.public_key()])


def test_a_framed_record_s_proof_says_its_schema_id_after_a_reopen(
    tmp_path: Path, tlogcheck: TlogCheck
) -> None:
    writer = WRITERS[0]
    # Even positions framed under schema id 9 (position 4 lost, its void naming the id).
    tails = [digest(writer, seq) + ("\n9" if seq % 2 == 0 else "") for seq in range(8)]
    tree = MerkleTree()
    for seq, tail in enumerate(tails):
        tree.append(leaf_entry(writer, seq, tail))
    note = sign_note(TreeHead(writer_log(NAME, writer), 8, tree.root()).text(), NAME, KEY)
    index = ProofIndex(tmp_path)
    for seq in [7, 3, 0, 1, 2, 5, 6]:
        index.add_record(writer, seq, tails[seq], None)
    index.add_void(writer, 4, tails[4])
    index.add_checkpoint(writer, KnownCheckpoint(8, tree.root(), note.encode()))
    index.close()
    reopened = ProofIndex(tmp_path)
    reopened.add_checkpoint(writer, KnownCheckpoint(8, tree.root(), note.encode()))
    vkey = verifier_key(NAME, KEY.public_key())
    for seq in range(8):
        proof = reopened.proof(writer, seq)
        assert proof.extra == leaf_entry(writer, seq, tails[seq])
        encoded = proof.encode()
        assert (
            tlogcheck.tlog_proof(encoded, writer_log(NAME, writer), [vkey], leaf_hash(proof.extra))
            is None
        )
        proven = check_tlog_proof(encoded, [KEY.public_key()])
        assert (proven.digest, proven.schema_id) == (
            digest(writer, seq),
            9 if seq % 2 == 0 else None,
        )
    reopened.close()


@pytest.mark.parametrize("line", ["09", "4294967296", "-9", "9 ", "x", ""])
def test_a_kept_proof_with_a_bad_schema_id_line_is_refused(tmp_path: Path, line: str) -> None:
    writer = WRITERS[0]
    entry = leaf_entry(writer, 0, digest(writer, 0)) + f"\n{line}".encode()
    tree = MerkleTree()
    tree.append(entry)
    note = sign_note(TreeHead(writer_log(NAME, writer), 1, tree.root()).text(), NAME, KEY)
    proof = TlogProof(0, (), note.encode(), entry)
    with pytest.raises((NoteError, ProofError)):
        check_tlog_proof(proof.encode(), [KEY.public_key()])
