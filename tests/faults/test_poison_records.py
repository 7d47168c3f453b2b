"""No record on any topic the service reads stops a reader: each reader (the GET /messages
consumer on the audit, checkpoints and an extra RG_MESSAGES_TOPICS topic, the stream
processor's JSON deserializer, `tail`) is fed poison records, produced straight to the topics of
the session broker, and a good record written after each still comes through."""

import asyncio
import io
import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.cli.tail import as_json_line, as_text_line, tail
from app.integrity.keys import generate
from app.kafka import (
    KafkaConsumerClient,
    KafkaConsumerConfig,
    KafkaMessage,
    KafkaProducerClient,
    KafkaStreamConfig,
    KafkaStreamProcessor,
)
from app.kafka.batches import DLQ_ERROR, DLQ_SOURCE
from app.recent.coverage import CheckpointCoverage
from tests.helpers.app import client_for, reader_connected, services_of
from tests.helpers.kafka import new_topic, read_all
from tests.helpers.metrics import metric
from tests.helpers.polling import eventually

EVENT = {"user_id": "u1", "model": "m", "prompt": "p", "response": "r"}
JSON_HEADERS = {"content-type": "application/json"}
RESTARTED = "the GET /messages consumer stopped"


@dataclass(frozen=True)
class Poison:
    """A record value that has stopped, or could stop, a reader."""

    name: str
    value: bytes
    # Whether a JSON deserializer reads it (JSON nested 300 deep is valid JSON).
    is_json: bool = False


POISONS = [
    # The reproduction: json.loads raises RecursionError, not ValueError.
    Poison("nested-5000", b"[" * 5000),
    # Read by orjson (up to 1,024 levels) but not written back (255).
    Poison("nested-300", b"[" * 300 + b"]" * 300, is_json=True),
    Poison("invalid-utf8", b'{"a": "\xff\xfe\xc3"}'),
    # Close to the broker's and the producer's largest record (1 MiB).
    Poison("huge", b'"' + b"x" * 1_000_000),
    Poison("not-json", b"{not json"),
]
IDS = [poison.name for poison in POISONS]


async def shown_event(client: httpx.AsyncClient, event_id: str, timeout_s: float = 30) -> None:
    """GET /messages (each answered 200) until the audit record `event_id` is shown."""
    deadline = time.monotonic() + timeout_s
    while True:
        response = await client.get("/messages", params={"limit": 1000})
        assert response.status_code == 200, response.text[:500]
        ids = [
            m["value"].get("event_id") for m in response.json()["messages"] if m["seq"] is not None
        ]
        if event_id in ids:
            return
        assert time.monotonic() < deadline, f"{event_id} not shown: {ids}"
        await asyncio.sleep(0.2)


async def skipped(client: httpx.AsyncClient) -> dict[str, float]:
    """`rg_messages_records_skipped_total` by reason."""
    text = (await client.get("/metrics")).text
    return {
        reason: metric(text, f'rg_messages_records_skipped_total{{reason="{reason}"}}')
        for reason in ("oversized", "failed", "checkpoint_ignored")
    }


@pytest.mark.parametrize("poison", POISONS, ids=IDS)
async def test_the_messages_reader_goes_on_past_a_poison_record_on_each_of_its_topics(
    kafka_bootstrap: str,
    producer: KafkaProducerClient,
    topic: str,
    tmp_path: Path,
    poison: Poison,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, key_file, _ = generate(tmp_path / "keys")
    extra = await new_topic(kafka_bootstrap, partitions=1)
    caplog.set_level(logging.WARNING, logger="app.recent.reader")
    async with client_for(
        kafka_bootstrap,
        audit_topic=topic,
        messages_topics=[topic, extra],
        # With a key the reader reads the checkpoints topic too.
        audit_signing_key_file=key_file,
        audit_checkpoint_s=3600,
    ) as client:
        await reader_connected(client)
        checkpoints = services_of(client).settings.checkpoints_topic
        for target in (checkpoints, topic, extra):
            await producer.publish(target, poison.value, key="poison", headers=JSON_HEADERS)
        good = (await client.post("/audit", json=EVENT)).json()
        await shown_event(client, good["event_id"])
        # The poison of the shown topics is shown (as JSON, text or base64) on pages that
        # answer 200.
        for shown_topic in (topic, extra):
            page = await client.get("/messages", params={"topic": shown_topic, "key": "poison"})
            assert page.status_code == 200, page.text[:500]
            assert page.json()["count"] == 1
        assert RESTARTED not in caplog.text
        after = await skipped(client)
    # The checkpoints topic's poison: ignored by the coverage, or skipped by the reader.
    assert after["checkpoint_ignored"] + after["failed"] == 1, after


async def test_any_exception_taking_one_record_in_is_counted_and_skipped(
    kafka_bootstrap: str,
    producer: KafkaProducerClient,
    topic: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Whatever a parser raises for one record (here a LookupError), the reader goes on.
    real_add = CheckpointCoverage.add

    def add(self: CheckpointCoverage, message: KafkaMessage) -> bool:
        if message.value == b"boom":
            raise LookupError("a parser failing its own way")
        return real_add(self, message)

    monkeypatch.setattr(CheckpointCoverage, "add", add)
    _, key_file, _ = generate(tmp_path / "keys")
    caplog.set_level(logging.WARNING, logger="app.recent.reader")
    async with client_for(
        kafka_bootstrap, audit_topic=topic, audit_signing_key_file=key_file, audit_checkpoint_s=3600
    ) as client:
        await reader_connected(client)
        await producer.publish(services_of(client).settings.checkpoints_topic, b"boom")
        good = (await client.post("/audit", json=EVENT)).json()
        await shown_event(client, good["event_id"])
        assert RESTARTED not in caplog.text
        assert (await skipped(client))["failed"] == 1
    assert "skipped the record at" in caplog.text


def json_consumer(bootstrap: str, topic: str) -> KafkaConsumerClient:
    return KafkaConsumerClient(
        config=KafkaConsumerConfig(
            topics=[topic],
            bootstrap_servers=bootstrap,
            group_id=uuid.uuid4().hex,
            auto_offset_reset="earliest",
            value_format="json",
        )
    )


@pytest.mark.parametrize("poison", POISONS, ids=IDS)
async def test_the_stream_processor_sends_a_record_its_deserializer_refuses_to_the_dead_letters(
    kafka_bootstrap: str, producer: KafkaProducerClient, topic: str, poison: Poison
) -> None:
    dead = f"{topic}-dead"
    await producer.publish(topic, poison.value, key="poison", partition=0)
    await producer.publish(topic, {"n": 1}, key="good", partition=0)
    handled: list[Any] = []
    async with json_consumer(kafka_bootstrap, topic) as consumer:
        processor = KafkaStreamProcessor(
            consumer=consumer, producer=producer, config=KafkaStreamConfig(dead_letter_topic=dead)
        )
        consumed = await process_until(processor, handled, 2)
    assert consumed == 2
    assert {"n": 1} in handled
    if poison.is_json:
        assert len(handled) == 2
        assert processor.undecodable == 0
        return
    assert processor.undecodable == 1
    (letter,) = await read_all(kafka_bootstrap, dead, 1, value_format="bytes")
    assert letter.value == poison.value
    assert letter.header(DLQ_SOURCE) == f"{topic}/0/0"
    assert (letter.header(DLQ_ERROR) or "").startswith("KafkaSerializationError")


async def test_without_dead_letters_a_record_that_does_not_decode_is_skipped_and_counted(
    kafka_bootstrap: str,
    producer: KafkaProducerClient,
    topic: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await producer.publish(topic, b"[" * 5000, key="poison", partition=0)
    await producer.publish(topic, {"n": 1}, key="good", partition=0)
    handled: list[Any] = []
    async with json_consumer(kafka_bootstrap, topic) as consumer:
        processor = KafkaStreamProcessor(consumer=consumer, producer=producer)
        await process_until(processor, handled, 2)
        committed = await consumer.seek_to_committed([(topic, 0)])
    assert handled == [{"n": 1}]
    assert processor.undecodable == 1
    assert committed == {(topic, 0): 2}
    assert f"the record at {topic}/0/0 did not decode" in caplog.text


@pytest.mark.parametrize("formatter", [as_json_line, as_text_line], ids=["json", "text"])
@pytest.mark.parametrize("poison", POISONS, ids=IDS)
async def test_tail_prints_every_record_past_a_poison_one(
    kafka_bootstrap: str,
    producer: KafkaProducerClient,
    topic: str,
    poison: Poison,
    formatter: Any,
) -> None:
    await producer.publish(topic, poison.value, key="poison", headers=JSON_HEADERS, partition=0)
    await producer.publish(topic, {"n": 1}, key="good", partition=0)
    consumer = KafkaConsumerClient(
        config=KafkaConsumerConfig(
            topics=[topic], bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest"
        )
    )
    out, err = io.StringIO(), io.StringIO()
    printed = await asyncio.wait_for(
        tail(consumer, out=out, formatter=formatter, max_messages=2, err=err), 60
    )
    lines = out.getvalue().splitlines()
    assert printed == 2
    assert len(lines) == 2
    assert "poison" in lines[0]
    assert '"n":1' in lines[1]
    if poison.name == "nested-300":  # decoded, then not printable: said so
        assert "not printable" in lines[0]
        assert f"the value at {topic}[0]@0 is not printable" in err.getvalue()


async def test_exactly_once_a_record_that_does_not_decode_goes_to_the_dead_letters_in_its_batch(
    kafka_bootstrap: str, producer: KafkaProducerClient, topic: str
) -> None:
    dead = f"{topic}-dead"
    await producer.publish(topic, b"[" * 5000, key="poison", partition=0)
    await producer.publish(topic, {"n": 1}, key="good", partition=0)
    handled: list[Any] = []
    consumer = KafkaConsumerClient(
        config=KafkaConsumerConfig(
            topics=[topic],
            bootstrap_servers=kafka_bootstrap,
            group_id=uuid.uuid4().hex,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            value_format="json",
        )
    )
    async with consumer:
        processor = KafkaStreamProcessor(
            consumer=consumer,
            producer=producer,
            config=KafkaStreamConfig(
                processing_guarantee="exactly_once", dead_letter_topic=dead, batch_size=10
            ),
        )
        try:
            consumed = 0
            for _ in range(60):
                consumed += await processor.process_once(
                    lambda batch: handled.extend(m.value for m in batch)
                )
                if consumed >= 2:
                    break
        finally:
            await processor.close()

        async def committed_past_both() -> bool:
            # The group learns a transaction's offsets once its commit marker is written.
            return await consumer.seek_to_committed([(topic, 0)]) == {(topic, 0): 2}

        await eventually(committed_past_both, timeout_s=30)
    assert handled == [{"n": 1}]
    assert processor.undecodable == 1
    (letter,) = await read_all(
        kafka_bootstrap, dead, 1, value_format="bytes", isolation_level="read_committed"
    )
    assert letter.value == b"[" * 5000


async def process_until(processor: KafkaStreamProcessor, handled: list[Any], count: int) -> int:
    """Batches through `processor` until `count` records were consumed (60 polls at most),
    each handled value added to `handled`; the number consumed."""
    consumed = 0
    for _ in range(60):
        consumed += await processor.process_once(
            lambda batch: handled.extend(m.value for m in batch)
        )
        if consumed >= count:
            break
    return consumed
