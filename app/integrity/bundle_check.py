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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from app.integrity.bundle import (
    CHECKPOINTS,
    LISTED,
    MANIFEST,
    MEMBERS,
    PROOFS,
    RECORDS,
    SIGNATURE,
    WRITERS,
    Bundle,
    BundleFormatError,
    KafkaLine,
    Manifest,
    lines,
    parse_proof_line,
)
from app.integrity.chain import GENESIS, link_of
from app.integrity.checkpoint import (
    VERSION_2,
    Checkpoint,
    CheckpointFormatError,
    unb64url,
)
from app.integrity.keys import PublicKey
from app.integrity.merkle import ProofError, frame_schema_id
from app.integrity.note import NoteError
from app.integrity.proofs import check_tlog_proof
from app.integrity.report import Finding, Report
from app.integrity.trust import CheckpointTrust
from app.integrity.verifier import Verifier
from app.integrity.writers import WRITERS_KEY, WriterEntry, WritersFormatError
from app.kafka.audit import SCHEMA_ID_HEADER
from app.kafka.serde import unframed

_POSITION = ("rg-digest", "rg-writer", "rg-seq", "rg-chain")
_HEX = frozenset("0123456789abcdef")


def _hex64(text: str) -> bool:
    return len(text) == 64 and set(text) <= _HEX


@dataclass
class _Record:
    line: KafkaLine
    writer: str
    seq: int
    digest: str  # 64 hex, the rg-digest header's
    chain: str  # 64 hex
    schema_id: int | None
    altered: bool


@dataclass
class _Trusted:
    """What the bundle's trusted checkpoints say, per writer."""

    notes: dict[str, set[bytes]] = field(default_factory=dict)
    chains: dict[tuple[str, int], str] = field(default_factory=dict)
    voids: set[tuple[str, int]] = field(default_factory=set)


@dataclass
class BundleReport:
    """The report, and the topics the manifest names (None when it could not be read)."""

    report: Report
    topics: dict[str, str] | None


def _position(headers: Sequence[tuple[str, bytes | None]]) -> tuple[str, int, str, str]:
    """Writer, seq, digest and link (hex) of a record's headers; ValueError when absent or
    malformed."""
    fields = {name: raw for name, raw in headers if name in _POSITION}
    if any(fields.get(name) is None for name in _POSITION):
        raise ValueError("no rg-digest/rg-writer/rg-seq/rg-chain headers")
    digest, writer, seq, chain = (bytes(fields[name] or b"").decode("ascii") for name in _POSITION)
    if not (
        len(writer) == 32
        and set(writer) <= _HEX
        and seq.isascii()
        and seq.isdecimal()
        and (seq == "0" or not seq.startswith("0"))
        and chain.startswith("sha256:")
        and _hex64(chain[7:])
        and digest.startswith("sha256:")
        and _hex64(digest[7:])
    ):
        raise ValueError("malformed rg-digest/rg-writer/rg-seq/rg-chain headers")
    return writer, int(seq), digest[7:], chain[7:]


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
        manifest = self._manifest(members)
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
        records = self._records(members.get(RECORDS, b""))
        report = verifier.finish()
        report.problems += self._findings
        report.warnings += self._warnings
        self._findings, self._warnings = report.problems, report.warnings
        report.records_checked = len(records[0]) + records[1]
        report.writers = len({record.writer for record in records[0]})
        valid = self._positions(records[0], trusted)
        self._proofs(records[0], members.get(PROOFS, b""), trusted)
        report.records_valid = valid
        if known_writers is not None:
            for writer in sorted({record.writer for record in records[0]} - known_writers):
                finding = Finding(
                    "unknown_writer",
                    f"writer {writer} has records but the bundle's log of writers does not know it",
                    topics["writers"] if topics else WRITERS,
                    writer=writer,
                )
                (report.problems if self._strict else report.warnings).append(finding)
        return BundleReport(report, topics)

    # -- steps 2 and 3: the manifest and the members -----------------------------------------

    def _manifest(self, members: Mapping[str, bytes]) -> Manifest | None:
        data = members.get(MANIFEST, b"")
        try:
            manifest = Manifest.parse(data)
        except BundleFormatError as exc:
            self._problem("forged", str(exc), MANIFEST)
            return None
        self._manifest_signature(data, members.get(SIGNATURE), manifest.key_id)
        for name in LISTED:
            digest, size = manifest.members[name]
            held = members.get(name)
            if held is None:
                self._problem("missing", "the manifest lists this member; it is not there", name)
            elif len(held) != size or hashlib.sha256(held).hexdigest() != digest:
                self._problem(
                    "altered",
                    f"SHA-256 {hashlib.sha256(held).hexdigest()}, {len(held)} bytes; the "
                    f"manifest says {digest}, {size} bytes",
                    name,
                )
        for name in sorted(set(members) - set(MEMBERS)):
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

    def _checkpoints(self, member: bytes, verifier: Verifier) -> _Trusted:
        """Feed the checkpoints to the verifier; collect what the trusted ones say (a second
        pass of the same trust rules in the same order gives the same answers)."""
        trust = CheckpointTrust(self._keys.values())
        trusted = _Trusted()
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

    # -- steps 5 to 7: the records -----------------------------------------------------------

    def _records(self, member: bytes) -> tuple[list[_Record], int]:
        """The records whose position could be read, and how many others were read."""
        records: list[_Record] = []
        unplaced = 0
        for number, raw in lines(member):
            try:
                line = KafkaLine.decode(raw)
            except BundleFormatError as exc:
                self._problem("forged", f"line {number}: {exc}", RECORDS, offset=number)
                continue
            record = self._record(line)
            if record is None:
                unplaced += 1
            else:
                records.append(record)
        return records, unplaced

    def _record(self, line: KafkaLine) -> _Record | None:
        twice = sorted(
            {n for n, _ in line.headers if sum(1 for m, _ in line.headers if m == n) > 1}
            & set(_POSITION)
        )
        if twice:
            self._at(line, "forged", f"header {', '.join(twice)} more than once")
            return None
        value = line.value or b""
        actual = hashlib.sha256(unframed(value)).hexdigest()
        stated = next((raw for name, raw in line.headers if name == "rg-digest"), None)
        stated_text = (stated or b"").decode("ascii", "replace")
        altered = stated_text != "sha256:" + actual
        if altered:
            self._at(
                line,
                "altered",
                f"rg-digest {stated_text or '(none)'} but the value hashes to sha256:{actual}",
            )
        try:
            writer, seq, digest, chain = _position(line.headers)
        except (ValueError, UnicodeDecodeError) as exc:
            self._at(line, "forged", str(exc))
            return None
        schema_id = frame_schema_id(value)
        if schema_id is not None:
            said = [raw for name, raw in line.headers if name == SCHEMA_ID_HEADER]
            if said and any(raw != str(schema_id).encode() for raw in said):
                altered = True
                self._at(
                    line,
                    "altered",
                    f"{SCHEMA_ID_HEADER} contradicts the frame's schema id {schema_id}",
                    writer,
                    seq,
                )
        return _Record(line, writer, seq, digest, chain, schema_id, altered)

    def _positions(self, records: list[_Record], trusted: _Trusted) -> int:
        """Duplicates and conflicts, links where the predecessor is known, checkpoints'
        links and voids; the number of valid records."""
        first: dict[tuple[str, int], _Record] = {}
        valid = 0
        for record in records:
            place = (record.writer, record.seq)
            held = first.setdefault(place, record)
            if held is record:
                valid += not record.altered
                continue
            same = (held.digest, held.chain) == (record.digest, record.chain)
            if same and not record.altered and not held.altered:
                valid += 1
                self._at(record.line, "duplicate", "the same record again", *place)
            elif not record.altered:
                self._at(record.line, "conflict", "another record holds this position", *place)
        for (writer, seq), record in first.items():
            before = first.get((writer, seq - 1))
            prev = GENESIS if seq == 0 else None
            if before is not None and not before.altered:
                prev = before.chain
            if prev is not None and link_of(writer, seq, prev, record.digest) != record.chain:
                valid -= not record.altered
                self._at(
                    record.line,
                    "forged",
                    "its rg-chain does not follow from the link before it",
                    writer,
                    seq,
                )
            signed = trusted.chains.get((writer, seq))
            if signed is not None and signed != record.chain:
                self._at(
                    record.line,
                    "conflict",
                    "a trusted checkpoint names another link at this position",
                    writer,
                    seq,
                )
            if (writer, seq) in trusted.voids:
                self._at(
                    record.line,
                    "conflict",
                    "a trusted checkpoint lists this position as lost (void)",
                    writer,
                    seq,
                )
        return valid

    def _proofs(self, records: list[_Record], member: bytes, trusted: _Trusted) -> None:
        proofs: dict[tuple[str, int], bytes] = {}
        for number, raw in lines(member):
            try:
                writer, seq, proof = parse_proof_line(raw)
            except BundleFormatError as exc:
                self._problem("forged", f"line {number}: {exc}", PROOFS, offset=number)
                continue
            proofs.setdefault((writer, seq), proof)
        keys = [key.key for key in self._keys.values()]
        for record in records:
            kept = proofs.get((record.writer, record.seq))
            if kept is None:
                finding = self._finding(
                    record.line,
                    "not_covered",
                    "no inclusion proof: no signed checkpoint covered it when the bundle was made",
                    record.writer,
                    record.seq,
                )
                (self._findings if self._strict else self._warnings).append(finding)
                continue
            problem = self._proof_problem(record, kept, keys, trusted)
            if problem is not None:
                self._at(record.line, "bad_proof", problem, record.writer, record.seq)

    @staticmethod
    def _proof_problem(
        record: _Record, proof: bytes, keys: list[Ed25519PublicKey], trusted: _Trusted
    ) -> str | None:
        try:
            proven = check_tlog_proof(proof, keys)
        except (NoteError, ProofError, ValueError) as exc:
            return f"the proof does not verify: {str(exc)[:200]}"
        if (proven.writer, proven.seq, proven.digest, proven.schema_id) != (
            record.writer,
            record.seq,
            record.digest,
            record.schema_id,
        ):
            return "the proof is of another record (its leaf entry is not this record's)"
        note = proof.partition(b"\n\n")[2]
        if note not in trusted.notes.get(record.writer, set()):
            return "the proof's checkpoint is not one of the bundle's trusted checkpoints"
        return None

    # -- findings ----------------------------------------------------------------------------

    def _problem(self, kind: str, detail: str, member: str, *, offset: int | None = None) -> None:
        self._findings.append(Finding(kind, detail, member, None, offset))

    @staticmethod
    def _finding(
        line: KafkaLine, kind: str, detail: str, writer: str | None = None, seq: int | None = None
    ) -> Finding:
        return Finding(kind, detail, line.topic, line.partition, line.offset, writer, seq)

    def _at(
        self,
        line: KafkaLine,
        kind: str,
        detail: str,
        writer: str | None = None,
        seq: int | None = None,
    ) -> None:
        self._findings.append(self._finding(line, kind, detail, writer, seq))
