"""What `verify` and `export` share: the exit codes, the public keys given with --public-key,
and reading a topic of the trail up to its end offsets. Imported when one of them runs, not when
the parser is built (app/cli/__init__.py)."""

import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from app.integrity.keys import PublicKey, derived_key_id, parse_until

EXIT_CLEAN, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2


class VerifyInputError(Exception):
    """A file or topic `verify` was pointed at cannot be used (exit 2)."""


def load_public_keys(specs: list[str]) -> dict[str, PublicKey]:
    """Ed25519 public keys (PEM) by key id, from `FILE` or `FILE@UNTIL` (UNTIL: the RFC 3339
    time the key was retired; checkpoints it signs dated later are not trusted). The id is the
    spec's derivation, and also the file's name when it is `<key_id>.pub.pem` or `<key_id>.pem`."""
    keys: dict[str, PublicKey] = {}
    for spec in specs:
        path, until = Path(spec), None
        head, at, tail = spec.rpartition("@")
        if at and not path.exists():
            try:
                path, until = Path(head), parse_until(tail)
            except ValueError as exc:
                raise VerifyInputError(
                    f"--public-key {spec}: after @, the time the key was retired (RFC 3339 with "
                    "its offset, e.g. 2026-06-30T00:00:00Z)"
                ) from exc
        try:
            key = load_pem_public_key(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise VerifyInputError(f"--public-key {path}: not a readable PEM public key") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise VerifyInputError(f"--public-key {path}: not an Ed25519 public key")
        ids = {derived_key_id(key)}
        name = path.name
        for suffix in (".pub.pem", ".pem"):
            if name.endswith(suffix) and len(name) > len(suffix):
                ids.add(name.removesuffix(suffix))
                break
        for key_id in ids:
            keys[key_id] = PublicKey(key_id, key, current=until is None, until=until)
    return keys


class Progress:
    """A one-line progress bar on stderr, redrawn at most five times a second."""

    def __init__(self, out: TextIO | None, total: int, label: str = "verify") -> None:
        self._out, self._total, self._done = out, max(total, 1), 0
        self._label = label
        self._started = self._drawn = time.monotonic()

    def advance(self, count: int) -> None:
        """Count `count` more records read."""
        self._done += count
        now = time.monotonic()
        if self._out is not None and now - self._drawn >= 0.2:
            self._drawn = now
            self._draw(now)

    def close(self) -> None:
        """Draw the final state and end the line."""
        if self._out is not None:
            self._draw(time.monotonic())
            print(file=self._out, flush=True)

    def _draw(self, now: float) -> None:
        share = min(self._done / self._total, 1.0)
        bar = "#" * int(share * 30)
        rate = self._done / max(now - self._started, 1e-9)
        line = f"\r{self._label} [{bar:<30}] {self._done:,}/{self._total:,} records {rate:,.0f}/s"
        print(line, end="", file=self._out, flush=True)


async def read_topic(
    config: dict[str, Any],
    topic: str,
    on_record: Callable[[ConsumerRecord[bytes, bytes]], None],
    *,
    since: datetime | None = None,
    progress_to: TextIO | None = None,
    required: bool = True,
    label: str = "verify",
) -> bool:
    """Feed every record of `topic` up to its end offsets at start (from `since`, else the
    oldest kept) to `on_record`; False when the topic does not exist and is not `required`."""
    consumer: AIOKafkaConsumer[bytes, bytes] = AIOKafkaConsumer(**config)
    try:
        # Inside the try: a start that fails (Kafka unreachable) leaves a consumer to close too.
        await consumer.start()
        if topic not in await consumer.topics():
            if required:
                raise VerifyInputError(f"topic {topic!r} does not exist")
            return False
        # The partitions of a topic not subscribed to: aiokafka has no public form of this.
        ids: set[int] = await consumer._client._wait_on_metadata(topic)
        partitions = [TopicPartition(topic, p) for p in sorted(ids)]
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        starts = await consumer.beginning_offsets(partitions)
        if since is not None:
            found = await consumer.offsets_for_times(
                dict.fromkeys(partitions, int(since.timestamp() * 1000))
            )
            starts = {tp: ends[tp] if at is None else at.offset for tp, at in found.items()}
        for tp in partitions:
            consumer.seek(tp, starts[tp])
        pending = {tp for tp in partitions if starts[tp] < ends[tp]}
        progress = Progress(progress_to, sum(ends[tp] - starts[tp] for tp in pending), label)
        while pending:
            batches = await consumer.getmany(*pending, timeout_ms=1000, max_records=5000)
            for tp, records in batches.items():
                for record in records:
                    if record.offset < ends[tp]:
                        on_record(record)
                progress.advance(len(records))
            for tp in list(pending):
                # The position, not the last record: transaction markers hold offsets too.
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
        progress.close()
        return True
    finally:
        await consumer.stop()
