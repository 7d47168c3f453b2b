"""Checking an audit trail against its hash chains, its writers' Merkle trees and signed
checkpoints (versions 1 and 2, docs/integrity.md).

The verifier is fed the records of the audit topic and of the checkpoints topic in any order
(`add_record`, `add_checkpoint`), then `finish()` returns a `Report`. It knows nothing of the
service: only the record headers, `link_of` and the checkpoint format of the spec.

Per record the hot path is one SHA-256 of the value and a scan of the headers; the chain links
are checked in `finish()`, per writer in seq order, because one writer's records are spread over
partitions and arrive in any order. The same walk recomputes the writer's tree (a frontier,
app/integrity/tree_check.py) to check the `tree` of its version 2 checkpoints, in log2 n
hashes per writer. Memory: one small tuple per record, `seq -> (digest, link, partition,
offset, flags)` per writer — about 430 bytes a record (measured), so two million records take
about a gigabyte; longer trails are verified in windows (`--since`).

Kinds of problem (each with where it was found):
    altered        rg-digest does not match SHA-256 of the value (of its JSON, when framed)
    forged         no or malformed rg-writer/rg-seq/rg-chain, one of the four headers twice, or
                   the link does not recompute
    missing        seqs absent from a writer's chain that no checkpoint covers or lists as void
    truncated      seqs a signed checkpoint covers whose records are not there
    conflict       two different records (or a checkpoint and a record) at one writer position,
                   a record at a position a trusted checkpoint lists as void, or a version 2
                   checkpoint whose tree is not the root of the trail's positions 0..seq
    duplicate      the same record twice (at-least-once retries; not tampering)
    bad_signature  a checkpoint whose signature (or version 2 note) does not verify, or whose
                   key id is unknown
    malformed_checkpoint  a record of the checkpoints topic that is not a checkpoint (any bytes:
                   not UTF-8, not JSON, nested too deep, fields missing or of the wrong type),
                   or one whose Kafka key is not its writer
    expired_key    a checkpoint signed with a retired key after its end of validity (dated
                   later, or written after a checkpoint dated later; app/integrity/trust.py)
    key_mismatch   a checkpoint of a writer signed with another key than its first checkpoint
    receipt        a receipt a client kept that the trail does not bear out
    not_covered    with `strict` (`verify --strict`): records after a writer's last trusted
                   checkpoint (otherwise a warning)
    writer_missing, rollback, fork, unknown_writer, uncosigned: from the log of writers, its
                   witnesses' cosignatures and signed tree heads seen twice
                   (app/integrity/writers_check.py); rollback also below a writer's tree head a
                   witness kept (`add_witness_checkpoint`: a writer's note or a tlog-proof,
                   app/integrity/kept.py; whose root is checked like a version 2 checkpoint's
                   tree, and below which records count as covered)
    bad_timestamp, backdated: with `timestamps` (`verify --tsa-ca`), from the timestamp tokens
                   over the notes of the log of writers (app/integrity/timestamp_check.py);
                   a warning `not_timestamped` for records after what the latest valid
                   token's note covers
    unsigned       no trusted checkpoint at all, when checkpoints are required (`require_signed`:
                   `verify --require-signed` or `--strict`, or public keys given)
Only trusted checkpoints count: what they cover and the void positions they list (version 1: with
their links; version 2: every lost position up to the checkpoint's seq, with the lost record's
digest, from which the walk computes the link). Warnings: `not_covered` (records after a
writer's last checkpoint) and `unsigned` (no checkpoints, when they are not required).
"""

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from app.integrity.chain_walk import (
    DIGEST,
    LEAF,
    LINK,
    OFFSET,
    PARTITION,
    ChainWalk,
    Entry,
    TrailCheckpoint,
    Voids,
    named,
)
from app.integrity.checkpoint import Checkpoint, CheckpointFormatError
from app.integrity.kept import KeptFormatError, open_kept, read_kept
from app.integrity.keys import PublicKey
from app.integrity.merkle import frame_schema_id, leaf_tail
from app.integrity.report import Finding, Report
from app.integrity.timestamp_check import TimestampCheck
from app.integrity.tree_check import SignedRoot, TreeCheck
from app.integrity.trust import CheckpointTrust
from app.integrity.witness_policy import WitnessPolicy
from app.integrity.writers import COSIGNATURES_KEY, TIMESTAMPS_KEY, WRITERS_KEY
from app.integrity.writers_check import Conclusion, Seen, SignedHead, WritersCheck
from app.kafka.audit import SCHEMA_ID_HEADER
from app.kafka.serde import unframed

_HEX64 = re.compile(r"[0-9a-f]{64}")
_WRITER = re.compile(r"[0-9a-f]{32}")
_SEQ = re.compile(r"0|[1-9][0-9]*")
_PREFIX = "sha256:"
# The headers the verifier reads, in the order a receipt's fields are compared.
_HEADERS = ("rg-digest", "rg-writer", "rg-seq", "rg-chain")


def _position_of(fields: Mapping[str, bytes], digest_text: str) -> tuple[str, int, str]:
    """Writer id, seq and chain link of a record's headers; ValueError when absent or malformed."""
    writer, seq, chain = fields.get("rg-writer"), fields.get("rg-seq"), fields.get("rg-chain")
    if writer is None or seq is None or chain is None:
        raise ValueError("no rg-writer/rg-seq/rg-chain headers")
    writer_id, seq_text, chain_text = writer.decode("ascii"), seq.decode("ascii"), chain.decode()
    if not (
        _WRITER.fullmatch(writer_id)
        and _SEQ.fullmatch(seq_text)
        and chain_text.startswith(_PREFIX)
        and _HEX64.fullmatch(chain_text, 7)
    ):
        raise ValueError("malformed rg-writer/rg-seq/rg-chain headers")
    if not digest_text.startswith(_PREFIX) or not _HEX64.fullmatch(digest_text, 7):
        raise ValueError("malformed rg-digest header")
    return writer_id, int(seq_text), chain_text


class Verifier:
    """Streams records and checkpoints in, gives a `Report` out. One use per trail.

    `from_start`: the records were read from the beginning of the topic, so every writer's
    chain starts at seq 0 (with `--since` a writer's first seq read starts the check).
    `strict`: records no trusted checkpoint covers (`not_covered`) are a problem, not a warning
    (anyone who may write the topic could have appended them); implies `require_signed`.
    """

    def __init__(
        self,
        public_keys: Mapping[str, PublicKey | Ed25519PublicKey],
        *,
        topic: str | None = None,
        checkpoints_topic: str | None = None,
        writers_topic: str | None = None,
        from_start: bool = True,
        require_signed: bool = False,
        strict: bool = False,
        timestamps: TimestampCheck | None = None,
        witnesses: WitnessPolicy | None = None,
    ) -> None:
        # A bare key is valid without an end; the key id it is given under is its id.
        keys = [
            key if isinstance(key, PublicKey) else PublicKey(key_id, key, current=False)
            for key_id, key in public_keys.items()
        ]
        self._trust = CheckpointTrust(keys)
        self._public = [key.key for key in keys]
        self._log = WritersCheck(
            {key.key_id: key.key for key in keys}, topic=writers_topic, witnesses=witnesses
        )
        # Strict: every record must be covered by a trusted checkpoint, so one is required.
        self._require_signed = require_signed or strict
        # Given (`verify --tsa-ca`): the tokens keyed `timestamps` are checked; else passed over.
        self._timestamps = timestamps
        self._strict = strict
        self._no_checkpoints_topic = False
        self._topic = topic
        self._checkpoints_topic = checkpoints_topic
        self._from_start = from_start
        self._writers: dict[str, dict[int, Entry]] = {}
        self._extra: dict[tuple[str, int], list[Entry]] = {}
        self._checkpoints: list[TrailCheckpoint] = []
        # Writers' tree heads from kept notes and proofs (no link, no void list), and the
        # records the proofs name: (file, writer, seq, digest).
        self._kept: list[TrailCheckpoint] = []
        self._proven: list[tuple[str, str, int, str]] = []
        # Version 2 voids already listed by a trusted checkpoint, per writer: each checkpoint
        # repeats every earlier one, so only what is new is kept with it (memory and the void
        # check stay in the number of lost positions, not times the checkpoints).
        self._listed: dict[str, dict[int, str]] = {}
        self._receipts: list[tuple[str, Mapping[str, Any]]] = []
        self._wanted: dict[tuple[int, int], tuple[str | None, ...] | None] = {}
        self._report = Report()

    # -- input -----------------------------------------------------------------------------

    def expect_receipt(self, name: str, receipt: Mapping[str, Any]) -> None:
        """Check `receipt` (named `name` in findings) against the trail; call before records."""
        self._receipts.append((name, receipt))
        partition, offset = receipt.get("partition"), receipt.get("offset")
        if isinstance(partition, int) and isinstance(offset, int):
            self._wanted[(partition, offset)] = None

    def _check_schema_header(
        self,
        headers: Sequence[tuple[str, bytes]],
        schema_id: int,
        partition: int,
        offset: int,
    ) -> None:
        # Consumers may read the schema id from the header: one that contradicts the frame
        # (which the leaf covers) was changed after the fact.
        stated = [raw for name, raw in headers if name == SCHEMA_ID_HEADER]
        if stated and any(raw != str(schema_id).encode() for raw in stated):
            said = ", ".join(raw.decode("utf-8", "replace")[:20] for raw in stated)
            self._problem(
                "altered",
                f"{SCHEMA_ID_HEADER} {said} but the value is framed with schema id {schema_id}",
                partition,
                offset,
            )

    def add_record(
        self,
        partition: int,
        offset: int,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]],
    ) -> None:
        """Check one audit record: its digest now, its place on the chain in `finish()`."""
        report = self._report
        report.records_checked += 1
        fields = {name: raw for name, raw in headers if name in _HEADERS}
        if len(fields) != sum(1 for name, _ in headers if name in _HEADERS):
            # Readers differ on which of two copies counts (the first, the last): refuse both.
            twice = sorted({n for n, _ in headers if n in _HEADERS and _count(headers, n) > 1})
            self._problem("forged", f"header {', '.join(twice)} more than once", partition, offset)
            return
        if (partition, offset) in self._wanted:
            self._wanted[(partition, offset)] = tuple(
                None if (h := fields.get(n)) is None else h.decode("utf-8", "replace")
                for n in _HEADERS
            )
        # A value in the Confluent wire format (RG_SCHEMA_WIRE_FORMAT=confluent) is hashed
        # without its 5-byte header: the digest covers the canonical JSON, whatever the framing.
        body = unframed(value or b"")
        actual = hashlib.sha256(body).hexdigest()
        digest = fields.get("rg-digest")
        digest_text = digest.decode("ascii", "replace") if digest is not None else ""
        altered = digest_text != _PREFIX + actual
        if altered:
            self._problem(
                "altered",
                f"rg-digest {digest_text or '(none)'} but the value hashes to sha256:{actual}",
                partition,
                offset,
            )
        try:
            writer_id, seq, chain_str = _position_of(fields, digest_text)
        except (ValueError, UnicodeDecodeError) as exc:
            self._report.problems.append(
                Finding("forged", str(exc), self._topic, partition, offset)
            )
            return
        # Identity of the headers (the value's is its digest), to tell duplicates from conflicts.
        identity = hash(tuple(headers))
        # A framed value's schema id is covered by its leaf, not by its digest.
        schema_id = frame_schema_id(value or b"")
        if schema_id is not None:
            self._check_schema_header(headers, schema_id, partition, offset)
        tail = leaf_tail(digest_text[7:], schema_id)
        entry: Entry = (
            digest_text[7:],
            chain_str[7:],
            partition,
            offset,
            altered,
            identity,
            tail,
        )
        positions = self._writers.get(writer_id)
        if positions is None:
            positions = self._writers[writer_id] = {}
        if seq in positions:
            self._extra.setdefault((writer_id, seq), []).append(entry)
        else:
            positions[seq] = entry
        if not altered:
            report.records_valid += 1
        if is_erasure_record(body):
            report.erasure_records += 1

    def add_checkpoint(
        self, partition: int, offset: int, value: bytes | None, key: bytes | None
    ) -> None:
        """Check one record of the checkpoints topic (its value and Kafka key): its form and
        signature now; what it covers in `finish()`."""
        self._checkpoint(self._checkpoints_topic, partition, offset, value, key)

    def add_witness_checkpoint(self, name: str, value: bytes) -> None:
        """A file a witness kept (app/integrity/kept.py), named `name` in findings. A JSON
        checkpoint (GET /audit/checkpoint) is trusted by the same rules as one read from the
        checkpoints topic, after those, so an emptied checkpoints topic or a cut tail is still
        found. A note of the log of writers (GET /audit/checkpoint?log=writers) is checked
        against the writers topic. A writer's note (?log=<writer id>) or a tlog-proof (GET
        /audit/proof) is a tree head of that writer: the trail's root at its size must be its
        root, and the trail must reach its size (`finish()`)."""
        try:
            kept = read_kept(value)
        except KeptFormatError as exc:
            self._report.checkpoints_checked += 1
            self._report.problems.append(Finding("malformed_checkpoint", str(exc), name))
            return
        head = kept.head
        if head is None and kept.form == "checkpoint":
            self._checkpoint(name, None, None, value, None)
            return
        self._report.checkpoints_checked += 1
        if head is None:  # a note of the log of writers
            if self._log.add_kept_note(Seen(name, None, None), value):
                self._report.checkpoints_valid += 1
            return
        untrusted = open_kept(head, self._public)
        if untrusted is not None:
            self._report.problems.append(
                Finding("bad_signature", untrusted, name, writer=head.writer, seq=head.size - 1)
            )
            return
        self._report.checkpoints_valid += 1
        self._kept.append(
            TrailCheckpoint(name, None, None, head.writer, head.size - 1, None, {}, head.root)
        )
        if head.proven is not None:
            self._proven.append((name, head.writer, *head.proven))

    def _checkpoint(
        self,
        topic: str | None,
        partition: int | None,
        offset: int | None,
        value: bytes | None,
        key: bytes | None,
    ) -> None:
        report = self._report
        if partition is not None and key == TIMESTAMPS_KEY.encode():
            # A timestamp token over a note of the log of writers (app/integrity/timestamp.py).
            if self._timestamps is not None:
                self._timestamps.add(Seen(topic, partition, offset), value)
            return
        if partition is not None and key == COSIGNATURES_KEY.encode():
            # A witness's cosignature of a note of the log of writers (app/integrity/witness.py).
            self._log.add_cosignature(Seen(topic, partition, offset), value)
            return
        report.checkpoints_checked += 1
        if partition is not None and key == WRITERS_KEY.encode():
            # A signed note of the log of writers (app/integrity/writers.py).
            if self._log.add_note(Seen(topic, partition, offset), value):
                report.checkpoints_valid += 1
            return
        try:
            checkpoint = Checkpoint.from_json(value)
        except CheckpointFormatError as exc:  # whatever the bytes
            report.problems.append(
                Finding("malformed_checkpoint", str(exc), topic, partition, offset)
            )
            return
        writer, seq = checkpoint.writer, checkpoint.seq
        if partition is not None and key != writer.encode():
            # The service keys a checkpoint by its writer; the key is not signed, so a record
            # keyed otherwise was not written as one (compaction or a reader by key would
            # misplace it): not trusted.
            shown = "no key" if key is None else f"key {key[:40]!r}"
            report.problems.append(
                Finding(
                    "malformed_checkpoint",
                    f"{shown}: a checkpoint is keyed by its writer",
                    topic,
                    partition,
                    offset,
                    writer,
                    seq,
                )
            )
            return
        untrusted = self._trust.check(checkpoint)
        if untrusted is not None:
            if untrusted.detail.startswith("unknown key id"):
                report.unknown_key_ids.add(checkpoint.key_id)
            report.problems.append(
                Finding(untrusted.kind, untrusted.detail, topic, partition, offset, writer, seq)
            )
            return
        report.checkpoints_valid += 1
        void = checkpoint.void
        if checkpoint.tree:
            listed = self._listed.setdefault(writer, {})
            void = {s: digest for s, digest in void.items() if listed.get(s) != digest}
            listed.update(void)
        self._checkpoints.append(
            TrailCheckpoint(
                topic or "",
                partition,
                offset,
                writer,
                seq,
                checkpoint.chain,
                void,
                bytes.fromhex(checkpoint.tree) if checkpoint.tree else None,
            )
        )

    def add_writers_entry(self, partition: int, offset: int, value: bytes | None) -> None:
        """One record of the writers topic (the log of writers), in offset order."""
        self._log.add_entry(partition, offset, value)

    def no_checkpoints_topic(self) -> None:
        """The checkpoints topic does not exist (with `require_signed`, a problem)."""
        self._no_checkpoints_topic = True

    # -- the chains ------------------------------------------------------------------------

    def finish(self) -> Report:
        """Walk every writer's chain in seq order and report."""
        report = self._report
        report.writers = len(self._writers)
        report.signed = bool(self._checkpoints or self._kept)
        voids: dict[str, Voids] = {}
        roots: dict[str, list[SignedRoot[TrailCheckpoint]]] = {}
        covered: dict[str, TrailCheckpoint] = {}
        kept = self._kept_roots(roots)
        for checkpoint in self._checkpoints:
            void = voids.setdefault(checkpoint.writer, Voids())
            void.links.update(checkpoint.void_links)
            void.digests.update(checkpoint.void_digests)
            if checkpoint.tree is not None:
                roots.setdefault(checkpoint.writer, []).append(
                    SignedRoot(checkpoint.seq, checkpoint.chain, checkpoint.tree, checkpoint)
                )
            best = covered.get(checkpoint.writer)
            if best is None or checkpoint.seq > best.seq:
                covered[checkpoint.writer] = checkpoint
        walk = ChainWalk(
            report,
            topic=self._topic,
            from_start=self._from_start,
            strict=self._strict,
            extra=self._extra,
            problem=self._problem,
            where=self._where,
        )
        for writer, positions in self._writers.items():
            # The tree is recomputed from position 0: not from a window (--since).
            signed = roots.get(writer) if self._from_start else None
            tree = TreeCheck(writer, signed) if signed else None
            walk.walk(
                writer,
                positions,
                voids.get(writer, Voids()),
                covered.get(writer),
                tree,
                kept=kept.get(writer),
            )
            if tree is not None:
                walk.report_trees(writer, tree)
        if self._from_start:
            # A writer whose checkpoints cover records of which none is left.
            for writer, checkpoint in covered.items():
                if writer not in self._writers:
                    walk.gap(
                        "truncated", writer, 0, checkpoint.seq, after=None, checkpoint=checkpoint
                    )
        self._check_checkpoint_links(voids)
        self._check_voids()
        self._check_proven()
        self._check_receipts()
        self._check_writers(voids)
        if self._timestamps is not None:
            self._check_timestamps(self._timestamps)
        if not report.signed and (report.records_checked or self._require_signed):
            detail = "no signed checkpoint: the trail is chained but unsigned"
            if self._no_checkpoints_topic:
                detail = f"no topic {self._checkpoints_topic}: the trail is chained but unsigned"
            findings = report.problems if self._require_signed else report.warnings
            findings.append(Finding("unsigned", detail, self._checkpoints_topic))
        return report

    def _kept_roots(
        self, roots: dict[str, list[SignedRoot[TrailCheckpoint]]]
    ) -> dict[str, TrailCheckpoint]:
        """Each writer's largest kept tree head; every kept head's root goes into `roots`."""
        largest: dict[str, TrailCheckpoint] = {}
        for head in self._kept:
            if head.tree is not None:
                roots.setdefault(head.writer, []).append(
                    SignedRoot(head.seq, None, head.tree, head)
                )
            if head.writer not in largest or head.seq > largest[head.writer].seq:
                largest[head.writer] = head
        return largest

    def _check_writers(self, voids: dict[str, "Voids"]) -> None:
        held: dict[str, int] = {}
        for writer, positions in self._writers.items():
            void = voids.get(writer, Voids())
            held[writer] = max([*positions, *void.links, *void.digests]) + 1
        heads = [
            SignedHead(
                c.writer,
                c.seq + 1,
                c.tree,
                Seen(c.topic, c.partition, c.offset),
                kept=c.chain is None,
            )
            for c in [*self._checkpoints, *self._kept]
            if c.tree is not None
        ]
        problems, warnings = self._log.conclude(
            held, heads, from_start=self._from_start, strict=self._strict
        )
        self._report.problems += map(_finding, problems)
        self._report.warnings += map(_finding, warnings)

    def _check_timestamps(self, timestamps: TimestampCheck) -> None:
        report = self._report
        report.problems += map(_finding, timestamps.conclude(self._log.notes))
        report.timestamps_checked = timestamps.checked
        report.timestamps_valid = timestamps.valid
        if not timestamps.valid:
            return
        # Records past what the latest valid token's note covers: no trusted time yet (the
        # newest records always are, until the next round stamps them).
        covered = self._log.sizes_within(timestamps.stamped_size)
        for writer, positions in self._writers.items():
            late = sorted(seq for seq in positions if seq >= covered.get(writer, 0))
            if late:
                entry = positions[late[0]]
                report.warnings.append(
                    Finding(
                        "not_timestamped",
                        f"{len(late)} record(s) of writer {writer} after what the latest "
                        f"timestamped note of the log of writers covers (size "
                        f"{covered.get(writer, 0)})",
                        self._topic,
                        entry[PARTITION],
                        entry[OFFSET],
                        writer,
                        late[0],
                        late[-1],
                    )
                )

    def _check_checkpoint_links(self, voids: dict[str, Voids]) -> None:
        # A signed checkpoint names the link at its seq: the record there must carry it, and
        # when the position is void, the void link must be it (version 1 lists the link; a
        # version 2 void's link is computed in the walk, where TreeCheck compares it).
        for checkpoint in self._checkpoints:
            entry = self._writers.get(checkpoint.writer, {}).get(checkpoint.seq)
            if entry is not None and entry[LINK] != checkpoint.chain:
                self._problem(
                    "conflict",
                    f"a signed checkpoint ({named(checkpoint)}) names another link at this "
                    "position",
                    entry[PARTITION],
                    entry[OFFSET],
                    writer=checkpoint.writer,
                    seq=checkpoint.seq,
                )
            known = voids.get(checkpoint.writer)
            void = known.links.get(checkpoint.seq) if known is not None else None
            if entry is None and void is not None and void != checkpoint.chain:
                self._report.problems.append(
                    Finding(
                        "conflict",
                        "the checkpoint's seq is void with another link than its chain",
                        checkpoint.topic,
                        checkpoint.partition,
                        checkpoint.offset,
                        checkpoint.writer,
                        checkpoint.seq,
                    )
                )

    def _check_voids(self) -> None:
        # A position a trusted checkpoint lists as lost holds a record: either the writer judged
        # lost a record Kafka did store (a timeout after the append), or the void is a lie.
        seen: set[tuple[str, int]] = set()
        for checkpoint in self._checkpoints:
            positions = self._writers.get(checkpoint.writer, {})
            for seq in sorted(checkpoint.void):
                entry = positions.get(seq)
                if entry is None or (checkpoint.writer, seq) in seen:
                    continue
                seen.add((checkpoint.writer, seq))
                self._problem(
                    "conflict",
                    f"a signed checkpoint ({named(checkpoint)}) lists this position as lost "
                    "(void), but this record is here",
                    entry[PARTITION],
                    entry[OFFSET],
                    writer=checkpoint.writer,
                    seq=seq,
                )

    def _check_proven(self) -> None:
        # A kept proof names the record it proves: the trail's record at that position must be
        # it (the tree check says so too, but only while the tree is unbroken below it).
        for name, writer, seq, tail in self._proven:
            entry = self._writers.get(writer, {}).get(seq)
            if entry is not None and entry[LEAF] != tail:
                said = tail.replace("\n", ", schema id ")
                self._problem(
                    "conflict",
                    f"the kept proof {name} proves another record at this position (sha256:{said})",
                    entry[PARTITION],
                    entry[OFFSET],
                    writer=writer,
                    seq=seq,
                )

    def _check_receipts(self) -> None:
        self._report.receipts_checked = len(self._receipts)
        for name, receipt in self._receipts:
            faults = self._receipt_faults(receipt)
            if faults:
                partition, offset = receipt.get("partition"), receipt.get("offset")
                self._report.problems.append(
                    Finding(
                        "receipt",
                        f"{name}: {'; '.join(faults)}",
                        str(receipt.get("topic")),
                        partition if isinstance(partition, int) else None,
                        offset if isinstance(offset, int) else None,
                        receipt.get("writer") if isinstance(receipt.get("writer"), str) else None,
                        receipt.get("seq") if isinstance(receipt.get("seq"), int) else None,
                    )
                )

    def _receipt_faults(self, receipt: Mapping[str, Any]) -> list[str]:
        writer, seq = receipt.get("writer"), receipt.get("seq")
        digest, chain = receipt.get("digest"), receipt.get("chain")
        if self._topic is not None and receipt.get("topic") != self._topic:
            return [f"topic {receipt.get('topic')!r} is not the verified topic {self._topic!r}"]
        faults: list[str] = []
        partition, offset = receipt.get("partition"), receipt.get("offset")
        if isinstance(partition, int) and isinstance(offset, int):
            seen = self._wanted.get((partition, offset))
            if seen is None:
                faults.append("no record at its partition and offset")
            else:
                stated = (digest, writer, None if seq is None else str(seq), chain)
                names = ("digest", "writer", "seq", "chain")
                faults += [
                    f"{n} {s!r} differs from the record's {r!r}"
                    for n, s, r in zip(names, stated, seen, strict=True)
                    if s != r
                ]
        if not isinstance(writer, str) or not isinstance(seq, int):
            return [*faults, "no writer and seq"]
        entry = self._writers.get(writer, {}).get(seq)
        if entry is None:
            faults.append("its writer position is not on the trail")
        elif (digest, chain) != (_PREFIX + entry[DIGEST], _PREFIX + entry[LINK]):
            faults.append("digest or chain differs from the record at its writer position")
        return sorted(set(faults))

    # -- helpers ---------------------------------------------------------------------------

    def _where(self, partition: int, offset: int) -> tuple[str | None, int, int]:
        return (self._topic, partition, offset)

    def _problem(
        self,
        kind: str,
        detail: str,
        partition: int,
        offset: int,
        *,
        writer: str | None = None,
        seq: int | None = None,
    ) -> None:
        self._report.problems.append(
            Finding(kind, detail, self._topic, partition, offset, writer, seq)
        )


# An erasure record's model in the canonical JSON (app/ingest/erasures.py): the substring is
# a cheap first test, the parse decides (metadata may hold the same key and value).
_ERASURE_MODEL = b'"model":"rg-erasure/v1"'


def is_erasure_record(body: bytes) -> bool:
    """The value (unframed) is an erasure record's: a JSON object whose model is
    rg-erasure/v1. UTF-8 JSON only (no byte order mark, no NaN), as the Go verifier reads it."""
    if _ERASURE_MODEL not in body:
        return False
    try:
        value = json.loads(body.decode("utf-8"), parse_constant=_no_constant)
    except (ValueError, RecursionError):
        return False
    return isinstance(value, dict) and value.get("model") == "rg-erasure/v1"


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _count(headers: Sequence[tuple[str, bytes]], name: str) -> int:
    return sum(1 for n, _ in headers if n == name)


def _finding(found: Conclusion) -> Finding:
    where = found.where
    return Finding(
        found.kind,
        found.detail,
        where.topic,
        where.partition,
        where.offset,
        found.writer,
        found.seq,
        found.last_seq,
    )
