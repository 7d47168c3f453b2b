"""Slow clients are cut off and connections are bounded, against the served process (the
bounds live in its HTTP protocol): real sockets on 127.0.0.1, the session's real broker."""

import asyncio
import gc
import json
import re
import signal
import socket
import statistics
import time
import uuid
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from app.api.http_limits import ABORT, limited_protocol
from app.metrics import ServiceMetrics
from app.settings import Settings
from tests.helpers.metrics import memory_mib, metric
from tests.helpers.service import Launch, LiveService, running_service

READ_TIMEOUT_S = 2.0
KEEP_ALIVE_S = 6.0
WRITE_TIMEOUT_S = 2.0
# Requests one connection may have waiting behind the one being answered (app.api.http_limits).
PIPELINE_DEPTH = 16
MAX_CONNECTIONS = 20
# Time allowed past a bound for the event loop and this machine to act on it.
MARGIN_S = 4.0
EVENT = {"user_id": "u1", "model": "m", "prompt": "p", "response": "r"}


@pytest.fixture(scope="module")
def slow_bound(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveService]:
    """The served process with a short read timeout."""
    with running_service(
        kafka_bootstrap,
        tmp_path_factory.mktemp("slow-bound"),
        request_read_timeout_s=str(READ_TIMEOUT_S),
        keep_alive_s=str(KEEP_ALIVE_S),
        write_timeout_s=str(WRITE_TIMEOUT_S),
    ) as service:
        yield service


@pytest.fixture(scope="module")
def few_connections(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveService]:
    """The served process allowing few connections."""
    with running_service(
        kafka_bootstrap,
        tmp_path_factory.mktemp("few-connections"),
        max_connections=str(MAX_CONNECTIONS),
        request_read_timeout_s=str(READ_TIMEOUT_S),
        keep_alive_s=str(KEEP_ALIVE_S),
    ) as service:
        yield service


def port_of(service: LiveService) -> int:
    return int(service.url.rsplit(":", 1)[1])


def scraped(service: LiveService, name: str) -> float:
    """The metric `name` of the served process now (0 before it is first counted)."""
    return metric(httpx.get(f"{service.url}/metrics", timeout=10).text, name, default=0.0)


def assert_error_answer(answer: bytes, status_line: str, code: str, reason: str) -> dict[str, str]:
    """The answer is `status_line` with the contract's error body; its headers."""
    head, _, body = answer.partition(b"\r\n\r\n")
    first, *header_lines = head.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in header_lines)
    assert first == status_line, answer
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert headers["x-content-type-options"] == "nosniff"
    error = json.loads(body)["error"]
    assert error["code"] == code
    assert reason in error["message"]
    assert error["details"] == []
    assert error["request_id"] == headers["x-request-id"]
    return headers


@dataclass
class Dribbled:
    """What one slow client saw: the answer, and when (after its first byte) it was closed."""

    answer: bytes
    closed_after_s: float | None  # None: still open when the client gave up


async def dribble(port: int, head: bytes, payload: bytes, *, give_up_s: float) -> Dribbled:
    """Send `head` at once, then `payload` one byte every 0.3 s, reading all the while, until
    the service closes the connection or `give_up_s` have passed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answer = bytearray()
    started = time.monotonic()
    closed_at: float | None = None

    async def read() -> None:
        nonlocal closed_at
        try:
            while chunk := await reader.read(65536):
                answer.extend(chunk)
        except ConnectionError:
            pass
        closed_at = time.monotonic()

    reading = asyncio.create_task(read())
    try:
        if head:
            writer.write(head)
        for byte in payload:
            if reading.done() or time.monotonic() - started > give_up_s:
                break
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.wait([reading], timeout=0.3)
    except ConnectionError:
        pass  # closed while sending: the reader has what came before
    remaining = max(0.0, give_up_s - (time.monotonic() - started))
    await asyncio.wait([reading], timeout=remaining)
    reading.cancel()
    writer.close()
    closed_after = None if closed_at is None else closed_at - started
    return Dribbled(bytes(answer), closed_after)


async def test_slow_heads_and_bodies_are_cut_off_while_others_are_served(
    slow_bound: LiveService,
) -> None:
    clients = 150  # of each kind: 300 slow connections, as in the issue
    port = port_of(slow_bound)
    rss_before = memory_mib(slow_bound.process.pid)["VmRSS"]
    timed_out_before = scraped(slow_bound, "rg_http_requests_timed_out_total")
    # A head of some 100 bytes: at one byte per 0.3 s it would take half a minute.
    slow_head = (
        b"POST /audit HTTP/1.1\r\nHost: rg\r\nContent-Type: application/json\r\n"
        b"X-Filler: " + b"f" * 40 + b"\r\nContent-Length: 2\r\n\r\n{}"
    )
    body_head = (
        b"POST /audit HTTP/1.1\r\nHost: rg\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n"
    )
    give_up_s = READ_TIMEOUT_S + MARGIN_S
    slow = [
        *(dribble(port, b"", slow_head, give_up_s=give_up_s) for _ in range(clients)),
        *(dribble(port, body_head, b"x" * 1000, give_up_s=give_up_s) for _ in range(clients)),
    ]
    statuses: list[int] = []
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=slow_bound.url, timeout=10) as client:
        everyone = asyncio.gather(*slow)
        rss_peak = rss_before
        while not everyone.done():  # ordinary requests on other connections meanwhile
            sent = time.monotonic()
            statuses.append((await client.post("/audit", json=EVENT)).status_code)
            latencies.append(time.monotonic() - sent)
            rss_peak = max(rss_peak, memory_mib(slow_bound.process.pid)["VmRSS"])
            await asyncio.sleep(0.1)
        dribbled = await everyone

    cut = [d.closed_after_s for d in dribbled]
    open_still = sum(1 for after in cut if after is None)
    assert open_still == 0, f"{open_still} of {len(cut)} slow clients were never cut off"
    times = sorted(after for after in cut if after is not None)
    print(
        f"\n{len(times)} slow clients cut off after (s): min {times[0]:.2f}, "
        f"median {statistics.median(times):.2f}, max {times[-1]:.2f} "
        f"(bound {READ_TIMEOUT_S}s); {len(statuses)} ordinary POST /audit meanwhile "
        f"(median {statistics.median(latencies) * 1000:.0f} ms, "
        f"max {max(latencies) * 1000:.0f} ms); "
        f"service RSS {rss_before:.1f} MiB before, {rss_peak:.1f} MiB at most"
    )
    assert times[0] >= READ_TIMEOUT_S - 0.1  # not before the bound
    assert times[-1] < READ_TIMEOUT_S + MARGIN_S
    for i, one in enumerate(dribbled):
        part = "head" if i < clients else "body"
        assert_error_answer(
            one.answer,
            "HTTP/1.1 408 Request Timeout",
            "request_timeout",
            f"request's {part} was not received within {READ_TIMEOUT_S:g}s",
        )
    assert statuses
    assert set(statuses) == {201}
    assert scraped(slow_bound, "rg_http_requests_timed_out_total") - timed_out_before == 2 * clients
    assert slow_bound.log().count("request cut off with 408") == 2 * clients


def test_a_keep_alive_connection_idle_past_the_read_timeout_is_still_served(
    slow_bound: LiveService,
) -> None:
    # The read timeout runs from a request's first byte, not between requests.
    request = b"GET /healthz HTTP/1.1\r\nHost: rg\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port_of(slow_bound)), timeout=10) as connection:
        connection.sendall(request)
        assert read_answer(connection).startswith(b"HTTP/1.1 200 OK")
        time.sleep(READ_TIMEOUT_S + 1)
        connection.sendall(request)
        assert read_answer(connection).startswith(b"HTTP/1.1 200 OK")


async def test_an_answer_longer_than_the_read_timeout_is_not_cut(
    slow_bound: LiveService,
) -> None:
    # The request is whole at once; its answer, a stream, then runs past the read timeout.
    user = f"long-answer-{uuid.uuid4().hex}"
    async with (
        httpx.AsyncClient(base_url=slow_bound.url, timeout=30) as client,
        client.stream("GET", "/messages/stream", params={"key": user}) as response,
    ):
        assert response.status_code == 200
        lines = response.aiter_lines()
        assert (await anext(lines)).startswith(":")  # subscribed
        await asyncio.sleep(READ_TIMEOUT_S + 1)
        receipt = (await client.post("/audit", json={**EVENT, "user_id": user})).json()

        async def next_data() -> str:
            async for line in lines:
                if line.startswith("data:"):
                    return line
            return "(the stream ended)"

        data = await asyncio.wait_for(next_data(), 20)
    assert receipt["event_id"] in data


def test_a_connection_that_sends_nothing_is_closed_at_the_first_request_deadline(
    few_connections: LiveService,
) -> None:
    # A new connection has the shorter of RG_REQUEST_READ_TIMEOUT_S and RG_KEEP_ALIVE_S to
    # begin its first request; it is closed without an answer.
    with socket.create_connection(("127.0.0.1", port_of(few_connections)), timeout=30) as idle:
        started = time.monotonic()
        assert idle.recv(65536) == b""
        closed_after = time.monotonic() - started
    print(f"\nan idle new connection was closed after {closed_after:.2f}s (read timeout 2s)")
    assert READ_TIMEOUT_S - 0.5 <= closed_after < KEEP_ALIVE_S - 1


def drip_blank_lines(
    port: int, request: bytes, *, every_s: float, give_up_s: float
) -> float | None:
    """On a new connection, send `request` (when given) and read its answer, then a blank line
    every `every_s`: seconds until the service closed the connection without a word (None:
    still open after `give_up_s`)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        if request:
            connection.sendall(request)
            assert read_answer(connection).startswith(b"HTTP/1.1 200 OK")
        started = time.monotonic()
        connection.settimeout(every_s)
        while time.monotonic() - started < give_up_s:
            try:
                connection.sendall(b"\r\n")
                assert connection.recv(65536) == b""
            except TimeoutError:
                continue
            except OSError:  # reset
                pass
            return time.monotonic() - started
    return None


def test_blank_lines_do_not_keep_an_idle_connection_open(few_connections: LiveService) -> None:
    # Two bytes now and then started the idle time anew: a slot held for good.
    port = port_of(few_connections)
    give_up_s = KEEP_ALIVE_S + MARGIN_S
    request = b"GET /healthz HTTP/1.1\r\nHost: rg\r\n\r\n"
    after_a_request = drip_blank_lines(port, request, every_s=2.0, give_up_s=give_up_s)
    before_any = drip_blank_lines(port, b"", every_s=1.0, give_up_s=give_up_s)
    print(f"\ndripping blank lines: closed after {after_a_request}s and {before_any}s")
    assert after_a_request is not None, "blank lines kept an idle connection open"
    assert KEEP_ALIVE_S - 0.5 <= after_a_request < give_up_s
    assert before_any is not None, "blank lines kept a new connection open"
    assert READ_TIMEOUT_S - 0.5 <= before_any < KEEP_ALIVE_S - 1


def test_more_blank_lines_than_a_request_may_begin_with_get_400(
    few_connections: LiveService,
) -> None:
    with socket.create_connection(("127.0.0.1", port_of(few_connections)), timeout=10) as one:
        one.sendall(b"\r\n" * 100)
        answer = read_to_end(one)
    assert_error_answer(answer, "HTTP/1.1 400 Bad Request", "bad_request", "blank lines")


def read_answer(connection: socket.socket) -> bytes:
    """One whole answer (by its Content-Length), or what came before the service closed."""
    answer = b""
    while True:
        head, found, body = answer.partition(b"\r\n\r\n")
        if found:
            length = re.search(rb"content-length: (\d+)", head, re.IGNORECASE)
            if length and len(body) >= int(length[1]):
                return answer
        chunk = connection.recv(65536)
        if not chunk:
            return answer
        answer += chunk


def get_healthz(port: int) -> tuple[socket.socket, bytes]:
    """A GET /healthz on a new keep-alive connection: the connection and the answer."""
    connection = socket.create_connection(("127.0.0.1", port), timeout=10)
    connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: rg\r\n\r\n")
    return connection, read_answer(connection)


def read_to_end(connection: socket.socket) -> bytes:
    answer = b""
    while chunk := connection.recv(65536):
        answer += chunk
    return answer


def test_connections_beyond_the_bound_get_503_until_some_close(
    few_connections: LiveService,
) -> None:
    port = port_of(few_connections)
    refused_before = scraped(few_connections, "rg_http_connections_refused_total")
    held = []
    for _ in range(MAX_CONNECTIONS):  # each admitted: served, then left open
        connection, answer = get_healthz(port)
        assert answer.startswith(b"HTTP/1.1 200 OK")
        held.append(connection)
    try:
        refused = 0
        with socket.create_connection(("127.0.0.1", port), timeout=10) as extra:
            extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: rg\r\n\r\n")
            answer = read_to_end(extra)
        refused += 1
        headers = assert_error_answer(
            answer,
            "HTTP/1.1 503 Service Unavailable",
            "too_many_connections",
            f"{MAX_CONNECTIONS} connections open",
        )
        assert headers["retry-after"] == "1"
        # One with a body is read to its end, then refused the same way.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as extra:
            body = json.dumps(EVENT).encode()
            extra.sendall(
                b"POST /audit HTTP/1.1\r\nHost: rg\r\nContent-Type: application/json\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )
            answer = read_to_end(extra)
        refused += 1
        assert_error_answer(
            answer, "HTTP/1.1 503 Service Unavailable", "too_many_connections", "retry"
        )

        for connection in held[:5]:
            connection.close()
        del held[:5]
        deadline = time.monotonic() + 10
        while True:  # the service sees the closes
            connection, answer = get_healthz(port)
            connection.close()
            if answer.startswith(b"HTTP/1.1 200 OK"):
                break
            refused += 1
            assert time.monotonic() < deadline, answer
            time.sleep(0.2)
        for _ in range(4):
            connection, answer = get_healthz(port)
            held.append(connection)
            assert answer.startswith(b"HTTP/1.1 200 OK")
    finally:
        for connection in held:
            connection.close()

    refused_after = scraped(few_connections, "rg_http_connections_refused_total")
    print(f"\n{refused} connection(s) refused beyond RG_MAX_CONNECTIONS={MAX_CONNECTIONS}")
    assert refused_after - refused_before == refused
    # A storm of refusals is one log line per interval, not one per connection.
    assert few_connections.log().count("connection(s) refused with 503") == 1
    deadline = time.monotonic() + 10
    while scraped(few_connections, "rg_http_connections") != 1:  # the scrape's own
        assert time.monotonic() < deadline, "closed connections still counted as open"
        time.sleep(0.2)


async def test_sigterm_with_slow_clients_connected_exits_cleanly(
    kafka_bootstrap: str, tmp_path: Path, start_service: Launch
) -> None:
    # A request whose body never ends holds uvicorn's graceful shutdown (it waits for requests
    # in flight); the read timeout ends it, and the process exits 0 without a traceback.
    service = await asyncio.to_thread(
        start_service,
        kafka_bootstrap,
        tmp_path,
        request_read_timeout_s=str(READ_TIMEOUT_S),
        shutdown_drain_s="0.5",
    )
    await asyncio.to_thread(service.wait_ready)
    port = port_of(service)
    head = b"POST /audit HTTP/1.1\r\nHost: rg\r\nContent-Type: application/json\r\n"
    give_up_s = READ_TIMEOUT_S + MARGIN_S
    everyone = asyncio.gather(
        *(dribble(port, b"", head + b"X: 1\r\n" * 20, give_up_s=give_up_s) for _ in range(5)),
        *(
            dribble(port, head + b"Content-Length: 1000\r\n\r\n", b"{" * 1000, give_up_s=give_up_s)
            for _ in range(5)
        ),
    )
    await asyncio.sleep(0.5)
    service.process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    dribbled = await everyone
    exit_code = await asyncio.to_thread(service.process.wait, 60)
    print(
        f"\nSIGTERM with 10 slow clients connected: exit {exit_code} "
        f"{time.monotonic() - signalled:.1f}s after the signal"
    )
    assert exit_code == 0, service.log()
    assert all(one.closed_after_s is not None for one in dribbled)
    for one in dribbled[5:]:  # in their bodies: cut off at the bound, answered
        assert_error_answer(
            one.answer, "HTTP/1.1 408 Request Timeout", "request_timeout", "body was not"
        )
    assert "Traceback" not in service.log()


def answers_in(stream: bytes) -> list[bytes]:
    """The heads of the answers in `stream` (each with a Content-Length)."""
    heads = []
    while stream:
        head, found, rest = stream.partition(b"\r\n\r\n")
        assert found, stream[:200]
        length = re.search(rb"content-length: (\d+)", head, re.IGNORECASE)
        assert length, head
        heads.append(head)
        stream = rest[int(length[1]) :]
    return heads


def test_pipelined_requests_beyond_the_depth_are_not_read(slow_bound: LiveService) -> None:
    # 3,000 requests in one go: the service answers those it queued, the last of them with
    # `Connection: close`, and reads no more (it held ~2.4 KB per waiting request, unbounded).
    with socket.create_connection(("127.0.0.1", port_of(slow_bound)), timeout=30) as connection:
        connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: rg\r\n\r\n" * 3000)
        heads = answers_in(read_to_end(connection))
    print(f"\n3,000 pipelined requests: {len(heads)} answered, then the connection closed")
    assert len(heads) == 1 + PIPELINE_DEPTH
    assert all(head.startswith(b"HTTP/1.1 200 OK") for head in heads)
    assert b"connection: close" in heads[-1]
    assert all(b"connection: close" not in head for head in heads[:-1])
    assert "requests pipelined" in slow_bound.log()


def wait_closed_by_the_service(service: LiveService, *, bound_s: float) -> float:
    """Seconds until the service's side of every connection but the scrape's own is closed
    (the client's side stays open); fails past `bound_s`."""
    started = time.monotonic()
    while scraped(service, "rg_http_connections") != 1:
        assert time.monotonic() - started < bound_s, "a client that reads nothing stays"
        time.sleep(0.2)
    return time.monotonic() - started


def test_a_client_that_reads_nothing_is_closed(slow_bound: LiveService) -> None:
    # The reproduction: a small receive buffer, 3,000 pipelined requests for a large answer
    # (64 KB), nothing read. Seventeen answers fit in the kernel's buffers, then it is closed.
    with socket.socket() as connection:
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        connection.connect(("127.0.0.1", port_of(slow_bound)))
        connection.sendall(b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n" * 3000)
        closed_after = wait_closed_by_the_service(slow_bound, bound_s=KEEP_ALIVE_S + MARGIN_S)
    print(f"\nclosed {closed_after:.1f}s after its requests were sent")


def test_an_answer_left_unread_closes_the_connection_after_the_write_timeout(
    slow_bound: LiveService,
) -> None:
    # Requests a few at a time (never more than the pipeline takes), each for a 64 KB answer,
    # nothing read: once the kernel's buffers are full the service cannot send; it closes the
    # connection RG_WRITE_TIMEOUT_S later, although the client keeps its side open.
    with socket.socket() as connection:
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        connection.connect(("127.0.0.1", port_of(slow_bound)))
        try:
            for _ in range(25):  # 200 answers, 12.8 MB: more than the kernel holds
                connection.sendall(b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n" * 8)
                time.sleep(0.1)
        except OSError:
            pass  # closed already
        closed_after = wait_closed_by_the_service(
            slow_bound, bound_s=WRITE_TIMEOUT_S + 2 * MARGIN_S
        )
    print(f"\nclosed {closed_after:.1f}s after the last request was sent")
    assert "did not read its answer within 2s (RG_WRITE_TIMEOUT_S)" in slow_bound.log()


def test_a_request_for_an_unsupported_upgrade_is_answered_and_the_connection_closed(
    slow_bound: LiveService,
) -> None:
    # The parser stops at an upgrade request: the request after it, in the same packet, was
    # never answered and the connection stayed until it had been idle for RG_KEEP_ALIVE_S.
    with socket.create_connection(("127.0.0.1", port_of(slow_bound)), timeout=10) as connection:
        connection.sendall(
            b"GET /healthz HTTP/1.1\r\nHost: rg\r\nUpgrade: foo\r\nConnection: Upgrade\r\n\r\n"
            b"GET /ui/status HTTP/1.1\r\nHost: rg\r\n\r\n"
        )
        connection.settimeout(KEEP_ALIVE_S - 2)  # closed, not left to idle out
        heads = answers_in(read_to_end(connection))
    assert len(heads) == 1
    assert heads[0].startswith(b"HTTP/1.1 200 OK")
    assert b"connection: close" in heads[0]


async def test_served_requests_leave_no_reference_cycles_behind() -> None:
    # Each request's objects (uvicorn's cycle, its scope, the joined writes, the body's hold)
    # must be freed by reference counting when its answer is done. The abort extension once
    # held its request's cycle strongly from that cycle's own scope: every request a cycle,
    # found only by the garbage collector, in young collections of ~90,000 objects every 2 s
    # under load, each a stall of 120-150 ms (the p99 of POST /audit).
    aborts: list[weakref.ref[Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        aborts.append(weakref.ref(scope["extensions"][ABORT]))
        await receive()
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
        )
        await send({"type": "http.response.body", "body": b"ok"})

    config = uvicorn.Config(
        app,
        lifespan="off",
        log_config=None,
        http=limited_protocol(Settings(_env_file=None), ServiceMetrics()),
    )
    server = uvicorn.Server(config)
    listening = socket.create_server(("127.0.0.1", 0))  # connections wait in its backlog
    port = listening.getsockname()[1]
    serving = asyncio.create_task(server.serve(sockets=[listening]))
    gc.collect()
    gc.disable()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(20):
                assert (await client.post("/x", content=b"{}")).text == "ok"
        alive = sum(1 for abort in aborts if abort() is not None)
    finally:
        gc.enable()
        server.should_exit = True
        await serving
    assert len(aborts) == 20
    assert alive <= 1  # the last, its connection still open
