"""HTTP/1.1 to the upstream's origin without httpcore: keep-alive connections as asyncio
protocols, each request's head (built here) and body written in one send, the answer parsed by
httptools (llhttp, the parser uvicorn serves with), httpx's error types and `Response`.

httpcore's pool took about 300 µs of a streamed call's time before its request left for the
upstream, on the way to its first byte: an anyio lock or event per layer (pool, connection,
HTTP/1.1 state), each a step of the event loop in which any other ready work ran first, a cancel
scope for the pool's wait, a trace context per phase, and httpx's `Request` with its URL parsed
again for every call. Here a call takes an idle connection (or opens one), writes, and reads,
with no other await on the way; the answer's bytes are parsed as they arrive, in the
protocol's `data_received` (h11, in pure Python, took ~250 µs of a stream's first byte to build
the request and parse the answer's head, its caches cold between calls). What is kept from
httpx's pool: connections reused while the server keeps them (an idle one the server closed or
sent anything on, or idle for `KEEP_ALIVE_S`, is not), at most `MAX_IDLE` kept idle, the
connect and read timeouts, TLS with httpx's certificate settings, an answer's head of at most
`MAX_HEAD_BYTES`, bodies by content-length, chunked or to the connection's close, and its
errors (`ConnectTimeout`, `ConnectError`, `ReadTimeout`, `ReadError`, `WriteTimeout`,
`WriteError`, `RemoteProtocolError` for an answer that is not HTTP/1.1 or ends early,
`LocalProtocolError` for a request h11 would not have sent), which the proxy maps to 502 and
504. A connection whose answer was not read to its end (the app went away, the upstream cut it)
is closed, not reused.
"""

import asyncio
import re
import ssl
import time
from collections.abc import AsyncIterator, Callable
from typing import Final
from urllib.parse import quote

import httptools
import httpx

MAX_IDLE: Final = 100
# httpx's keep-alive expiry: servers close idle connections, and one closed while a request is
# on its way to it fails that request.
KEEP_ALIVE_S: Final = 5.0
MAX_HEAD_BYTES: Final = 100 * 1024  # as httpcore allows
# Body bytes held unread before the socket is no longer read (until they are).
_READ_BYTES: Final = 64 * 1024
# A body past this size is written with a wait for the socket to take it (under the timeout).
_DRAIN_AT: Final = 64 * 1024
# What a path keeps unquoted (RFC 3986 pchar and "/"). The path comes decoded from the app's
# request: anything else in it (a space, CR, LF, non-ASCII, a "%" itself) is percent-encoded.
_PATH_SAFE: Final = "/:@!$&'()*+,;=-._~"
# What h11 sends (RFC 9110's grammar as h11 reads it): a token for a method and a header's name,
# a value of no NUL, CR or LF and no white space at either end, a target of visible ASCII.
_TOKEN: Final = rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+"
_VALUE: Final = rb"(?:[^\x00\s]+(?:[ \t]+[^\x00\s]+)*)?"
_METHOD_RE: Final = re.compile(_TOKEN)
_TARGET_RE: Final = re.compile(rb"[\x21-\x7e]+")
_FIELD_RE: Final = re.compile(rb"%s: %s\r\n" % (_TOKEN, _VALUE))
_FIELDS_RE: Final = re.compile(rb"(?:%s: %s\r\n)*" % (_TOKEN, _VALUE))
# Answers with no body whatever their headers say (RFC 9110 §6.4.1).
_NO_BODY: Final = frozenset({204, 304})


def _too_large() -> httpx.RemoteProtocolError:
    return httpx.RemoteProtocolError(f"the answer's head is over {MAX_HEAD_BYTES} bytes")


class _Connection(asyncio.Protocol):
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

    def usable(self, now: float) -> bool:
        """Idle not too long, open, and nothing came on it since its last answer."""
        return (
            now - self.idle_since < KEEP_ALIVE_S
            and not self.lost
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


class _Body(httpx.AsyncByteStream):
    """An answer's body as it arrives; the connection goes back to the pool once it is read to
    its end, and is closed if it is closed before."""

    def __init__(self, pool: "UpstreamPool", connection: _Connection) -> None:
        self._pool = pool
        self._connection: _Connection | None = connection

    async def __aiter__(self) -> AsyncIterator[bytes]:
        connection = self._connection
        while connection is not None:
            data = await connection.read_body()
            if data is not None:
                yield data
            else:
                self._connection = None
                self._pool.give_back(connection)
                return

    async def aclose(self) -> None:
        """Close the connection unless the body was read to its end."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


class UpstreamPool:
    """Keep-alive connections to one origin (`http` or `https`)."""

    def __init__(
        self,
        origin: httpx.URL,
        *,
        ssl_context: ssl.SSLContext | None,
        connect_timeout_s: float,
        read_timeout_s: float,
    ) -> None:
        self._host = origin.host
        self._port = origin.port or (443 if origin.scheme == "https" else 80)
        self._ssl = ssl_context if origin.scheme == "https" else None
        default = (origin.scheme, self._port) in (("http", 80), ("https", 443))
        host = f"[{self._host}]" if ":" in self._host else self._host
        self._host_field = b"host: " + (host if default else f"{host}:{self._port}").encode("ascii")
        self._base_path = origin.raw_path.rstrip(b"/")
        self._connect_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self._idle: list[_Connection] = []
        self._closed = False

    def _head(
        self, method: str, path: str, query: str, headers: list[tuple[str, str]], body: bytes
    ) -> bytes:
        """The request's head, as h11 would have sent it (`LocalProtocolError` where h11 would
        have refused it)."""
        target = self._base_path + b"/" + quote(path, safe=_PATH_SAFE).encode("ascii")
        if query:
            target += b"?" + query.encode("latin-1")
        verb = method.encode("ascii", "replace")
        if not _METHOD_RE.fullmatch(verb):
            raise httpx.LocalProtocolError(f"Illegal method {method!r}")
        if not _TARGET_RE.fullmatch(target):
            raise httpx.LocalProtocolError(f"Illegal target characters in {target!r}")
        fields = b"".join(
            [name.encode("latin-1") + b": " + value.encode("latin-1") + b"\r\n"
             for name, value in headers]
        )  # fmt: skip
        if not _FIELDS_RE.fullmatch(fields):
            bad = next(f for f in fields.split(b"\r\n") if not _FIELD_RE.fullmatch(f + b"\r\n"))
            raise httpx.LocalProtocolError(f"Illegal header {bad!r}")
        if body or method in ("POST", "PUT", "PATCH"):
            fields += b"content-length: %d\r\n" % len(body)
        return b"%s %s HTTP/1.1\r\n%s\r\n%s\r\n" % (verb, target, self._host_field, fields)

    async def open(
        self,
        method: str,
        path: str,
        query: str,
        headers: list[tuple[str, str]],
        body: bytes,
        *,
        on_sent: Callable[[], None] | None = None,
    ) -> httpx.Response:
        """Send the call to the origin's base path + `/{path}` and return the answer with its
        head read, its body still to stream (close it with `aclose()`); `on_sent` is called
        once the request is written, before the answer is waited for."""
        data = self._head(method, path, query, headers, body) + body
        connection = self._take() or await self._connect()
        try:
            await connection.send(data, method == "HEAD")
            if on_sent is not None:
                on_sent()
            await connection.read_head()
        except BaseException:
            connection.close()
            raise
        return httpx.Response(
            connection.status,
            headers=connection.headers,
            stream=_Body(self, connection),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": connection.reason},
        )

    def _take(self) -> _Connection | None:
        now = time.monotonic()
        while self._idle:
            connection = self._idle.pop()  # the most recently used: the likeliest still open
            if connection.usable(now):
                return connection
            connection.close()
        return None

    def give_back(self, connection: _Connection) -> None:
        """A connection whose answer was read to its end: kept for the next call if the
        server keeps it too."""
        keep = connection.keep_alive and not connection.spoilt and not connection.lost
        if self._closed or len(self._idle) >= MAX_IDLE or not keep:
            connection.close()
            return
        connection.asked = False
        connection.idle_since = time.monotonic()
        self._idle.append(connection)

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        connection = _Connection(loop, self.read_timeout_s)
        try:
            async with asyncio.timeout(self._connect_s):
                await loop.create_connection(
                    lambda: connection, self._host, self._port, ssl=self._ssl
                )
        except TimeoutError as exc:
            raise httpx.ConnectTimeout("the upstream could not be reached in time") from exc
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        return connection

    async def aclose(self) -> None:
        """Close the idle connections; those in use close once their answers are done."""
        self._closed = True
        while self._idle:
            self._idle.pop().close()
