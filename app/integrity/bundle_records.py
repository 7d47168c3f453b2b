"""Steps 5 to 7 of checking an evidence bundle (docs/auditors.md): each record's digest and
headers, its position among the bundle's other records (duplicates, conflicts, links where the
predecessor is there too, what trusted checkpoints say of the position) and its inclusion proof
against a trusted checkpoint's note. app/integrity/bundle_check.py runs the other steps."""

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from app.integrity.bundle import (
    PROOFS,
    RECORDS,
    BundleFormatError,
    KafkaLine,
    lines,
    parse_proof_line,
)
from app.integrity.chain import GENESIS, link_of
from app.integrity.merkle import ProofError, frame_schema_id
from app.integrity.note import NoteError, TreeHead
from app.integrity.proofs import check_tlog_proof
from app.integrity.report import Finding
from app.kafka.audit import SCHEMA_ID_HEADER
from app.kafka.serde import unframed

_POSITION = ("rg-digest", "rg-writer", "rg-seq", "rg-chain")
_HEX = frozenset("0123456789abcdef")


def _hex64(text: str) -> bool:
    return len(text) == 64 and set(text) <= _HEX


@dataclass
class CheckedRecord:
    """A record whose position headers could be read."""

    line: KafkaLine
    writer: str
    seq: int
    digest: str  # 64 hex, the rg-digest header's
    chain: str  # 64 hex
    schema_id: int | None
    altered: bool


@dataclass
class TrustedCheckpoints:
    """What the bundle's trusted checkpoints say: their notes and the highest seq a version 2
    one covers per writer, their links and void positions by (writer, seq)."""

    notes: dict[str, set[bytes]] = field(default_factory=dict)
    heads: dict[str, int] = field(default_factory=dict)
    chains: dict[tuple[str, int], str] = field(default_factory=dict)
    voids: set[tuple[str, int]] = field(default_factory=set)


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


class RecordChecks:
    """The record steps; findings go to `problems` and `warnings` (lists the caller owns)."""

    def __init__(
        self,
        keys: list[Ed25519PublicKey],
        problems: list[Finding],
        warnings: list[Finding],
        *,
        strict: bool,
    ) -> None:
        self._keys = keys
        self._findings = problems
        self._warnings = warnings
        self._strict = strict

    def _problem(self, kind: str, detail: str, member: str, *, offset: int | None = None) -> None:
        self._findings.append(Finding(kind, detail, member, None, offset))

    def records(self, member: bytes) -> tuple[list[CheckedRecord], int]:
        """The records whose position could be read, and how many others were read."""
        records: list[CheckedRecord] = []
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

    def _record(self, line: KafkaLine) -> CheckedRecord | None:
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
        return CheckedRecord(line, writer, seq, digest, chain, schema_id, altered)

    def positions(self, records: list[CheckedRecord], trusted: TrustedCheckpoints) -> int:
        """Duplicates and conflicts, links where the predecessor is known, checkpoints'
        links and voids; the number of valid records."""
        first: dict[tuple[str, int], CheckedRecord] = {}
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
        broken: set[tuple[str, int]] = set()  # positions whose link did not follow
        for (writer, seq), record in sorted(first.items(), key=lambda item: item[0]):
            before = first.get((writer, seq - 1))
            prev = GENESIS if seq == 0 else None
            if before is not None and not before.altered and (writer, seq - 1) not in broken:
                prev = before.chain
            # After a link that does not follow, the next is checked by what comes after it
            # (as verify's walk does): one break is one finding.
            if prev is not None and link_of(writer, seq, prev, record.digest) != record.chain:
                broken.add((writer, seq))
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

    def proofs(
        self, records: list[CheckedRecord], member: bytes, trusted: TrustedCheckpoints
    ) -> None:
        proofs: dict[tuple[str, int], bytes] = {}
        for number, raw in lines(member):
            try:
                writer, seq, proof = parse_proof_line(raw)
            except BundleFormatError as exc:
                self._problem("forged", f"line {number}: {exc}", PROOFS, offset=number)
                continue
            proofs.setdefault((writer, seq), proof)
        keys = self._keys
        opened: dict[bytes, tuple[str, TreeHead]] = {}
        for record in records:
            kept = proofs.get((record.writer, record.seq))
            if kept is None and trusted.heads.get(record.writer, -1) >= record.seq:
                # A signed tree covers it, so a proof could be given: none is not benign (the
                # exporter left it out, or the writer's records do not give the signed root).
                detail = "no inclusion proof, though a trusted checkpoint in the bundle covers it"
                self._at(record.line, "bad_proof", detail, record.writer, record.seq)
                continue
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
            problem = self._proof_problem(record, kept, keys, trusted, opened)
            if problem is not None:
                self._at(record.line, "bad_proof", problem, record.writer, record.seq)

    @staticmethod
    def _proof_problem(
        record: CheckedRecord,
        proof: bytes,
        keys: list[Ed25519PublicKey],
        trusted: TrustedCheckpoints,
        opened: dict[bytes, tuple[str, TreeHead]],
    ) -> str | None:
        try:
            proven = check_tlog_proof(proof, keys, opened)
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
