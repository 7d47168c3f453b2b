"""`make bench-verify`: how fast `ractogateway-kafka verify` checks a trail.

    .venv/bin/python -m bench.verify

Two figures. (1) The checking itself on one core: BENCH_VERIFY_RECORDS (default 200,000) valid
chained records of four writers, ~1 KB values, built in memory and fed to the verifier; CPU time
of this process (`time.process_time`), no broker. (2) The same records written to a real topic
(the embedded broker, or RG_KAFKA_BOOTSTRAP_SERVERS) and read back: the Kafka read rate alone,
then reading and verifying as the command does. Results: printed, and bench/results/verify.json.
"""

import asyncio
import hashlib
import json
import os
import secrets
import time
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from app.cli.trail import read_topic
from app.integrity.chain import GENESIS, link_of
from app.integrity.report import Report
from app.integrity.verifier import Verifier
from bench.run import kafka_broker

Record = tuple[int, int, bytes, list[tuple[str, bytes]]]
WRITERS = 4
PARTITIONS = 3
RESULTS = Path(__file__).parent / "results" / "verify.json"


def trail(count: int) -> list[Record]:
    """`count` valid records of WRITERS writers, interleaved, round robin over PARTITIONS."""
    writers = [[secrets.token_hex(16), GENESIS] for _ in range(WRITERS)]
    offsets = [0] * PARTITIONS
    padding = "x" * 900
    records: list[Record] = []
    for i in range(count):
        state = writers[i % WRITERS]
        writer, prev = state
        seq = i // WRITERS
        event_id = str(uuid.uuid4())
        event = {"event_id": event_id, "prompt": f"question {i} {padding}", "seq": seq}
        value = json.dumps(event, separators=(",", ":")).encode()
        digest = hashlib.sha256(value).hexdigest()
        state[1] = link = link_of(writer, seq, prev, digest)
        headers = [
            ("content-type", b"application/json"),
            ("rg-event-id", event_id.encode()),
            ("rg-digest", f"sha256:{digest}".encode()),
            ("rg-schema-version", b"1"),
            ("rg-writer", writer.encode()),
            ("rg-seq", str(seq).encode()),
            ("rg-chain", f"sha256:{link}".encode()),
        ]
        partition = i % PARTITIONS
        records.append((partition, offsets[partition], value, headers))
        offsets[partition] += 1
    return records


def check_in_memory(records: list[Record]) -> tuple[Report, float]:
    """Feed the records to a verifier; the report and the CPU seconds it took."""
    started = time.process_time()
    verifier = Verifier({}, topic="bench")
    for partition, offset, value, headers in records:
        verifier.add_record(partition, offset, value, headers)
    report = verifier.finish()
    return report, time.process_time() - started


async def write_topic(bootstrap: str, records: list[Record]) -> str:
    """A new topic holding the records."""
    topic = f"bench-verify-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, acks="all")
    await producer.start()
    try:
        pending = []
        for partition, _, value, headers in records:
            pending.append(await producer.send(topic, value, partition=partition, headers=headers))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return topic


async def read_rates(bootstrap: str, topic: str, count: int) -> dict[str, float]:
    """Records/s reading the topic alone, then reading and verifying it."""
    config = {"bootstrap_servers": bootstrap, "max_poll_records": 5000, "group_id": None}
    seen = 0

    def count_only(_record: Any) -> None:
        nonlocal seen
        seen += 1

    started = time.monotonic()
    await read_topic(config, topic, count_only)
    read_s = time.monotonic() - started
    if seen != count:
        raise SystemExit(f"read {seen} of {count} records")
    verifier = Verifier({}, topic=topic)

    def check(record: Any) -> None:
        verifier.add_record(record.partition, record.offset, record.value, record.headers)

    started = time.monotonic()
    await read_topic(config, topic, check)
    report = verifier.finish()
    verify_s = time.monotonic() - started
    if report.records_valid != count:
        raise SystemExit(f"the trail did not verify: {report.problems[:3]}")
    return {"kafka_read_per_s": count / read_s, "kafka_read_and_verify_per_s": count / verify_s}


def main() -> None:
    """Run both figures and print them."""
    count = int(os.environ.get("BENCH_VERIFY_RECORDS", "200000"))
    print(f"building {count:,} chained records of {WRITERS} writers in memory", flush=True)
    records = trail(count)
    report, cpu_s = check_in_memory(records)
    if not report.clean or report.records_valid != count:
        raise SystemExit(f"the trail did not verify: {report.problems[:3]}")
    results: dict[str, Any] = {"records": count, "verify_cpu_per_s": count / cpu_s}
    print(f"verify, in memory, one core: {count / cpu_s:,.0f} records/s ({cpu_s:.2f} s CPU)")
    with kafka_broker() as broker:
        print(f"writing them to a topic ({broker.kind} broker)", flush=True)
        topic = asyncio.run(write_topic(broker.bootstrap_servers, records))
        rates = asyncio.run(read_rates(broker.bootstrap_servers, topic, count))
    results.update(rates)
    print(f"kafka read alone: {rates['kafka_read_per_s']:,.0f} records/s")
    print(f"kafka read + verify: {rates['kafka_read_and_verify_per_s']:,.0f} records/s")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
