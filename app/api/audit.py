"""POST /audit and POST /audit/batch: prompt/response records written durably to Kafka."""

import re
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Query, Request, Response
from pydantic import BaseModel, Field, ValidationError

from app.api.auth import caller_of, require
from app.api.deps import (
    AcceptingWork,
    AuditTopicWritable,
    Checks,
    HeldBytesDep,
    ServicesDep,
    TraceHeadersDep,
    get_held_bytes,
)
from app.api.errors import ErrorBody, error_responses
from app.api.lean import (
    LeanRoute,
    is_json,
    receipt_answer,
    release_body,
    serves_lean,
    wait_of,
)
from app.api.trace import trace_headers
from app.errors import InvalidRequestError, problem_for
from app.ingest.audit_batch import ItemOutcome, record_batch
from app.ingest.backpressure import Hold
from app.ingest.receipts import AuditReceipt
from app.kafka import KafkaAuditEvent
from app.services import Services

# The checks of every audit route, in their order: the routes' dependencies, and what the lean
# handler of POST /audit calls (a check added here is made by both of its handlers).
AUDIT_WRITE: Checks = (require("audit:write"), AcceptingWork, AuditTopicWritable)

router = APIRouter(
    tags=["audit"],
    dependencies=AUDIT_WRITE,
    responses=error_responses(401, 403),
    route_class=LeanRoute,
)

IDEMPOTENCY_KEY_HEADER = "idempotency-key"
# The `Idempotency-Key` rule (1-255 printable ASCII, no space): declared on the route (so in
# openapi.json) and checked by the lean handler (`_is_idempotency_key`) from the same values.
_KEY_MIN, _KEY_MAX, _KEY_PATTERN = 1, 255, r"^[\x21-\x7e]+$"
_KEY = re.compile(_KEY_PATTERN)


def _is_idempotency_key(value: str) -> bool:
    return _KEY_MIN <= len(value) <= _KEY_MAX and _KEY.fullmatch(value) is not None


# The write routes' 503 also covers the audit topic (app/ingest/audit_topic_guard.py).
UNAVAILABLE = {
    "model": ErrorBody,
    "description": "Overloaded, or Kafka unavailable or too slow to acknowledge; or the audit "
    "topic would delete the record (`audit_topic_noncompliant`, naming the topic setting) or is "
    "not created or checked yet (`audit_topic_unavailable`); see `Retry-After`.",
}

EXAMPLE_EVENT = {
    "user_id": "user-42",
    "model": "gpt-4o",
    "prompt": "Summarise our refund policy in one sentence.",
    "response": "Refunds are issued within 14 days of purchase.",
    "request_id": "req-7f3a",
    "metadata": {"app": "support-bot", "tokens": 57},
}

WaitQuery = Annotated[
    bool,
    Query(
        description="true: answer 201 once Kafka acknowledged (acks=all). false: answer 202 as "
        "soon as the producer has the record."
    ),
]


class AuditBatch(BaseModel):
    """Several audit events, each validated and answered on its own."""

    events: list[Any] = Field(
        min_length=1,
        description="KafkaAuditEvent objects (see POST /audit); at most RG_AUDIT_BATCH_MAX.",
        examples=[[EXAMPLE_EVENT, {**EXAMPLE_EVENT, "user_id": "user-7"}]],
    )


class BatchItemError(BaseModel):
    """Why one item of a batch was not accepted (the contract's error fields, plus status)."""

    status: int = Field(examples=[422])
    code: str = Field(examples=["invalid_request"])
    message: str = Field(examples=["invalid input: prompt"])
    details: list[Any] = Field(default_factory=list)


class BatchItemResult(BaseModel):
    """The outcome of one item, at its index in the request: a receipt or an error."""

    index: int
    receipt: AuditReceipt | None = None
    error: BatchItemError | None = None


class AuditBatchResult(BaseModel):
    """One result per event, in the order sent, and how many were accepted."""

    results: list[BatchItemResult]
    accepted: int
    failed: int


async def audit_lean(request: Request) -> Response | None:
    """POST /audit's common case without FastAPI's dependency solving (`app.api.lean`): the
    route's checks (`AUDIT_WRITE`) in their order, the body validated from its bytes in one
    pass, the receipt written as JSON bytes. None (the declared route
    answers) for an unusual query, `Idempotency-Key` or content type, or a body that does not
    validate: its 422 stays FastAPI's."""
    wait = wait_of(request)
    headers = request.headers
    idempotency_key = headers.get(IDEMPOTENCY_KEY_HEADER)
    if (
        wait is None
        or (idempotency_key is not None and not _is_idempotency_key(idempotency_key))
        or not is_json(headers.get("content-type"))
    ):
        return None
    services = request.app.state.services
    for check in AUDIT_WRITE:
        check(request, services)
    try:
        event = KafkaAuditEvent.model_validate_json(await request.body())
    except ValidationError:
        return None
    release_body(request)
    receipt, replayed = await _record(
        request,
        event,
        services,
        wait=wait,
        trace=await trace_headers(request),
        held=await get_held_bytes(request),
        idempotency_key=idempotency_key,
    )
    return receipt_answer(receipt, replayed=replayed)


class _ValidBatch(BaseModel):
    """POST /audit/batch's body as its lean handler takes it: every event valid, validated from
    the body's bytes in one pass. A batch with an invalid event is the declared route's, which
    answers each event on its own."""

    events: list[KafkaAuditEvent] = Field(min_length=1)


async def audit_batch_lean(request: Request) -> Response | None:
    """POST /audit/batch's common case without FastAPI's dependency solving (`app.api.lean`):
    the route's checks in their order, the body validated from its bytes in one pass, the
    answer written as JSON bytes. None (the declared route answers) for an unusual query or
    content type, an invalid event or too many: their answers stay the declared route's."""
    wait = wait_of(request)
    if wait is None or not is_json(request.headers.get("content-type")):
        return None
    services = request.app.state.services
    for check in AUDIT_WRITE:
        check(request, services)
    try:
        events = _ValidBatch.model_validate_json(await request.body()).events
    except ValidationError:
        return None
    if len(events) > services.settings.audit_batch_max:
        return None
    release_body(request)
    result = await _record_batch(
        request,
        events,
        services,
        wait=wait,
        trace=await trace_headers(request),
        held=await get_held_bytes(request),
    )
    return Response(
        AuditBatchResult.__pydantic_serializer__.to_json(result), media_type="application/json"
    )


async def _record_batch(
    request: Request,
    events: list[Any],
    services: Services,
    *,
    wait: bool,
    trace: dict[str, str],
    held: Hold | None,
) -> AuditBatchResult:
    # Both handlers of POST /audit/batch: the trail, then one result per event.
    outcomes = await record_batch(
        services.audit_trail,
        events,
        wait=wait,
        headers=trace,
        held=held,
        caller=await caller_of(request, services.api_keys),
    )
    results = [_result_of(index, outcome) for index, outcome in enumerate(outcomes)]
    failed = sum(1 for result in results if result.error is not None)
    return AuditBatchResult(results=results, accepted=len(results) - failed, failed=failed)


async def _record(
    request: Request,
    event: KafkaAuditEvent,
    services: Services,
    *,
    wait: bool,
    trace: dict[str, str],
    held: Hold | None,
    idempotency_key: str | None,
) -> tuple[AuditReceipt, bool]:
    # Both handlers of POST /audit: the event id for the log line, then the trail.
    request.state.event_id = event.event_id
    receipt, replayed = await services.audit_trail.record_once(
        event,
        wait=wait,
        headers=trace,
        idempotency_key=idempotency_key,
        held=held,
        caller=await caller_of(request, services.api_keys),
    )
    if replayed:
        request.state.event_id = receipt.event_id
    return receipt, replayed


@router.post(
    "/audit",
    status_code=201,
    response_model=AuditReceipt,
    summary="Write one audit event to Kafka",
    responses={
        202: {
            "model": AuditReceipt,
            "description": "Queued (`?wait=false`), or spooled to disk while Kafka is away "
            "(with RG_SPOOL_DIR).",
        },
        **error_responses(413, 422, 502),
        503: UNAVAILABLE,
    },
)
@serves_lean(audit_lean)
async def audit(
    *,
    event: Annotated[
        KafkaAuditEvent,
        Body(openapi_examples={"event": {"summary": "A chat turn", "value": EXAMPLE_EVENT}}),
    ],
    request: Request,
    services: ServicesDep,
    trace: TraceHeadersDep,
    held: HeldBytesDep,
    wait: WaitQuery = True,
    idempotency_key: Annotated[
        str | None,
        Header(
            min_length=_KEY_MIN,
            max_length=_KEY_MAX,
            pattern=_KEY_PATTERN,
            description="Retries with the same key (or, without one, the same `event_id`) and "
            "the same body within RG_IDEMPOTENCY_WINDOW_S get the first receipt back; nothing "
            "is written again. Keys are the API key's own; the same key with another body "
            "gets 422 `idempotency_key_reused`.",
        ),
    ] = None,
) -> Response:
    """Validate the event (filling `event_id` and `timestamp_utc` when absent), write it with
    key `user_id`, and answer with its receipt: **201** once acknowledged, **202** queued. An
    event already acknowledged (same `event_id`, or same `Idempotency-Key`) gets its first
    receipt again, with `Idempotent-Replayed: true`, and nothing new is written. The receipt's
    `writer`, `seq` and `chain` place the record on its writer's hash chain (docs/integrity.md),
    evidence the client can keep and have checked against the trail."""
    receipt, replayed = await _record(
        request,
        event,
        services,
        wait=wait,
        trace=trace,
        held=held,
        idempotency_key=idempotency_key,
    )
    return receipt_answer(receipt, replayed=replayed)


@router.post(
    "/audit/batch",
    summary="Write several audit events to Kafka",
    responses={**error_responses(413, 422), 503: UNAVAILABLE},
)
@serves_lean(audit_batch_lean)
async def audit_batch(
    *,
    batch: AuditBatch,
    request: Request,
    services: ServicesDep,
    trace: TraceHeadersDep,
    held: HeldBytesDep,
    wait: WaitQuery = True,
) -> AuditBatchResult:
    """The events are written in one pass: all validated, the valid ones handed to Kafka in
    order within one deadline for the batch, and their acknowledgements awaited together.
    **200** with one result per event, in order (a receipt, or an error with its status and
    code); a bad event does not fail the others, and an event written before (same
    `event_id`) gets its first receipt again."""
    most = services.settings.audit_batch_max
    if len(batch.events) > most:
        raise InvalidRequestError.for_field(
            "body.events", f"{len(batch.events)} events, at most {most} are allowed"
        )
    return await _record_batch(request, batch.events, services, wait=wait, trace=trace, held=held)


def _result_of(index: int, outcome: ItemOutcome) -> BatchItemResult:
    if isinstance(outcome, AuditReceipt):
        return BatchItemResult(index=index, receipt=outcome)
    # The contract's error fields as the HTTP answer would carry them, plus the status (a
    # batch answers 200 as a whole, so Retry-After has no header to go in).
    problem = problem_for(outcome)
    error = BatchItemError(
        status=problem.status, code=problem.code, message=problem.message, details=problem.details
    )
    return BatchItemResult(index=index, error=error)
