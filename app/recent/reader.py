"""The background consumer that fills the recent-records buffer.

It uses no consumer group: a sidecar's view of recent records is its own, so several replicas
never share (or fight over) partitions, and nothing is committed. On start it goes back far
enough to refill the buffer; it looks for new partitions every `refresh_s`; when the broker
goes away it reconnects with backoff. With a `CheckpointCoverage` (a signing key is set) it also
reads the checkpoints topic, as far back as the buffer's topics, so GET /messages knows which
records of other writers a signed checkpoint covers (app/recent/coverage.py).
"""

import asyncio
import contextlib
import logging
import time

from app.connection import consumer_config
from app.kafka import KafkaConsumerClient, KafkaMessage
from app.kafka.lifecycle import cancelling
from app.kafka.registry import SchemaRegistryClient, SchemaRegistryError
from app.kafka.schemas import schema_id_of
from app.logs import RepeatedFailure
from app.recent.buffer import RecentRecords
from app.recent.coverage import CheckpointCoverage
from app.settings import Settings
from app.tasks import BackgroundTask, Backoff

logger = logging.getLogger(__name__)

# How often the consumer's lag is worked out for the metrics (not on every poll).
_LAG_EVERY_S = 1.0
# The broker answers the reader's fetch once this much is new, or after the wait: records come
# in batches rather than one fetch per record written, so the reader does not compete with
# each request's own answer (GET /messages may show a record up to the wait later).
FETCH_MIN_BYTES = 64 * 1024
FETCH_MAX_WAIT_MS = 250


class RecentRecordsReader:
    """Runs the buffer's consumer as a task of the service; `lag()` per topic for metrics."""

    def __init__(
        self,
        settings: Settings,
        recent: RecentRecords,
        *,
        refresh_s: float,
        coverage: CheckpointCoverage | None = None,
        registry: SchemaRegistryClient | None = None,
        reconnect_max_s: float = 10.0,
    ) -> None:
        self._settings = settings
        # The longest wait between attempts to reconnect (tests of an outage wait less).
        self._reconnect_max_s = reconnect_max_s
        # With a Schema Registry: the versions of the schema ids framed values name.
        self._registry = registry
        self._recent = recent
        self._coverage = coverage
        self._topics = list(recent.topics)
        if coverage is not None and settings.checkpoints_topic not in self._topics:
            self._topics.append(settings.checkpoints_topic)
        self._refresh_s = refresh_s
        self._task = BackgroundTask("recent-records-reader", self._run)
        self._lag: dict[str, float] = {}
        self.connected = asyncio.Event()
        # Connecting and closing each get this long (a metadata wait per topic, a request each).
        self._attempt_timeout_s = 2 * settings.kafka_request_timeout_ms / 1000
        self._failures = RepeatedFailure()

    def start(self) -> None:
        """Start reading in the background."""
        self._task.start()

    async def close(self) -> None:
        """Stop reading and close the consumer."""
        await self._task.close()

    @property
    def running(self) -> bool:
        """True from `start()` until `close()` (reconnecting included)."""
        return self._task.running

    def lag(self) -> dict[str, float]:
        """Records behind the end of each topic, as of the last fetch."""
        return dict(self._lag)

    async def _run(self) -> None:
        backoff = Backoff(max_s=self._reconnect_max_s)
        while True:
            consumer = KafkaConsumerClient(
                config=consumer_config(
                    self._settings,
                    topics=self._topics,
                    auto_offset_reset="latest",
                    max_poll_records=500,
                    # Kept as read, decoded when GET /messages asks (app/recent/buffer.py).
                    value_format="bytes",
                    extra={
                        "fetch_min_bytes": FETCH_MIN_BYTES,
                        "fetch_max_wait_ms": FETCH_MAX_WAIT_MS,
                    },
                )
            )
            try:
                # Bounded: an attempt that hangs would leave the buffer stale for good.
                await asyncio.wait_for(consumer.start_uninterrupted(), self._attempt_timeout_s)
                # Each partition may hold all of the newest records: go back that far in each.
                await asyncio.wait_for(
                    consumer.rewind(self._recent.max_records), self._attempt_timeout_s
                )
                self.connected.set()
                self._failures.reset()
                await self._read(consumer, backoff)
            except asyncio.CancelledError:
                if cancelling():
                    raise
                # A cancellation escaping aiokafka (not ours): reconnect as after any failure.
                await self._failed("cancelled inside the Kafka client", backoff)
            except Exception as exc:  # reconnect whatever went wrong
                await self._failed(exc, backoff)
            finally:
                self.connected.clear()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(consumer.close(), self._attempt_timeout_s)

    async def _failed(self, reason: object, backoff: Backoff) -> None:
        self.connected.clear()
        left_out = self._failures.due()
        if left_out is not None:
            logger.warning(
                "the GET /messages consumer stopped (%s); reconnecting in %.1fs%s",
                reason,
                backoff.delay_s,
                f" ({left_out} more failed attempts since the last line)" if left_out else "",
            )
        await backoff.wait()

    def _take(self, message: KafkaMessage, checkpoints_topic: str) -> None:
        # One record must never stop the reader: whatever taking it in raises (a parser's
        # RecursionError, ...), it is counted and skipped. Restarting would rewind and meet
        # it again, forever.
        try:
            self._recent.add(message)
            if self._coverage is not None and message.topic == checkpoints_topic:
                self._coverage.add(message)
        except Exception as exc:
            self._recent.skipped["failed"] += 1
            logger.warning(
                "GET /messages skipped the record at %s/%d/%d (%s: %.200s)",
                message.topic,
                message.partition,
                message.offset,
                type(exc).__name__,
                exc,
            )

    async def _learn_versions(
        self, registry: SchemaRegistryClient, messages: list[KafkaMessage]
    ) -> None:
        """Ask the registry once for each new schema id (answers are cached by the client)."""
        known = self._recent.schema_versions
        for schema_id in {schema_id_of(m.value) for m in messages} - {None} - known.keys():
            assert schema_id is not None  # noqa: S101 - removed above
            try:
                found = await registry.by_id(schema_id)
            except SchemaRegistryError as exc:  # the version stays unknown; asked again later
                logger.debug("schema %d not looked up: %s", schema_id, exc)
                continue
            except Exception as exc:
                # An answer the client cannot read: the version stays unknown. Raised, it
                # restarted the reader, which rewound and met the same record again, forever.
                logger.warning(
                    "schema %d not looked up: %s: %.200s", schema_id, type(exc).__name__, exc
                )
                continue
            if found is not None and found.version is not None:
                known[schema_id] = found.version

    async def _read(self, consumer: KafkaConsumerClient, backoff: Backoff) -> None:
        next_refresh = time.monotonic() + self._refresh_s
        next_lag = time.monotonic()
        checkpoints_topic = self._settings.checkpoints_topic
        while True:
            messages = await consumer.poll(timeout_ms=500)
            # Only a poll that succeeded shows the connection works: reset on connecting, a
            # failure met after every start would be retried at the shortest delay forever.
            backoff.reset()
            if self._registry is not None:
                await self._learn_versions(self._registry, messages)
            for message in messages:
                self._take(message, checkpoints_topic)
            if time.monotonic() >= next_lag:
                lags: dict[str, float] = dict.fromkeys(self._recent.topics, 0)
                for (topic, _), behind in (await consumer.lag()).items():
                    if topic in lags:  # not the checkpoints topic (unless it is shown too)
                        lags[topic] += behind
                self._lag = lags
                next_lag = time.monotonic() + _LAG_EVERY_S
            if time.monotonic() >= next_refresh:
                added = await consumer.assign_new_partitions()
                if added:
                    logger.info("GET /messages now also reads partitions %s", added)
                next_refresh = time.monotonic() + self._refresh_s
