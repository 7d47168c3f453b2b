"""Liveness and readiness probes."""

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from app.api.deps import ConnectionDep, SettingsDep, ShutdownDep, accepting_work
from app.api.errors import ErrorBody, ServiceError
from app.problems import RETRY_AFTER_S

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
            "description": "The broker does not answer, or the service is shutting down.",
        }
    },
)
async def readyz(
    connection: ConnectionDep, settings: SettingsDep, shutdown: ShutdownDep
) -> HealthStatus:
    """200 when a metadata request to the cluster succeeds, else 503 with `Retry-After`;
    503 `shutting_down` from SIGTERM on."""
    await accepting_work(shutdown)
    if not await connection.is_ready():
        servers = ",".join(settings.kafka_bootstrap_servers)
        raise ServiceError(
            503,
            "broker_unavailable",
            f"Kafka at {servers} does not answer",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
    return HealthStatus(status="ready")
