"""GET /messages and GET /messages/stream: the most recent records, for operators.

A stream whose client reads nothing is bounded twice: its backlog is cut off past one topic's
byte bound (app/recent/buffer.py), and a send that waits longer than
RG_MESSAGES_STREAM_SEND_TIMEOUT_S for the client to read closes the connection.
"""

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse
from fastapi.routing import APIRoute
from fastapi.sse import EventSourceResponse, ServerSentEvent
from starlette.types import Message, Receive, Scope, Send

from app.api.auth import require
from app.api.deps import ServicesDep
from app.api.errors import error_responses
from app.errors import InvalidRequestError
from app.kafka.stamps import epoch_ms, parse_utc
from app.recent.buffer import Subscription
from app.recent.filters import RecordFilter
from app.recent.record import MessagesPage
from app.services import Services

logger = logging.getLogger(__name__)

# Where a stream keeps its backlog in the request's state, for `_SendTimed`.
STREAM_BACKLOG = "stream_backlog"


class _SendTimed(Response):
    """A streamed answer whose every send must complete within `timeout_s`. Past it the
    client is let go: what is left to send is dropped, its stream's backlog (the scope's
    `state.stream_backlog`) cut off so the stream ends, and uvicorn closes a connection whose
    answer did not end."""

    def __init__(self, response: StreamingResponse, services: Services) -> None:
        # Not Response.__init__: this only wraps `response`, whose head is already built.
        self._response = response
        self._services = services
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        timeout_s = self._services.settings.messages_stream_send_timeout_s
        gone = False

        async def timed_send(message: Message) -> None:
            nonlocal gone
            if gone:
                return
            try:
                async with asyncio.timeout(timeout_s):
                    await send(message)
            except TimeoutError:
                gone = True
                self._services.recent.streams_timed_out += 1
                logger.warning(
                    "closing a GET /messages/stream client that read nothing for %.1fs",
                    timeout_s,
                )
                backlog = scope.get("state", {}).get(STREAM_BACKLOG)
                if isinstance(backlog, Subscription):
                    backlog.cut_off()

        await self._response(scope, receive, timed_send)


class _StreamRoute(APIRoute):
    """A route whose streamed answers have a send timeout (`_SendTimed`)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def timed(request: Request) -> Response:
            response = await handler(request)
            if isinstance(response, StreamingResponse):
                return _SendTimed(response, request.app.state.services)
            return response

        return timed


router = APIRouter(
    tags=["messages"],
    dependencies=[require("messages:read")],
    responses=error_responses(401, 403),
    route_class=_StreamRoute,
)

TopicQuery = Annotated[
    str | None, Query(description="Only this topic (one of RG_MESSAGES_TOPICS).", max_length=249)
]
KeyQuery = Annotated[str | None, Query(description="Only records with this key.", max_length=1024)]
# A string checked by parse_utc: a datetime parameter would also take a number as Unix time.
SinceQuery = Annotated[
    str | None,
    Query(
        description="Only records at or after this ISO-8601 time (UTC when no offset is given).",
        max_length=64,
        json_schema_extra={"format": "date-time"},
    ),
]


_STREAM_EXAMPLE = (
    ": subscribed\nretry: 3000\n\n"
    "event: message\nid: ractogateway.audit/0/42\n"
    'data: {"topic":"ractogateway.audit","partition":0,"offset":42,"key":"user-42",...,'
    '"writer":"0123456789abcdef0123456789abcdef","seq":41,"checkpointed":false}\n\n'
)


UntilQuery = Annotated[
    str | None,
    Query(
        description="Only records at or before this ISO-8601 time (UTC when no offset is given).",
        max_length=64,
        json_schema_extra={"format": "date-time"},
    ),
]
PartitionQuery = Annotated[
    int | None, Query(ge=0, le=1_000_000, description="Only records of this partition.")
]
OffsetQuery = Annotated[
    int | None, Query(ge=0, description="Only the record at this offset (of each partition).")
]
UserQuery = Annotated[
    str | None,
    Query(description="Only audit records of this user_id.", min_length=1, max_length=1024),
]
ModelQuery = Annotated[
    str | None,
    Query(description="Only audit records of this model.", min_length=1, max_length=1024),
]
TextQuery = Annotated[
    str | None,
    Query(
        description="Only records whose prompt or response (an audit record's; else its value "
        "as text) holds this text, ignoring case.",
        min_length=1,
        max_length=256,
    ),
]


async def message_filters(
    services: ServicesDep,
    *,
    topic: TopicQuery = None,
    key: KeyQuery = None,
    since: SinceQuery = None,
    until: UntilQuery = None,
    partition: PartitionQuery = None,
    offset: OffsetQuery = None,
    user: UserQuery = None,
    model: ModelQuery = None,
    text: TextQuery = None,
) -> RecordFilter:
    """Check the filters before anything is answered (a stream cannot turn into a 422 later)."""
    topics = services.recent.topics
    if topic is not None and topic not in topics:
        kept = ", ".join(topics)
        raise InvalidRequestError.for_field("query.topic", f"{topic!r} is not kept; one of: {kept}")
    since_ms, until_ms = _time_of(since, "since"), _time_of(until, "until")
    if since_ms is not None and until_ms is not None and until_ms < since_ms:
        raise InvalidRequestError.for_field("query.until", "is before `since`")
    return RecordFilter(
        topic=topic,
        key=key,
        since_ms=since_ms,
        until_ms=until_ms,
        partition=partition,
        offset=offset,
        user=user,
        model=model,
        text=text,
    )


def _time_of(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    try:
        return epoch_ms(parse_utc(value, name))
    except ValueError as exc:
        raise InvalidRequestError.for_field(f"query.{name}", str(exc)) from None


FiltersDep = Annotated[RecordFilter, Depends(message_filters)]


@router.get(
    "/messages",
    response_model=MessagesPage,
    summary="The most recent records, newest first",
    responses=error_responses(422),
)
async def messages(
    services: ServicesDep,
    filters: FiltersDep,
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many records.")] = 50,
) -> Response:
    """Records read by the service's background consumer (no consumer group), kept per topic
    up to RG_MESSAGES_BUFFER records and RG_MESSAGES_BUFFER_BYTES bytes."""
    # The page's JSON as bytes (a MessagesPage): only the records shown are decoded, once, with
    # `checkpointed` as the checkpoints written so far say (app/recent/buffer.py).
    body = services.recent.page(filters, limit=limit, coverage=services.coverage.covers)
    return Response(body, media_type="application/json")


@router.get(
    "/messages/stream",
    response_class=EventSourceResponse,
    summary="New records as Server-Sent Events",
    responses={
        200: {
            "description": "An event `message` per record (`data` is a MessageView).",
            "content": {"text/event-stream": {"example": _STREAM_EXAMPLE}},
        },
        **error_responses(422),
    },
)
async def messages_stream(
    services: ServicesDep, filters: FiltersDep, request: Request
) -> AsyncIterator[ServerSentEvent]:
    """Every record read from now on that passes the filters, as an event `message` whose data
    is one record (as in GET /messages) and whose id is `topic/partition/offset`. A client that
    falls 1,000 records or RG_MESSAGES_BUFFER_BYTES bytes behind gets an event `overflow` and
    the stream ends: reconnect; one that reads nothing for RG_MESSAGES_STREAM_SEND_TIMEOUT_S
    while an event waits is disconnected. An
    event's `checkpointed` is the coverage when it is sent (usually false: a checkpoint follows
    within RG_AUDIT_CHECKPOINT_S); GET /messages shows it later."""
    async with services.recent.subscribe() as backlog:
        setattr(request.state, STREAM_BACKLOG, backlog)
        yield ServerSentEvent(comment="subscribed", retry=3000)
        while (record := await backlog.get()) is not None:
            if filters.matches(record):
                yield ServerSentEvent(
                    # `checkpointed` as it is when the event is sent.
                    raw_data=services.recent.streamed(record, services.coverage.covers).decode(),
                    event="message",
                    id=f"{record.topic}/{record.partition}/{record.offset}",
                )
        yield ServerSentEvent(event="overflow", data={"reason": "client too slow; reconnect"})
