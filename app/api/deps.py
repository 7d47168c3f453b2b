"""Dependencies the routes declare, each defined once. All are `async def`: FastAPI runs a plain
`def` dependency in a worker thread, a hop per request for what is an attribute lookup."""

from typing import Annotated

from fastapi import Depends, Request

from app.api.body_limit import HELD_BYTES
from app.api.trace import trace_headers
from app.cluster import ProducerConnection
from app.errors import ShuttingDownError
from app.ingest.audit_topic_guard import AuditTopicGuard
from app.ingest.audit_trail import AuditTrail
from app.ingest.backpressure import Hold
from app.ingest.publisher import Publisher
from app.kafka import KafkaProducerClient
from app.metrics import ServiceMetrics
from app.recent.buffer import RecentRecords
from app.settings import Settings
from app.shutdown import Shutdown


async def get_connection(request: Request) -> ProducerConnection:
    """The producer connection the lifespan started."""
    connection: ProducerConnection = request.app.state.connection
    return connection


async def get_producer(request: Request) -> KafkaProducerClient:
    """The service's one producer (idempotent, acks=all)."""
    producer: KafkaProducerClient = request.app.state.connection.producer
    return producer


async def get_app_settings(request: Request) -> Settings:
    """The settings the app was built with."""
    settings: Settings = request.app.state.settings
    return settings


async def get_audit_trail(request: Request) -> AuditTrail:
    """Where audit events go."""
    trail: AuditTrail = request.app.state.audit_trail
    return trail


async def get_recent(request: Request) -> RecentRecords:
    """The recent-records buffer behind GET /messages."""
    recent: RecentRecords = request.app.state.recent
    return recent


async def get_metrics(request: Request) -> ServiceMetrics:
    """The app's metrics."""
    metrics: ServiceMetrics = request.app.state.metrics
    return metrics


ConnectionDep = Annotated[ProducerConnection, Depends(get_connection)]
ProducerDep = Annotated[KafkaProducerClient, Depends(get_producer)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
AuditTrailDep = Annotated[AuditTrail, Depends(get_audit_trail)]
RecentDep = Annotated[RecentRecords, Depends(get_recent)]
MetricsDep = Annotated[ServiceMetrics, Depends(get_metrics)]
TraceHeadersDep = Annotated[dict[str, str], Depends(trace_headers)]


async def get_publisher(request: Request) -> Publisher:
    """Where POST /publish records go."""
    publisher: Publisher = request.app.state.publisher
    return publisher


PublisherDep = Annotated[Publisher, Depends(get_publisher)]


async def get_held_bytes(request: Request) -> Hold | None:
    """The bytes the request's body holds in the in-flight budget (see `app.api.body_limit`);
    a record made of it takes them over."""
    held: Hold | None = getattr(request.state, HELD_BYTES, None)
    return held


HeldBytesDep = Annotated[Hold | None, Depends(get_held_bytes)]


async def get_shutdown(request: Request) -> Shutdown:
    """Whether the service is shutting down."""
    shutdown: Shutdown = request.app.state.shutdown
    return shutdown


ShutdownDep = Annotated[Shutdown, Depends(get_shutdown)]


async def accepting_work(shutdown: ShutdownDep) -> None:
    """Refuse new work once shutdown has begun (503 `shutting_down`, also what /readyz says
    then): what is accepted is finished before the process exits, and nothing new starts."""
    if shutdown.draining:
        raise ShuttingDownError(
            "the service is shutting down; retry (another instance, or this one after restart)"
        )


AcceptingWork = Depends(accepting_work)


async def get_audit_topic(request: Request) -> AuditTopicGuard:
    """Whether the audit topic exists and keeps its records."""
    guard: AuditTopicGuard = request.app.state.audit_topic
    return guard


AuditTopicDep = Annotated[AuditTopicGuard, Depends(get_audit_topic)]


async def audit_topic_writable(guard: AuditTopicDep) -> None:
    """Refuse audit writes the audit topic would not keep (503 `audit_topic_noncompliant`), or
    that would have the broker auto-create it with its defaults (503
    `audit_topic_unavailable`); see app/ingest/audit_topic_guard.py."""
    if (problem := guard.write_problem()) is not None:
        raise problem


AuditTopicWritable = Depends(audit_topic_writable)
