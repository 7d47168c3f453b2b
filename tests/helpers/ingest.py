"""An `AuditTrail` built as the service builds one (`app.services.build_audit_trail`), on a
producer and topic of the test's, with bounds of the test's choice, and the parts a test looks
at; and a receipt to keep or pack (`a_receipt`)."""

from typing import NamedTuple

from app.ingest.audit_trail import AuditTrail
from app.ingest.backpressure import Backpressure, ByteBudget
from app.ingest.receipts import AuditReceipt
from app.ingest.spool import Spool
from app.kafka import KafkaAuditLogger, KafkaProducerClient
from app.metrics import ServiceMetrics
from app.services import build_audit_trail


class Ingest(NamedTuple):
    """An audit trail and the parts a test looks at."""

    trail: AuditTrail
    metrics: ServiceMetrics
    budget: ByteBudget
    audit_logger: KafkaAuditLogger

    def produced(self) -> float | None:
        """Records Kafka acknowledged, by the trail's metrics."""
        return self.metrics.registry.get_sample_value(
            "rg_kafka_records_produced_total", {"endpoint": "audit"}
        )


def ingest_on(
    producer: KafkaProducerClient,
    topic: str,
    *,
    timeout_s: float = 10.0,
    max_in_flight: int = 1000,
    max_bytes: int = 1 << 26,
    spool: Spool | None = None,
    spool_after_s: float = 2.0,
) -> Ingest:
    """An audit trail to `topic` as the service builds one, with bounds of the test's choice."""
    metrics, budget = ServiceMetrics(), ByteBudget(max_bytes)
    audit_logger = KafkaAuditLogger(producer, topic=topic)
    trail = build_audit_trail(
        audit_logger,
        metrics,
        Backpressure(producer, max_in_flight=max_in_flight, budget=budget),
        timeout_s=timeout_s,
        window_s=60,
        max_keys=100,
        spool=spool,
        spool_after_s=spool_after_s,
    )
    return Ingest(trail, metrics, budget, audit_logger)


def a_receipt(**fields: object) -> AuditReceipt:
    """A valid acked receipt, with `fields` changed."""
    values: dict[str, object] = {
        "event_id": "01927f0e-8a1c-7cc2-9a53-3f1c2b6f6d0e",
        "topic": "ractogateway.audit",
        "partition": 2,
        "offset": 41,
        "timestamp_utc": "2026-12-02T04:00:00.123456Z",
        "digest": "sha256:" + "ab" * 32,
        "writer": "0123456789abcdef" * 2,
        "seq": 41,
        "chain": "sha256:" + "cd" * 32,
        "status": "acked",
    }
    return AuditReceipt.model_validate(values | fields)
