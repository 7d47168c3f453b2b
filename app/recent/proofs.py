"""The background consumer that fills the proof index (app/integrity/proofs.py) from the audit
topic and the checkpoints topic, read from their beginning, so GET /audit/proof answers for any
record the topic still holds: this process's, other replicas', and writers long stopped.

Like the GET /messages reader it uses no consumer group and commits nothing. It remembers how
far it read each partition and goes on from there after reconnecting. A record is placed by its
headers (`rg-writer`, `rg-seq`, `rg-digest`, `rg-event-id`): the leaf is the writer's own
statement of the record, so a value altered later still has the leaf its writer signed, and a
header rewritten breaks the root the writer's checkpoint signed (the index then refuses that
writer's proofs). A checkpoint counts once it is trusted by `verify`'s rules
(app/integrity/trust.py); only version 2 checkpoints carry a tree. `caught_up` is set once the
index holds everything the topics held when the reader connected first.

With RG_AUDIT_WITNESSES it wakes the cosigner (app/integrity/cosigner.py) after each new note
of the log of writers and hands it the cosignatures it reads (keyed `cosignatures`).

It reads the log of writers too (app/integrity/writers.py): leaf i of the writers' tree is the
record value at offset i of its one partition. Once caught up, whenever that tree grew (at most
every RG_AUDIT_WRITERS_S) it signs a note of it (origin `<RG_AUDIT_LOG_ORIGIN>/writers`), keeps it
for GET /audit/checkpoint?log=writers and writes it to the checkpoints topic keyed `writers`.
"""

import asyncio
import contextlib
import logging
import re
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from app.connection import consumer_config
from app.integrity.checkpoint import VERSION_2, Checkpoint, CheckpointFormatError, rfc3339
from app.integrity.checkpointer import Checkpoints
from app.integrity.cosigner import Cosigner
from app.integrity.merkle import MerkleTree, frame_schema_id, leaf_tail
from app.integrity.proofs import KnownCheckpoint, ProofIndex, ProofUnavailableError
from app.integrity.trust import CheckpointTrust
from app.integrity.witness import CosignatureRecord, WitnessError
from app.integrity.writers import COSIGNATURES_KEY, WritersNote, keyed_aside
from app.kafka import KafkaConsumerClient, KafkaMessage
from app.kafka.lifecycle import cancelling
from app.logs import RepeatedFailure
from app.recent.reader import FETCH_MAX_WAIT_MS, FETCH_MIN_BYTES
from app.settings import Settings
from app.tasks import BackgroundTask, Backoff

logger = logging.getLogger(__name__)

_WRITER = re.compile(r"[0-9a-f]{32}")
_SEQ = re.compile(r"0|[1-9][0-9]{0,18}")
_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")
# How often new hashes are written to the index's files and its event ids to SQLite.
FLUSH_EVERY_S = 0.5


class ProofsReader:
    """Runs the proof index's consumer as a task of the service."""

    def __init__(
        self,
        settings: Settings,
        checkpoints: Checkpoints,
        *,
        directory: Path | None,
        refresh_s: float,
    ) -> None:
        self._settings = settings
        # None: a temporary folder for this run (the index is rebuilt at every start).
        self._directory = directory
        self._temporary: Path | None = None
        self._index: ProofIndex | None = None
        self._checkpoints = checkpoints
        self._topics = [settings.audit_topic, settings.checkpoints_topic, settings.writers_topic]
        # The log of writers' tree (few entries: one per writer every few seconds), the latest
        # note signed of it, and whether the topic's offsets ran without a hole from 0.
        self.writers_tree = MerkleTree()
        self.writers_note: WritersNote | None = None
        self.writers_broken: str | None = None
        self._next_writers_note = 0.0
        self._refresh_s = refresh_s
        self._task = BackgroundTask("proofs-reader", self._run)
        self._positions: dict[tuple[str, int], int] = {}  # next offset to read
        self._trust: CheckpointTrust | None = None
        self._ends: dict[tuple[str, int], int] | None = None
        self.caught_up = asyncio.Event()
        self.skipped = 0
        self._attempt_timeout_s = 2 * settings.kafka_request_timeout_ms / 1000
        self._failures = RepeatedFailure()
        # With RG_AUDIT_WITNESSES: woken for each new note, given the cosignatures read.
        self.cosigner: Cosigner | None = None

    @property
    def index(self) -> ProofIndex:
        """The index (open from `start()` on)."""
        if self._index is None:
            raise ProofUnavailableError("the proof index is not open yet")
        return self._index

    def start(self) -> None:
        """Open the index and start reading in the background."""
        directory = self._directory
        if directory is None:
            directory = self._temporary = Path(tempfile.mkdtemp(prefix="rg-proofs-"))
        self._index = ProofIndex(directory)
        self._task.start()

    async def close(self) -> None:
        """Stop reading, close the consumer and the index (a temporary one is removed)."""
        await self._task.close()
        if self._index is not None:
            self._index.close()
            self._index = None
        if self._temporary is not None:
            shutil.rmtree(self._temporary, ignore_errors=True)

    async def _run(self) -> None:
        backoff = Backoff(max_s=10.0)
        while True:
            consumer = KafkaConsumerClient(
                config=consumer_config(
                    self._settings,
                    topics=self._topics,
                    auto_offset_reset="earliest",
                    max_poll_records=2000,
                    value_format="bytes",
                    # Fetches answered in batches, as the GET /messages reader's: the index
                    # needs no record at once, and fewer fetches cost the service less.
                    extra={
                        "fetch_min_bytes": FETCH_MIN_BYTES,
                        "fetch_max_wait_ms": FETCH_MAX_WAIT_MS,
                    },
                )
            )
            try:
                await asyncio.wait_for(consumer.start_uninterrupted(), self._attempt_timeout_s)
                for place, offset in self._positions.items():
                    with contextlib.suppress(Exception):  # a partition no longer assigned
                        consumer.seek(place, offset)
                if self._ends is None:
                    self._ends = await asyncio.wait_for(
                        consumer.end_offsets(), self._attempt_timeout_s
                    )
                self._failures.reset()
                await self._read(consumer, backoff)
            except asyncio.CancelledError:
                if cancelling():
                    raise
                await self._failed("cancelled inside the Kafka client", backoff)
            except Exception as exc:  # reconnect whatever went wrong
                await self._failed(exc, backoff)
            finally:
                self.index.flush()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(consumer.close(), self._attempt_timeout_s)

    async def _failed(self, reason: object, backoff: Backoff) -> None:
        left_out = self._failures.due()
        if left_out is not None:
            logger.warning(
                "the proof index's consumer stopped (%s); reconnecting in %.1fs%s",
                reason,
                backoff.delay_s,
                f" ({left_out} more failed attempts since the last line)" if left_out else "",
            )
        await backoff.wait()

    async def _read(self, consumer: KafkaConsumerClient, backoff: Backoff) -> None:
        next_refresh = time.monotonic() + self._refresh_s
        next_flush = time.monotonic() + FLUSH_EVERY_S
        while True:
            messages = await consumer.poll(timeout_ms=500)
            backoff.reset()
            for message in messages:
                self._take(message)
                self._positions[(message.topic, message.partition)] = message.offset + 1
            if time.monotonic() >= next_flush:
                self.index.flush()
                next_flush = time.monotonic() + FLUSH_EVERY_S
            if not self.caught_up.is_set() and self._reached_ends():
                self.index.flush()
                self.caught_up.set()
            if self.caught_up.is_set() and time.monotonic() >= self._next_writers_note:
                await self._sign_writers()
            if time.monotonic() >= next_refresh:
                await consumer.assign_new_partitions()
                next_refresh = time.monotonic() + self._refresh_s

    def _reached_ends(self) -> bool:
        ends = self._ends or {}
        return all(self._positions.get(place, 0) >= end for place, end in ends.items())

    async def _sign_writers(self) -> None:
        """Sign the writers' tree when it grew since the last note; write the note."""
        size = len(self.writers_tree)
        latest = self.writers_note
        if latest and latest.size >= size:
            return
        self._next_writers_note = time.monotonic() + self._settings.audit_writers_s
        try:
            await self.sign_writers_now()
        except Exception as exc:  # Kafka away: served anyway, written with the next growth
            logger.warning("the note of the log of writers (size %d) not written: %s", size, exc)

    def writers_size(self) -> int:
        """The size of the writers' tree a note may be signed of now: 0 before the reader
        caught up, when there is no signing key, or when the log has a hole."""
        if not self.caught_up.is_set() or self._checkpoints.key is None or self.writers_broken:
            return 0
        return len(self.writers_tree)

    async def sign_writers_now(self) -> WritersNote | None:
        """Sign a note of the writers' tree as it is now (a new time, even when the tree did
        not grow: a timestamp is asked for a note just signed), keep it and write it to the
        checkpoints topic; None when there is nothing to sign. Raises what the write raised
        (the note is served anyway)."""
        size = self.writers_size()
        key = self._checkpoints.key
        if key is None or size == 0:
            return None
        note = WritersNote.sign(
            self._settings.log_origin,
            size,
            self.writers_tree.root(),
            time=rfc3339(datetime.now(UTC)),
            key_id=key.key_id,
            key=key.private,
        )
        self.writers_note = note
        if self.cosigner is not None:
            self.cosigner.wake()
        await self._checkpoints.write_writers_note(note.to_bytes())
        return note

    def _take_writers(self, message: KafkaMessage) -> None:
        if self.writers_broken is not None:
            return
        if message.partition != 0 or message.offset != len(self.writers_tree):
            # Entries deleted, or a second partition: the order is not the one signed before.
            self.writers_broken = (
                f"{message.topic}[{message.partition}]@{message.offset} after "
                f"{len(self.writers_tree)} entries"
            )
            logger.error(
                "the log of writers has a hole (%s): its tree is no longer signed",
                self.writers_broken,
            )
            return
        self.writers_tree.append(message.value or b"")

    def _take(self, message: KafkaMessage) -> None:
        # One record must never stop the reader: whatever taking it raises, it is skipped.
        try:
            if message.topic == self._settings.writers_topic:
                self._take_writers(message)
            elif message.topic == self._settings.checkpoints_topic:
                self._take_checkpoint(message)
            else:
                self._take_record(message)
        except Exception as exc:
            self.skipped += 1
            logger.warning(
                "the proof index skipped the record at %s/%d/%d (%s: %.200s)",
                message.topic,
                message.partition,
                message.offset,
                type(exc).__name__,
                exc,
            )

    def _take_record(self, message: KafkaMessage) -> None:
        writer = message.header("rg-writer")
        seq = message.header("rg-seq")
        digest = _DIGEST.fullmatch(message.header("rg-digest") or "")
        if writer is None or seq is None or digest is None:
            self.skipped += 1  # not an audit record of a writer: nothing to prove
            return
        if not (_WRITER.fullmatch(writer) and _SEQ.fullmatch(seq)):
            self.skipped += 1
            return
        # A framed value's schema id goes into its leaf (the digest leaves the frame out).
        value = message.value if isinstance(message.value, bytes) else b""
        tail = leaf_tail(digest.group(1), frame_schema_id(value))
        self.index.add_record(writer, int(seq), tail, message.header("rg-event-id"))

    def _take_cosignature(self, message: KafkaMessage) -> None:
        if self.cosigner is None:
            return
        try:
            self.cosigner.take(CosignatureRecord.from_json(message.value))
        except WitnessError:
            self.skipped += 1

    def latest_writers(self) -> tuple[WritersNote, MerkleTree] | None:
        """The latest note of the log of writers and the tree it was signed of."""
        note = self.writers_note
        return None if note is None else (note, self.writers_tree)

    def _take_checkpoint(self, message: KafkaMessage) -> None:
        if message.key in (COSIGNATURES_KEY, COSIGNATURES_KEY.encode()):
            self._take_cosignature(message)
            return
        if keyed_aside(message.key):
            return  # a note of the log of writers or a token, not a writer's checkpoint
        try:
            checkpoint = Checkpoint.from_json(message.value)
        except CheckpointFormatError:
            self.skipped += 1
            return
        if checkpoint.version != VERSION_2:
            return  # written before trees: its writer has no proofs
        if self._trust is None:
            self._trust = CheckpointTrust(self._checkpoints.public_keys)
        if self._trust.check(checkpoint) is not None:
            self.skipped += 1
            return
        for seq, tail in checkpoint.void.items():
            self.index.add_void(checkpoint.writer, seq, tail)
        self.index.add_checkpoint(
            checkpoint.writer,
            KnownCheckpoint(
                checkpoint.count, bytes.fromhex(checkpoint.tree), checkpoint.note.encode()
            ),
        )
