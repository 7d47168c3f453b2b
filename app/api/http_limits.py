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
- An idle connection, before its first request as between two, is closed after
  RG_KEEP_ALIVE_S (uvicorn only times the wait between requests: a connection that never sent
  a byte stayed open for good).
"""

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from app.api.connection_slots import ConnectionSlots
from app.api.observe import SERVER_ANSWERED
from app.api.request_head import HeadBoundedProtocol
from app.errors import RequestTimeoutError, ServiceError
from app.logs import FIELDS
from app.metrics import ServiceMetrics
from app.settings import Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConnectionLimits:
    """What one server's connections share: the time bound, the slots and the counters."""

    read_timeout_s: float
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
        self._admitted = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._admitted = self.limits.slots.take()
        if self._admitted:
            self._wait_idle()
        else:
            self.limits.refused()
            # This connection's requests are answered 503; and it gets no idle time either.
            self.app = self.limits.slots.refuse
            self._start_read_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_read_timer()
        self._release()
        super().connection_lost(exc)

    def handle_websocket_upgrade(self) -> None:
        # The WebSocket protocol takes the connection over (and answers, with no such routes
        # here, 403): its time and slot are no longer this protocol's to bound.
        self._stop_read_timer()
        self._release()
        super().handle_websocket_upgrade()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # uvicorn stops the idle timer on any byte; bytes that begin no request (blank lines
        # between requests) leave the connection idle all the same.
        if self._read_timer is None and self._idle():
            self._wait_idle()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        # Already running on a refused connection: its time counts from the connect.
        if self._read_timer is None:
            self._start_read_timer()

    def on_message_complete(self) -> None:
        self._stop_read_timer()
        super().on_message_complete()

    def _idle(self) -> bool:
        return (
            not self.transport.is_closing()
            and self.timeout_keep_alive_task is None
            and (self.cycle is None or self.cycle.response_complete)
            and not self.pipeline
        )

    def _wait_idle(self) -> None:
        # uvicorn's own keep-alive timer, started as it starts it after a response.
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
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
            client = f"{self.client[0]}:{self.client[1]}" if self.client else "unknown"
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


def limited_protocol(settings: Settings, metrics: ServiceMetrics) -> type[LimitedProtocol]:
    """The HTTP protocol of one server with the settings' bounds (head, read time,
    connections), counting into `metrics`."""
    slots = ConnectionSlots(settings.max_connections)
    metrics.watch_connections(lambda: slots.open)
    limits = ConnectionLimits(
        read_timeout_s=settings.request_read_timeout_s,
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
