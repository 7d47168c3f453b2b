"""Records for the recent-records buffer's unit tests (tests/recent/)."""

from app.kafka import KafkaMessage

JSON: dict[str, bytes | None] = {"content-type": b"application/json"}


def message(
    offset: int,
    *,
    topic: str = "t",
    partition: int = 0,
    key: str | bytes | None = "k",
    value: object = "v",
    timestamp_ms: int | None = None,
    headers: dict[str, bytes | None] | None = None,
) -> KafkaMessage:
    """A record as the reader reads it, stamped 1,000 ms + its offset unless told."""
    return KafkaMessage(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp_ms=1_000 + offset if timestamp_ms is None else timestamp_ms,
        key=key,
        value=value,
        headers=headers or {},
    )
