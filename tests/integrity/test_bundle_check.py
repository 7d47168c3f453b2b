"""app/integrity/bundle_check.py on bundles built here by the spec's own helpers (no broker):
a window with gaps is clean, and what the real-trail tests (tests/cli/test_bundle.py,
tests/corpus/) cannot make a service write — a framed record whose header contradicts its
frame, a record at a position a checkpoint says was lost, a writer the log does not know, an
exporter's own manifest key — gives its finding."""

import hashlib
import json
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from app.integrity.bundle import (
    CHECKPOINTS,
    KEYS,
    LISTED,
    MANIFEST,
    PROOFS,
    RECORDS,
    SIGNATURE,
    WRITERS,
    KafkaLine,
    keys_document,
    proof_line,
    read_bundle,
    sign_manifest,
)
from app.integrity.bundle_check import BundleCheck, BundleReport
from app.integrity.checkpoint import canonical_json
from app.integrity.keys import PublicKey
from app.integrity.merkle import MerkleTree
from app.integrity.note import TlogProof
from tests.helpers.integrity import (
    ORIGIN,
    ChainedWriter,
    Record,
    SigningKey,
    checkpoint_v2,
    spec_leaf,
    writers_entry,
)

TOPIC = "audit"


@dataclass
class Built:
    """A bundle's members being made: records with proofs against one checkpoint."""

    key: SigningKey
    writer: ChainedWriter = field(default_factory=ChainedWriter)
    records: list[tuple[int, Record]] = field(default_factory=list)  # (seq, record)
    void: dict[int, str] = field(default_factory=dict)
    writers: list[Record] = field(default_factory=list)

    def members(self, *, keep: set[int] | None = None) -> dict[str, bytes]:
        """The members, with the records (and proofs) of the seqs in `keep` only."""
        w = self.writer
        checkpoint = checkpoint_v2(self.key, w, self.void)
        tree = MerkleTree()
        for seq in range(w.seq + 1):
            tree.append(spec_leaf(w.writer, seq, w.digests[seq], w.schema_ids[seq]))
        note = checkpoint["note"].encode()
        held = [(s, r) for s, r in self.records if keep is None or s in keep]
        lines = [
            KafkaLine(TOPIC, 0, i, 0, b"u", r.value, tuple(r.headers)).encode()
            for i, (_, r) in enumerate(held)
        ]
        proofs = [
            proof_line(
                w.writer,
                seq,
                TlogProof(
                    seq,
                    tuple(tree.inclusion(seq)),
                    note,
                    spec_leaf(w.writer, seq, w.digests[seq], w.schema_ids[seq]),
                ).encode(),
            )
            for seq in sorted({s for s, _ in held})
        ]
        line = KafkaLine(
            f"{TOPIC}.checkpoints", 0, 0, 0, w.writer.encode(), json.dumps(checkpoint).encode(), ()
        )
        writers = [
            KafkaLine(f"{TOPIC}.writers", 0, i, 0, r.key, r.value, ()).encode()
            for i, r in enumerate(self.writers)
        ]
        return {
            KEYS: keys_document([]),
            CHECKPOINTS: line.encode(),
            WRITERS: b"".join(writers),
            RECORDS: b"".join(lines),
            PROOFS: b"".join(proofs),
        }


def bundle_of(folder: Path, members: dict[str, bytes], signer: SigningKey) -> Path:
    manifest = canonical_json(
        {
            "format": "rg-bundle-v1",
            "created": "2026-12-01T12:00:00.000000Z",
            "key_id": signer.key_id,
            "query": {"since": None, "until": None, "user": None},
            "topics": {"audit": TOPIC, "checkpoints": f"{TOPIC}.checkpoints", "writers": "w"},
            "records": len(members[RECORDS].splitlines()),
            "members": {
                name: {
                    "sha256": hashlib.sha256(members[name]).hexdigest(),
                    "size": len(members[name]),
                }
                for name in LISTED
            },
        }
    )
    path = folder / f"bundle-{time.monotonic_ns()}.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(MANIFEST, manifest)
        archive.writestr(SIGNATURE, sign_manifest(manifest, signer.private))
        for name in LISTED:
            archive.writestr(name, members[name])
    return path


def check(path: Path, key: SigningKey, **options: Any) -> BundleReport:
    trusted = {key.key_id: PublicKey(key.key_id, key.private.public_key(), current=True)}
    return BundleCheck(trusted, **options).check(read_bundle(path))


def kinds(checked: BundleReport) -> list[str]:
    return sorted(p.kind for p in checked.report.problems)


@pytest.fixture
def built() -> Built:
    made = Built(SigningKey.generate())
    for _ in range(6):
        made.records.append((made.writer.seq + 1, made.writer.record()))
    return made


def test_unit_a_window_with_gaps_and_framed_values_is_clean(built: Built, tmp_path: Path) -> None:
    built.records.append((built.writer.seq + 1, built.writer.record(schema_id=42)))
    path = bundle_of(tmp_path, built.members(keep={0, 2, 5, 6}), built.key)
    checked = check(path, built.key)
    assert checked.report.problems == []
    assert checked.report.warnings == []
    assert (checked.report.records_checked, checked.report.records_valid) == (4, 4)
    assert checked.topics is not None
    assert checked.topics["audit"] == TOPIC


def test_unit_a_schema_id_header_that_contradicts_the_frame_is_altered(
    built: Built, tmp_path: Path
) -> None:
    record = built.writer.record(schema_id=42)
    headers = [(n, b"43" if n == "rg-schema-id" else v) for n, v in record.headers]
    built.records.append((built.writer.seq, Record(record.value, headers)))
    checked = check(bundle_of(tmp_path, built.members(), built.key), built.key)
    assert kinds(checked) == ["altered"]
    assert checked.report.problems[0].seq == built.writer.seq


def test_unit_a_record_where_a_checkpoint_says_lost_is_a_conflict(
    built: Built, tmp_path: Path
) -> None:
    lost_at = built.writer.seq + 1
    digest = built.writer.lose()
    built.void[lost_at] = digest
    # A record that claims the lost position, its headers made to match its own value.
    claim = ChainedWriter(writer=built.writer.writer, seq=lost_at - 1, link=built.writer.links[-2])
    built.records.append((lost_at, claim.record()))
    checked = check(bundle_of(tmp_path, built.members(), built.key), built.key)
    # The void, and the checkpoint's chain at its seq (the void link), both contradict it; its
    # leaf is not the lost record's either: its proof proves another record.
    assert kinds(checked) == ["bad_proof", "conflict", "conflict"]


def test_unit_a_writer_the_log_does_not_know_is_a_warning_a_problem_when_strict(
    built: Built, tmp_path: Path
) -> None:
    built.writers = [writers_entry("start", ChainedWriter())]
    path = bundle_of(tmp_path, built.members(), built.key)
    lenient = check(path, built.key)
    assert [w.kind for w in lenient.report.warnings] == ["unknown_writer"]
    assert lenient.report.problems == []
    assert kinds(check(path, built.key, strict=True)) == ["unknown_writer"]
    built.writers.append(writers_entry("start", built.writer))
    assert check(bundle_of(tmp_path, built.members(), built.key), built.key).report.clean


def test_unit_an_exporters_manifest_key_is_trusted_for_the_manifest_only(
    built: Built, tmp_path: Path
) -> None:
    exporter = SigningKey.generate()
    path = bundle_of(tmp_path, built.members(), exporter)
    assert kinds(check(path, built.key)) == ["bad_signature"]
    with_it = check(path, built.key, manifest_key=exporter.private.public_key())
    assert with_it.report.clean
    # The exporter's key vouches for no checkpoint: trusted alone, nothing is proven.
    alone = check(path, exporter, manifest_key=exporter.private.public_key())
    assert {"bad_signature", "unsigned", "bad_proof"} <= set(kinds(alone))


def test_unit_the_origin_is_the_notes(built: Built, tmp_path: Path) -> None:
    # The checkpoint's note names the origin; the verifier needs no origin of its own.
    members = built.members()
    assert ORIGIN.encode() in members[PROOFS]
    assert check(bundle_of(tmp_path, members, built.key), built.key).report.clean
