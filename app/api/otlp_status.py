"""The OTLP/HTTP error answer: a `google.rpc.Status` in the request's encoding (JSON when the
request's own is not one OTLP defines), for the receiver's routes and the body limit in front."""

from collections.abc import Mapping

from fastapi import Request, Response

from app.ingest.otlp_media import Encoding, OtlpMediaTypeError, encoding_of, media_type

OTLP_PATHS = frozenset({"/v1/traces", "/v1/logs"})
# google.rpc.Code of an HTTP status (the Status message's `code`).
_RPC_CODES = {400: 3, 401: 16, 403: 7, 413: 3, 415: 3, 429: 8, 503: 14}


def request_encoding(request: Request) -> Encoding:
    """The encoding an answer to `request` is in."""
    try:
        return encoding_of(request.headers.get("content-type"))
    except OtlpMediaTypeError:
        return "json"


def otlp_error(
    request: Request, status: int, message: str, headers: Mapping[str, str] | None = None
) -> Response:
    """An error answer with an OTLP `Status` body (and `headers`, e.g. `Retry-After`)."""
    # The protobuf classes on the first OTLP answer, not with the app (app/ingest/otlp_media.py).
    from app.ingest.otlp import status_body  # noqa: PLC0415

    encoding = request_encoding(request)
    return Response(
        status_body(_RPC_CODES.get(status, 2), message, encoding),
        status_code=status,
        media_type=media_type(encoding),
        headers=dict(headers or {}),
    )
