"""`make bench-bundle`: how fast `export` writes an evidence bundle and `verify --bundle` checks
one.

    .venv/bin/python -m bench.bundle

BENCH_BUNDLE_RECORDS (default 100,000) signed records of four writers and BENCH_BUNDLE_USERS
(default 1,000) users, ~1 KB values keyed by user (the producer's partitioner over three
partitions), each writer's tree signed by a version 2 checkpoint, are written to a real topic
(the embedded broker, or RG_KAFKA_BOOTSTRAP_SERVERS). Then, timed: `export` of every record,
and of one user's (the audit topic is read whole either way: the proofs need every writer's
tree), as records of the topic read per second; and `verify --bundle` of the whole bundle, CPU
records/s of this process (no broker). Results: printed, and bench/results/bundle.json.
"""

import argparse
import asyncio
import hashlib
import json
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.cli.evidence import export_bundle
from app.cli.trail import load_public_keys
from app.integrity.bundle import read_bundle
from app.integrity.bundle_check import BundleCheck
from app.integrity.chain import GENESIS, link_of, new_writer_id
from app.integrity.checkpoint import new_checkpoint
from app.integrity.keys import derived_key_id
from app.integrity.merkle import MerkleTree, leaf_entry
from app.kafka.serde import canonical_json
from app.settings import Settings
from bench.run import kafka_broker

WRITERS = 4
PARTITIONS = 3
NAME = "ractogateway-kafka/bench-bundle"
RESULTS = Path(__file__).parent / "results" / "bundle.json"
Record = tuple[bytes, bytes, list[tuple[str, bytes]]]


def trail(count: int, users: int, key: Ed25519PrivateKey) -> tuple[list[Record], list[Record]]:
    """`count` chained records (key, value, headers) and one signed checkpoint per writer."""
    writers = [new_writer_id() for _ in range(WRITERS)]
    links = dict.fromkeys(writers, GENESIS)
    trees = {writer: MerkleTree() for writer in writers}
    padding = "x" * 900
    records: list[Record] = []
    for i in range(count):
        writer, seq = writers[i % WRITERS], i // WRITERS
        user = f"user-{i % users}"
        event = {"event_id": str(uuid.uuid4()), "user_id": user, "prompt": f"q{i} {padding}"}
        value = canonical_json(event)
        digest = hashlib.sha256(value).hexdigest()
        links[writer] = link = link_of(writer, seq, links[writer], digest)
        trees[writer].append(leaf_entry(writer, seq, digest))
        headers = [
            ("rg-digest", f"sha256:{digest}".encode()),
            ("rg-writer", writer.encode()),
            ("rg-seq", str(seq).encode()),
            ("rg-chain", f"sha256:{link}".encode()),
        ]
        records.append((user.encode(), value, headers))
    key_id = derived_key_id(key.public_key())
    checkpoints: list[Record] = []
    for writer in writers:
        size = len(trees[writer])
        checkpoint = new_checkpoint(
            writer=writer,
            seq=size - 1,
            chain=links[writer],
            key_id=key_id,
            tree=trees[writer].root(),
        ).sign(key, name=NAME)
        checkpoints.append((writer.encode(), checkpoint.to_bytes(), []))
    return records, checkpoints


async def write(bootstrap: str, topic: str, partitions: int, records: list[Record]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, acks="all")
    await producer.start()
    try:
        pending = []
        for key, value, headers in records:
            pending.append(await producer.send(topic, value, key=key, headers=headers))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def key_files(folder: Path, key: Ed25519PrivateKey) -> tuple[Path, Path]:
    private, public = folder / "bench.key.pem", folder / "bench.pub.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    os.chmod(private, 0o600)
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


def export_args(topic: str, out: Path, user: str | None, private: Path, public: Path) -> Any:
    return argparse.Namespace(
        topic=topic,
        checkpoints_topic=f"{topic}.checkpoints",
        writers_topic=f"{topic}.writers",
        since=None,
        until=None,
        since_text=None,
        until_text=None,
        user=user,
        out=out,
        signing_key=private,
        public_key=[str(public)],
        progress=False,
        sealed=True,
    )


def main() -> None:
    """Write the trail, time the exports and the check, print and save the figures."""
    count = int(os.environ.get("BENCH_BUNDLE_RECORDS", "100000"))
    users = int(os.environ.get("BENCH_BUNDLE_USERS", "1000"))
    key = Ed25519PrivateKey.generate()
    print(f"building {count:,} signed records of {WRITERS} writers, {users:,} users", flush=True)
    records, checkpoints = trail(count, users, key)
    results: dict[str, Any] = {"records": count, "users": users}
    with kafka_broker() as broker, tempfile.TemporaryDirectory(prefix="rg-bench-") as scratch:
        folder = Path(scratch)
        private, public = key_files(folder, key)
        topic = f"bench-bundle-{uuid.uuid4().hex[:8]}"
        print(f"writing them to a topic ({broker.kind} broker)", flush=True)
        asyncio.run(write(broker.bootstrap_servers, topic, PARTITIONS, records))
        asyncio.run(write(broker.bootstrap_servers, f"{topic}.checkpoints", 1, checkpoints))
        settings = Settings(_env_file=None, kafka_bootstrap_servers=[broker.bootstrap_servers])
        for label, user in (("all", None), ("one_user", "user-7")):
            out = folder / f"{label}.zip"
            started = time.monotonic()
            written, proofs, uncovered = asyncio.run(
                export_bundle(export_args(topic, out, user, private, public), settings)
            )
            took = time.monotonic() - started
            if uncovered or proofs != written:
                raise SystemExit(f"export {label}: {uncovered} records without a proof")
            results[f"export_{label}_records"] = written
            results[f"export_{label}_s"] = took
            results[f"export_{label}_topic_records_per_s"] = count / took
            results[f"export_{label}_bytes"] = out.stat().st_size
            print(
                f"export {label}: {written:,} records, {out.stat().st_size / 1e6:.1f} MB, "
                f"{took:.1f} s: {count / took:,.0f} topic records/s read"
            )
        bundle = read_bundle(folder / "all.zip")
        started = time.process_time()
        checked = BundleCheck(load_public_keys([str(public)])).check(bundle)
        cpu = time.process_time() - started
        if not checked.report.clean:
            raise SystemExit(f"the bundle did not verify: {checked.report.problems[:3]}")
        results["verify_bundle_cpu_records_per_s"] = count / cpu
        print(f"verify --bundle, one core: {count / cpu:,.0f} records/s ({cpu:.2f} s CPU)")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
