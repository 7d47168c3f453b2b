"""`ractogateway-kafka process` instances for fault tests: a handler module, what a broker
sets for its groups to notice a dead member quickly, keyed inputs, and the checks on what came
out."""

import asyncio
import os
import re
import time
from collections import Counter
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from app.kafka import (
    KafkaConsumerClient,
    KafkaConsumerConfig,
    KafkaMessage,
    KafkaProducerClient,
    KafkaProducerConfig,
)
from tests.helpers.processes import Running

# One output per input, keyed as the input, carrying the input's key, sequence and partition.
# MARKER/MARK_AT_CALL: the handler writes MARKER just before returning from its MARK_AT_CALL-th
# call (its outputs are about to be sent: a kill then lands mid-batch). IN_HANDLER: written at
# the start of every call. HANDLER_DELAY_S: sleep per call. PAD_BYTES: bulk per output, so that
# sending a batch takes a while.
HANDLER_MODULE = """
import os
import pathlib
import time

from app.kafka import KafkaPublishRequest

OUTPUT = os.environ["OUTPUT_TOPIC"]
MARKER = os.environ.get("MARKER")
MARK_AT_CALL = int(os.environ.get("MARK_AT_CALL", "0"))
IN_HANDLER = os.environ.get("IN_HANDLER")
DELAY_S = float(os.environ.get("HANDLER_DELAY_S", "0"))
PAD = "p" * int(os.environ.get("PAD_BYTES", "0"))
calls = 0


def handle(batch):
    global calls
    calls += 1
    if IN_HANDLER:
        pathlib.Path(IN_HANDLER).write_text(str(calls))
    if DELAY_S:
        time.sleep(DELAY_S)
    outputs = [
        KafkaPublishRequest(
            topic=OUTPUT,
            key=m.key,
            value={"key": m.key, "seq": m.value["seq"], "from": m.partition, "pad": PAD},
        )
        for m in batch
    ]
    if MARKER and calls == MARK_AT_CALL:
        pathlib.Path(MARKER).write_text("sending")
    return outputs
"""

# What a broker sets for its groups to accept short sessions (the fault tests' own broker): a
# dead member's partitions move in ~1-2 s.
QUICK_GROUPS = {"group.min.session.timeout.ms": "500"}
SESSION_MS = "1500"


def process_env(bootstrap: str, output: str) -> dict[str, str]:
    """The environment of a `process` instance: no RG_* but the broker, outputs uncompressed."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("RG_")}
    return env | {
        "RG_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "RG_KAFKA_COMPRESSION_TYPE": "none",
        "OUTPUT_TOPIC": output,
    }


def process_args(source: str, group: str, *, exactly_once: bool, batch: int = 100) -> list[str]:
    """`process` with the test handler, reading `source` as `group`, short sessions."""
    args = ["process", "--handler", "stream_handler:handle", "--input", source]
    args += ["--group", group, "--batch-size", str(batch), "--session-timeout-ms", SESSION_MS]
    return [*args, "--exactly-once"] if exactly_once else args


def write_handler(folder: Path) -> None:
    """Put the handler module where `process` (run in `folder`) imports it from."""
    (folder / "stream_handler.py").write_text(HANDLER_MODULE)


async def create_topics(bootstrap: str, *partitions: int) -> list[str]:
    """Fresh topics with the given partition counts."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = [f"test-{os.urandom(8).hex()}" for _ in partitions]
        await admin.create_topics(
            [NewTopic(name, count, 1) for name, count in zip(names, partitions, strict=True)],
            timeout_ms=30_000,
        )
        return names
    finally:
        await admin.close()


async def seed_keyed(bootstrap: str, topic: str, count: int, keys: int = 20) -> None:
    """`count` records `{"seq": i}` over `keys` keys, each key's sequence increasing."""
    producer = KafkaProducerClient(config=KafkaProducerConfig(bootstrap_servers=bootstrap))
    async with producer:
        deliveries = [
            await producer.queue(topic, {"seq": i}, key=f"k{i % keys}") for i in range(count)
        ]
        for delivery in deliveries:
            await delivery.wait()


async def read_outputs(
    bootstrap: str,
    topic: str,
    *,
    committed: bool,
    distinct: int,
    timeout_s: float = 60,
    idle_s: float = 1.0,
) -> list[KafkaMessage]:
    """Every record of `topic` in partition order, read until `distinct` different (key, seq)
    pairs were seen and nothing new came for `idle_s` (or `timeout_s` passed)."""
    consumer = KafkaConsumerClient(
        config=KafkaConsumerConfig(
            topics=[topic],
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            isolation_level="read_committed" if committed else "read_uncommitted",
        )
    )
    messages: list[KafkaMessage] = []
    async with consumer:
        deadline = time.monotonic() + timeout_s
        last_new = time.monotonic()
        while time.monotonic() < deadline:
            got = await consumer.poll(timeout_ms=200)
            if got:
                messages += got
                last_new = time.monotonic()
            elif len(pairs(messages)) >= distinct and time.monotonic() - last_new >= idle_s:
                break
    return messages


def pairs(messages: list[KafkaMessage]) -> set[tuple[str, int]]:
    """The distinct (key, seq) pairs of outputs."""
    return {(m.value["key"], m.value["seq"]) for m in messages}


def repeats(messages: list[KafkaMessage]) -> int:
    """How many outputs are a second (or later) copy of an input's output."""
    counts = Counter((m.value["key"], m.value["seq"]) for m in messages)
    return sum(n - 1 for n in counts.values())


def per_key_sequences(messages: list[KafkaMessage]) -> dict[str, list[int]]:
    """Each key's sequence numbers in the order the outputs stand in their partition."""
    ordered = sorted(messages, key=lambda m: (m.partition, m.offset))
    sequences: dict[str, list[int]] = {}
    for message in ordered:
        sequences.setdefault(message.value["key"], []).append(message.value["seq"])
    return sequences


def expected_sequences(count: int, keys: int = 20) -> dict[str, list[int]]:
    """What `per_key_sequences` is when every input of `seed_keyed` came out once, in order."""
    return {f"k{k}": list(range(k, count, keys)) for k in range(keys) if k < count}


def assigned_partitions(line: str) -> set[int]:
    """The partitions of a consumer's "assigned partitions [...]" log line."""
    return {int(p) for p in re.findall(r"\('[^']+', (\d+)\)", line)}


async def wait_for_file(
    path: Path, *, alive: Running, timeout_s: float = 60, poll_s: float = 0.002
) -> None:
    """Return as soon as `path` exists (while the process `alive` keeps running)."""
    deadline = time.monotonic() + timeout_s
    while not path.exists():  # noqa: ASYNC240 - a stat every 2 ms: a thread would be slower
        assert alive.process.poll() is None, f"exited early: {alive.output()[-3000:]}"
        assert time.monotonic() < deadline, f"{path} did not appear in {timeout_s}s"
        await asyncio.sleep(poll_s)


async def wait_for_output(
    process: Running, text: str, *, after: int = 0, timeout_s: float = 60
) -> str:
    """The first line of `process`'s output past line `after` that contains `text`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        lines = process.output().splitlines()
        for line in lines[after:]:
            if text in line:
                return line
        await asyncio.sleep(0.05)
    raise AssertionError(f"no line with {text!r} in {timeout_s}s: {process.output()[-3000:]}")
