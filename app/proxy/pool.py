"""HTTP/1.1 to the upstream's origin without httpcore: keep-alive connections on asyncio streams,
each request's head and body written in one send, the answer read by h11 (the parser httpcore
uses), httpx's error types and `Response`.

httpcore's pool took about 300 µs of a streamed call's time before its request left for the
upstream, on the way to its first byte: an anyio lock or event per layer (pool, connection,
HTTP/1.1 state), each a step of the event loop in which any other ready work ran first, a cancel
scope for the pool's wait, a trace context per phase, and httpx's `Request` with its URL parsed
again for every call. Here a call takes an idle connection (or opens one), writes, and reads,
with no other await on the way. What is kept from httpx's pool: connections reused while the
server keeps them (an idle one the server closed, or idle for `KEEP_ALIVE_S`, is not), at most
`MAX_IDLE` kept idle, the connect and read timeouts, TLS with httpx's certificate settings,
and its errors (`ConnectTimeout`, `ConnectError`, `ReadTimeout`, `ReadError`, `WriteTimeout`,
`WriteError`, `RemoteProtocolError`), which the proxy maps to 502 and 504. A connection whose
answer was not read to its end (the app went away, the upstream cut it) is closed, not reused.
"""

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Callable
from typing import Final
from urllib.parse import quote

import h11
import httpx

MAX_IDLE: Final = 100
# httpx's keep-alive expiry: servers close idle connections, and one closed while a request is
# on its way to it fails that request.
KEEP_ALIVE_S: Final = 5.0
_MAX_HEAD_BYTES: Final = 100 * 1024  # as httpcore allows
_READ_BYTES: Final = 64 * 1024
# A body past this size is written with a wait for the socket to take it (under the timeout).
_DRAIN_AT: Final = 64 * 1024
# What a path keeps unquoted (RFC 3986 pchar and "/"). The path comes decoded from the app's
# request: anything else in it (a space, CR, LF, non-ASCII, a "%" itself) is percent-encoded.
_PATH_SAFE: Final = "/:@!$&'()*+,;=-._~"


class _Connection:
    """One HTTP/1.1 connection: its streams and its h11 state."""

    __slots__ = ("idle_since", "parser", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.parser = h11.Connection(h11.CLIENT, max_incomplete_event_size=_MAX_HEAD_BYTES)
        self.idle_since = 0.0

    def usable(self, now: float) -> bool:
        """Idle not too long, and neither closed nor readable (the server said nothing asked)."""
        return (
            now - self.idle_since < KEEP_ALIVE_S
            and not self.writer.is_closing()
            and not self.reader.at_eof()
            and not self.reader._buffer  # type: ignore[attr-defined] # bytes nobody asked for
        )

    def close(self) -> None:
        """Close at once (the transport finishes in the background)."""
        self.writer.close()

    async def read_event(self, timeout_s: float) -> h11.Event:
        """The next h11 event, reading from the socket as needed; httpx's errors."""
        try:
            event = self.parser.next_event()
            while event is h11.NEED_DATA:
                async with asyncio.timeout(timeout_s):
                    data = await self.reader.read(_READ_BYTES)
                self.parser.receive_data(data)
                event = self.parser.next_event()
        except TimeoutError as exc:
            raise httpx.ReadTimeout("the upstream did not answer in time") from exc
        except OSError as exc:
            raise httpx.ReadError(str(exc) or type(exc).__name__) from exc
        except h11.RemoteProtocolError as exc:
            raise httpx.RemoteProtocolError(str(exc)) from exc
        if isinstance(event, h11.ConnectionClosed) or not isinstance(event, h11.Event):
            # Closed, or (PAUSED) more after the answer's end: nothing an answer may do.
            raise httpx.RemoteProtocolError("the upstream closed the connection mid-answer")
        return event


class _Body(httpx.AsyncByteStream):
    """An answer's body as it arrives; the connection goes back to the pool once it is read to
    its end, and is closed if it is closed before."""

    def __init__(self, pool: "UpstreamPool", connection: _Connection) -> None:
        self._pool = pool
        self._connection: _Connection | None = connection

    async def __aiter__(self) -> AsyncIterator[bytes]:
        connection = self._connection
        while connection is not None:
            event = await connection.read_event(self._pool.read_timeout_s)
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
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
        self._host_header = (host if default else f"{host}:{self._port}").encode("ascii")
        self._base_path = origin.raw_path.rstrip(b"/")
        self._connect_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self._idle: list[_Connection] = []
        self._closed = False

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
        target = self._base_path + b"/" + quote(path, safe=_PATH_SAFE).encode("ascii")
        if query:
            target += b"?" + query.encode("latin-1")
        sent = [(b"host", self._host_header)]
        sent += [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers]
        if body or method in ("POST", "PUT", "PATCH"):
            sent.append((b"content-length", str(len(body)).encode("ascii")))
        try:
            request = h11.Request(method=method, target=target, headers=sent)
        except h11.LocalProtocolError as exc:  # what httpx would not send either
            raise httpx.LocalProtocolError(str(exc)) from exc
        connection = self._take() or await self._connect()
        try:
            data = connection.parser.send(request) or b""
            if body:
                data += connection.parser.send(h11.Data(data=body)) or b""
            data += connection.parser.send(h11.EndOfMessage()) or b""
            await self._write(connection, data)
            if on_sent is not None:
                on_sent()
            event = await connection.read_event(self.read_timeout_s)
            while isinstance(event, h11.InformationalResponse):
                event = await connection.read_event(self.read_timeout_s)
        except BaseException:
            connection.close()
            raise
        if not isinstance(event, h11.Response):  # h11 gives nothing else here
            connection.close()
            raise httpx.RemoteProtocolError(f"unexpected {type(event).__name__}")
        return httpx.Response(
            event.status_code,
            headers=list(event.headers),
            stream=_Body(self, connection),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": bytes(event.reason)},
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
        parser = connection.parser
        if self._closed or len(self._idle) >= MAX_IDLE or parser.our_state is not h11.DONE:
            connection.close()
            return
        if parser.their_state is not h11.DONE:  # the server closes it (Connection: close)
            connection.close()
            return
        parser.start_next_cycle()
        connection.idle_since = time.monotonic()
        self._idle.append(connection)

    async def _connect(self) -> _Connection:
        try:
            async with asyncio.timeout(self._connect_s):
                reader, writer = await asyncio.open_connection(
                    self._host, self._port, ssl=self._ssl, limit=_READ_BYTES
                )
        except TimeoutError as exc:
            raise httpx.ConnectTimeout("the upstream could not be reached in time") from exc
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        return _Connection(reader, writer)

    async def _write(self, connection: _Connection, data: bytes) -> None:
        writer = connection.writer
        try:
            writer.write(data)
            if writer.transport.get_write_buffer_size() > _DRAIN_AT:
                async with asyncio.timeout(self.read_timeout_s):
                    await writer.drain()
        except TimeoutError as exc:
            raise httpx.WriteTimeout("the upstream did not take the request in time") from exc
        except OSError as exc:
            raise httpx.WriteError(str(exc) or type(exc).__name__) from exc

    async def aclose(self) -> None:
        """Close the idle connections; those in use close once their answers are done."""
        self._closed = True
        while self._idle:
            self._idle.pop().close()
