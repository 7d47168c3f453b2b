"""The upstream client's network on asyncio streams (`app.proxy.wire`), under httpx, against
servers on loopback: a request's head and body in one send, its answer back, httpx's timeout
and connection errors, an idle connection the server closed not reused, and TLS."""

import asyncio
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from app.embedded import free_port
from app.proxy.wire import StreamsBackend, on_streams

ANSWER = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok"
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def _server(handler: Handler, context: ssl.SSLContext | None = None) -> AsyncIterator[str]:
    tasks: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tasks.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass  # the client went: nothing to answer
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"{'https' if context else 'http'}://127.0.0.1:{port}"
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


def _client(**options: object) -> httpx.AsyncClient:
    client = httpx.AsyncClient(timeout=httpx.Timeout(2.0, read=0.5), **options)  # type: ignore[arg-type]
    on_streams(client)
    return client


async def _answer_each(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    # One answer per request (head and a body of its content-length), until the client goes.
    while head := await reader.readuntil(b"\r\n\r\n") if not reader.at_eof() else b"":
        size = next(
            (int(line.split(b":")[1]) for line in head.lower().split(b"\r\n")
             if line.startswith(b"content-length:")),
            0,
        )  # fmt: skip
        await reader.readexactly(size)
        writer.write(ANSWER)
        await writer.drain()


async def test_unit_a_request_goes_out_in_one_send_and_its_answer_comes_back() -> None:
    first_reads: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first_reads.append(await reader.read(65536))  # what the first segment(s) brought
        writer.write(ANSWER)
        await writer.drain()
        writer.close()

    async with _server(handler) as url, _client() as client:
        assert isinstance(client._transport._pool._network_backend, StreamsBackend)  # type: ignore[attr-defined]
        answer = await client.post(f"{url}/v1/chat/completions", content=b'{"model":"m"}')
    assert (answer.status_code, answer.text) == (200, "ok")
    (first,) = first_reads
    assert first.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
    assert first.endswith(b'\r\n\r\n{"model":"m"}')  # the head and the body in one send


async def test_unit_timeouts_and_refused_connections_are_httpx_errors() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        await asyncio.sleep(5)

    async with _server(silent) as url, _client() as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.post(f"{url}/v1/x", content=b"{}")
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{free_port()}/v1/x")


async def test_unit_an_idle_connection_the_server_closed_is_not_reused() -> None:
    connections = 0

    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.write(ANSWER)  # kept alive as far as the client knows, then closed
        await writer.drain()
        writer.close()

    async with _server(once) as url, _client() as client:
        assert (await client.get(f"{url}/a")).text == "ok"
        await asyncio.sleep(0.05)  # the server's close arrives
        assert (await client.get(f"{url}/b")).text == "ok"
    assert connections == 2


def _self_signed(folder: Path) -> tuple[Path, Path]:
    # A self-signed certificate for 127.0.0.1 and its key.
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return cert, key


async def test_unit_tls_to_the_upstream(tmp_path: Path) -> None:
    cert, key = await asyncio.to_thread(_self_signed, tmp_path)
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(cert, key)
    trusted = ssl.create_default_context(cafile=str(cert))
    async with _server(_answer_each, server_side) as url, _client(verify=trusted) as client:
        answers = [await client.post(f"{url}/v1/x", content=b"{}") for _ in range(2)]
        untrusted = _client()
        with pytest.raises(httpx.ConnectError):
            await untrusted.get(f"{url}/v1/x")
        await untrusted.aclose()
    assert [(a.status_code, a.text) for a in answers] == [(200, "ok"), (200, "ok")]
