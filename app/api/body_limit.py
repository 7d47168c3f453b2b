"""RG_MAX_BODY_BYTES and RG_MAX_IN_FLIGHT_BYTES, enforced while the body is read.

Size: a declared `Content-Length` above the limit is refused before reading anything, and a body
without one (chunked) is cut off as soon as it passes the limit; either way 413
`body_too_large`, with the contract's body.

Memory: a body's bytes are counted at what they cost the service in memory while the request is
worked on (`app.runtime.BODY_COST` bytes each: the body, the text parsed from it, the record made
of it). A request carrying a valid API key (or any request, with authentication off) has its
declared length reserved in the service's `ByteBudget` before a byte is read; when it does not
fit, 503 `overloaded` with `Retry-After` before the body is read, and the connection is
closed. Any other request's body is counted only as its bytes arrive (as a chunked body's are),
so connections that declare big bodies and send nothing hold nothing: without a key they
cannot starve the writes of those with one. A body no route reads (an unknown path or
method) is not read at all: the app answers (404, 405) and the connection is closed.

The hold is kept in `request.state.held_bytes` (a record made of the body takes its bytes over,
see `app.ingest.backpressure`) and released once the request is answered: also after a 413, a
422 or a client that went away.
"""

import re
from collections.abc import Iterable

from starlette.requests import Request
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import problem_response
from app.api.otlp_status import OTLP_PATHS, otlp_error
from app.auth import ApiKeys, presents_a_key
from app.errors import BodyTooLargeError, OverloadedError, ServiceError, problem_for
from app.ingest.backpressure import ByteBudget, Hold
from app.runtime import BODY_COST

_WITH_BODY = {"POST", "PUT", "PATCH"}
HELD_BYTES = "held_bytes"
# A declared length of more digits is larger than any limit (a body of 10^18 bytes).
_MAX_DIGITS = 18
_TOO_LONG = 10**_MAX_DIGITS
# Request lines (method, path) whose route match is remembered.
_MAX_KNOWN = 256


class BodyLimit:
    """Pure ASGI middleware: reads the body (at most `max_bytes`, counted in `budget`) before
    the app runs, then hands it over as one message; later `receive()` calls (disconnects) go
    to the server."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int,
        budget: ByteBudget,
        routes: Iterable[BaseRoute],
        keys: ApiKeys,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.budget = budget
        self.keys = keys
        self._readers: list[tuple[re.Pattern[str], set[str]]] = [
            (route.path_regex, set(route.methods or ()) & _WITH_BODY)
            for route in routes
            if isinstance(route, Route)
        ]
        self._known: dict[tuple[str, str], bool] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _WITH_BODY:
            await self.app(scope, receive, send)
            return
        if not self._read_by_a_route(scope):
            await self.app(scope, receive, closing(send))
            return
        expected = declared_length(scope)
        if expected > self.max_bytes:
            await self._refuse(scope, receive, send, self._too_large())
            return
        # Reserved before reading only for a client with a key; anyone else's bytes are counted
        # as they arrive, so an idle connection declaring a big body holds nothing.
        upfront = expected if presents_a_key(scope["headers"], self.keys) else 0
        # Counted at what a body's byte costs in memory (app.runtime), not one byte each.
        try:
            held = self.budget.reserve(upfront * BODY_COST)
        except OverloadedError as exc:
            await self._refuse(scope, receive, send, exc)
            return
        scope.setdefault("state", {})[HELD_BYTES] = held
        try:
            await self._read_then_run(scope, receive, send, held)
        finally:
            held.release()

    async def _read_then_run(self, scope: Scope, receive: Receive, send: Send, held: Hold) -> None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                await self.app(scope, replayed(message, receive), send)
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(scope, receive, send, self._too_large())
                return
            if size * BODY_COST > held.size:  # not reserved before: counted as it arrives
                try:
                    held.grow(size * BODY_COST - held.size)
                except OverloadedError as exc:
                    await self._refuse(scope, receive, send, exc)
                    return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, replayed(_whole(chunks), receive), send)

    def _read_by_a_route(self, scope: Scope) -> bool:
        method, path = scope["method"], scope["path"]
        known = self._known.get((method, path))
        if known is None:
            known = any(method in methods and regex.match(path) for regex, methods in self._readers)
            # The answer per request line, matched once (every route's pattern, each time,
            # was a few microseconds of every write); any path a client invents is a new key.
            if len(self._known) < _MAX_KNOWN:
                self._known[(method, path)] = known
        return known

    def _too_large(self) -> BodyTooLargeError:
        return BodyTooLargeError(
            f"the request body is larger than {self.max_bytes} bytes (RG_MAX_BODY_BYTES)"
        )

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, exc: ServiceError) -> None:
        # The rest of the body is not read: this connection cannot carry another request. (When
        # overloaded the server could discard the rest and keep the connection, but until the
        # connection's next request it would keep the part of the body it had read ahead, up
        # to a few hundred KiB, for each refused connection.)
        request, problem = Request(scope), problem_for(exc)
        closed = {"Connection": "close"}
        response = (
            otlp_error(request, problem.status, problem.message, {**problem.headers, **closed})
            if scope["path"] in OTLP_PATHS  # an OTLP exporter reads a Status body
            else problem_response(problem, request, headers=closed)
        )
        await response(scope, receive, send)


def closing(send: Send) -> Send:
    """`send` with `Connection: close` added to the response: the body the request declared
    is left unread, so the connection cannot carry another request."""

    async def send_closing(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [*message.get("headers", ()), (b"connection", b"close")]
            message = {**message, "headers": headers}
        await send(message)

    return send_closing


def declared_length(scope: Scope) -> int:
    """The request's `Content-Length`, 0 without one; `_TOO_LONG` when it has more digits
    than any limit (Python's int() refuses more than 4,300 of them, and the server's parser
    takes any number of leading zeros)."""
    declared = dict(scope["headers"]).get(b"content-length")
    if declared is None or not declared.isdigit():
        return 0
    digits = declared.lstrip(b"0") or b"0"
    return int(digits) if len(digits) <= _MAX_DIGITS else _TOO_LONG


def _whole(chunks: list[bytes]) -> Message:
    # The pieces are dropped once joined: only one copy of the body stays while the app runs.
    body = b"".join(chunks)
    chunks.clear()
    return {"type": "http.request", "body": body, "more_body": False}


def replayed(first: Message, receive: Receive) -> Receive:
    """A `receive` that gives `first` (taken from `receive` already) once more, then the
    server's messages."""
    pending: list[Message] = [first]

    async def replay() -> Message:
        if pending:
            # Handed over, not kept: the body is the app's from now on.
            return pending.pop()
        return await receive()

    return replay
