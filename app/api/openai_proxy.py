"""`/openai/v1/{path}`: the OpenAI-compatible recording proxy (docs/proxy.md; the work is
`app.proxy.exchange`'s). An app points its SDK's base URL here; chat completions, responses and
embeddings are recorded on the audit trail, anything else is passed through unrecorded.

With `RG_API_KEYS` set, the sidecar's key comes in `X-API-Key` (scope `audit:write`): the
app's `Authorization` is the upstream API's and goes to it untouched."""

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response

from app.api.auth import caller_of_key, key_from_header, key_label
from app.api.deps import ServicesDep, accepting_work, audit_topic_writable
from app.api.errors import error_responses
from app.api.lean import LeanRoute, serves_lean
from app.proxy.assembly import endpoint_of

router = APIRouter(tags=["openai proxy"], route_class=LeanRoute)

PREFIX = "/openai/v1/"
PATH = PREFIX + "{path:path}"
USER_MAX_CHARS = 256
JSON = "application/json"
_BODY: dict[str, Any] = {
    "requestBody": {
        "required": False,
        "content": {
            JSON: {
                "schema": {"type": "object"},
                "example": {
                    "model": "gpt-4o-mini",
                    "messages": [{"role": "user", "content": "What is our refund window?"}],
                    "stream": True,
                    "stream_options": {"include_usage": True},
                },
            }
        },
    }
}


def _openai_error(description: str, code: str) -> dict[str, Any]:
    example = {
        "error": {"message": "...", "type": "service_unavailable", "param": None, "code": code}
    }
    return {
        "description": description,
        "content": {JSON: {"schema": {"type": "object"}, "example": example}},
    }


_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The upstream's answer (JSON, or `text/event-stream`), with the record's "
        "receipt in `X-RG-*` headers (a stream: `X-RG-Event-Id`, and the receipt as an SSE "
        "comment `: rg-receipt {json}` before its completion)."
    },
    502: _openai_error(
        "The upstream could not be reached (OpenAI's error shape).", "upstream_unreachable"
    ),
    503: _openai_error(
        "Fail-closed: the audit trail did not take the call's record (OpenAI's error shape, "
        "`Retry-After`).",
        "kafka_timeout",
    ),
    504: _openai_error(
        "The upstream did not answer in time (OpenAI's error shape).", "upstream_timeout"
    ),
    **error_responses(401, 403, 413, 422),
}
UserHeader = Annotated[
    str | None,
    Header(
        alias="X-RG-User",
        max_length=USER_MAX_CHARS,
        description="Whom the record is about (else the body's `user` or `safety_identifier`, "
        "else the API key's label).",
    ),
]


async def _proxy(path: str, request: Request, services: ServicesDep, user: str | None) -> Response:
    key = key_from_header(services.api_keys, request, "audit:write")
    if endpoint_of(request.method, path) is not None and not services.proxy.fail_open:
        # Fail-closed: no upstream call whose record the trail could not take.
        accepting_work(request, services)
        audit_topic_writable(request, services)
    answer = await services.proxy.serve(
        request.method,
        path,
        # As sent (starlette's `request.url` would build and parse the whole URL for it).
        request.scope["query_string"].decode("latin-1"),
        list(request.headers.items()),
        await request.body(),
        user=(user or "").strip() or None,
        key_label=key_label(key) if key is not None else None,
        caller=caller_of_key(key),
        sidecar_key_header=services.api_keys.enabled,
    )
    for name, value in answer.raw_headers:  # (`answer.headers` would decode every one)
        if name == b"x-rg-event-id":
            request.state.event_id = value.decode("latin-1")  # on the request's log line
            break
    return answer


async def proxy_lean(request: Request) -> Response | None:
    """The proxy's calls without FastAPI's routing and dependencies (app.api.lean: they were a
    tenth of the CPU of a proxied call); an `X-RG-User` too long to hold is left to the
    declared route, which refuses it."""
    user = request.headers.get("x-rg-user")
    if user is not None and len(user) > USER_MAX_CHARS:
        return None
    path = request.scope["path"].removeprefix(PREFIX)
    return await _proxy(path, request, request.app.state.services, user)


@router.post(
    PATH,
    summary="The recording proxy: an OpenAI API call, recorded on the audit trail",
    openapi_extra=_BODY,
    responses=_ANSWERS,
    response_class=Response,
)
@serves_lean(proxy_lean)
async def openai_proxy(
    path: str, request: Request, services: ServicesDep, user: UserHeader = None
) -> Response:
    """Sends the call to `RG_OPENAI_UPSTREAM_URL` + `/{path}` with the app's headers
    (`Authorization` included) and passes the answer back. `chat/completions`, `responses` and
    `embeddings` are recorded as one audit event each (record schema v2: messages, tool calls,
    finish reasons, usage, model, response id, latency, time to first token); fail-closed
    (`RG_PROXY_MODE`), the answer completes only once the record is stored. Any other path is
    passed through unrecorded. Scope `audit:write` in `X-API-Key`."""
    return await _proxy(path, request, services, user)


@router.api_route(
    PATH,
    methods=["GET", "PUT", "PATCH", "DELETE"],
    include_in_schema=False,
    response_class=Response,
)
@serves_lean(proxy_lean)
async def openai_proxy_other(
    path: str, request: Request, services: ServicesDep, user: UserHeader = None
) -> Response:
    """Any other method: passed through unrecorded."""
    return await _proxy(path, request, services, user)
