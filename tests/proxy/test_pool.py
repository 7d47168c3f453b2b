"""The proxy's own HTTP/1.1 pool to the upstream (`app.proxy.pool`), through `Upstream`, against
servers on loopback: a request's head and body in one send, its answer back, connections kept
alive and reused, httpx's timeout and connection errors, an idle connection the server closed
not reused, an answer cut off midway, a path's unsafe characters encoded, and TLS."""

import asyncio
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from app.embedded import free_port
from app.proxy.pool import UpstreamPool
from app.proxy.upstream import Upstream

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


def _upstream(url: str) -> Upstream:
    return Upstream(f"{url}/v1", connect_timeout_s=2.0, read_timeout_s=0.5)


async def _call(upstream: Upstream, path: str = "chat/completions", body: bytes = b"{}") -> str:
    answer = await upstream.open("POST", path, "", [("content-type", "application/json")], body)
    try:
        return (await answer.aread()).decode()
    finally:
        await answer.aclose()


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

    async with _server(handler) as url:
        upstream = _upstream(url)
        assert isinstance(upstream.transport(), UpstreamPool)
        assert await _call(upstream, body=b'{"model":"m"}') == "ok"
        await upstream.close()
    (first,) = first_reads
    assert first.startswith(b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:")
    assert b"\r\ncontent-length: 13\r\n" in first
    assert first.endswith(b'\r\n\r\n{"model":"m"}')  # the head and the body in one send


async def test_unit_connections_are_kept_alive_and_a_path_is_encoded() -> None:
    connections, targets = 0, []

    async def answer_each(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while head := await reader.readuntil(b"\r\n\r\n") if not reader.at_eof() else b"":
            targets.append(head.split(b" ")[1])
            await reader.readexactly(2)  # the body: {}
            writer.write(ANSWER)
            await writer.drain()

    async with _server(answer_each) as url:
        upstream = _upstream(url)
        said = [await _call(upstream, path) for path in ("a", "b c\r\nx: y", "é/d%2F")]
        await upstream.close()
    assert said == ["ok"] * 3
    assert connections == 1
    assert targets == [b"/v1/a", b"/v1/b%20c%0D%0Ax:%20y", b"/v1/%C3%A9/d%252F"]


async def test_unit_on_sent_is_called_once_the_request_is_out_before_the_answer() -> None:
    # The proxy begins the call's record in `on_sent`, while the upstream works: the server
    # answers only once it has the whole request and `on_sent` was called.
    sent = asyncio.Event()
    received: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await reader.readuntil(b"\r\n\r\n") + await reader.readexactly(2))
        await asyncio.wait_for(sent.wait(), timeout=2)
        writer.write(ANSWER)
        await writer.drain()

    async with _server(handler) as url:
        upstream = _upstream(url)
        answer = await upstream.open("POST", "chat/completions", "", [], b"{}", on_sent=sent.set)
        assert (await answer.aread()).decode() == "ok"
        await answer.aclose()
        await upstream.close()
    assert received[0].endswith(b"\r\n\r\n{}")


async def test_unit_timeouts_and_refused_connections_are_httpx_errors() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        await asyncio.sleep(5)

    async with _server(silent) as url:
        upstream = _upstream(url)
        with pytest.raises(httpx.ReadTimeout):
            await _call(upstream)
        await upstream.close()
    refused = _upstream(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(httpx.ConnectError):
        await _call(refused)
    await refused.close()


async def test_unit_an_answer_cut_off_midway_is_an_error_and_its_connection_not_reused() -> None:
    connections = 0

    async def cut_then_whole(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(2)
        if connections == 1:
            writer.write(ANSWER[:-1])  # one byte short of its content-length, then closed
            await writer.drain()
            return
        writer.write(ANSWER)
        await writer.drain()
        await reader.read(1)

    async with _server(cut_then_whole) as url:
        upstream = _upstream(url)
        with pytest.raises(httpx.RemoteProtocolError):
            await _call(upstream)
        assert await _call(upstream) == "ok"
        await upstream.close()
    assert connections == 2


async def test_unit_an_idle_connection_the_server_closed_is_not_reused() -> None:
    connections = 0

    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(2)
        writer.write(ANSWER)  # kept alive as far as the client knows, then closed
        await writer.drain()
        writer.close()

    async with _server(once) as url:
        upstream = _upstream(url)
        assert await _call(upstream, "a") == "ok"
        await asyncio.sleep(0.05)  # the server's close arrives
        assert await _call(upstream, "b") == "ok"
        await upstream.close()
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

    def pool(url: str, context: ssl.SSLContext) -> UpstreamPool:
        origin = httpx.URL(f"{url}/v1")
        return UpstreamPool(origin, ssl_context=context, connect_timeout_s=2, read_timeout_s=1)

    async def call(upstream: UpstreamPool) -> tuple[int, bytes]:
        answer = await upstream.open("POST", "x", "", [], b"{}")
        return answer.status_code, await answer.aread()

    async with _server(_answer_each, server_side) as url:
        upstream = pool(url, trusted)
        answers = [await call(upstream) for _ in range(2)]
        await upstream.aclose()
        untrusted = pool(url, ssl.create_default_context())
        with pytest.raises(httpx.ConnectError):
            await call(untrusted)
    assert answers == [(200, b"ok"), (200, b"ok")]


async def test_unit_an_environment_proxy_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[bytes] = []

    async def forward_proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        asked.append((await reader.readuntil(b"\r\n\r\n")).split(b"\r\n")[0])
        await reader.readexactly(2)
        writer.write(ANSWER)
        await writer.drain()

    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    async with _server(forward_proxy) as proxy_url:
        monkeypatch.setenv("HTTP_PROXY", proxy_url)
        upstream = _upstream("http://upstream.invalid:8080")
        assert not isinstance(upstream.transport(), UpstreamPool)  # httpx's, through the proxy
        assert await _call(upstream) == "ok"
        await upstream.close()
    assert asked == [b"POST http://upstream.invalid:8080/v1/chat/completions HTTP/1.1"]


def _serve_in_turn(answers: list[bytes], connections: list[int]) -> Handler:
    # Each request answered with the next of `answers` (raw bytes); an answer ending in
    # b"<close>" is sent without it and its connection closed. `connections` counts them.
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        while answers and not reader.at_eof():
            head = await reader.readuntil(b"\r\n\r\n")
            if b"content-length: 2\r\n" in head:
                await reader.readexactly(2)
            answer = answers.pop(0)
            writer.write(answer.removesuffix(b"<close>"))
            await writer.drain()
            if answer.endswith(b"<close>"):
                return

    return handler


async def test_unit_chunked_to_the_close_and_informational_answers_are_read_whole() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n3\r\n!!!\r\n0\r\n\r\n"
    )
    connections: list[int] = []
    answers = [
        b"HTTP/1.1 100 Continue\r\n\r\n" + chunked,  # kept alive
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nto the close<close>",
        b"HTTP/1.1 204 No Content\r\n\r\n",  # no body, and the connection kept
        ANSWER,
    ]
    async with _server(_serve_in_turn(answers, connections)) as url:
        upstream = _upstream(url)
        said = [await _call(upstream) for _ in range(4)]
        await upstream.close()
    assert said == ["ok!!!", "to the close", "", "ok"]
    assert len(connections) == 2  # a new one after the body that ended with its connection


async def test_unit_an_answer_to_head_is_its_head() -> None:
    connections: list[int] = []
    answers = [b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n", ANSWER]
    async with _server(_serve_in_turn(answers, connections)) as url:
        pool = UpstreamPool(
            httpx.URL(f"{url}/v1"), ssl_context=None, connect_timeout_s=2, read_timeout_s=0.5
        )
        answer = await pool.open("HEAD", "x", "", [], b"")
        assert (answer.status_code, answer.headers["content-length"], await answer.aread()) == (
            200,
            "10",
            b"",
        )
        second = await pool.open("GET", "x", "", [], b"")
        assert await second.aread() == b"ok"
        await pool.aclose()
    assert len(connections) == 1  # kept alive: no body follows the head


async def test_unit_bytes_after_an_answer_keep_its_connection_from_reuse() -> None:
    connections: list[int] = []
    answers = [ANSWER + b"HTTP/1.1 200 OK\r\n", ANSWER, ANSWER]
    async with _server(_serve_in_turn(answers, connections)) as url:
        upstream = _upstream(url)
        assert [await _call(upstream) for _ in range(2)] == ["ok", "ok"]
        await upstream.close()
    assert len(connections) == 2


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nno colon here\r\ncontent-length: 2\r\n\r\nok",
        b"SMTP ready\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok",
        # A head over the bound, in one send with its body and in pieces never finished.
        b"HTTP/1.1 200 OK\r\nx-big: " + b"a" * 110_000 + b"\r\ncontent-length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\n" + b"x-many: a\r\n" * 12_000,
    ],
    ids=["a-bad-header", "not-http", "two-lengths", "a-head-too-large", "a-head-never-ending"],
)
async def test_unit_a_malformed_answer_is_a_remote_protocol_error(answer: bytes) -> None:
    connections: list[int] = []
    async with _server(_serve_in_turn([answer, ANSWER], connections)) as url:
        upstream = _upstream(url)
        with pytest.raises(httpx.RemoteProtocolError):
            await _call(upstream)
        assert await _call(upstream) == "ok"  # on a new connection
        await upstream.close()
    assert len(connections) == 2


async def test_unit_large_bodies_go_and_come_whole() -> None:
    big = bytes(range(256)) * 8192  # 2 MiB each way: the socket's buffers fill and drain
    answers: list[bytes] = []

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        size = int(head.split(b"content-length: ")[1].split(b"\r\n")[0])
        body = await reader.readexactly(size)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size + body)
        await writer.drain()
        answers.append(body)

    async with _server(echo) as url:
        upstream = _upstream(url)
        answer = await upstream.open("POST", "x", "", [], big)
        pieces = [piece async for piece in answer.aiter_raw()]
        await upstream.close()
    assert b"".join(pieces) == big == answers[0]
    assert len(pieces) > 1  # passed on as it came


@pytest.mark.parametrize(
    ("path", "query", "headers"),
    [
        ("x", "a b", []),
        ("x", "", [("x-bad", "a\nb")]),
        ("x", "", [("x-bad", " padded")]),
        ("x", "", [("bad name", "v")]),
    ],
)
async def test_unit_a_request_h11_would_refuse_is_a_local_protocol_error_and_not_sent(
    path: str, query: str, headers: list[tuple[str, str]]
) -> None:
    connections: list[int] = []
    async with _server(_serve_in_turn([ANSWER], connections)) as url:
        upstream = _upstream(url)
        with pytest.raises(httpx.LocalProtocolError):
            await upstream.open("POST", path, query, headers, b"{}")
        await upstream.close()
    assert connections == []
