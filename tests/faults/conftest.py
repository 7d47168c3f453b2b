"""Fault tests: each gets a broker of its own, which it stops and restarts (the session's broker
is shared by every other test and never touched)."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.embedded import EmbeddedKafka, KafkaDistribution, free_port


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
