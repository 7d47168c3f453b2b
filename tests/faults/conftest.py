"""Fault tests: each gets a broker of its own, which it stops and restarts (the session's broker
is shared by every other test and never touched)."""

import asyncio
import collections
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from app.embedded import EmbeddedKafka, KafkaDistribution, free_port
from app.kafka import KafkaMessage
from tests.conftest import AUDIT_TOPIC_CONFIGS, read_all, records_in


@pytest.fixture
def own_broker(tmp_path: Path, kafka_distribution: KafkaDistribution) -> Iterator[EmbeddedKafka]:
    """A real broker on a fixed free port, started; the test may `stop()` and `start()` it
    (same port, same data)."""
    broker = EmbeddedKafka(
        tmp_path / "kafka",
        port=free_port(),
        distribution=kafka_distribution,
        stop_timeout_s=20,
    )
    with broker:
        yield broker


async def new_topic(bootstrap: str, partitions: int = 3) -> str:
    """Create a fresh topic on `bootstrap`, with the configs the service's audit-topic check
    accepts (the tests use it as the audit topic)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        name = f"test-{uuid.uuid4().hex}"
        await admin.create_topics(
            [NewTopic(name, partitions, 1, topic_configs=AUDIT_TOPIC_CONFIGS)], timeout_ms=30_000
        )
        return name
    finally:
        await admin.close()


async def in_thread_stop(broker: EmbeddedKafka) -> None:
    """Stop the broker without blocking the event loop."""
    await asyncio.to_thread(broker.stop)


async def in_thread_start(broker: EmbeddedKafka) -> None:
    """Start the broker again (same port, same data) without blocking the event loop."""
    await asyncio.to_thread(broker.start)


@dataclass
class Answer:
    """One request of a load run: what it sent and what came back (or how it failed)."""

    index: int
    event_id: str
    user_id: str
    status: int | None
    body: Any
    retry_after: str | None
    seconds: float
    error: str | None = None


def answer_of(
    index: int,
    event: dict[str, Any],
    response: httpx.Response | None,
    seconds: float,
    error: str | None = None,
) -> Answer:
    """The `Answer` of event `index`: its response, or the transport error instead."""
    return Answer(
        index,
        event["event_id"],
        event["user_id"],
        response.status_code if response is not None else None,
        response.json() if response is not None else None,
        response.headers.get("retry-after") if response is not None else None,
        seconds,
        error,
    )


def audit_event(index: int, *, prefix: str, users: int = 20) -> dict[str, Any]:
    """Audit event `index` of a run: its own event_id, one of `users` users."""
    return {
        "event_id": f"{prefix}-{index}",
        "user_id": f"user-{index % users}",
        "model": "m",
        "prompt": f"prompt {index}",
        "response": f"response {index}",
    }


async def post_audits(
    client: httpx.AsyncClient,
    count: int,
    *,
    prefix: str,
    concurrency: int = 32,
    path: str = "/audit",
    answered: Callable[[int], None] | None = None,
) -> list[Answer]:
    """POST `count` audit events with `concurrency` workers, each in order of its index within a
    worker; `answered(n)` is called after every answer (to trigger faults mid-run)."""
    answers: list[Answer] = []
    indexes = iter(range(count))

    async def worker() -> None:
        for index in indexes:
            event = audit_event(index, prefix=prefix)
            started = time.monotonic()
            try:
                response = await client.post(path, json=event)
            except httpx.HTTPError as exc:
                failure = f"{type(exc).__name__}: {exc}"
                answers.append(answer_of(index, event, None, time.monotonic() - started, failure))
            else:
                answers.append(answer_of(index, event, response, time.monotonic() - started))
            if answered is not None:
                answered(len(answers))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return sorted(answers, key=lambda a: a.index)


async def records_of(bootstrap: str, topic: str) -> list[KafkaMessage]:
    """Every record of `topic` (read up to its end offsets)."""
    total = await records_in(bootstrap, topic)
    return await read_all(bootstrap, topic, total, timeout_s=60) if total else []


def summary(answers: list[Answer]) -> str:
    """`201: n, 503 kafka_timeout: n, ...` for the closing figures."""
    kinds = collections.Counter(
        f"{a.status} {a.body['error']['code']}"
        if a.status and a.status >= 400
        else str(a.status or a.error)
        for a in answers
    )
    return ", ".join(f"{kind}: {n}" for kind, n in sorted(kinds.items()))
