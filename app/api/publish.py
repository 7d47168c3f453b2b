"""POST /publish: ordinary events to the topics the service may write."""

import time
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request, Response
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from app.api.auth import require
from app.api.deps import (
    AcceptingWork,
    Checks,
    HeldBytesDep,
    ServicesDep,
    TraceHeadersDep,
    get_held_bytes,
)
from app.api.errors import error_responses
from app.api.lean import LeanRoute, is_json, receipt_answer, release_body, serves_lean, wait_of
from app.api.trace import trace_headers
from app.ingest.publisher import PublishReceipt
from app.kafka import KafkaPublishRequest
from app.kafka.json_bounds import MAX_ID_CHARS, check_json_numbers, json_integer
from app.kafka.models import TopicName

# The checks of POST /publish, in their order: the route's dependencies, and what its lean
# handler calls (a check added here is made by both handlers).
PUBLISH_WRITE: Checks = (require("publish:write"), AcceptingWork)

router = APIRouter(
    tags=["publish"],
    dependencies=PUBLISH_WRITE,
    responses=error_responses(401, 403),
    route_class=LeanRoute,
)

_MAX_HEADERS = 64
HeaderName = Annotated[str, Field(min_length=1, max_length=256)]
HeaderValue = Annotated[str, Field(max_length=4096)]
# A record's timestamp may differ from now by at most this much (as Kafka's
# log.message.timestamp.before/after.max.ms can enforce): far-future records would outlive
# time retention and push genuine ones out of GET /messages' buffer, which evicts the oldest.
_TIMESTAMP_WINDOW_MS = 24 * 60 * 60 * 1000


class PublishBody(BaseModel):
    """A `KafkaPublishRequest` in JSON: a string value is sent as UTF-8 text, anything else
    as compact JSON marked `content-type: application/json`; `null` is a tombstone."""

    model_config = ConfigDict(extra="forbid")

    topic: TopicName = Field(examples=["events.orders"])
    value: Annotated[Any, AfterValidator(check_json_numbers)] = Field(
        default=None, examples=[{"order_id": 981, "status": "paid"}]
    )
    key: str | None = Field(
        default=None, max_length=MAX_ID_CHARS, examples=["order-981"], description="UTF-8 key."
    )
    headers: dict[HeaderName, HeaderValue] | None = Field(
        default=None, max_length=_MAX_HEADERS, examples=[{"source": "checkout"}]
    )
    partition: Annotated[int, Field(ge=0, le=2**31 - 1), BeforeValidator(json_integer)] | None = (
        None
    )
    timestamp_ms: Annotated[int, BeforeValidator(json_integer)] | None = Field(
        default=None,
        description="Milliseconds since 1970 (UTC), within a day of the service's clock.",
    )

    @field_validator("headers")
    @classmethod
    def _no_service_headers(cls, headers: dict[str, str] | None) -> dict[str, str] | None:
        # rg-* headers (writer, seq, chain, digest, redaction, schema id) are what the service
        # writes on its own records; GET /messages would show a forged chain place.
        for name in headers or {}:
            if name.lower().startswith("rg-"):
                raise ValueError(f"header {name!r} is reserved: rg-* headers are the service's")
        return headers

    @field_validator("timestamp_ms")
    @classmethod
    def _near_now(cls, timestamp_ms: int | None) -> int | None:
        if timestamp_ms is not None:
            now_ms = int(time.time() * 1000)
            if abs(timestamp_ms - now_ms) > _TIMESTAMP_WINDOW_MS:
                raise ValueError("must be within a day of the service's clock")
        return timestamp_ms


async def publish_lean(request: Request) -> Response | None:
    """POST /publish's common case without FastAPI's dependency solving (`app.api.lean`), as
    `audit_lean` does for POST /audit; None (the declared route answers) for an unusual query
    or content type, or a body that does not validate."""
    wait = wait_of(request)
    if wait is None or not is_json(request.headers.get("content-type")):
        return None
    services = request.app.state.services
    for check in PUBLISH_WRITE:
        check(request, services)
    try:
        body = PublishBody.model_validate_json(await request.body())
    except ValidationError:
        return None
    release_body(request)
    receipt = await services.publisher.publish(
        KafkaPublishRequest.model_validate(body.model_dump()),
        wait=wait,
        headers=await trace_headers(request),
        held=await get_held_bytes(request),
    )
    return receipt_answer(receipt)


@router.post(
    "/publish",
    status_code=201,
    response_model=PublishReceipt,
    summary="Publish one record to an allowed topic",
    responses={
        202: {"model": PublishReceipt, "description": "Queued (`?wait=false`)."},
        **error_responses(403, 413, 422, 502, 503),
    },
)
@serves_lean(publish_lean)
async def publish(
    *,
    body: Annotated[
        PublishBody,
        Body(
            openapi_examples={
                "event": {
                    "summary": "An order event",
                    "value": {
                        "topic": "events.orders",
                        "key": "order-981",
                        "value": {"order_id": 981, "status": "paid"},
                        "headers": {"source": "checkout"},
                    },
                }
            }
        ),
    ],
    services: ServicesDep,
    trace: TraceHeadersDep,
    held: HeldBytesDep,
    wait: Annotated[
        bool, Query(description="false: answer 202 once the producer has the record.")
    ] = True,
) -> Response:
    """Publish with the given key, headers, partition and timestamp: **201** with where Kafka
    stored it once acknowledged (acks=all), **202** queued with `?wait=false`."""
    request = KafkaPublishRequest.model_validate(body.model_dump())
    receipt = await services.publisher.publish(request, wait=wait, headers=trace, held=held)
    return receipt_answer(receipt)
