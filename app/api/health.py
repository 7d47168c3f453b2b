"""Liveness and readiness probes."""

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from app.api.deps import ServicesDep, accepting_work
from app.api.errors import ErrorBody
from app.errors import BrokerUnavailableError

router = APIRouter(tags=["health"])


class HealthStatus(BaseModel):
    """The answer of a probe that passed."""

    status: Literal["ok", "ready"] = Field(examples=["ok"])


@router.get("/healthz", summary="Liveness: 200 while the process serves")
async def healthz() -> HealthStatus:
    """Answers while the process serves HTTP, whatever the broker does."""
    return HealthStatus(status="ok")


@router.get(
    "/readyz",
    summary="Readiness: 200 when the broker answers the producer",
    responses={
        503: {
            "model": ErrorBody,
            "description": "The broker does not answer (`broker_unavailable`), the audit "
            "topic could not be created or checked (`audit_topic_unavailable`, naming the "
            "missing permission) or would not keep audit records "
            "(`audit_topic_noncompliant`, naming the setting, its value and the required one), "
            "the audit event's schema is not registered in the Schema Registry "
            "(`schema_registry_unavailable`) or breaks its latest version there "
            "(`audit_schema_incompatible`, naming the fields), "
            "or the service is shutting down (`shutting_down`).",
        }
    },
)
async def readyz(services: ServicesDep) -> HealthStatus:
    """200 when a metadata request to the cluster succeeds and the audit topic exists and
    keeps its records (RG_AUDIT_TOPIC_CHECK), else 503 with `Retry-After`; 503 `shutting_down`
    from SIGTERM on."""
    await accepting_work(services)
    if not await services.connection.is_ready():
        servers = ",".join(services.settings.kafka_bootstrap_servers)
        raise BrokerUnavailableError(f"Kafka at {servers} does not answer")
    if (problem := services.audit_topic.problem()) is not None:
        raise problem
    if services.audit_schema is not None and (unready := services.audit_schema.problem()):
        raise unready
    return HealthStatus(status="ready")
