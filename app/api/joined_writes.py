"""One send per small answer: a response's head and its body go to the socket together.

uvicorn writes an answer in two `transport.write` calls, the head and then the body, and each
is a `send()` of its own (asyncio writes at once when nothing is buffered, and TCP_NODELAY is
on): two packets, two wake-ups of the client, and on loopback the client's side of TCP run in
the service's own system call twice. For a `POST /audit?wait=false` answered in the step its
body arrived, those sends were the largest single item of the service's CPU (a fifth of its
busy samples against an eighth for waiting answers, which go out in bursts after Kafka's
acknowledgement). `JoinedWrites` is the transport one request's answer is written through:
it holds the first write (the head) and sends it joined with the next one, which comes in the
same step for every answer made in one piece; a head whose body is slower to come (a stream)
is sent on its own at the end of the step, so nothing waits beyond it.
"""

import asyncio
from typing import Any

# A body past this many bytes follows its head in a send of its own: copying it to join them
# would cost more than the second system call saves.
JOIN_AT_MOST = 64 * 1024


class JoinedWrites:
    """Wraps a connection's transport for one response (see the module docstring): the first
    `write()` is held until the next one or the end of the loop step; anything else asked of
    the transport sends what is held first, then goes to the transport itself."""

    __slots__ = ("_first", "_held", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._held: bytes | None = None
        self._first = True

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Hold the response's first piece; send a later one joined with it."""
        if self._first:
            self._first = False
            self._held = bytes(data)
            asyncio.get_running_loop().call_soon(self.flush)
            return
        if self._held is not None:
            if len(data) > JOIN_AT_MOST:
                self.flush()
            else:
                data, self._held = self._held + data, None
        self._transport.write(data)

    def flush(self) -> None:
        """Send what is held, if anything."""
        if self._held is not None:
            held, self._held = self._held, None
            self._transport.write(held)

    def __getattr__(self, name: str) -> Any:
        # close(), is_closing(), abort() ...: whatever was written before goes first.
        self.flush()
        return getattr(self._transport, name)
