"""The FastAPI application: `create_app(settings)` and the lifespan that owns long-lived clients."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app import __version__
from app.api import audit, health, messages, metrics, publish
from app.api.body_limit import BodyLimit
from app.api.errors import install_error_handlers
from app.api.observe import RequestObserver
from app.auth import ApiKeys, is_loopback
from app.cluster import ProducerConnection
from app.ingest.audit_topic import AuditTopic
from app.ingest.audit_topic_guard import AuditTopicGuard
from app.ingest.audit_trail import AuditTrail
from app.ingest.backpressure import Backpressure, ByteBudget
from app.ingest.forwarder import SpoolForwarder
from app.ingest.idempotency import RecentReceipts
from app.ingest.publisher import Publisher
from app.ingest.spool import Spool
from app.ingest.topic_policy import TopicPolicy
from app.kafka import KafkaAuditLogger
from app.memory import return_big_blocks
from app.metrics import ServiceMetrics
from app.recent.buffer import RecentRecords
from app.recent.reader import RecentRecordsReader
from app.settings import Settings, get_settings
from app.shutdown import Shutdown

logger = logging.getLogger(__name__)

# How long the start waits for the audit topic's first create-or-check once Kafka answers.
AUDIT_TOPIC_WAIT_S = 30.0

DESCRIPTION = """\
Apps send every prompt/response they handle to this service; it writes each one durably to
Apache Kafka (acks=all, idempotent producer) and answers with a receipt: topic, partition,
offset and the SHA-256 digest of the stored record.

Every error answers with `{"error": {"code", "message", "details", "request_id"}}`. Besides
the statuses each operation lists, any request may get, answered by the HTTP layer with the
connection then closed: 400 `bad_request` (not valid HTTP); 408 `request_timeout` (head and
body not received within RG_REQUEST_READ_TIMEOUT_S of the first byte); 431 `headers_too_large`
(more than RG_MAX_HEADERS header lines or RG_MAX_HEADER_BYTES bytes of URL and headers); 503
`too_many_connections` with `Retry-After` (RG_MAX_CONNECTIONS connections open already).
"""


def _audit_topic_guard(
    app: FastAPI, settings: Settings, connection: ProducerConnection, metrics: ServiceMetrics
) -> AuditTopicGuard:
    """The guard of the audit topic, on `app.state` and in the metrics."""
    guard = AuditTopicGuard(settings, connection, topic=AuditTopic(settings))
    app.state.audit_topic = guard
    metrics.watch_audit_topic(lambda: guard.compliant)
    return guard


def create_app(settings: Settings | None = None) -> FastAPI:  # noqa: PLR0915 - with its lifespan
    """Build the service; `settings` defaults to the ones read from the environment."""
    settings = settings or get_settings()
    service_metrics = ServiceMetrics()
    recent = RecentRecords(
        settings.recent_topics,
        max_records=settings.messages_buffer,
        max_bytes=settings.messages_buffer_bytes,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        return_big_blocks()
        if not app.state.api_keys.enabled and not is_loopback(settings.host):
            logger.warning(
                "authentication is off (RG_API_KEYS is empty) while the API listens on %s: "
                "whoever reaches that address can write audit records and read messages",
                settings.host,
            )
        connection = ProducerConnection(settings)
        reader = RecentRecordsReader(settings, recent, refresh_s=settings.messages_refresh_s)
        service_metrics.watch_recent(records=recent.counts, size=recent.sizes, lag=reader.lag)
        app.state.connection = connection
        guard = _audit_topic_guard(app, settings, connection, service_metrics)
        app.state.reader = reader
        audit_logger = KafkaAuditLogger(connection.producer, topic=settings.audit_topic)
        spool: Spool | None = None
        forwarder: SpoolForwarder | None = None
        if settings.spool_dir is not None:
            spool = Spool(
                settings.spool_dir,
                max_bytes=settings.spool_max_bytes,
                min_free_bytes=settings.spool_min_free_bytes,
            )
            await spool.open()
            service_metrics.watch_spool(spool)
            forwarder = SpoolForwarder(
                spool, audit_logger, on_forwarded=service_metrics.forwarded.inc
            )
        backpressure = Backpressure(
            connection.producer, max_in_flight=settings.max_in_flight, budget=app.state.in_flight
        )
        app.state.audit_trail = AuditTrail(
            audit_logger,
            service_metrics,
            timeout_s=settings.produce_timeout_s,
            receipts=RecentReceipts(
                window_s=settings.idempotency_window_s,
                max_entries=settings.idempotency_max_keys,
            ),
            backpressure=backpressure,
            spool=spool,
            spool_after_s=settings.spool_after_s,
        )
        app.state.publisher = Publisher(
            connection.producer,
            TopicPolicy(allow=settings.publish_topics, audit_topic=settings.audit_topic),
            service_metrics,
            timeout_s=settings.produce_timeout_s,
            backpressure=backpressure,
        )
        await connection.start()
        # With the broker up, be ready from the first request; without it, serve anyway
        # (/readyz says 503) and keep connecting in the background.
        await connection.wait_connected(settings.ready_timeout_s)
        # Likewise the audit topic: created or checked before the first request. The readers
        # start once it exists: their metadata requests would have the broker auto-create it
        # with its defaults (seven days of retention).
        await guard.start(
            then=[reader.start] if forwarder is None else [reader.start, forwarder.start],
            wait_s=AUDIT_TOPIC_WAIT_S,
        )
        try:
            yield
        finally:
            app.state.shutdown.begin()
            await guard.close()
            if forwarder is not None:
                await forwarder.close()
            await reader.close()
            # Flushing acknowledges what was in flight, spooled records included (their
            # removal is queued on the spool, which close() then completes).
            await connection.close()
            if spool is not None:
                await spool.close()
                if spool.depth:
                    logger.warning(
                        "spool %s keeps %d record(s) for the next start",
                        spool.directory,
                        spool.depth,
                    )

    app = FastAPI(
        title="ractogateway-kafka",
        version=__version__,
        summary="Audit-trail sidecar: AI prompts and responses written durably to Apache Kafka.",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.api_keys = ApiKeys(settings.api_keys)
    app.state.shutdown = Shutdown()
    app.state.metrics = service_metrics
    app.state.recent = recent
    # Built here, not in the lifespan: the body reader (a middleware) counts in it too.
    app.state.in_flight = service_metrics.watch_in_flight(ByteBudget(settings.max_in_flight_bytes))
    # Added first, so it runs inside the observer: a 413 is logged and counted like the rest.
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes, budget=app.state.in_flight)
    app.add_middleware(RequestObserver, metrics=service_metrics)
    install_error_handlers(app)
    for router in (audit.router, publish.router, messages.router, health.router, metrics.router):
        app.include_router(router)
    return app
