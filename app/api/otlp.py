"""POST /v1/traces and POST /v1/logs: an OTLP/HTTP receiver whose GenAI operations become audit
records (decoding and mapping: `app.ingest.otlp`; writing: `record_batch`, as POST /audit/batch).

Answers follow the OTLP/HTTP specification, in the request's encoding: 200 with an export
response (partial success naming the rejected spans or log records and why), or an error status
with a `google.rpc.Status` body, `Retry-After` on 429/503 (exporters retry those). A batch in
which any operation met backpressure or an unavailable broker is answered 503 as a whole: the
exporter retries it, and the operations written the first time are not written again (their
event ids come from the telemetry)."""

from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.api.audit import AUDIT_WRITE
from app.api.auth import caller_of
from app.api.deps import HeldBytesDep, ServicesDep
from app.api.otlp_status import otlp_error
from app.errors import ServiceError, problem_for
from app.ingest.audit_batch import record_batch
from app.ingest.backpressure import Hold
from app.ingest.otlp_media import (
    OtlpBodyTooLargeError,
    OtlpMediaTypeError,
    OtlpPayloadError,
    encoding_of,
    inflate,
    media_type,
)
from app.kafka import KafkaClientError
from app.services import Services

if TYPE_CHECKING:
    from app.ingest.otlp import Operations

_PAYLOAD_ERRORS: dict[type[ValueError], int] = {
    OtlpPayloadError: 400,
    OtlpMediaTypeError: 415,
    OtlpBodyTooLargeError: 413,
}


# The statuses OTLP exporters retry on (with Retry-After), of the outcomes of record_batch.
_RETRYABLE = frozenset({429, 502, 503, 504})


class OtlpRoute(APIRoute):
    """A route whose every error, its dependencies' too (scope, shutdown), is answered with an
    OTLP `Status` body in the request's encoding rather than the contract's JSON error."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def serve(request: Request) -> Response:
            try:
                return await handler(request)
            except (OtlpPayloadError, OtlpMediaTypeError, OtlpBodyTooLargeError) as exc:
                return otlp_error(request, _PAYLOAD_ERRORS[type(exc)], str(exc))
            except (ServiceError, KafkaClientError) as exc:
                problem = problem_for(exc)
                return otlp_error(request, problem.status, problem.message, problem.headers)
            except StarletteHTTPException as exc:
                return otlp_error(request, exc.status_code, str(exc.detail), exc.headers)
            except RequestValidationError as exc:
                return otlp_error(request, 400, f"invalid request: {exc.errors()[:1]}")

        return serve


router = APIRouter(tags=["opentelemetry"], dependencies=AUDIT_WRITE, route_class=OtlpRoute)

_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
            "application/json": {
                "schema": {"type": "object"},
                "example": {
                    "resourceSpans": [
                        {
                            "scopeSpans": [
                                {
                                    "spans": [
                                        {
                                            "traceId": "5b8efff798038103d269b633813fc60c",
                                            "spanId": "eee19b7ec3c1b174",
                                            "name": "chat gpt-4o",
                                            "attributes": [
                                                {
                                                    "key": "gen_ai.operation.name",
                                                    "value": {"stringValue": "chat"},
                                                }
                                            ],
                                        }
                                    ]
                                }
                            ]
                        }
                    ]
                },
            },
        },
    }
}
# Both encodings, success and error alike (google.rpc.Status for errors, as OTLP/HTTP says).
_EITHER = {
    "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
    "application/json": {"schema": {"type": "object"}},
}
_ANSWERS: dict[int | str, dict[str, Any]] = {
    status: {"description": description, "content": _EITHER}
    for status, description in {
        200: "Accepted: an export response (a partial success names what was rejected).",
        400: "Not an OTLP request: a `google.rpc.Status`.",
        401: "No API key, or an unknown one: a `google.rpc.Status`.",
        403: "The API key lacks audit:write: a `google.rpc.Status`.",
        413: "Body too large: a `google.rpc.Status`.",
        415: "Unsupported Content-Type or Content-Encoding: a `google.rpc.Status`.",
        503: "Overloaded or Kafka unavailable; retry after `Retry-After`.",
    }.items()
}


async def _body(request: Request, services: Services) -> bytes:
    return inflate(
        await request.body(),
        request.headers.get("content-encoding"),
        services.settings.max_body_bytes,
    )


async def _write(
    request: Request, services: Services, held: Hold | None, operations: "Operations", signal: str
) -> tuple[int, str]:
    """Write the operations; how many were rejected and why (the first reason)."""
    counted = services.metrics.otlp_items
    counted.labels(signal, "ignored").inc(operations.ignored)
    if not operations.events:
        return 0, ""
    outcomes = await record_batch(
        services.audit_trail,
        operations.events,
        wait=True,
        held=held,
        caller=await caller_of(request, services.api_keys),
    )
    errors = [outcome for outcome in outcomes if isinstance(outcome, Exception)]
    counted.labels(signal, "recorded").inc(len(outcomes) - len(errors))
    # Backpressure or an unavailable broker: the whole batch again later (what was written is
    # found by its event id then). Any other refusal is the operation's own: rejected.
    retry = [error for error in errors if problem_for(error).status in _RETRYABLE]
    if retry:
        raise retry[0]
    counted.labels(signal, "rejected").inc(len(errors))
    if not errors:
        return 0, ""
    first = problem_for(errors[0])
    return len(errors), f"{len(errors)} operation(s) rejected; the first: {first.message}"


@router.post(
    "/v1/traces",
    summary="OTLP/HTTP traces: GenAI spans become audit records",
    openapi_extra=_BODY,
    responses=_ANSWERS,
    response_class=Response,
)
async def traces(request: Request, services: ServicesDep, held: HeldBytesDep) -> Response:
    """An OTLP `ExportTraceServiceRequest` (protobuf or JSON, gzip or not): each span with
    `gen_ai.operation.name` is written as one audit record (docs/opentelemetry.md); other
    spans are counted and dropped."""
    from app.ingest import otlp  # noqa: PLC0415 - its protobuf classes on the first request

    encoding = encoding_of(request.headers.get("content-type"))
    operations = otlp.operations_of_traces(
        otlp.decode_traces(await _body(request, services), encoding)
    )
    rejected, message = await _write(request, services, held, operations, "traces")
    answer = otlp.traces_response(rejected, message, encoding)
    return Response(answer, media_type=media_type(encoding))


@router.post(
    "/v1/logs",
    summary="OTLP/HTTP logs: GenAI events become audit records",
    openapi_extra=_BODY,
    responses=_ANSWERS,
    response_class=Response,
)
async def logs(request: Request, services: ServicesDep, held: HeldBytesDep) -> Response:
    """An OTLP `ExportLogsServiceRequest`: each `gen_ai.client.inference.operation.details`
    event, and each span's older per-message events together, are written as one audit
    record; other log records are counted and dropped."""
    from app.ingest import otlp  # noqa: PLC0415 - its protobuf classes on the first request

    encoding = encoding_of(request.headers.get("content-type"))
    operations = otlp.operations_of_logs(otlp.decode_logs(await _body(request, services), encoding))
    rejected, message = await _write(request, services, held, operations, "logs")
    answer = otlp.logs_response(rejected, message, encoding)
    return Response(answer, media_type=media_type(encoding))
