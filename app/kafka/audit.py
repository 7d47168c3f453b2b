"""`KafkaAuditLogger`: immutable prompt/response records on a dedicated topic."""

import asyncio
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

from app.kafka.delivery import Delivery, DeliveryCallback
from app.kafka.models import KafkaAuditEvent, KafkaProduceResult
from app.kafka.producer import KafkaProducerClient
from app.kafka.record_batches import Queuing
from app.kafka.schemas import frame
from app.kafka.serde import CONTENT_TYPE, JSON_CONTENT_TYPE

DEFAULT_AUDIT_TOPIC = "ractogateway.audit"
EVENT_ID_HEADER = "rg-event-id"
DIGEST_HEADER = "rg-digest"
SCHEMA_VERSION_HEADER = "rg-schema-version"
# The registry's schema id, on framed values (the Confluent wire format).
SCHEMA_ID_HEADER = "rg-schema-id"
# A record's place on its writer's hash chain (docs/integrity.md): set by the service, which
# keeps the chain; the library only knows the header names.
WRITER_HEADER = "rg-writer"
SEQ_HEADER = "rg-seq"
CHAIN_HEADER = "rg-chain"


class ChainPlace(Protocol):
    """A record's position on a hash chain: writer id, sequence number, link (64 hex)."""

    @property
    def writer(self) -> str: ...
    @property
    def seq(self) -> int: ...
    @property
    def chain(self) -> str: ...


def chain_headers(place: ChainPlace) -> dict[str, str]:
    """The `rg-writer`, `rg-seq` and `rg-chain` headers of a record at `place`."""
    return {
        WRITER_HEADER: place.writer,
        SEQ_HEADER: str(place.seq),
        CHAIN_HEADER: f"sha256:{place.chain}",
    }


class AuditLogResult(NamedTuple):
    """What `KafkaAuditLogger.log()` returns: the stored event and, when waited for, where
    Kafka stored it."""

    event: KafkaAuditEvent
    result: KafkaProduceResult | None


class AuditRecord(NamedTuple):
    """An audit event exactly as it is written to Kafka (what a spool keeps and sends later)."""

    topic: str
    key: str
    value: bytes
    headers: dict[str, str]


class KafkaAuditLogger:
    """Writes audit events so they survive the calling process and can be verified later.

    Each record: key `user_id` (order per user), value the event's canonical JSON, headers
    `content-type`, `rg-event-id`, `rg-digest` (SHA-256 of the canonical JSON) and
    `rg-schema-version`. With `frame_schema_id` set the value is the canonical JSON in the
    Confluent wire format (5 bytes in front) and `rg-schema-id` names the id.
    Unlike the reference, `log()` waits for the acknowledgement by default: an audit trail
    that may silently miss records is not one.
    """

    def __init__(self, producer: KafkaProducerClient, *, topic: str = DEFAULT_AUDIT_TOPIC) -> None:
        self._producer = producer
        self._topic = topic
        # The registry's id of the audit schema, once the values are to carry it (the
        # Confluent wire format, app/kafka/schemas.py); None: plain canonical JSON.
        self.frame_schema_id: int | None = None

    @property
    def topic(self) -> str:
        """The audit topic."""
        return self._topic

    @property
    def producer(self) -> KafkaProducerClient:
        """The client the records go through."""
        return self._producer

    async def log(
        self,
        *,
        user_id: str,
        model: str,
        prompt: str,
        response: str,
        request_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        wait: bool = True,
        timeout_s: float = 10.0,
    ) -> AuditLogResult:
        """Build one immutable event and publish it."""
        event = KafkaAuditEvent(
            user_id=user_id,
            model=model,
            prompt=prompt,
            response=response,
            request_id=request_id,
            metadata=metadata or {},
        )
        return await self.log_event(event, wait=wait, timeout_s=timeout_s)

    async def log_event(
        self,
        event: KafkaAuditEvent,
        *,
        wait: bool = True,
        timeout_s: float = 10.0,
        headers: dict[str, str] | None = None,
        on_delivery: DeliveryCallback | None = None,
    ) -> AuditLogResult:
        """Publish an event built elsewhere (e.g. validated from an HTTP request). `headers`
        are added to the record's (e.g. `traceparent`); the audit headers win on a clash.
        With `wait=False`, `on_delivery(result, error)` learns the outcome."""
        record = self.record_of(event, headers)
        result = await self._producer.publish(
            record.topic,
            record.value,
            key=record.key,
            headers=record.headers,
            wait=wait,
            timeout_s=timeout_s,
            on_delivery=on_delivery,
        )
        return AuditLogResult(event=event, result=result)

    def record_of(
        self,
        event: KafkaAuditEvent,
        headers: dict[str, str] | None = None,
        *,
        place: ChainPlace | None = None,
    ) -> AuditRecord:
        """The record `log_event()` writes for `event`, with `headers` added and, with `place`,
        the chain headers (`chain_headers()`); the audit headers win on a clash."""
        built = {
            **(headers or {}),
            CONTENT_TYPE: JSON_CONTENT_TYPE,
            EVENT_ID_HEADER: event.event_id,
            DIGEST_HEADER: event.digest(),
            SCHEMA_VERSION_HEADER: str(event.schema_version),
        }
        if place is not None:  # `chain_headers(place)`, set one by one: no dict of its own
            built[WRITER_HEADER] = place.writer
            built[SEQ_HEADER] = str(place.seq)
            built[CHAIN_HEADER] = f"sha256:{place.chain}"
        else:  # a caller's headers never pass for chain headers
            for name in (WRITER_HEADER, SEQ_HEADER, CHAIN_HEADER):
                built.pop(name, None)
        value = event.canonical_json()
        if self.frame_schema_id is not None:
            # The digest and the chain still cover the canonical JSON, not the frame.
            value = frame(self.frame_schema_id, value)
            built[SCHEMA_ID_HEADER] = str(self.frame_schema_id)
        return AuditRecord(topic=self._topic, key=event.user_id, value=value, headers=built)

    def check_size(self, record: AuditRecord) -> None:
        """Raise `KafkaRecordTooLargeError` when the producer would refuse `record` for its
        size (see `KafkaProducerClient.check_size`)."""
        self._producer.check_size(record.value, key=record.key, headers=record.headers)

    async def send(self, record: AuditRecord) -> "asyncio.Future[KafkaProduceResult]":
        """Queue a built record; return its delivery future (see `KafkaProducerClient.send`:
        may wait for buffer space, so bound it)."""
        return await self._producer.send(
            record.topic, record.value, key=record.key, headers=record.headers
        )

    async def send_batch(
        self, records: Sequence[AuditRecord], outcomes: list[Queuing], *, timeout_s: float
    ) -> None:
        """Queue built records (of this logger's topic) at once, each outcome written into
        `outcomes` (see `KafkaProducerClient.send_batch`)."""
        await self._producer.send_batch(
            self._topic,
            [(record.key, record.value, record.headers) for record in records],
            outcomes,
            timeout_s=timeout_s,
        )

    async def queue(self, record: AuditRecord, *, timeout_s: float) -> Delivery:
        """Queue a built record within `timeout_s`; its `Delivery` waits for the rest of it
        (see `KafkaProducerClient.queue`)."""
        return await self._producer.queue(
            record.topic, record.value, key=record.key, headers=record.headers, timeout_s=timeout_s
        )
