"""POST /audit and POST /audit/batch: prompt/response records written durably to Kafka."""

from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Query, Request, Response
from pydantic import BaseModel, Field

from app.api.auth import require
from app.api.deps import (
    AcceptingWork,
    AuditTopicWritable,
    HeldBytesDep,
    ServicesDep,
    TraceHeadersDep,
)
from app.api.errors import ErrorBody, error_responses
from app.errors import InvalidRequestError
from app.ingest.audit_trail import AuditReceipt, BatchItemResult
from app.kafka import KafkaAuditEvent

router = APIRouter(
    tags=["audit"],
    dependencies=[require("audit:write"), AcceptingWork, AuditTopicWritable],
    responses=error_responses(401, 403),
)

REPLAYED_HEADER = "Idempotent-Replayed"

# The write routes' 503 also covers the audit topic (app/audit_topic_guard.py).
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


class AuditBatchResult(BaseModel):
    """One result per event, in the order sent, and how many were accepted."""

    results: list[BatchItemResult]
    accepted: int
    failed: int


@router.post(
    "/audit",
    status_code=201,
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
async def audit(
    *,
    event: Annotated[
        KafkaAuditEvent,
        Body(openapi_examples={"event": {"summary": "A chat turn", "value": EXAMPLE_EVENT}}),
    ],
    request: Request,
    response: Response,
    services: ServicesDep,
    trace: TraceHeadersDep,
    held: HeldBytesDep,
    wait: WaitQuery = True,
    idempotency_key: Annotated[
        str | None,
        Header(
            min_length=1,
            max_length=255,
            pattern=r"^[\x21-\x7e]+$",
            description="Retries with the same key (or, without one, the same `event_id`) "
            "within RG_IDEMPOTENCY_WINDOW_S get the first receipt back; nothing is written "
            "again.",
        ),
    ] = None,
) -> AuditReceipt:
    """Validate the event (filling `event_id` and `timestamp_utc` when absent), write it with
    key `user_id`, and answer with its receipt: **201** once acknowledged, **202** queued. An
    event already acknowledged (same `event_id`, or same `Idempotency-Key`) gets its first
    receipt again, with `Idempotent-Replayed: true`, and nothing new is written. The receipt's
    `writer`, `seq` and `chain` place the record on its writer's hash chain (docs/integrity.md),
    evidence the client can keep and have checked against the trail."""
    request.state.event_id = event.event_id
    receipt, replayed = await services.audit_trail.record_once(
        event, wait=wait, headers=trace, idempotency_key=idempotency_key, held=held
    )
    if replayed:
        request.state.event_id = receipt.event_id
        response.headers[REPLAYED_HEADER] = "true"
    if receipt.status != "acked":
        response.status_code = 202
    return receipt


@router.post(
    "/audit/batch",
    summary="Write several audit events to Kafka",
    responses={**error_responses(413, 422), 503: UNAVAILABLE},
)
async def audit_batch(
    *,
    batch: AuditBatch,
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
    results = await services.audit_trail.record_batch(
        batch.events, wait=wait, headers=trace, held=held
    )
    failed = sum(1 for result in results if result.error is not None)
    return AuditBatchResult(results=results, accepted=len(results) - failed, failed=failed)
