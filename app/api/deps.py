"""Dependencies the routes declare, each defined once. All are `async def`: FastAPI runs a plain
`def` dependency in a worker thread, a hop per request for what is an attribute lookup."""

from typing import Annotated

from fastapi import Depends, Request

from app.api.body_limit import HELD_BYTES
from app.api.trace import trace_headers
from app.errors import ShuttingDownError
from app.ingest.backpressure import Hold
from app.services import Services


async def get_services(request: Request) -> Services:
    """The service's parts (`app.services.Services`), built by `create_app`; the routes take
    what they need from it."""
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]
TraceHeadersDep = Annotated[dict[str, str], Depends(trace_headers)]


async def get_held_bytes(request: Request) -> Hold | None:
    """The bytes the request's body holds in the in-flight budget (see `app.api.body_limit`);
    a record made of it takes them over."""
    held: Hold | None = getattr(request.state, HELD_BYTES, None)
    return held


HeldBytesDep = Annotated[Hold | None, Depends(get_held_bytes)]


async def accepting_work(services: ServicesDep) -> None:
    """Refuse new work once shutdown has begun (503 `shutting_down`, also what /readyz says
    then): what is accepted is finished before the process exits, and nothing new starts."""
    check_accepting_work(services)


def check_accepting_work(services: Services) -> None:
    """`accepting_work` for a handler that solves no dependencies (`app.api.lean`)."""
    if services.shutdown.draining:
        raise ShuttingDownError(
            "the service is shutting down; retry (another instance, or this one after restart)"
        )


AcceptingWork = Depends(accepting_work)


async def audit_topic_writable(services: ServicesDep) -> None:
    """Refuse audit writes the audit topic would not keep (503 `audit_topic_noncompliant`), or
    that would have the broker auto-create it with its defaults (503
    `audit_topic_unavailable`); see app/ingest/audit_topic_guard.py."""
    check_audit_topic_writable(services)


def check_audit_topic_writable(services: Services) -> None:
    """`audit_topic_writable` for a handler that solves no dependencies (`app.api.lean`)."""
    if (problem := services.audit_topic.write_problem()) is not None:
        raise problem
    if services.audit_schema is not None and (refused := services.audit_schema.write_problem()):
        raise refused


AuditTopicWritable = Depends(audit_topic_writable)
