"""One middleware that sees every request: a request id, one log line, and the metrics."""

import logging
import os
import re
import time

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.logs import FIELDS
from app.metrics import ServiceMetrics

logger = logging.getLogger("app.access")

REQUEST_ID_HEADER = "x-request-id"
# The service's own request id on an answer that carries another's `x-request-id` (an
# upstream's, passed through by the recording proxy).
OWN_REQUEST_ID_HEADER = "x-rg-request-id"
_REQUEST_ID_NAME = REQUEST_ID_HEADER.encode()
_CALLER_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")
# Put in a request's `state` by the HTTP protocol when it answered in the app's place (a body
# that did not arrive in time): the status the client got, so the log line and the metric say it.
SERVER_ANSWERED = "server_answered"
_MAX_COUNTED = 256


class RequestObserver:
    """Pure ASGI middleware (so streaming responses pass through untouched).

    - `X-Request-ID`: the caller's when it is sane, else a new one; echoed on the response
      (as `X-RG-Request-ID` when the answer carries an upstream's `X-Request-ID`) and kept in
      `request.state.request_id`;
    - one log line per request: method, route template, status, duration, request id and,
      when a route set `request.state.event_id`, the audit event id; never bodies or keys;
    - `rg_http_requests_total` and `rg_http_request_duration_seconds` by route template.
    """

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics
        # The labelled metrics per (method, route, status): `labels()` looks them up under a
        # lock each time; the service has a few dozen combinations.
        self._counted: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _request_id(scope)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        status = 500  # what the client gets if the app fails before answering

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", ()))
                own = request_id.encode()
                theirs = [v for n, v in headers if n.lower() == _REQUEST_ID_NAME and v != own]
                # An upstream's request id (the proxy's answers) stays the app's, alone: an
                # SDK reads it as the provider's; the service's goes beside it.
                name = OWN_REQUEST_ID_HEADER if theirs else REQUEST_ID_HEADER
                message["headers"] = [*headers, (name.encode(), own)]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            status = state.get(SERVER_ANSWERED, status)
            self._observe(scope, status, time.perf_counter() - started, request_id)

    def _observe(self, scope: Scope, status: int, duration: float, request_id: str) -> None:
        route = getattr(scope.get("route"), "path", None) or _route_of(scope)
        method = scope["method"]
        counted = self._counted.get((method, route, status))
        if counted is None:
            counted = (
                self.metrics.requests.labels(method, route, str(status)),
                self.metrics.request_duration.labels(method, route),
            )
            if len(self._counted) < _MAX_COUNTED:  # any method a client invents is a new key
                self._counted[(method, route, status)] = counted
        requests, durations = counted
        requests.inc()
        durations.observe(duration)
        level = logging.ERROR if status >= 500 else logging.INFO
        if not logger.isEnabledFor(level):
            return
        fields: dict[str, object] = {
            "method": method,
            "route": route,
            "status": status,
            "duration_ms": round(duration * 1000, 3),
            "request_id": request_id,
        }
        if event_id := scope.get("state", {}).get("event_id"):
            fields["event_id"] = str(event_id)
        # A record made here: `logger.log()` would also look up its caller in the stack, for
        # a line that never shows it.
        logger.handle(
            logger.makeRecord(
                logger.name,
                level,
                __file__,
                0,
                "%s %s %d",
                (method, route, status),
                None,
                extra={FIELDS: fields},
            )
        )


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER.encode():
            text: str = value.decode("latin-1")
            if _CALLER_REQUEST_ID.fullmatch(text):
                return text
    # 128 random bits as 32 hex digits, as a UUID4's hex was (without its fixed version bits;
    # a third of the cost).
    return os.urandom(16).hex()


def _route_of(scope: Scope) -> str:
    # A request answered before routing (a body over the limit) still gets its template, when
    # its path is one the app documents (the service's paths have no parameters).
    openapi = getattr(scope.get("app"), "openapi", None)
    paths = openapi().get("paths", {}) if openapi is not None else {}
    path = scope.get("path", "")
    return path if path in paths else "unmatched"
