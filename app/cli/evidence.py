"""The work of `export` (app/cli/export.py), imported when it runs: the topics read, the proofs
computed and the evidence bundle written."""

import argparse
import asyncio
import json
import re
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import ConsumerRecord
from aiokafka.errors import KafkaError

from app.cli.common import logger
from app.cli.trail import EXIT_CLEAN, EXIT_USAGE, VerifyInputError, load_public_keys, read_topic
from app.connection import consumer_config
from app.errors import ErasureKeysUnavailableError
from app.integrity.bundle import (
    CHECKPOINTS,
    KEYS,
    OPENED,
    PROOFS,
    RECORDS,
    WRITERS,
    BundleWriter,
    KafkaLine,
    keys_document,
    proof_line,
)
from app.integrity.checkpoint import (
    VERSION_2,
    Checkpoint,
    CheckpointFormatError,
    canonical_json,
)
from app.integrity.checkpoint import (
    rfc3339 as rfc3339_text,
)
from app.integrity.keys import (
    PublicKey,
    SigningKey,
    SigningKeyError,
    load_signing_key,
    public_keys,
)
from app.integrity.merkle import frame_schema_id, leaf_tail
from app.integrity.note import verifier_key
from app.integrity.proofs import KnownCheckpoint, ProofIndex, ProofUnavailableError
from app.integrity.trust import CheckpointTrust
from app.integrity.writers import WRITERS_KEY
from app.kafka.serde import unframed
from app.logs import configure_logging
from app.privacy.erasure import Erasure
from app.privacy.sealing import SEALED_PREFIX
from app.services import StartupError, erasure_of, start_erasure
from app.settings import Settings, get_settings

_WRITER = re.compile(r"[0-9a-f]{32}")
_SEQ = re.compile(r"0|[1-9][0-9]{0,18}")
_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")


def kafka_line(record: ConsumerRecord[bytes, bytes]) -> KafkaLine:
    """A consumed record as a bundle line."""
    return KafkaLine(
        record.topic,
        record.partition,
        record.offset,
        record.timestamp,
        record.key,
        record.value,
        tuple((name, raw) for name, raw in record.headers),
    )


def opened_line(erasure: Erasure, record: ConsumerRecord[bytes, bytes]) -> bytes | None:
    """A line of opened.ndjson: the record's place and its value with the sealed fields
    opened (or marked erased); None for a record with no sealed field. Raises
    `ErasureKeysUnavailableError` while the keys cannot be read."""
    if record.value is None:
        return None
    # A value in the schema registry's frame (RG_SCHEMA_REGISTRY_URL): the event follows it.
    raw = unframed(record.value)
    if SEALED_PREFIX.encode() not in raw:
        return None
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):  # anyone who may write the topic chooses its bytes
        return None
    if not isinstance(value, dict):
        return None
    place = {"topic": record.topic, "partition": record.partition, "offset": record.offset}
    return canonical_json({**place, "value": erasure.open_value(value)}) + b"\n"


def _header(record: ConsumerRecord[bytes, bytes], name: str) -> str | None:
    for key, raw in record.headers:
        if key == name:
            return raw.decode("utf-8", "replace") if raw is not None else None
    return None


@dataclass
class Export:
    """One export: the window, the proof index, the trusted keys, the bundle being written."""

    index: ProofIndex
    bundle: BundleWriter
    trust: CheckpointTrust
    since_ms: int | None
    until_ms: int | None
    user: bytes | None
    # RG_ERASURE=on: a record's line of opened.ndjson (`opened_line`).
    opener: Callable[[ConsumerRecord[bytes, bytes]], bytes | None] | None = None
    positions: set[tuple[str, int]] = field(default_factory=set)
    refused: list[str] = field(default_factory=list)  # why proofs were refused, once each

    def checkpoint(self, record: ConsumerRecord[bytes, bytes]) -> None:
        """A record of the checkpoints topic: into the bundle as stored, and a trusted
        version 2 checkpoint into the index (as the service's proof index takes it)."""
        self.bundle.add(CHECKPOINTS, kafka_line(record).encode())
        if record.key == WRITERS_KEY.encode():
            return
        try:
            checkpoint = Checkpoint.from_json(record.value)
        except CheckpointFormatError:
            return
        if checkpoint.version != VERSION_2 or record.key != checkpoint.writer.encode():
            return
        if self.trust.check(checkpoint) is not None:
            return
        for seq, tail in checkpoint.void.items():
            self.index.add_void(checkpoint.writer, seq, tail)
        self.index.add_checkpoint(
            checkpoint.writer,
            KnownCheckpoint(
                checkpoint.count, bytes.fromhex(checkpoint.tree), checkpoint.note.encode()
            ),
        )

    def writers_entry(self, record: ConsumerRecord[bytes, bytes]) -> None:
        """A record of the log of writers: into the bundle as stored."""
        self.bundle.add(WRITERS, kafka_line(record).encode())

    def audit_record(self, record: ConsumerRecord[bytes, bytes]) -> None:
        """A record of the audit topic: its leaf into the index; into the bundle when it is
        in the window (and the user's)."""
        writer, seq = _header(record, "rg-writer"), _header(record, "rg-seq")
        digest = _DIGEST.fullmatch(_header(record, "rg-digest") or "")
        placed = None
        if writer and seq and digest and _WRITER.fullmatch(writer) and _SEQ.fullmatch(seq):
            placed = (writer, int(seq))
            tail = leaf_tail(digest.group(1), frame_schema_id(record.value or b""))
            self.index.add_record(writer, int(seq), tail, None)
        if self.user is not None and record.key != self.user:
            return
        if self.since_ms is not None and record.timestamp < self.since_ms:
            return
        if self.until_ms is not None and record.timestamp >= self.until_ms:
            return
        self.bundle.add(RECORDS, kafka_line(record).encode())
        if self.opener is not None and (line := self.opener(record)) is not None:
            self.bundle.add(OPENED, line)
        if placed is not None:
            self.positions.add(placed)

    def proofs(self) -> int:
        """Write a proof for every position of the selected records a checkpoint covers;
        how many have none."""
        self.index.flush()
        uncovered = 0
        for writer, seq in sorted(self.positions):
            try:
                proof = self.index.proof(writer, seq)
            except ProofUnavailableError as exc:
                uncovered += 1
                # Not covered yet is routine; a tree that disagrees with its checkpoint is not.
                if "not covered" not in str(exc) and str(exc) not in self.refused:
                    self.refused.append(str(exc))
                continue
            self.bundle.add(PROOFS, proof_line(writer, seq, proof.encode()))
        return uncovered


def _millis(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1000)


def _keys(settings: Settings, args: argparse.Namespace) -> tuple[SigningKey, list[PublicKey]]:
    """The key that signs the manifest, and the public keys checkpoints are trusted with."""
    service = None
    if settings.audit_signing_key_file is not None:
        service = load_signing_key(
            settings.audit_signing_key_file,
            settings.audit_key_id,
            allow_insecure=settings.allow_insecure_key_files,
        )
    signer = service
    if args.signing_key is not None:
        insecure = settings.allow_insecure_key_files
        signer = load_signing_key(args.signing_key, allow_insecure=insecure)
    if signer is None:
        raise VerifyInputError(
            "export signs the bundle's manifest: set RG_AUDIT_SIGNING_KEY_FILE or give "
            "--signing-key FILE"
        )
    trusted = public_keys(service, settings.audit_retired_keys_dir)
    given = load_public_keys(args.public_key)
    known = {key.key_id for key in trusted}
    trusted += [key for key_id, key in given.items() if key_id not in known]
    if not trusted:
        # An exporter key alone: checkpoints need the service's public key to be trusted.
        raise VerifyInputError(
            "no key to trust the checkpoints with: set RG_AUDIT_SIGNING_KEY_FILE or give the "
            "service's --public-key FILE"
        )
    return signer, trusted


async def export_bundle(args: argparse.Namespace, settings: Settings) -> tuple[int, int, int]:
    """Write the bundle; the records, proofs and positions without a proof."""
    signer, trusted = _keys(settings, args)
    erasure = None if args.sealed else erasure_of(settings)
    if erasure is not None:
        await start_erasure(erasure)
    try:
        return await _export(args, settings, signer, trusted, erasure)
    except ErasureKeysUnavailableError as exc:
        raise VerifyInputError(
            f"cannot open the sealed fields: {exc} (--sealed exports without them)"
        ) from None
    finally:
        if erasure is not None:
            await erasure.store.close()


async def _export(
    args: argparse.Namespace,
    settings: Settings,
    signer: SigningKey,
    trusted: list[PublicKey],
    erasure: Erasure | None,
) -> tuple[int, int, int]:
    config = consumer_config(settings, topics=[args.topic], max_poll_records=5000).to_aiokafka()
    progress_to = sys.stderr if args.progress or sys.stderr.isatty() else None
    with tempfile.TemporaryDirectory(prefix="rg-export-") as folder:
        work = Path(folder)
        index = ProofIndex(work / "index")
        try:
            job = Export(
                index,
                BundleWriter(work, optional=() if erasure is None else (OPENED,)),
                CheckpointTrust(trusted),
                _millis(args.since),
                _millis(args.until),
                None if args.user is None else args.user.encode("utf-8"),
                None if erasure is None else lambda record: opened_line(erasure, record),
            )
            await read_topic(config, args.checkpoints_topic, job.checkpoint, required=False)
            await read_topic(config, args.writers_topic, job.writers_entry, required=False)
            await read_topic(
                config, args.topic, job.audit_record, progress_to=progress_to, label="export"
            )
            uncovered = job.proofs()
            for reason in job.refused:
                logger.warning("no proofs: %s (verify --bundle reports these records)", reason)
        finally:
            index.close()
        origin = settings.audit_log_origin or f"ractogateway-kafka/{args.topic}"
        job.bundle.add(KEYS, keys_document([_key_entry(key, origin, signer) for key in trusted]))
        job.bundle.close(
            args.out,
            key=signer.private,
            key_id=signer.key_id,
            created=rfc3339_text(datetime.now(UTC)),
            query={
                "since": args.since_text,
                "until": args.until_text,
                "user": args.user,
            },
            topics={
                "audit": args.topic,
                "checkpoints": args.checkpoints_topic,
                "writers": args.writers_topic,
            },
        )
        counts = job.bundle.counts
        return counts[RECORDS], counts[PROOFS], uncovered


def _key_entry(key: PublicKey, origin: str, signer: SigningKey) -> dict[str, Any]:
    return {
        "key_id": key.key_id,
        "current": key.key_id == signer.key_id,
        "public_key_pem": key.pem,
        "verifier_key": verifier_key(origin, key.key),
        "until": None if key.until is None else rfc3339_text(key.until),
    }


def export(args: argparse.Namespace) -> int:
    """`export`: write the bundle; exit 0, or 2 with one line naming the problem."""
    configure_logging("WARNING", "text")
    settings = get_settings()
    args.topic = args.topic or settings.audit_topic
    args.checkpoints_topic = args.checkpoints_topic or f"{args.topic}.checkpoints"
    args.writers_topic = args.writers_topic or f"{args.topic}.writers"
    if not args.out.parent.is_dir():
        # Before reading the topics: a long read must not end in a bundle it cannot write.
        logger.error("--out %s: no folder %s", args.out, args.out.parent)
        return EXIT_USAGE
    if args.since is not None and args.until is not None and args.until <= args.since:
        logger.error("--until %s is not after --since %s", args.until_text, args.since_text)
        return EXIT_USAGE
    try:
        records, proofs, uncovered = asyncio.run(export_bundle(args, settings))
    except (VerifyInputError, SigningKeyError, StartupError) as exc:
        logger.error("%s", exc)
        return EXIT_USAGE
    except KafkaError as exc:
        logger.error("cannot read the trail: %s", exc)
        return EXIT_USAGE
    except OSError as exc:
        logger.error("cannot write %s: %s", args.out, exc.strerror or exc)
        return EXIT_USAGE
    without = f", {uncovered} position(s) not covered by a checkpoint yet" if uncovered else ""
    print(
        f"export: {records} record(s), {proofs} proof(s){without}: {args.out}",
        file=sys.stderr,
    )
    return EXIT_CLEAN
