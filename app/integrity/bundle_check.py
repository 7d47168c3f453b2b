"""Checking an evidence bundle offline (docs/auditors.md, "The check, step by step"): the
manifest's signature and every member's SHA-256, the checkpoints and the log of writers as
`verify` checks their topics (app/integrity/verifier.py, fed the bundle's lines), then each
record: its digest and headers, its position among the bundle's other records, and its
inclusion proof against a trusted checkpoint's note.

A bundle holds a window of records, not whole chains: what needs every record of a writer
(missing, truncated, rollback, writer_missing) is not concluded; a record's chain link is
checked only where its predecessor is in the bundle too (or at seq 0). The proofs are what make
each record checkable on its own.
"""

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from app.integrity.bundle import (
    CHECKPOINTS,
    MANIFEST,
    PROOFS,
    RECORDS,
    SIGNATURE,
    WRITERS,
    Bundle,
    BundleFormatError,
    KafkaLine,
    Manifest,
    lines,
)
from app.integrity.bundle_records import CheckedRecord, RecordChecks, TrustedCheckpoints
from app.integrity.checkpoint import (
    VERSION_2,
    Checkpoint,
    CheckpointFormatError,
    unb64url,
)
from app.integrity.keys import PublicKey
from app.integrity.report import Finding, Report
from app.integrity.trust import CheckpointTrust
from app.integrity.verifier import Verifier, is_erasure_record
from app.integrity.writers import WRITERS_KEY, WriterEntry, WritersFormatError
from app.kafka.serde import unframed


@dataclass
class BundleReport:
    """The report, and the topics the manifest names (None when it could not be read)."""

    report: Report
    topics: dict[str, str] | None


class BundleCheck:
    """One check of one bundle: `check()` gives the report.

    `keys`: the trusted keys by id (for checkpoints, notes and proofs, and the manifest);
    `manifest_key`: a key trusted for the manifest only (an exporter's); `strict`: records
    without a proof and writers the log does not know are problems, not warnings."""

    def __init__(
        self,
        keys: Mapping[str, PublicKey],
        *,
        manifest_key: Ed25519PublicKey | None = None,
        strict: bool = False,
    ) -> None:
        self._keys = dict(keys)
        self._manifest_key = manifest_key
        self._strict = strict
        self._findings: list[Finding] = []
        self._warnings: list[Finding] = []

    def check(self, bundle: Bundle) -> BundleReport:
        """Every step of docs/auditors.md over `bundle`."""
        members = bundle.members
        for name in bundle.twice:
            self._problem("forged", "the member is in the ZIP more than once", name)
        for name in bundle.unreadable:
            self._problem("altered", "the member cannot be read (bad CRC-32 or data)", name)
        manifest = self._manifest(members, set(bundle.unreadable))
        topics = None if manifest is None else manifest.topics
        verifier = Verifier(
            self._keys,
            topic=None if topics is None else topics["audit"],
            checkpoints_topic=None if topics is None else topics["checkpoints"],
            writers_topic=None if topics is None else topics["writers"],
            from_start=False,
            require_signed=True,
            strict=self._strict,
        )
        trusted = self._checkpoints(members.get(CHECKPOINTS, b""), verifier)
        known_writers = self._writers_log(members.get(WRITERS, b""), verifier)
        report = verifier.finish()
        # From here on findings go straight into the report.
        report.problems += self._findings
        report.warnings += self._warnings
        self._findings, self._warnings = report.problems, report.warnings
        keys = [key.key for key in self._keys.values()]
        checks = RecordChecks(keys, report.problems, report.warnings, strict=self._strict)
        placed, unplaced = checks.records(members.get(RECORDS, b""))
        report.records_checked = len(placed) + unplaced
        report.erasure_records = sum(
            is_erasure_record(unframed(record.line.value or b"")) for record in placed
        )
        report.writers = len({record.writer for record in placed})
        report.records_valid = checks.positions(placed, trusted)
        checks.proofs(placed, members.get(PROOFS, b""), trusted)
        if known_writers is not None:
            writers_topic = WRITERS if topics is None else topics["writers"]
            self._unknown_writers(placed, known_writers, writers_topic)
        return BundleReport(report, topics)

    def _unknown_writers(self, records: list[CheckedRecord], known: set[str], topic: str) -> None:
        for writer in sorted({record.writer for record in records} - known):
            finding = Finding(
                "unknown_writer",
                f"writer {writer} has records but the bundle's log of writers does not know it",
                topic,
                writer=writer,
            )
            (self._findings if self._strict else self._warnings).append(finding)

    # -- steps 2 and 3: the manifest and the members -----------------------------------------

    def _manifest(self, members: Mapping[str, bytes], unreadable: set[str]) -> Manifest | None:
        data = members.get(MANIFEST, b"")
        try:
            manifest = Manifest.parse(data)
        except BundleFormatError as exc:
            self._problem("forged", str(exc), MANIFEST)
            return None
        self._manifest_signature(data, members.get(SIGNATURE), manifest.key_id)
        for name in manifest.members:
            digest, size = manifest.members[name]
            held = members.get(name)
            if name in unreadable:
                continue  # reported: it cannot be read
            if held is None:
                self._problem("missing", "the manifest lists this member; it is not there", name)
            elif len(held) != size or hashlib.sha256(held).hexdigest() != digest:
                self._problem(
                    "altered",
                    f"SHA-256 {hashlib.sha256(held).hexdigest()}, {len(held)} bytes; the "
                    f"manifest says {digest}, {size} bytes",
                    name,
                )
        for name in sorted(set(members) - {MANIFEST, SIGNATURE, *manifest.members}):
            self._problem("forged", "a member the manifest does not list", name)
        return manifest

    def _manifest_signature(self, data: bytes, signature: bytes | None, key_id: str) -> None:
        if signature is None or len(signature) != 87 or signature[-1:] != b"\n":
            self._problem("bad_signature", f"no {SIGNATURE} of 86 characters and LF", MANIFEST)
            return
        try:
            raw = unb64url(signature[:86].decode("ascii"))
        except (ValueError, UnicodeDecodeError):
            self._problem("bad_signature", f"{SIGNATURE} is not base64url", MANIFEST)
            return
        candidates: list[Ed25519PublicKey] = []
        if self._manifest_key is not None:
            candidates.append(self._manifest_key)
        elif key_id in self._keys:
            candidates.append(self._keys[key_id].key)
        else:
            self._problem(
                "bad_signature",
                f"the manifest is signed with key id {key_id!r}, which no trusted key answers to",
                MANIFEST,
            )
            return
        for key in candidates:
            try:
                key.verify(raw, data)
            except InvalidSignature:
                continue
            return
        detail = f"the manifest's signature does not verify (key id {key_id!r})"
        self._problem("bad_signature", detail, MANIFEST)

    # -- step 4: checkpoints and the log of writers -------------------------------------------

    def _checkpoints(self, member: bytes, verifier: Verifier) -> TrustedCheckpoints:
        """Feed the checkpoints to the verifier; collect what the trusted ones say (a second
        pass of the same trust rules in the same order gives the same answers)."""
        trust = CheckpointTrust(self._keys.values())
        trusted = TrustedCheckpoints()
        for number, raw in lines(member):
            try:
                line = KafkaLine.decode(raw)
            except BundleFormatError as exc:
                self._problem("forged", f"line {number}: {exc}", CHECKPOINTS, offset=number)
                continue
            verifier.add_checkpoint(line.partition, line.offset, line.value, line.key)
            if line.key == WRITERS_KEY.encode():
                continue
            try:
                checkpoint = Checkpoint.from_json(line.value)
            except CheckpointFormatError:
                continue  # the verifier reported it
            if line.key != checkpoint.writer.encode() or trust.check(checkpoint) is not None:
                continue
            writer = checkpoint.writer
            trusted.chains[(writer, checkpoint.seq)] = checkpoint.chain
            trusted.voids.update((writer, seq) for seq in checkpoint.void)
            if checkpoint.version == VERSION_2:
                trusted.notes.setdefault(writer, set()).add(checkpoint.note.encode())
                trusted.heads[writer] = max(trusted.heads.get(writer, -1), checkpoint.seq)
        return trusted

    def _writers_log(self, member: bytes, verifier: Verifier) -> set[str] | None:
        """Feed the log of writers to the verifier; the writers its entries name (None when
        the log is empty: nothing to conclude about unknown writers)."""
        known: set[str] = set()
        for number, raw in lines(member):
            try:
                line = KafkaLine.decode(raw)
            except BundleFormatError as exc:
                self._problem("forged", f"line {number}: {exc}", WRITERS, offset=number)
                continue
            verifier.add_writers_entry(line.partition, line.offset, line.value)
            try:
                known.add(WriterEntry.from_json(line.value).writer)
            except WritersFormatError:
                continue  # the verifier reported it
        return known or None

    def _problem(self, kind: str, detail: str, member: str, *, offset: int | None = None) -> None:
        self._findings.append(Finding(kind, detail, member, None, offset))
