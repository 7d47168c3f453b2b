"""Dependencies the routes declare, each defined once, and the checks (`Check`) that refuse a
request. What FastAPI solves is `async def`: it runs a plain `def` dependency in a worker
thread, a hop per request for what is an attribute lookup."""

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request, params

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


CheckCall = Callable[[Request, Services], None]


class Check(params.Depends):
    """A precondition of a route (key and scope, shutdown, audit topic), written once for both
    handlers of a lean route (`app.api.lean`): it is a FastAPI dependency (a router's or route's
    `dependencies=` takes it as it is) and a plain call `check(request, services)`, which the
    lean handler makes. Either way it raises the route's error (401, 403, 503 ...)."""

    def __init__(
        self, check: CheckCall, dependency: Callable[..., Awaitable[None]] | None = None
    ) -> None:
        """`dependency`: what FastAPI solves, when it must declare more than `check` reads
        (`app.api.auth.require` declares the security schemes); it calls `check`."""

        async def solved(request: Request, services: ServicesDep) -> None:
            check(request, services)

        super().__init__(dependency or solved)
        self._check = check

    def __call__(self, request: Request, services: Services) -> None:
        self._check(request, services)

    def __repr__(self) -> str:
        return f"Check({self._check.__module__}.{self._check.__qualname__})"


Checks = tuple[Check, ...]


def accepting_work(request: Request, services: Services) -> None:
    """Refuse new work once shutdown has begun (503 `shutting_down`, also what /readyz says
    then): what is accepted is finished before the process exits, and nothing new starts."""
    if services.shutdown.draining:
        raise ShuttingDownError(
            "the service is shutting down; retry (another instance, or this one after restart)"
        )


AcceptingWork = Check(accepting_work)


def audit_topic_writable(request: Request, services: Services) -> None:
    """Refuse audit writes the audit topic would not keep (503 `audit_topic_noncompliant`), or
    that would have the broker auto-create it with its defaults (503
    `audit_topic_unavailable`); see app/ingest/audit_topic_guard.py."""
    if (problem := services.audit_topic.write_problem()) is not None:
        raise problem
    if services.audit_schema is not None and (refused := services.audit_schema.write_problem()):
        raise refused


AuditTopicWritable = Check(audit_topic_writable)
