"""An `AuditTrail` built as the service builds one, on a producer and topic of the test's, with
bounds of the test's choice, and the parts a test looks at."""

from typing import NamedTuple

from app.ingest.audit_trail import AuditTrail, receipt_codec
from app.ingest.backpressure import Backpressure, ByteBudget
from app.ingest.idempotency import RecentReceipts
from app.ingest.spool import Spool
from app.kafka import KafkaAuditLogger, KafkaProducerClient
from app.metrics import ServiceMetrics


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
    trail = AuditTrail(
        audit_logger,
        metrics,
        timeout_s=timeout_s,
        receipts=RecentReceipts(window_s=60, max_entries=100, codec=receipt_codec()),
        backpressure=Backpressure(producer, max_in_flight=max_in_flight, budget=budget),
        spool=spool,
        spool_after_s=spool_after_s,
    )
    return Ingest(trail, metrics, budget, audit_logger)
