"""The GET /messages reader's loop around its consumer (unit: a stand-in consumer)."""

import asyncio
from typing import Any

import pytest

from app.kafka import KafkaConnectionError, KafkaMessage
from app.recent import reader as reader_module
from app.recent.buffer import RecentRecords
from app.recent.reader import RecentRecordsReader
from app.settings import Settings
from app.tasks import Backoff


class _ConnectsButNeverPolls:
    """Connects and rewinds, then every poll fails: the connection is not working."""

    def __init__(self, **_: Any) -> None:
        pass

    async def start_uninterrupted(self) -> None:
        pass

    async def rewind(self, records_per_partition: int) -> None:
        pass

    async def poll(self, **_: Any) -> list[Any]:
        raise KafkaConnectionError("no broker answers the fetch")

    async def close(self) -> None:
        pass


async def test_unit_the_backoff_grows_while_no_poll_succeeds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Reset once connected, a failure met after every start was retried at the shortest delay
    # forever (0.5 s, 0.5 s, ...): only a poll that succeeded may reset it.
    delays: list[float] = []
    enough = asyncio.Event()
    real_wait = Backoff.wait

    async def wait(self: Backoff) -> None:
        delays.append(self.delay_s)
        if len(delays) >= 4:
            enough.set()
            await asyncio.Event().wait()  # until the reader is closed
        self.delay_s = 0  # no real sleep: only the delays asked for matter
        await real_wait(self)
        self.delay_s = delays[-1] * 2

    monkeypatch.setattr(Backoff, "wait", wait)
    monkeypatch.setattr(reader_module, "KafkaConsumerClient", _ConnectsButNeverPolls)
    settings = Settings(_env_file=None, kafka_bootstrap_servers=["127.0.0.1:9"])
    recent = RecentRecords(["t"], max_records=10, max_bytes=10**6)
    reader = RecentRecordsReader(settings, recent, refresh_s=60)
    reader.start()
    try:
        await asyncio.wait_for(enough.wait(), 10)
    finally:
        await reader.close()
    assert delays == [0.5, 1.0, 2.0, 4.0]


class _OddRegistry:
    """A registry whose answer for a schema id the client cannot read."""

    async def by_id(self, schema_id: int) -> None:
        raise ValueError(f"invalid literal for int() in the versions of {schema_id}")


async def test_unit_a_schema_lookup_that_fails_any_way_leaves_the_version_unknown() -> None:
    # A framed value on any topic read makes the reader ask the registry; an exception other
    # than SchemaRegistryError escaped and restarted the reader, which met the record again.
    settings = Settings(_env_file=None, kafka_bootstrap_servers=["127.0.0.1:9"])
    recent = RecentRecords(["t"], max_records=10, max_bytes=10**6)
    reader = RecentRecordsReader(settings, recent, refresh_s=60)
    framed = KafkaMessage(topic="t", partition=0, offset=0, value=b"\x00\x00\x00\x00\x07{}")
    await reader._learn_versions(_OddRegistry(), [framed])  # type: ignore[arg-type]
    assert recent.schema_versions == {}
