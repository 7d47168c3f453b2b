"""An answer passed on to the app as its chunks come from the upstream (`StreamedAnswer`), and the
same for an unrecorded call, cut off for the app when the upstream cuts it (`PassedThrough`).

Starlette's `StreamingResponse` runs the stream in a task of its own beside one that watches for
the app going away, in an anyio task group: three tasks and a cancel scope per answer, and a step
of the event loop before the head leaves. Here the stream runs in the request's task, the head
is sent at once, and a small task, started once the head is sent (its first step then comes
after the head's write at the end of the loop step, not before it), watches for the disconnect
and cancels the request's task when it comes (that cancellation, and only that one, ends the
answer quietly). The chunks' iterator is closed when the answer ends, however it ends: an app
that went away while its answer waited to be sent still has the stream's own ending run (the
relay records what the app was sent) at once, not whenever the garbage collector finds the
suspended generator.
"""

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING

from starlette.background import BackgroundTask
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

if TYPE_CHECKING:
    import httpx

logger = logging.getLogger(__name__)

# The HTTP protocol's ASGI extension that closes the connection under an unfinished answer
# (`app.api.http_limits.ABORT`).
ABORT = "rg.abort"


class StreamedAnswer(Response):
    """The head, then each chunk as `chunks` gives it, then the end of the body."""

    def __init__(
        self,
        chunks: AsyncIterator[bytes],
        *,
        status_code: int,
        headers: Mapping[str, str] | list[tuple[bytes, bytes]],
        background: BackgroundTask | None = None,
    ) -> None:
        """`headers`: by name, or as the head sends them (lowercased names, bytes)."""
        self.chunks = chunks
        self.status_code = status_code
        self.background = background
        if isinstance(headers, list):
            self.raw_headers = headers
        else:
            self.init_headers(headers)
        self.abort: Callable[[], None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Stream the answer; the app going away ends it (see the module docstring)."""
        self.abort = scope.get("extensions", {}).get(ABORT)
        watch = _Watch(asyncio.current_task())
        watcher: asyncio.Task[None] | None = None
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
            watcher = asyncio.get_running_loop().create_task(watch.until_gone(receive))
            await self.stream(send)
        except asyncio.CancelledError:
            if not watch.gone or watch.task is None:
                raise  # not the app going away: the server's, passed on
            watch.task.uncancel()
        finally:
            watch.streaming = False
            if watcher is not None:
                watcher.cancel()
            if isinstance(self.chunks, AsyncGenerator):
                await self.chunks.aclose()
        if self.background is not None:
            await self.background()

    async def stream(self, send: Send) -> None:
        """The chunks, then the end (the head is sent)."""
        async for chunk in self.chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class _Watch:
    """Cancels the answer's task when the app goes away while the answer streams (only then:
    the cancellation lands in `stream()`, where it is expected)."""

    def __init__(self, task: "asyncio.Task[object] | None") -> None:
        self.task = task
        self.streaming = True
        self.gone = False

    async def until_gone(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        if self.streaming and self.task is not None:
            self.gone = True
            self.task.cancel()


class PassedThrough(StreamedAnswer):
    """An unrecorded call's answer, passed on as it arrives. One the upstream cuts off midway
    is cut off for the app too (its body never completes: the connection closes), said in one
    log line rather than a traceback: the upstream's failure, not the service's."""

    def __init__(
        self,
        answer: "httpx.Response",
        call: str,
        *,
        status_code: int,
        headers: Mapping[str, str],
        background: BackgroundTask,
    ) -> None:
        super().__init__(
            answer.aiter_bytes(), status_code=status_code, headers=headers, background=background
        )
        self._call = call

    async def stream(self, send: Send) -> None:
        """Each chunk as it comes (the head is sent); no completion after a cut."""
        import httpx  # noqa: PLC0415 - loaded with the upstream's client

        try:
            async for chunk in self.chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except httpx.HTTPError as exc:
            logger.warning(
                "proxy: the upstream's answer to %s was cut off midway (%s); passed on cut off",
                self._call,
                type(exc).__name__,
            )
            # Closed unfinished: the app sees the cut (and the server does not take the
            # unfinished answer for the app's error). Without the extension, as Starlette does.
            if self.abort is not None:
                self.abort()
            return
        await send({"type": "http.response.body", "body": b"", "more_body": False})
