"""Liveness and readiness probes."""

import copy
import logging
from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from app.api.deps import ServicesDep, accepting_work
from app.api.errors import ErrorBody
from app.errors import BrokerUnavailableError, ServiceError

logger = logging.getLogger(__name__)

router = APIRouter(tags=["health"])


class HealthStatus(BaseModel):
    """The answer of a probe that passed."""

    status: Literal["ok", "ready"] = Field(examples=["ok"])


class ReadyStatus(HealthStatus):
    """The answer of a readiness probe that passed, with the alarms that do not stop writes."""

    alarms: list[str] | None = Field(
        default=None,
        description="Integrity alarms that do not stop writes: a witness that refused a "
        "checkpoint of the log of writers (RG_AUDIT_WITNESSES), named by its key name. Absent "
        "when there are none.",
        examples=[["witness witness.example/w1: refused checkpoint 12 of example/writers"]],
    )


@router.get("/healthz", summary="Liveness: 200 while the process serves")
async def healthz() -> HealthStatus:
    """Answers while the process serves HTTP, whatever the broker does."""
    return HealthStatus(status="ok")


@router.get(
    "/readyz",
    summary="Readiness: 200 when the broker answers the producer",
    response_model_exclude_none=True,
    responses={
        503: {
            "model": ErrorBody,
            "description": "The broker does not answer (`broker_unavailable`), the audit "
            "topic could not be created or checked (`audit_topic_unavailable`) or would not "
            "keep audit records (`audit_topic_noncompliant`), the audit event's schema is not "
            "registered in the Schema Registry (`schema_registry_unavailable`) or breaks its "
            "latest version there (`audit_schema_incompatible`), or the service is shutting "
            "down (`shutting_down`). The message is generic and `details` empty: the probe is "
            "open to anyone, so addresses, settings and errors are in the service's log only "
            "(and in the answers of POST /audit, which needs a key when authentication is on).",
        }
    },
)
async def readyz(request: Request, services: ServicesDep) -> ReadyStatus:
    """200 when a metadata request to the cluster succeeds and the audit topic exists and
    keeps its records (RG_AUDIT_TOPIC_CHECK), else 503 with `Retry-After` and a generic
    message (the details are in the log); 503 `shutting_down` from SIGTERM on."""
    accepting_work(request, services)
    if not await services.connection.is_ready():
        _log_once(
            f"not ready: Kafka at {','.join(services.settings.kafka_bootstrap_servers)} "
            "does not answer"
        )
        raise BrokerUnavailableError(GENERIC["broker_unavailable"])
    problem: ServiceError | None = services.audit_topic.problem()
    if problem is None and services.audit_schema is not None:
        problem = services.audit_schema.problem()
    if problem is not None:
        raise _generic(problem)
    _last_logged.clear()
    # A refusing witness is an alarm, not an outage: a witness could otherwise stop our writes.
    alarms = services.cosigner.alarms() if services.cosigner is not None else []
    return ReadyStatus(status="ready", alarms=alarms or None)


# /readyz is open to anyone (probes): what it says must not name the cluster, the registry
# (its URL may carry credentials) or echo an exception. The details go to the log.
GENERIC = {
    "broker_unavailable": "Kafka does not answer",
    "audit_topic_unavailable": "the audit topic could not be created or checked",
    "audit_topic_noncompliant": "the audit topic would not keep audit records",
    "schema_registry_unavailable": "the audit schema is not registered in the Schema Registry",
    "audit_schema_incompatible": "the audit event's schema breaks its latest version in the "
    "Schema Registry",
}
# The detail last logged, so that a probe every few seconds does not repeat it.
_last_logged: list[str] = []


def _log_once(detail: str) -> None:
    if _last_logged != [detail]:
        _last_logged[:] = [detail]
        logger.warning("%s", detail)


def _generic(problem: ServiceError) -> ServiceError:
    """`problem` (same class: status, code, Retry-After) with the generic message of its
    code, no details; the real message is logged."""
    _log_once(f"not ready: {problem.code}: {problem.message}")
    shown = copy.copy(problem)
    shown.message = GENERIC.get(problem.code, "the service is not ready")
    shown.args = (shown.message,)
    shown.details = []
    return shown
