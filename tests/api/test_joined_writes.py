"""A response's head and body leave in one write; a head alone is not held past its loop step,
and nothing asked of the transport overtakes what is held (app.api.joined_writes)."""

import asyncio
from typing import cast

from app.api.joined_writes import JOIN_AT_MOST, JoinedWrites


class _Transport:
    """Records what reaches the socket's side."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.sent.append(bytes(data))

    def close(self) -> None:
        self.sent.append(b"<closed>")


def _joined(transport: _Transport) -> JoinedWrites:
    return JoinedWrites(cast(asyncio.Transport, transport))


async def test_head_and_body_written_in_one_step_are_one_write() -> None:
    transport = _Transport()
    writes = _joined(transport)
    writes.write(b"HTTP/1.1 202 Accepted\r\n\r\n")
    assert transport.sent == []
    writes.write(b'{"status":"queued"}')
    writes.write(b"more")
    assert transport.sent == [b'HTTP/1.1 202 Accepted\r\n\r\n{"status":"queued"}', b"more"]
    await asyncio.sleep(0)
    assert len(transport.sent) == 2  # the step's end sends nothing twice


async def test_a_head_whose_body_is_slower_goes_at_the_end_of_the_step() -> None:
    transport = _Transport()
    writes = _joined(transport)
    writes.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
    await asyncio.sleep(0)
    assert transport.sent == [b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"]
    writes.write(b"5\r\nhello\r\n")
    assert transport.sent[1:] == [b"5\r\nhello\r\n"]


async def test_closing_sends_what_is_held_first() -> None:
    transport = _Transport()
    writes = _joined(transport)
    writes.write(b"HTTP/1.1 204 No Content\r\n\r\n")
    writes.close()
    assert transport.sent == [b"HTTP/1.1 204 No Content\r\n\r\n", b"<closed>"]


async def test_a_large_body_follows_its_head_unjoined() -> None:
    transport = _Transport()
    writes = _joined(transport)
    body = b"x" * (JOIN_AT_MOST + 1)
    writes.write(b"HTTP/1.1 200 OK\r\n\r\n")
    writes.write(body)
    assert transport.sent == [b"HTTP/1.1 200 OK\r\n\r\n", body]
