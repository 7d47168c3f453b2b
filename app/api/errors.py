"""The contract's error body, rendered in one place for every error the service answers with."""

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.kafka import KafkaClientError
from app.problems import UnavailableError, problem_for, validation_details

logger = logging.getLogger(__name__)


class ErrorDetail(BaseModel):
    """What went wrong: a machine-readable code, a sentence for people, and the request id to
    quote when asking about it."""

    code: str = Field(examples=["broker_unavailable"])
    message: str = Field(examples=["Kafka at 127.0.0.1:9092 does not answer"])
    details: list[Any] = Field(default_factory=list)
    request_id: str | None = Field(default=None, examples=["6f1c0c3b9a8e4a8f9e1d2c3b4a5f6e7d"])


class ErrorBody(BaseModel):
    """Every error response: `{"error": {"code", "message", "details", "request_id"}}`."""

    error: ErrorDetail


class ServiceError(Exception):
    """An error the service answers with deliberately: status, code, message, optional headers."""

    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        *,
        details: list[Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.details = details or []
        self.headers = headers


def invalid_input(field: str, problem: str) -> ServiceError:
    """A 422 `invalid_request` about one field, shaped like FastAPI's validation errors
    (`details` names the field), for checks the models cannot make."""
    return ServiceError(
        422,
        "invalid_request",
        f"invalid input: {field}: {problem}",
        details=[{"field": field, "message": problem}],
    )


def error_response(
    request: Request,
    status_code: int,
    code: str,
    message: str,
    *,
    details: list[Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """Render the contract's error body."""
    detail = ErrorDetail(
        code=code,
        message=message,
        details=details or [],
        request_id=getattr(request.state, "request_id", None),
    )
    return JSONResponse(
        ErrorBody(error=detail).model_dump(mode="json"), status_code=status_code, headers=headers
    )


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the error statuses a route can answer with (always JSON, also
    on a route whose success is another media type)."""
    return {
        status: {
            "description": _DESCRIPTIONS[status],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
        }
        for status in statuses
    }


_DESCRIPTIONS = {
    401: "No API key, or an unknown one (authentication is on).",
    403: "The API key lacks the scope, or the topic is not allowed.",
    413: "The body or the record is too large.",
    422: "Invalid input; `details` names each field.",
    502: "Kafka refused the record.",
    503: "Overloaded, or Kafka unavailable or too slow to acknowledge; see `Retry-After`.",
}


def _snake(phrase: str) -> str:
    return phrase.lower().replace(" ", "_").replace("-", "_").replace("'", "")


async def _service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)  # noqa: S101 - registered for this type only
    return error_response(
        request, exc.status_code, exc.code, exc.message, details=exc.details, headers=exc.headers
    )


async def _kafka_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, KafkaClientError)  # noqa: S101 - registered for this type only
    problem = problem_for(exc)
    logger.warning("Kafka error answered with %d %s: %s", problem.status, problem.code, exc)
    return error_response(
        request, problem.status, problem.code, problem.message, headers=problem.headers
    )


# FastAPI's words for a body it could not decode (not JSON, not UTF-8, nested too deeply).
_UNPARSABLE_BODY = "There was an error parsing the body"


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)  # noqa: S101 - registered for this type only
    if exc.status_code == 400 and exc.detail == _UNPARSABLE_BODY:
        # The same answer as for a JSON syntax error: the client sent something unreadable.
        reason = "not valid JSON (UTF-8, nested at most a few hundred levels)"
        return error_response(
            request,
            422,
            "invalid_request",
            f"invalid input: body is {reason}",
            details=[{"field": "body", "message": reason}],
        )
    phrase = HTTPStatus(exc.status_code).phrase
    message = exc.detail if isinstance(exc.detail, str) else phrase
    return error_response(request, exc.status_code, _snake(phrase), message, headers=exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)  # noqa: S101 - registered for this type only
    errors = [
        {"loc": ("body",), "msg": f"not valid JSON: {e.get('ctx', {}).get('error', e['msg'])}"}
        if e["type"] == "json_invalid"
        else e
        for e in exc.errors()
    ]
    message, details = validation_details(errors)
    return error_response(request, 422, "invalid_request", message, details=details)


async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, UnavailableError)  # noqa: S101 - registered for this type only
    return error_response(
        request, 503, exc.code, str(exc), headers={"Retry-After": str(exc.retry_after_s)}
    )


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    # A genuine fault of the service: logged with its traceback, answered without it.
    logger.error("unhandled error", exc_info=exc)
    return error_response(request, 500, "internal_error", "the service failed; see its log")


def install_error_handlers(app: FastAPI) -> None:
    """Make every error, FastAPI's own and unexpected ones included, answer with the
    contract's body."""
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(KafkaClientError, _kafka_error)
    app.add_exception_handler(UnavailableError, _unavailable)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)
