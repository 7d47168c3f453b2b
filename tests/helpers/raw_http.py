"""HTTP/1.1 written by hand over real sockets, for what an HTTP client will not send (odd
headers, a head with no body yet)."""

import json
import socket
from dataclasses import dataclass
from typing import Any


@dataclass
class RawAnswer:
    """A response read off the wire."""

    status: int
    headers: dict[str, str]
    body: bytes

    def error(self) -> dict[str, Any]:
        """The contract's `error` object of the body."""
        error: dict[str, Any] = json.loads(self.body)["error"]
        return error


def address_of(url: str) -> tuple[str, int]:
    """Host and port of `http://host:port`."""
    host, _, port = url.removeprefix("http://").partition(":")
    return host, int(port)


def exchange(url: str, request: bytes, *, timeout_s: float = 30) -> RawAnswer:
    """Send `request` on a new connection and read one response (the service closes the
    connection after it, or the response says its length)."""
    with socket.create_connection(address_of(url), timeout=timeout_s) as connection:
        connection.sendall(request)
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = connection.recv(65536)
            if not chunk:
                break
            received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
        first, *lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines)
        length = int(headers.get("content-length", "0"))
        while len(body) < length and (chunk := connection.recv(65536)):
            body += chunk
    return RawAnswer(status=int(first.split()[1]), headers=headers, body=body)
