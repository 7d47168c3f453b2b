"""GET /audit/records: audit records over the whole retention (scope `audit:read`).

The search itself is app/recent/search.py; this route checks the query, fixes its window,
turns a cursor into where to go on, and writes the page as JSON, or as NDJSON (one record a
line, then one line `{"page": {...}}`) when asked with `Accept: application/x-ndjson`.
"""

import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field

from app.api.auth import require
from app.api.deps import ServicesDep
from app.api.errors import error_responses
from app.errors import InvalidRequestError
from app.kafka.stamps import epoch_ms, parse_utc, utc_of_epoch_ms
from app.recent.record import MessageView
from app.recent.search import RecordQuery, RecordsPage
from app.recent.search_cursor import CursorError, query_id

router = APIRouter(
    tags=["audit"], dependencies=[require("audit:read")], responses=error_responses(401, 403)
)

NDJSON = "application/x-ndjson"
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
# A cursor holds ~30 bytes a partition: this fits a topic of some 200 partitions, well within
# RG_MAX_HEADER_BYTES with the other parameters.
MAX_CURSOR = 8192
# The query parameters the route reads: any other is refused rather than ignored (a filter
# misspelt must not widen the answer silently).
PARAMETERS = frozenset(
    {"user_id", "since", "until", "model", "event_id", "order", "limit", "cursor"}
)


class AuditRecordView(MessageView):
    """An audit record as GET /audit/records shows it: the record (as GET /messages shows
    one), its `event_id` and `digest` (its headers'), and where its inclusion proof is."""

    event_id: str | None = Field(examples=["01928c6e-0000-7000-8000-000000000000"])
    digest: str | None = Field(
        examples=["sha256:" + "0" * 64], description="The record's rg-digest header."
    )
    proof_url: str | None = Field(
        examples=["/audit/proof?writer=0123456789abcdef0123456789abcdef&seq=41"],
        description="GET /audit/proof for this record: its C2SP tlog-proof once a checkpoint "
        "covers it (with a signing key and RG_AUDIT_PROOFS).",
    )


class RecordsPageView(BaseModel):
    """One page of a search."""

    records: list[AuditRecordView]
    count: int
    cursor: str | None = Field(
        description="Pass it (with the same filters and order) for the next page; null once "
        "the whole set has been answered."
    )
    complete: bool = Field(
        description="True when this page ends the set: no record of the query is left unread."
    )
    stopped_by: Literal["limit", "scan_limit"] | None = Field(
        description="Why the page ended before the set did: `limit` records shown, or "
        "RG_AUDIT_SEARCH_SCAN_LIMIT records read (the answer so far is partial; the cursor "
        "goes on)."
    )
    scanned: int = Field(description="Records read from Kafka for this page.")
    partitions: list[int] = Field(description="The partitions the query reads.")
    since: str
    until: str


Text = Annotated[str | None, Query(min_length=1, max_length=1024)]
Time = Annotated[
    str | None,
    Query(
        max_length=64,
        json_schema_extra={"format": "date-time"},
        description="RFC 3339 time (UTC when no offset is given); see the route's description.",
    ),
]


@router.get(
    "/audit/records",
    response_model=RecordsPageView,
    summary="Audit records over the whole retention, by user, time, model or event id",
    responses={
        200: {
            "content": {NDJSON: {"example": '{"topic":"ractogateway.audit",...}\n{"page":{}}\n'}}
        },
        **error_responses(422, 503),
    },
)
async def records(
    services: ServicesDep,
    request: Request,
    *,
    user_id: Text = None,
    since: Time = None,
    until: Time = None,
    model: Text = None,
    event_id: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
    order: Literal["newest", "oldest"] = "newest",
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(min_length=1, max_length=MAX_CURSOR)] = None,
) -> Response:
    """The audit records stamped in [`since`, `until`] (Kafka timestamps: when their writer
    sent them), newest or oldest first, read from the audit topic: every writer's, any start.
    Without `since` and `until` the window is the last RG_AUDIT_SEARCH_WINDOW_S seconds; with
    one of them, that long from it. With `user_id` one partition is read (the one its records
    are keyed to); without, every partition. A page reads at most RG_AUDIT_SEARCH_SCAN_LIMIT
    records: `complete` says whether the set is answered, `cursor` goes on. `event_id` and
    `model` filter what the window holds (add `user_id` to read one partition)."""
    unknown = sorted(set(request.query_params) - PARAMETERS)
    if unknown:
        known = ", ".join(sorted(PARAMETERS))
        raise InvalidRequestError.for_field(
            f"query.{unknown[0]}", f"is no parameter; known: {known}"
        )
    given = {
        "user_id": user_id,
        "since": since,
        "until": until,
        "model": model,
        "event_id": event_id,
        "order": order,
    }
    query_key = query_id(**given)
    state = None
    if cursor is not None:
        try:
            state = services.search.cursors.decode(cursor, query_key)
        except CursorError as exc:
            raise InvalidRequestError.for_field("query.cursor", str(exc)) from None
        since_ms, until_ms = state.since_ms, state.until_ms
    else:
        since_ms, until_ms = _window(since, until, services.settings.audit_search_window_s)
    query = RecordQuery(
        since_ms=since_ms,
        until_ms=until_ms,
        user_id=user_id,
        model=model,
        event_id=event_id,
        order=order,
        limit=limit,
    )
    page = await services.search.page(query, state)
    cursor_out = (
        services.search.cursors.encode(query_key, page.remaining) if page.remaining else None
    )
    summary = _summary(page, cursor_out, since_ms, until_ms)
    if NDJSON in request.headers.get("accept", ""):
        return StreamingResponse(_lines(page, summary), media_type=NDJSON)
    body = b'{"records":[' + b",".join(page.records) + b"]," + orjson.dumps(summary)[1:]
    return Response(body, media_type="application/json")


def _window(since: str | None, until: str | None, window_s: int) -> tuple[int, int]:
    since_ms, until_ms = _time_of(since, "since"), _time_of(until, "until")
    window_ms = window_s * 1000
    if since_ms is None:
        until_ms = int(time.time() * 1000) if until_ms is None else until_ms
        since_ms = until_ms - window_ms
    elif until_ms is None:
        until_ms = since_ms + window_ms
    if until_ms < since_ms:
        raise InvalidRequestError.for_field("query.until", "is before `since`")
    return since_ms, until_ms


def _time_of(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    try:
        return epoch_ms(parse_utc(value, name))
    except ValueError as exc:
        raise InvalidRequestError.for_field(f"query.{name}", str(exc)) from None


def _summary(page: RecordsPage, cursor: str | None, since_ms: int, until_ms: int) -> dict[str, Any]:
    """The page's end: in the JSON body beside `records`, or the last NDJSON line."""
    return {
        "count": len(page.records),
        "cursor": cursor,
        "complete": page.remaining is None,
        "stopped_by": page.stopped_by,
        "scanned": page.scanned,
        "partitions": page.partitions,
        "since": utc_of_epoch_ms(since_ms),
        "until": utc_of_epoch_ms(until_ms),
    }


async def _lines(page: RecordsPage, summary: dict[str, Any]) -> AsyncIterator[bytes]:
    for record in page.records:
        yield record + b"\n"
    yield orjson.dumps({"page": summary}) + b"\n"
