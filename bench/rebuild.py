"""A cold rebuild of the proof index, end to end with the Kafka read: a fresh audit topic filled
with `records` records of one writer carrying valid chain headers (the service's headers, ~1 KB
values), signed version 2 checkpoints every `checkpoint_every` positions and one at the end; then
the service's own proof index reader (app/recent/proofs.py) started on an empty RG_PROOF_DIR,
timed until it has caught up with the topics and serves a proof of the last record (checked
offline, as `verify --proof` does).

The records are produced in 1 MiB batches straight into aiokafka's batch builder, compression
none (the service's default), acks=all: filling is not what is measured.
"""

import asyncio
import hashlib
import os
import resource
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.integrity.chain import GENESIS, link_of
from app.integrity.checkpoint import new_checkpoint
from app.integrity.checkpointer import Checkpoints
from app.integrity.keys import derived_key_id
from app.integrity.merkle import Frontier, leaf_entry, leaf_hash
from app.integrity.proofs import ProofUnavailableError, check_tlog_proof
from app.kafka import KafkaProducerClient
from app.recent.proofs import ProofsReader
from app.settings import Settings
from bench.procfs import cpu_seconds

NAME = "ractogateway-kafka/bench"
PARTITIONS = 3
BATCH_BYTES = 1024 * 1024
IN_FLIGHT = 8  # batches sent and not yet acknowledged
# ~1 KB values, as bench/verify.py's: what a prompt and its answer look like in size.
_PROMPT = ("Summarise the quarterly report for the board, in plain words. " * 8)[:500]
_RESPONSE = ("The quarter closed above plan; costs held; two risks remain open. " * 6)[:380]


@dataclass(frozen=True)
class Filled:
    """The trail written: its topic, writer, records and checkpoints, the bytes of values and
    headers produced, and the seconds it took."""

    topic: str
    writer: str
    records: int
    checkpoints: int
    bytes_produced: int
    seconds: float


@dataclass(frozen=True)
class Rebuilt:
    """A cold rebuild: wall and CPU seconds of this process until the proof of the last record
    was served (the broker's CPU too, when its pid is known), the index's bytes on disk, the
    process's peak RSS, and the size of that proof."""

    records: int
    wall_s: float
    cpu_s: float
    broker_cpu_s: float | None
    disk_bytes: int
    peak_rss_kib: int
    proof_bytes: int

    @property
    def records_per_s(self) -> float:
        """Records indexed per wall second."""
        return self.records / self.wall_s


async def fill(
    bootstrap: str,
    key: Ed25519PrivateKey,
    records: int,
    *,
    checkpoint_every: int = 10_000,
) -> Filled:
    """Create the audit, checkpoints and writers topics and fill the first two."""
    topic = f"bench-rebuild-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(topic, PARTITIONS, 1),
                NewTopic(f"{topic}.checkpoints", 1, 1),
                NewTopic(f"{topic}.writers", 1, 1),
            ]
        )
    finally:
        await admin.close()
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        compression_type=None,
        max_batch_size=BATCH_BYTES,
        max_request_size=2 * BATCH_BYTES,
        linger_ms=5,
    )
    await producer.start()
    started = time.perf_counter()
    try:
        writer, produced, signed = await _produce(producer, topic, key, records, checkpoint_every)
    finally:
        await producer.stop()
    return Filled(topic, writer, records, signed, produced, time.perf_counter() - started)


async def _produce(
    producer: AIOKafkaProducer,
    topic: str,
    key: Ed25519PrivateKey,
    records: int,
    checkpoint_every: int,
) -> tuple[str, int, int]:
    writer = uuid.uuid4().hex
    key_id = derived_key_id(key.public_key())
    batches = [producer.create_batch() for _ in range(PARTITIONS)]
    in_flight: list[asyncio.Future[object]] = []
    frontier = Frontier()
    prev, produced, signed = GENESIS, 0, 0
    static = [
        ("content-type", b"application/json"),
        ("rg-schema-version", b"1"),
        ("rg-writer", writer.encode()),
    ]

    async def send(partition: int) -> None:
        in_flight.append(await producer.send_batch(batches[partition], topic, partition=partition))
        batches[partition] = producer.create_batch()
        if len(in_flight) >= IN_FLIGHT:
            await asyncio.gather(*in_flight)
            in_flight.clear()

    for seq in range(records):
        event_id = f"{writer[:8]}-{seq:012d}"
        value = (
            f'{{"event_id":"{event_id}","model":"bench-model","prompt":"{seq} {_PROMPT}",'
            f'"response":"{_RESPONSE}","user_id":"user-{seq % 1000}"}}'
        ).encode()
        digest = hashlib.sha256(value).hexdigest()
        prev = link_of(writer, seq, prev, digest)
        frontier.append_hash(leaf_hash(leaf_entry(writer, seq, digest)))
        headers = [
            *static,
            ("rg-event-id", event_id.encode()),
            ("rg-digest", f"sha256:{digest}".encode()),
            ("rg-seq", str(seq).encode()),
            ("rg-chain", f"sha256:{prev}".encode()),
        ]
        partition = seq % PARTITIONS
        batch = batches[partition]
        while batch.append(key=None, value=value, timestamp=None, headers=headers) is None:
            await send(partition)
            batch = batches[partition]
        produced += len(value) + sum(len(n) + len(v) for n, v in headers)
        if seq % checkpoint_every == checkpoint_every - 1 or seq == records - 1:
            # Checkpoints go after the records they cover are flushed to the topic's batches,
            # as the service writes one once its records are acknowledged.
            for p in range(PARTITIONS):
                await send(p)
            checkpoint = new_checkpoint(
                writer=writer, seq=seq, chain=prev, key_id=key_id, tree=frontier.root()
            ).sign(key, name=NAME)
            await producer.send(f"{topic}.checkpoints", checkpoint.to_bytes(), key=writer.encode())
            signed += 1
    for p in range(PARTITIONS):
        await send(p)
    await asyncio.gather(*in_flight)
    await producer.flush()
    return writer, produced, signed


async def rebuild(
    bootstrap: str,
    filled: Filled,
    key: Ed25519PrivateKey,
    directory: Path,
    *,
    broker_pid: int | None = None,
) -> Rebuilt:
    """Start the proof index reader on the empty `directory` and time it until the proof of
    the last record is served; the proof is checked offline."""
    key_file = directory.parent / f"{directory.name}.key.pem"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    os.chmod(key_file, 0o600)
    settings = Settings(
        _env_file=None,
        kafka_bootstrap_servers=[bootstrap],
        audit_topic=filled.topic,
        audit_signing_key_file=key_file,
        audit_log_origin=NAME,
        proof_dir=directory,
    )
    checkpoints = Checkpoints(settings, KafkaProducerClient())  # reads keys, writes nothing
    checkpoints.open()
    reader = ProofsReader(
        settings, checkpoints, directory=directory, refresh_s=settings.messages_refresh_s
    )
    last = filled.records - 1
    broker_before = None if broker_pid is None else cpu_seconds(broker_pid)
    cpu, wall = time.process_time(), time.perf_counter()
    reader.start()
    try:
        await reader.caught_up.wait()
        while True:
            try:
                proof = reader.index.proof(filled.writer, last)
                break
            except ProofUnavailableError:
                await asyncio.sleep(0.01)
        wall = time.perf_counter() - wall
        cpu = time.process_time() - cpu
        broker_cpu = None
        if broker_pid is not None and broker_before is not None:
            broker_cpu = cpu_seconds(broker_pid) - broker_before
    finally:
        await reader.close()
    encoded = proof.encode()
    proven = check_tlog_proof(encoded, [key.public_key()])
    if (proven.writer, proven.seq, proven.size) != (filled.writer, last, filled.records):
        raise SystemExit(f"the proof served is not the last record's: {proven}")
    disk = disk_bytes(directory)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return Rebuilt(filled.records, wall, cpu, broker_cpu, disk, peak_kib, len(encoded))


def disk_bytes(directory: Path) -> int:
    """Bytes of the files under `directory`."""
    return sum(f.stat().st_size for f in directory.rglob("*") if f.is_file())


async def measure(
    bootstrap: str,
    records: int,
    *,
    directory: Path | None = None,
    broker_pid: int | None = None,
    checkpoint_every: int = 10_000,
) -> tuple[Filled, Rebuilt]:
    """Fill a fresh trail of `records` records and time a cold rebuild of its proof index (in a
    temporary folder under `directory`, removed after)."""
    key = Ed25519PrivateKey.generate()
    filled = await fill(bootstrap, key, records, checkpoint_every=checkpoint_every)
    scratch = Path(tempfile.mkdtemp(prefix="rg-bench-rebuild-", dir=directory))
    try:
        index = scratch / "proofs"
        index.mkdir()
        rebuilt = await rebuild(bootstrap, filled, key, index, broker_pid=broker_pid)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return filled, rebuilt


def report(filled: Filled, rebuilt: Rebuilt) -> list[str]:
    """The figures as lines of text: measured, and extrapolated to 10 million records (unless
    that is the size measured)."""
    scale = 10_000_000 / rebuilt.records
    broker = (
        f", broker {rebuilt.broker_cpu_s:.1f} s CPU" if rebuilt.broker_cpu_s is not None else ""
    )
    lines = [
        f"filled {filled.records:,} records ({filled.bytes_produced / 1e6:,.0f} MB of values and "
        f"headers) and {filled.checkpoints:,} checkpoints in {filled.seconds:.1f} s",
        f"cold rebuild, measured: {rebuilt.wall_s:.1f} s wall, {rebuilt.records_per_s:,.0f} "
        f"records/s, {rebuilt.cpu_s:.1f} s CPU in the reader's process "
        f"({rebuilt.cpu_s / rebuilt.records * 1e6:.1f} us/record){broker}, index on disk "
        f"{rebuilt.disk_bytes / 1e6:,.0f} MB ({rebuilt.disk_bytes / rebuilt.records:.0f} "
        f"bytes/record), peak RSS {rebuilt.peak_rss_kib / 1024:,.0f} MiB, proof of the last "
        f"record {rebuilt.proof_bytes:,} bytes",
    ]
    if rebuilt.records != 10_000_000:
        lines.append(
            f"extrapolated to 10,000,000 records (linear): {rebuilt.wall_s * scale:,.0f} s wall, "
            f"{rebuilt.cpu_s * scale:,.0f} s CPU, {rebuilt.disk_bytes * scale / 1e9:.1f} GB on disk"
        )
    return lines
