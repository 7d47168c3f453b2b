"""RG_MAX_BODY_BYTES, enforced while the body is read: a declared `Content-Length` above the limit
is refused before reading anything, and a body without one (chunked) is cut off as soon as it
passes the limit. Either way 413 `body_too_large`, with the contract's body."""

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import error_response

_WITH_BODY = {"POST", "PUT", "PATCH"}


class BodyLimit:
    """Pure ASGI middleware: reads the body (at most `max_bytes`) before the app runs, then hands
    it over as one message; later `receive()` calls (disconnects) go to the server."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _WITH_BODY:
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                await self.app(scope, _replay(message, receive), send)
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body: Message = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay(body, receive), send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            Request(scope),
            413,
            "body_too_large",
            f"the request body is larger than {self.max_bytes} bytes (RG_MAX_BODY_BYTES)",
            # The rest of the body is not read: this connection cannot carry another request.
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)


def _replay(first: Message, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return first
        return await receive()

    return replay
