"""One HTTP/1.1 connection to the upstream (`app.proxy.pool`'s): an asyncio protocol whose
answers are parsed by httptools (llhttp, the parser uvicorn serves with) in `data_received`, as
their bytes arrive, in the loop step that reads them.

An answer's head is bounded (`MAX_HEAD_BYTES`, as httpcore's), its body read by content-length,
chunked or to the connection's close, informational answers (1xx) skipped, an answer to `HEAD`
taken as its head. What the connection is left with: `keep_alive` (the server keeps it, as
llhttp reads the answer), and `spoilt` when bytes came that no request asked for (after an
answer's end, or while idle), `lost` once closed. Errors are httpx's: `ReadTimeout`, `ReadError`,
`WriteTimeout`, `WriteError`, and `RemoteProtocolError` for an answer that is not HTTP/1.1, too
large a head, or a connection closed mid-answer. A body's bytes held unread past `_READ_BYTES`
stop the socket's reading until they are read.
"""

import asyncio
from typing import Final

import httptools
import httpx

MAX_HEAD_BYTES: Final = 100 * 1024  # as httpcore allows
# Body bytes held unread before the socket is no longer read (until they are).
_READ_BYTES: Final = 64 * 1024
# A body past this size is written with a wait for the socket to take it (under the timeout).
_DRAIN_AT: Final = 64 * 1024
# Answers with no body whatever their headers say (RFC 9110 §6.4.1).
_NO_BODY: Final = frozenset({204, 304})


def _too_large() -> httpx.RemoteProtocolError:
    return httpx.RemoteProtocolError(f"the answer's head is over {MAX_HEAD_BYTES} bytes")


class Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: its transport, its parser and the answer being read."""

    def __init__(self, loop: asyncio.AbstractEventLoop, read_timeout_s: float) -> None:
        self.loop = loop
        self.read_timeout_s = read_timeout_s
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.idle_since = 0.0
        self.lost = False
        # Something came that no request asked for (before or after its answer): not reused.
        self.spoilt = False
        self.writing_paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None
        self._reset(head_only=False)

    def _reset(self, *, head_only: bool) -> None:
        self.asked = False  # a request is out and its answer not read to its end
        self.head_only = head_only  # the answer to a HEAD: its head is all of it
        self.status = 0
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_done = False
        self.head_bytes = 0
        self.head_size = 0  # the head's fields, counted as they are parsed
        self.informational = False
        self.sized = False  # a content-length or a chunked body: it does not end at the close
        self.body: list[bytes] = []
        self.held = 0
        self.done = False
        self.keep_alive = False
        self.error: httpx.TransportError | None = None

    # The transport's side.

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment] # a TCP (or TLS) one

    def data_received(self, data: bytes) -> None:
        if not self.asked or self.done or self.error is not None:
            self.spoilt = True  # bytes nobody asked for
            return
        if not self.head_done:
            self.head_bytes += len(data)  # what came before the head was whole
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(httpx.RemoteProtocolError("the upstream switched protocols"))
            return
        except httptools.HttpParserError as exc:
            if not self.done:
                self._fail(self.error or httpx.RemoteProtocolError(f"a malformed answer: {exc}"))
                return
            self.spoilt = True  # whatever came after the answer's end
        if not self.head_done and self.head_bytes > MAX_HEAD_BYTES:
            self._fail(_too_large())
            return
        if self.held > _READ_BYTES and self.transport is not None:
            self.transport.pause_reading()  # until the body is read
        self._wake()

    def eof_received(self) -> bool:
        return False  # the transport closes itself: `connection_lost` follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.asked and not self.done and self.error is None:
            if exc is not None:
                self.error = httpx.ReadError(str(exc) or type(exc).__name__)
            elif self.head_done and not self.sized and not self.head_only:
                self._complete(keep_alive=False)  # a body that ends at the close: ended
            else:
                self.error = httpx.RemoteProtocolError(
                    "the upstream closed the connection mid-answer"
                )
        self._wake()
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_exception(httpx.WriteError(str(exc) if exc else "connection closed"))

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    # The parser's side (httptools' callbacks, during `feed_data`).

    def on_message_begin(self) -> None:
        if self.done:
            raise httptools.HttpParserError("a second answer")  # after the answer's end

    def on_status(self, reason: bytes) -> None:
        self.reason += reason
        self.head_size += len(reason)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.head_done:
            return  # a chunked body's trailer
        self.headers.append((name, value.strip(b" \t")))
        self.head_size += len(name) + len(value) + 4
        lowered = name.lower()
        if lowered == b"content-length" or (
            lowered == b"transfer-encoding" and b"chunked" in value.lower()
        ):
            self.sized = True

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:  # informational: the answer comes after it
            self.informational = True
            self.reason, self.headers, self.head_bytes, self.head_size = b"", [], 0, 0
            return
        if self.head_size > MAX_HEAD_BYTES:  # whole, but in one read with what follows it
            self.error = _too_large()
            raise httptools.HttpParserError("the answer's head is too large")
        self.status = status
        self.head_done = True
        if status in _NO_BODY:
            self.sized = True
        if self.head_only:  # the parser would wait for a body never sent: a new one next
            self._complete(keep_alive=self.parser.should_keep_alive())
            self.parser = httptools.HttpResponseParser(self)

    def on_body(self, data: bytes) -> None:
        if not self.done:
            self.body.append(data)
            self.held += len(data)

    def on_message_complete(self) -> None:
        if self.informational:
            self.informational = False
            return
        if not self.done:
            self._complete(keep_alive=self.parser.should_keep_alive())

    def _complete(self, *, keep_alive: bool) -> None:
        self.done = True
        self.keep_alive = keep_alive

    def _fail(self, error: httpx.TransportError) -> None:
        self.error = error
        self.close()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # The pool's side.

    def reusable(self) -> bool:
        """Open, and nothing came on it since its last answer."""
        return (
            not self.lost
            and not self.spoilt
            and self.transport is not None
            and not self.transport.is_closing()
        )

    def close(self) -> None:
        """Close at once (the transport finishes in the background)."""
        if self.transport is not None:
            self.transport.close()

    async def send(self, data: bytes, head_only: bool) -> None:
        """Write a request; its answer is read from then on."""
        self._reset(head_only=head_only)
        self.asked = True
        transport = self.transport
        if self.lost or transport is None or transport.is_closing():
            raise httpx.WriteError("the connection to the upstream closed")
        transport.write(data)
        if self.writing_paused and transport.get_write_buffer_size() > _DRAIN_AT:
            self._drained = self.loop.create_future()
            timer = self.loop.call_later(self.read_timeout_s, self._drain_timed_out)
            try:
                await self._drained
            finally:
                timer.cancel()
                self._drained = None

    def _drain_timed_out(self) -> None:
        drained = self._drained
        if drained is not None and not drained.done():
            drained.set_exception(
                httpx.WriteTimeout("the upstream did not take the request in time")
            )

    async def _wait(self) -> None:
        """Until the next bytes arrive or the connection ends; `ReadTimeout` after the read
        timeout."""
        waiter = self._waiter = self.loop.create_future()
        timer = self.loop.call_later(self.read_timeout_s, self._read_timed_out, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    @staticmethod
    def _read_timed_out(waiter: "asyncio.Future[None]") -> None:
        if not waiter.done():
            waiter.set_exception(httpx.ReadTimeout("the upstream did not answer in time"))

    async def read_head(self) -> None:
        """Until the answer's head is read."""
        while not self.head_done:
            if self.error is not None:
                raise self.error
            await self._wait()

    async def read_body(self) -> bytes | None:
        """The body's bytes that arrived since the last call (waiting for some), `None` once
        it is read to its end."""
        while True:
            if self.body:
                data = b"".join(self.body)
                self.body.clear()
                if self.held > _READ_BYTES and self.transport is not None:
                    self.transport.resume_reading()
                self.held = 0
                return data
            if self.done:
                return None
            if self.error is not None:
                raise self.error
            await self._wait()
