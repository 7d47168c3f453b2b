"""Bounds on the request head, against the served process (they live in its HTTP protocol)."""

import json
import socket
import uuid
from collections.abc import Iterator

import pytest

from tests.helpers.service import LiveService, running_service

MAX_HEADERS = 20
MAX_HEADER_BYTES = 2048
KEY = "rg-test-secret-trailer"


@pytest.fixture(scope="module")
def bounded(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveService]:
    """The served process with small bounds."""
    with running_service(
        kafka_bootstrap,
        tmp_path_factory.mktemp("bounded"),
        max_headers=str(MAX_HEADERS),
        max_header_bytes=str(MAX_HEADER_BYTES),
    ) as service:
        yield service


@pytest.fixture(scope="module")
def keyed(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    """The served process with an API key."""
    with running_service(
        kafka_bootstrap,
        tmp_path_factory.mktemp("keyed"),
        api_keys=json.dumps({KEY: ["audit:write", "publish:write"]}),
    ) as service:
        yield service


def exchange(service: LiveService, *requests: bytes) -> bytes:
    """Send `requests` on one connection and read until the service closes it."""
    port = int(service.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        for request in requests:
            connection.sendall(request)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return answer


def get(
    path: str = "/healthz", headers: int = 0, header_size: int = 8, close: bool = True
) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: rg"]
    lines += [f"X-Filler-{i}: {'v' * header_size}" for i in range(headers)]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def assert_refused(answer: bytes, status_line: str, code: str, reason: str) -> None:
    head, _, body = answer.partition(b"\r\n\r\n")
    first, *header_lines = head.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in header_lines)
    assert first == status_line
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert headers["x-content-type-options"] == "nosniff"
    error = json.loads(body)["error"]
    assert error["code"] == code
    assert reason in error["message"]
    assert error["request_id"] == headers["x-request-id"]


def assert_431(answer: bytes, reason: str) -> None:
    assert_refused(
        answer, "HTTP/1.1 431 Request Header Fields Too Large", "headers_too_large", reason
    )


def test_a_request_within_the_bounds_is_served(bounded: LiveService) -> None:
    answer = exchange(bounded, get(headers=MAX_HEADERS - 3, header_size=50))
    assert answer.startswith(b"HTTP/1.1 200 OK")


def test_too_many_header_lines_get_431(bounded: LiveService) -> None:
    assert_431(exchange(bounded, get(headers=MAX_HEADERS)), "RG_MAX_HEADERS")


def test_a_long_header_gets_431(bounded: LiveService) -> None:
    assert_431(
        exchange(bounded, get(headers=1, header_size=MAX_HEADER_BYTES)), "RG_MAX_HEADER_BYTES"
    )


def test_a_long_url_gets_431(bounded: LiveService) -> None:
    path = "/messages?key=" + "k" * MAX_HEADER_BYTES
    assert_431(exchange(bounded, get(path)), "RG_MAX_HEADER_BYTES")


def test_a_huge_head_is_refused_without_reading_it_all(bounded: LiveService) -> None:
    # 20 MB of one header: refused at the first 2 KB, the rest never kept.
    huge = b"GET /healthz HTTP/1.1\r\nHost: rg\r\nX-Huge: " + b"h" * 20_000_000
    try:
        answer = exchange(bounded, huge)
    except (BrokenPipeError, ConnectionResetError):
        answer = b""  # closed while the client was still sending: refused as well
    if answer:
        assert_431(answer, "did not end within")
    assert "the request head did not end within 2048 bytes" in bounded.log()
    assert exchange(bounded, get()).startswith(b"HTTP/1.1 200 OK")


def test_the_bounds_count_each_request_of_a_connection_anew(bounded: LiveService) -> None:
    # Three requests on one keep-alive connection, together over both bounds.
    one = get(headers=MAX_HEADERS - 3, header_size=60, close=False)
    answer = exchange(bounded, one, one, get(headers=MAX_HEADERS - 3, header_size=60))
    assert answer.count(b"HTTP/1.1 200 OK") == 3


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST /audit HTTP/1.1\r\nHost: rg\r\nContent-Length: abc\r\n\r\n",
        b"HELLO\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nBad Header Name: x\r\n\r\n",
    ],
    ids=["content-length", "request-line", "header-name"],
)
def test_a_request_that_is_no_http_gets_400_with_the_error_body(
    bounded: LiveService, request_bytes: bytes
) -> None:
    answer = exchange(bounded, request_bytes)
    assert_refused(
        answer, "HTTP/1.1 400 Bad Request", "bad_request", "not a valid HTTP/1.1 request"
    )


def chunked(path: str, content_type: str, body: bytes, head: str, trailer: str) -> bytes:
    """A POST with `body` in one chunk, `head` among its headers and `trailer` after it."""
    return (
        (
            f"POST {path} HTTP/1.1\r\nHost: rg\r\nContent-Type: {content_type}\r\n{head}"
            f"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n{len(body):x}\r\n"
        ).encode()
        + body
        + f"\r\n0\r\n{trailer}\r\n".encode()
    )


@pytest.mark.parametrize("content_type", ["application/json", "application/vnd.x+json"])
@pytest.mark.parametrize("path", ["/audit", "/publish"])
@pytest.mark.parametrize("field", [f"X-API-Key: {KEY}", f"Authorization: Bearer {KEY}"])
def test_a_key_in_a_trailer_counts_for_nothing(
    keyed: LiveService, content_type: str, path: str, field: str
) -> None:
    # Trailer fields (after a chunked body) were merged into the headers: a key there passed
    # a proxy that vets headers only. The lean handler (application/json) and the declared
    # route (+json) alike.
    body = (
        {"user_id": "u-trailer", "model": "m", "prompt": "hello", "response": "world"}
        if path == "/audit"
        else {"topic": f"test-trailer-{uuid.uuid4().hex}", "value": 1}
    )
    data = json.dumps(body).encode()
    trailer = f"{field}\r\nIdempotency-Key: trailer-idem-1\r\n"
    answer = exchange(keyed, chunked(path, content_type, data, "", trailer))
    assert answer.startswith(b"HTTP/1.1 401 Unauthorized"), answer
    assert b"an API key is required" in answer
    # The same key in the header section is accepted (the request is otherwise fine).
    answer = exchange(keyed, chunked(path, content_type, data, f"{field}\r\n", ""))
    assert answer.startswith((b"HTTP/1.1 201", b"HTTP/1.1 200")), answer
