"""HTTP/1.1 to the upstream's origin without httpcore: keep-alive connections
(`app.proxy.connection`, answers parsed by httptools), each request's head built here as bytes
and written with its body in one send, httpx's error types and `Response`.

httpcore's pool took about 300 µs of a streamed call's time before its request left for the
upstream, on the way to its first byte: an anyio lock or event per layer (pool, connection,
HTTP/1.1 state), each a step of the event loop in which any other ready work ran first, a cancel
scope for the pool's wait, a trace context per phase, and httpx's `Request` with its URL parsed
again for every call. Here a call takes an idle connection (or opens one), writes, and reads,
with no other await on the way (and h11, which built the request and parsed the answer in pure
Python, ~250 µs of a stream's first byte with the caches cold between calls, is replaced by
bytes joined here and llhttp). What is kept from httpx's pool: connections reused while the
server keeps them (an idle one the server closed or sent anything on, or idle for
`KEEP_ALIVE_S`, is not), at most `MAX_IDLE` kept idle, the connect and read timeouts, TLS with
httpx's certificate settings, and its errors (`ConnectTimeout`, `ConnectError`, `ReadTimeout`,
`ReadError`, `WriteTimeout`, `WriteError`, `RemoteProtocolError`, and `LocalProtocolError` for
a request h11 would not have sent), which the proxy maps to 502 and 504. A connection whose
answer was not read to its end (the app went away, the upstream cut it) is closed, not reused.
"""

import asyncio
import re
import ssl
import time
from collections.abc import AsyncIterator, Callable
from typing import Final
from urllib.parse import quote

import httpx

from app.proxy.connection import Connection

MAX_IDLE: Final = 100
# httpx's keep-alive expiry: servers close idle connections, and one closed while a request is
# on its way to it fails that request.
KEEP_ALIVE_S: Final = 5.0
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


class _Body(httpx.AsyncByteStream):
    """An answer's body as it arrives; the connection goes back to the pool once it is read to
    its end, and is closed if it is closed before."""

    def __init__(self, pool: "UpstreamPool", connection: Connection) -> None:
        self._pool = pool
        self._connection: Connection | None = connection

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
        self._idle: list[Connection] = []
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

    def _take(self) -> Connection | None:
        now = time.monotonic()
        while self._idle:
            connection = self._idle.pop()  # the most recently used: the likeliest still open
            if now - connection.idle_since < KEEP_ALIVE_S and connection.reusable():
                return connection
            connection.close()
        return None

    def give_back(self, connection: Connection) -> None:
        """A connection whose answer was read to its end: kept for the next call if the
        server keeps it too."""
        keep = connection.keep_alive and connection.reusable()
        if self._closed or len(self._idle) >= MAX_IDLE or not keep:
            connection.close()
            return
        connection.asked = False
        connection.idle_since = time.monotonic()
        self._idle.append(connection)

    async def _connect(self) -> Connection:
        loop = asyncio.get_running_loop()
        connection = Connection(loop, self.read_timeout_s)
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
