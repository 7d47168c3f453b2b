"""The network under the upstream's `httpx` client: httpcore's connections on asyncio streams.

httpcore's default backend (anyio) cost the proxy about a fifth of its CPU per call: a cancel
scope for every read and write, anyio's typed-attribute table rebuilt whenever the pool asks
an idle connection whether the server closed it, and a `poll()` for that answer. Here a read or
write is the stream's own call under `asyncio.timeout` (none when no timeout is set), the
question is answered from the stream's state, and a request's head and body go out in one send
(they are held until the connection reads the answer, or until 64 KiB wait), so the upstream
gets one segment, not two (with Nagle's algorithm on its side, the second could wait for a
delayed ACK). httpx keeps the pooling, the timeouts and the error types: this module raises
httpcore's, which httpx maps to its own."""

import asyncio
import socket
import ssl
from collections.abc import Iterable
from typing import Any, Final

import httpcore
import httpx

# Bytes held before a write goes out without waiting for the read that follows it.
_HOLD_BYTES: Final = 64 * 1024


class _Stream(httpcore.AsyncNetworkStream):
    """One connection: asyncio's reader and writer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._held: list[bytes] = []
        self._held_bytes = 0

    def _send_held(self) -> None:
        if self._held:
            self._writer.write(b"".join(self._held) if len(self._held) > 1 else self._held[0])
            self._held.clear()
            self._held_bytes = 0

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        """Up to `max_bytes` (b"" at the end); httpcore's `ReadTimeout` or `ReadError`."""
        try:
            self._send_held()
            if timeout is None:
                return await self._reader.read(max_bytes)
            async with asyncio.timeout(timeout):
                return await self._reader.read(max_bytes)
        except TimeoutError as exc:
            raise httpcore.ReadTimeout(str(exc)) from exc
        except OSError as exc:
            raise httpcore.ReadError(str(exc) or type(exc).__name__) from exc

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Hold `buffer` for the next read's send (see the module docstring); past 64 KiB, send
        and wait for the socket to take it. httpcore's `WriteTimeout` or `WriteError`."""
        if not buffer:
            return
        self._held.append(buffer)
        self._held_bytes += len(buffer)
        if self._held_bytes < _HOLD_BYTES:
            return
        try:
            self._send_held()
            async with asyncio.timeout(timeout):
                await self._writer.drain()
        except TimeoutError as exc:
            raise httpcore.WriteTimeout(str(exc)) from exc
        except OSError as exc:
            raise httpcore.WriteError(str(exc) or type(exc).__name__) from exc

    async def aclose(self) -> None:
        """Close the connection (the transport finishes it in the background)."""
        self._held.clear()
        self._writer.close()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's signature
    ) -> httpcore.AsyncNetworkStream:
        """TLS on this connection; httpcore's `ConnectTimeout` or `ConnectError`."""
        try:
            self._send_held()
            await self._writer.start_tls(
                ssl_context, server_hostname=server_hostname, ssl_handshake_timeout=timeout
            )
        except TimeoutError as exc:
            await self.aclose()
            raise httpcore.ConnectTimeout(str(exc)) from exc
        except (OSError, ssl.SSLError) as exc:
            await self.aclose()
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        return self

    def get_extra_info(self, info: str) -> Any:
        """What httpcore asks: `is_readable` (an idle connection the server closed, or that
        failed, is not reused), `ssl_object`, `client_addr`, `server_addr`, `socket`."""
        if info == "is_readable":
            return self._reader.at_eof() or self._writer.is_closing()
        name = {"client_addr": "sockname", "server_addr": "peername"}.get(info, info)
        if name in ("ssl_object", "sockname", "peername", "socket"):
            return self._writer.get_extra_info(name)
        return None


def _options(writer: asyncio.StreamWriter, options: Iterable[Any] | None) -> None:
    sock: socket.socket | None = writer.get_extra_info("socket")
    for option in options or ():
        if sock is not None:
            sock.setsockopt(*option)


class StreamsBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend on asyncio streams (TCP_NODELAY is asyncio's default)."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's signature
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """A connection to `host:port`; httpcore's `ConnectTimeout` or `ConnectError`."""
        local = (local_address, 0) if local_address else None
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(host, port, local_addr=local)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(str(exc)) from exc
        except OSError as exc:
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        _options(writer, socket_options)
        return _Stream(reader, writer)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's signature
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """A connection to a Unix socket; httpcore's `ConnectTimeout` or `ConnectError`."""
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_unix_connection(path)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(str(exc)) from exc
        except OSError as exc:
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        _options(writer, socket_options)
        return _Stream(reader, writer)

    async def sleep(self, seconds: float) -> None:
        """Sleep (httpcore's retries between connection attempts)."""
        await asyncio.sleep(seconds)


def on_streams(client: httpx.AsyncClient) -> None:
    """Put `client`'s direct connections on this module's network. httpx takes no network
    backend, so it is set on its pool, when the pool is the one expected; connections through
    an environment's proxy keep httpcore's own."""
    pool = getattr(getattr(client, "_transport", None), "_pool", None)
    if type(pool) is httpcore.AsyncConnectionPool and hasattr(pool, "_network_backend"):
        pool._network_backend = StreamsBackend()
