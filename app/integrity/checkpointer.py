"""Writes signed checkpoints of this writer's chain to the checkpoints topic.

Every RG_AUDIT_CHECKPOINT_S the checkpointer asks the chain for its durable head (the highest
seq with every seq up to it, itself included, stored or lost), the root of its tree over
positions 0..seq and every position lost up to it (`void`); when the head advanced it signs a
checkpoint (version 2: the JSON and its C2SP note, docs/integrity.md) and writes it, keyed by
the writer id, with the service's producer (acks=all). A lost position is settled, so the head
passes it only once it is known: the void list of a seq never changes, and an advance is the
only news. It writes once more at shutdown, after the producer's flush, so the last records are
covered. A failed write is logged and retried at the next tick. The latest checkpoint written is
kept for GET /audit/checkpoint.

The chain is anything with `writer_id` and `durable()` (`ChainSource`): app/integrity/chain.py's
`ChainWriter`, or in unit tests heads given directly.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from app.errors import NoCheckpointError, UnsignedError
from app.integrity.announcer import WritersAnnouncer
from app.integrity.checkpoint import Checkpoint, new_checkpoint
from app.integrity.keys import PublicKey, SigningKey, load_signing_key, public_keys
from app.integrity.writers import TIMESTAMPS_KEY
from app.kafka import KafkaProducerClient
from app.logs import RepeatedFailure
from app.settings import Settings
from app.tasks import BackgroundTask

logger = logging.getLogger(__name__)


class Head(Protocol):
    """A durable head: `seq`, its link `chain` (64 hex), the `tree` root (32 bytes) over
    positions 0..seq and the `void` positions up to seq (seq -> digest, 64 hex)."""

    @property
    def seq(self) -> int: ...

    @property
    def chain(self) -> str: ...

    @property
    def tree(self) -> bytes: ...

    @property
    def void(self) -> dict[int, str]: ...


class ChainSource(Protocol):
    """What the checkpointer reads of the writer's chain (app/integrity/chain.py)."""

    @property
    def writer_id(self) -> str: ...

    def durable(self) -> Head | None: ...


# Writes one checkpoint's record (key: the writer id) and returns once it is acknowledged.
WriteRecord = Callable[[str, bytes], Awaitable[None]]


class Checkpointer:
    """Signs and writes checkpoints of `chain` every `interval_s` while something is new; the
    notes are signed under the key name `origin` (RG_AUDIT_LOG_ORIGIN)."""

    def __init__(
        self,
        chain: ChainSource,
        key: SigningKey,
        write: WriteRecord,
        *,
        origin: str,
        interval_s: float,
        on_written: Callable[[Checkpoint], None] = lambda _: None,
    ) -> None:
        self._chain = chain
        self._key = key
        self._write = write
        self._origin = origin
        self._interval_s = interval_s
        self._on_written = on_written
        self._task = BackgroundTask("checkpointer", self._run)
        self._lock = asyncio.Lock()
        self.latest: Checkpoint | None = None
        self.written = 0
        self._failures = RepeatedFailure()

    def start(self) -> None:
        """Begin writing in the background."""
        self._task.start()

    async def close(self) -> None:
        """Stop the timer, then write a last checkpoint when something is new; call it after
        the producer's flush, before the producer closes."""
        await self._task.close()
        try:
            await self.checkpoint()
        except Exception as exc:  # the broker away at shutdown: the log says so
            logger.error("last checkpoint of writer %s not written: %s", self._chain.writer_id, exc)

    async def checkpoint(self) -> Checkpoint | None:
        """Write a checkpoint when the durable head advanced since the last one; returns it, or
        None when nothing was new. Raises what the write raised."""
        async with self._lock:
            head = self._chain.durable()
            if head is None:
                return None
            if self.latest is not None and head.seq <= self.latest.seq:
                return None
            checkpoint = new_checkpoint(
                writer=self._chain.writer_id,
                seq=head.seq,
                chain=head.chain,
                key_id=self._key.key_id,
                void=head.void,
                tree=head.tree,
            ).sign(self._key.private, name=self._origin)
            await self._write(checkpoint.writer, checkpoint.to_bytes())
            self.latest = checkpoint
            self.written += 1
            self._on_written(checkpoint)
            return checkpoint

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.checkpoint()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Kafka away: the next tick tries again
                left_out = self._failures.due()
                if left_out is not None:
                    logger.warning(
                        "checkpoint of writer %s not written, retrying every %.1fs: %s%s",
                        self._chain.writer_id,
                        self._interval_s,
                        exc,
                        f" ({left_out} more failed attempts since the last line)"
                        if left_out
                        else "",
                    )
            else:
                self._failures.reset()


class Checkpoints:
    """The service's signing side, owned by `Services`: the key (loaded by `open()`, at
    start), the public keys GET /audit/keys serves, and the checkpointer of `chain`.

    Without RG_AUDIT_SIGNING_KEY_FILE nothing is signed: `latest()` raises `UnsignedError`
    and no checkpoint is written; the public keys are then the retired ones only.
    """

    def __init__(
        self,
        settings: Settings,
        producer: KafkaProducerClient,
        *,
        chain: ChainSource | None = None,
    ) -> None:
        self._settings = settings
        self._producer = producer
        # The writer's chain (app/integrity/chain.py's ChainWriter).
        self.chain = chain
        self.key: SigningKey | None = None
        self.public_keys: list[PublicKey] = []
        self.checkpointer: Checkpointer | None = None
        # Writes this writer's start, heads and stop to the log of writers (with a key).
        self.announcer: WritersAnnouncer | None = None

    @property
    def signing(self) -> bool:
        """True when a signing key is configured."""
        return self._settings.audit_signing_key_file is not None

    @property
    def written(self) -> int:
        """Checkpoints written since the start."""
        return 0 if self.checkpointer is None else self.checkpointer.written

    @property
    def latest_seq(self) -> int:
        """The seq the latest checkpoint covers, -1 before the first."""
        latest = None if self.checkpointer is None else self.checkpointer.latest
        return -1 if latest is None else latest.seq

    def covers(self, writer: str, seq: int) -> bool | None:
        """Whether the latest checkpoint written covers position `seq` of `writer` (GET
        /messages): None when unknown (no signing key, or another writer: another instance
        or an earlier start of this one). It says the position is covered; whether the record
        there is the one the writer stored is for `verify` to say."""
        if self.checkpointer is None or self.chain is None or writer != self.chain.writer_id:
            return None
        return seq <= self.latest_seq

    def open(self) -> None:
        """Load the signing key and the retired public keys; `SigningKeyError`, naming the
        file, when one cannot be used (the service then refuses to start)."""
        settings = self._settings
        if settings.audit_signing_key_file is not None:
            self.key = load_signing_key(
                settings.audit_signing_key_file,
                settings.audit_key_id,
                allow_insecure=settings.allow_insecure_key_files,
            )
            logger.info(
                "signing checkpoints with key %r to topic %r every %.1fs",
                self.key.key_id,
                settings.checkpoints_topic,
                settings.audit_checkpoint_s,
            )
        self.public_keys = public_keys(self.key, settings.audit_retired_keys_dir)
        if self.key is not None and self.chain is not None:
            announcer = self.announcer = WritersAnnouncer(
                self.chain,
                self._write_entry,
                origin=settings.log_origin,
                interval_s=settings.audit_writers_s,
            )

            async def write(writer: str, value: bytes) -> None:
                # The log of writers knows a writer before any checkpoint of it exists.
                await announcer.started()
                await self._write(writer, value)

            self.checkpointer = Checkpointer(
                self.chain,
                self.key,
                write,
                origin=settings.log_origin,
                interval_s=settings.audit_checkpoint_s,
            )

    def start(self) -> None:
        """Begin writing checkpoints and the log of writers (once the topics exist)."""
        if self.announcer is not None:
            self.announcer.start()
        if self.checkpointer is not None:
            self.checkpointer.start()

    async def close(self) -> None:
        """Write the last checkpoint, then the writer's stop to the log of writers; call after
        the producer's flush, before it closes."""
        if self.checkpointer is not None:
            await self.checkpointer.close()
        if self.announcer is not None:
            await self.announcer.close()

    def latest(self) -> Checkpoint:
        """The latest checkpoint written; `UnsignedError` without a key, `NoCheckpointError`
        before the first."""
        if not self.signing:
            raise UnsignedError(
                "checkpoints are not signed: no signing key is configured "
                "(RG_AUDIT_SIGNING_KEY_FILE)"
            )
        latest = None if self.checkpointer is None else self.checkpointer.latest
        if latest is None:
            raise NoCheckpointError("no checkpoint written yet: no audit record stored so far")
        return latest

    async def _write_entry(self, writer: str, value: bytes) -> None:
        await self._producer.publish(
            self._settings.writers_topic,
            value,
            key=writer,
            headers={"content-type": "application/json"},
            timeout_s=self._settings.produce_timeout_s,
        )

    async def write_writers_note(self, value: bytes) -> None:
        """A signed note of the log of writers to the checkpoints topic, keyed `writers`."""
        await self._write("writers", value)

    async def write_timestamp(self, value: bytes) -> None:
        """A timestamp token over a note of the log of writers, keyed `timestamps`."""
        await self._write(TIMESTAMPS_KEY, value)

    async def write_cosignature(self, key: str, value: bytes) -> None:
        """A witness's cosignature record to the checkpoints topic, keyed `key`
        (`cosignatures`: app/integrity/cosigner.py)."""
        await self._write(key, value)

    async def _write(self, writer: str, value: bytes) -> None:
        # acks=all (the service's producer): a checkpoint a witness fetched must be on the topic.
        await self._producer.publish(
            self._settings.checkpoints_topic,
            value,
            key=writer,
            headers={"content-type": "application/json"},
            timeout_s=self._settings.produce_timeout_s,
        )
