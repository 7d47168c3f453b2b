"""Bounds on time and on connections, in the HTTP protocol the `serve` process runs.

Without them a client that sends slowly (a head one byte a second, a body that never ends)
keeps a connection, a parser and a task for as long as it likes, and a few hundred such
clients starve everyone else.

- RG_REQUEST_READ_TIMEOUT_S runs from the first byte of a request until its body is complete.
  Past it the request gets 408 `request_timeout` with the contract's error body, when no
  answer has begun on the connection, and the connection is closed; each one is counted in
  `rg_http_requests_timed_out_total` and logged once. Time the service makes the client wait
  is not counted against it: a handler still working once the body is in (waiting for Kafka),
  or the rest of a pipelined request held back while the one before it is answered.
- RG_MAX_CONNECTIONS bounds the connections open at once (app/api/connection_slots.py); one
  beyond it has its request read, within the same time bound, then answered 503
  `too_many_connections` and closed.
- An idle connection is closed after RG_KEEP_ALIVE_S between two requests, and a new one
  unless its first request begins within the shorter of RG_REQUEST_READ_TIMEOUT_S and
  RG_KEEP_ALIVE_S (uvicorn only times the wait between requests: a connection that never sent
  a byte stayed open for good). Blank lines outside a request leave the deadline as it was
  (each restarted the idle time: two bytes now and then held a slot for good); more than
  `MAX_BLANK_BYTES` of them before a request get 400 and the connection is closed.
- At most `PIPELINE_DEPTH` requests wait behind the one being answered (uvicorn queued every
  pipelined request it parsed, some 2.4 KB each, for as long as the client left its answers
  unread). The requests read so far are answered, the last one with `Connection: close`;
  whatever the client sends after them is read and dropped, and the connection then closes (a
  pipelining client sends what went unanswered again, on a new connection).
- A request asking for an upgrade other than a WebSocket (`Upgrade: h2c`) is answered with
  `Connection: close` and the connection closed: the parser reads nothing after it.
- An answer the client leaves unread for RG_WRITE_TIMEOUT_S closes the connection: the
  service's send buffer full all that time, or the last bytes of a closing connection still
  unsent. Without it a client that reads nothing held its connection, its queued requests and
  the handler writing to it for good.
"""

import asyncio
import logging
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar, cast

from app.api.connection_slots import ConnectionSlots
from app.api.joined_writes import JoinedWrites
from app.api.observe import SERVER_ANSWERED
from app.api.request_head import HeadBoundedProtocol
from app.errors import RequestTimeoutError, ServiceError
from app.logs import FIELDS
from app.metrics import ServiceMetrics
from app.settings import Settings

logger = logging.getLogger(__name__)

# Requests one connection may have waiting behind the one being answered (see above).
PIPELINE_DEPTH = 16
# Bytes of blank lines (CRLF) a connection may send outside a request, per idle time: a
# server ignores at least one before a request line (RFC 9112 section 2.2).
MAX_BLANK_BYTES = 8
# An ASGI extension in each request's scope: `scope["extensions"][ABORT]()` closes the
# connection with the answer left incomplete (the recording proxy's, for an upstream answer cut
# off midway), so the client sees the cut; uvicorn then takes the connection for gone, and logs
# no error for an answer the app did not complete. (`app.proxy.streamed` names it too.)
ABORT = "rg.abort"


@dataclass(frozen=True)
class ConnectionLimits:
    """What one server's connections share: the time bound, the slots and the counters."""

    read_timeout_s: float
    write_timeout_s: float
    slots: ConnectionSlots
    timed_out: Callable[[], None]
    refused: Callable[[], None]


class LimitedProtocol(HeadBoundedProtocol):
    """`HeadBoundedProtocol` with the read timeout, the connection bound and an idle timeout
    from the start; `limited_protocol` makes one with the settings' values."""

    limits: ClassVar[ConnectionLimits]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_timer: asyncio.TimerHandle | None = None
        self._write_timer: asyncio.TimerHandle | None = None
        self._admitted = False
        # Set once PIPELINE_DEPTH requests wait, or a request asked for an upgrade the service
        # does not make: no further request is read on the connection.
        self._last_request_read = False
        # When the connection's idle time ends, and the blank bytes it sent meanwhile.
        self._idle_deadline = 0.0
        self._blank_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._admitted = self.limits.slots.take()
        if self._admitted:
            self._wait_idle(min(self.timeout_keep_alive, self.limits.read_timeout_s))
        else:
            self.limits.refused()
            # This connection's requests are answered 503; and it gets no idle time either.
            self.app = self.limits.slots.refuse
            self._start_read_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_read_timer()
        self._stop_write_timer()
        self._release()
        super().connection_lost(exc)

    def handle_websocket_upgrade(self) -> None:
        # The WebSocket protocol takes the connection over (and answers, with no such routes
        # here, 403): its time and slot are no longer this protocol's to bound.
        self._stop_read_timer()
        self._release()
        super().handle_websocket_upgrade()

    def data_received(self, data: bytes) -> None:
        if self._last_request_read:
            return  # past the last request read: dropped, unparsed
        super().data_received(data)
        # uvicorn stops the idle timer on any byte; bytes that begin no request (blank lines
        # between requests) leave the connection idle all the same, on the same deadline.
        if self._read_timer is None and self._idle():
            self._blank_bytes += len(data)
            if self._blank_bytes > MAX_BLANK_BYTES:
                self.send_400_response(
                    f"more than {MAX_BLANK_BYTES} bytes of blank lines outside a request"
                )
            else:
                self._arm_idle_timer()

    def on_message_begin(self) -> None:
        if not self._last_request_read and len(self.pipeline) >= PIPELINE_DEPTH:
            self._refuse_pipelining()
        if self._last_request_read:
            return  # this request, and those after it in the same read, are not taken
        super().on_message_begin()
        # Already running on a refused connection: its time counts from the connect.
        if self._read_timer is None:
            self._start_read_timer()

    def on_url(self, url: bytes) -> None:
        if not self._last_request_read:
            super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._last_request_read:
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if not self._last_request_read:
            super().on_headers_complete()
            # The new request's answer: head and body in one send (app/api/joined_writes.py).
            if self.cycle is not None and self.cycle.transport is self.transport:
                self.cycle.transport = cast(asyncio.Transport, JoinedWrites(self.transport))
            if self.cycle is not None:
                extensions: dict[str, Any] = self.cycle.scope.setdefault("extensions", {})
                # By a weak reference: the cycle holds the scope, and a strong one back made
                # every request a reference cycle, left for the garbage collector (under load
                # a young collection of ~90,000 such objects every 2 s, a 120-150 ms stall).
                extensions[ABORT] = partial(_abort, weakref.ref(self.cycle))

    def on_body(self, body: bytes) -> None:
        if not self._last_request_read:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._last_request_read:
            return
        self._stop_read_timer()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.timeout_keep_alive_task is not None:  # idle from now: the deadline is ours
            self.timeout_keep_alive_task.cancel()
            self._wait_idle(self.timeout_keep_alive)
        self._watch_unsent()

    def timeout_keep_alive_handler(self) -> None:
        super().timeout_keep_alive_handler()
        self._watch_unsent()

    def shutdown(self) -> None:
        super().shutdown()
        self._watch_unsent()

    def pause_writing(self) -> None:
        super().pause_writing()
        # The client takes no more of what it is sent: it has RG_WRITE_TIMEOUT_S to resume.
        if self._write_timer is None:
            self._write_timer = self.loop.call_later(
                self.limits.write_timeout_s, self._write_timed_out
            )

    def resume_writing(self) -> None:
        super().resume_writing()
        if not self.transport.is_closing():  # closing: the rest must go within the same time
            self._stop_write_timer()

    def _unsupported_upgrade_warning(self) -> None:
        # uvicorn's parser stops at the end of a request asking for an upgrade other than a
        # WebSocket and parses nothing after it: later requests on the connection went
        # unanswered until it idled out. That request is answered, with `Connection: close`.
        if self._last_request_read:
            return
        self._last_request_read = True
        if self.cycle.response_complete:
            self.transport.close()
            self._watch_unsent()
        else:
            self.cycle.keep_alive = False
        logger.info(
            "unsupported upgrade requested: the connection closes after answering the request",
            extra={FIELDS: {"client": self._client_text()}},
        )

    def _refuse_pipelining(self) -> None:
        self._last_request_read = True
        # The newest request queued is the last answered; then the connection closes.
        self.cycle.keep_alive = False
        # Read on (and drop) what the client still sends, so that the close is not a reset,
        # which could destroy answers the client has not read yet.
        self.flow.resume_reading()
        logger.warning(
            "more than %d requests pipelined on one connection: the rest is not read, and the "
            "connection closes once those read are answered",
            PIPELINE_DEPTH,
            extra={FIELDS: {"client": self._client_text()}},
        )

    def _watch_unsent(self) -> None:
        # A closing transport waits for its buffer to drain before it lets go of the socket.
        if (
            self.transport.is_closing()
            and self.transport.get_write_buffer_size() > 0
            and self._write_timer is None
        ):
            self._write_timer = self.loop.call_later(
                self.limits.write_timeout_s, self._write_timed_out
            )

    def _stop_write_timer(self) -> None:
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    def _write_timed_out(self) -> None:
        self._write_timer = None
        if self.transport.get_write_buffer_size() == 0 and not self.flow.write_paused:
            return
        logger.warning(
            "connection closed: the client did not read its answer within %gs (RG_WRITE_TIMEOUT_S)",
            self.limits.write_timeout_s,
            extra={FIELDS: {"client": self._client_text()}},
        )
        # Not close(): that would wait, for good, for the client to take the buffered bytes.
        self.transport.abort()

    def _client_text(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "unknown"

    def _idle(self) -> bool:
        return (
            not self.transport.is_closing()
            and self.timeout_keep_alive_task is None
            and (self.cycle is None or self.cycle.response_complete)
            and not self.pipeline
        )

    def _wait_idle(self, seconds: float) -> None:
        """Begin an idle time of `seconds`: the connection is closed at its end unless a
        request begins."""
        self._idle_deadline = self.loop.time() + seconds
        self._blank_bytes = 0
        self._arm_idle_timer()

    def _arm_idle_timer(self) -> None:
        # uvicorn's own keep-alive timer (which it stops on any byte received).
        self.timeout_keep_alive_task = self.loop.call_at(
            self._idle_deadline, self.timeout_keep_alive_handler
        )

    def _start_read_timer(self) -> None:
        self._read_timer = self.loop.call_later(self.limits.read_timeout_s, self._read_timed_out)

    def _stop_read_timer(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _release(self) -> None:
        if self._admitted:
            self._admitted = False
            self.limits.slots.release()

    def _read_timed_out(self) -> None:
        self._read_timer = None
        if self.transport.is_closing():
            return
        if self.flow.read_paused:
            # The service holds the rest of the request back (a pipelined request waits for
            # the answer before it): that wait is not the client's; count anew once reading.
            # It ends: the answer before is written, or unread for RG_WRITE_TIMEOUT_S, and
            # then the connection is closed.
            self._start_read_timer()
            return
        if not self._admitted:
            self._cut(self.limits.slots.refusal())
            return
        self.limits.timed_out()
        part = "head" if self._in_head else "body"
        seconds = f"{self.limits.read_timeout_s:g}s (RG_REQUEST_READ_TIMEOUT_S)"
        self._cut(RequestTimeoutError(f"the request's {part} was not received within {seconds}"))

    def _cut(self, error: ServiceError) -> None:
        """Close the connection, answering first when no answer has begun on it."""
        request_id = uuid.uuid4().hex
        if self._in_head:
            # An answer to an earlier request still due would be taken for this one's.
            answerable = (self.cycle is None or self.cycle.response_complete) and not self.pipeline
        else:
            cycle = self.cycle
            answerable = not cycle.response_started and not self.pipeline
            # The app waits for the body: it now gets a disconnect, and whatever it answers
            # is dropped; its log line and metrics take this status and request id.
            state = cycle.scope["state"]
            request_id = str(state.get("request_id", request_id))
            state[SERVER_ANSWERED] = error.status
            cycle.disconnected = True
            cycle.message_event.set()
        if self._admitted:  # a refused one was counted and logged on arrival
            client = self._client_text()
            logger.warning(
                "request cut off with %d: %s",
                error.status,
                error.message,
                extra={
                    FIELDS: {
                        "status": error.status,
                        "request_id": request_id,
                        "client": client,
                        "answered": answerable,
                    }
                },
            )
        if answerable:
            self._answer(error, request_id=request_id)
        else:
            self.transport.close()
            self._watch_unsent()

    def _answer(self, error: ServiceError, *, request_id: str) -> None:
        super()._answer(error, request_id=request_id)
        self._watch_unsent()


def limited_protocol(settings: Settings, metrics: ServiceMetrics) -> type[LimitedProtocol]:
    """The HTTP protocol of one server with the settings' bounds (head, read and write time,
    connections), counting into `metrics`."""
    slots = ConnectionSlots(settings.max_connections)
    metrics.watch_connections(lambda: slots.open)
    limits = ConnectionLimits(
        read_timeout_s=settings.request_read_timeout_s,
        write_timeout_s=settings.write_timeout_s,
        slots=slots,
        timed_out=metrics.requests_timed_out.inc,
        refused=metrics.connections_refused.inc,
    )
    return type(
        "LimitedHttpToolsProtocol",
        (LimitedProtocol,),
        {
            "max_headers": settings.max_headers,
            "max_head_bytes": settings.max_header_bytes,
            "limits": limits,
        },
    )


def _abort(cycle_ref: "weakref.ref[Any]") -> None:
    """The `ABORT` extension: the connection closed under an unfinished answer."""
    cycle = cycle_ref()
    if cycle is None:  # its request is over and gone: nothing left to cut
        return
    cycle.disconnected = True  # uvicorn's own mark of a connection gone
    cycle.transport.close()
