"""RG_MAX_CONNECTIONS: the connections one server admits, and the answer to those beyond.

A connection beyond the bound has its request read (within RG_REQUEST_READ_TIMEOUT_S), then
gets 503 `too_many_connections` with Retry-After and the contract's error body, and is closed;
each is counted in `rg_http_connections_refused_total`. Answering after the request rather
than on accept lets the client read the answer to what it sent: a socket closed with bytes
unread is reset, and a reset can destroy the answer before the client reads it.

uvicorn's `limit_concurrency` stays off: it answers plain text without Retry-After, and it
counts requests in flight as well as connections, so it is no bound on connections alone.
"""

import logging
import math
import time
import uuid

from uvicorn._types import ASGIReceiveCallable, ASGISendCallable, Scope

from app.api.errors import NO_SNIFF, error_bytes
from app.errors import TooManyConnectionsError, problem_for
from app.logs import FIELDS

logger = logging.getLogger(__name__)

# Under a storm of connections, one log line per interval (the metric counts each).
_REFUSALS_LOG_INTERVAL_S = 10.0


class ConnectionSlots:
    """The connections admitted, shared by every connection of one server."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0
        self._unlogged = 0
        self._logged_at = -math.inf

    def take(self) -> bool:
        """Admit one more connection, unless `limit` are open."""
        if self.open >= self.limit:
            self._refused()
            return False
        self.open += 1
        return True

    def release(self) -> None:
        """An admitted connection has closed."""
        self.open -= 1

    def refusal(self) -> TooManyConnectionsError:
        """What a refused client is told (503, Retry-After 1 s)."""
        return TooManyConnectionsError(
            f"the service has {self.limit} connections open, the most RG_MAX_CONNECTIONS "
            "allows; retry shortly"
        )

    async def refuse(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        """The ASGI app of a connection that was not admitted: read the request to its end
        (so the answer is not lost to a reset), then 503, and the connection is closed."""
        while (await receive()).get("more_body", False):
            pass
        request_id = uuid.uuid4().hex
        problem = problem_for(self.refusal())
        body = error_bytes(problem, request_id)
        await send(
            {
                "type": "http.response.start",
                "status": problem.status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"x-request-id", request_id.encode()),
                    *(
                        (name.lower().encode(), value.encode())
                        for name, value in {**problem.headers, **NO_SNIFF}.items()
                    ),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body, "more_body": False})

    def _refused(self) -> None:
        self._unlogged += 1
        now = time.monotonic()
        if now - self._logged_at >= _REFUSALS_LOG_INTERVAL_S:
            logger.warning(
                "%d connection(s) refused with 503: %d open, the most RG_MAX_CONNECTIONS allows",
                self._unlogged,
                self.open,
                extra={FIELDS: {"refused": self._unlogged, "open": self.open}},
            )
            self._logged_at = now
            self._unlogged = 0
