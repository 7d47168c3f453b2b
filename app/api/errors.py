"""The contract's error body, `{"error": {"code", "message", "details", "request_id"}}`, for
every error the service answers with: one body builder and one exception handler.

What each error means (status, code, Retry-After) is `app.errors.problem_for`; here it becomes
HTTP: a response for the app's routes, bytes for the answers the protocol gives before routing
(`app.api.request_head`, `app.api.connection_slots`). FastAPI's own errors (validation, 404,
405) and unexpected faults (500) go through the same builder.
"""

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.errors import InvalidRequestError, Problem, ServiceError, problem_for
from app.kafka import KafkaClientError

logger = logging.getLogger(__name__)

# On every error answer: a message may quote the request, and a browser must not take the body
# for anything but JSON (HTML, script).
NO_SNIFF = {"X-Content-Type-Options": "nosniff"}


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


def error_body(problem: Problem, request_id: str | None) -> ErrorBody:
    """The contract's body for `problem`: the one place an error body is made."""
    return ErrorBody(
        error=ErrorDetail(
            code=problem.code,
            message=problem.message,
            details=problem.details,
            request_id=request_id,
        )
    )


def error_bytes(problem: Problem, request_id: str) -> bytes:
    """The body, as the HTTP protocol writes it for answers given before routing."""
    return error_body(problem, request_id).model_dump_json().encode()


def problem_response(
    problem: Problem, request: Request, *, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """The response for `problem` to `request`: its status, its headers (`Retry-After`)
    and `headers` besides."""
    body = error_body(problem, getattr(request.state, "request_id", None))
    return JSONResponse(
        body.model_dump(mode="json"),
        status_code=problem.status,
        headers={**problem.headers, **NO_SNIFF, **(headers or {})},
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

# FastAPI's words for a body it could not decode (not JSON, not UTF-8, nested too deeply).
_UNPARSABLE_BODY = "There was an error parsing the body"


def _snake(phrase: str) -> str:
    return phrase.lower().replace(" ", "_").replace("-", "_").replace("'", "")


def _framework_problem(exc: StarletteHTTPException) -> Problem:
    # Starlette's own answers (404, 405, ...): the status's phrase is the code.
    if exc.status_code == 400 and exc.detail == _UNPARSABLE_BODY:
        # The same answer as for a JSON syntax error: the client sent something unreadable.
        reason = "not valid JSON (UTF-8, nested at most a few hundred levels)"
        return problem_for(
            InvalidRequestError(
                f"invalid input: body is {reason}", details=[{"field": "body", "message": reason}]
            )
        )
    phrase = HTTPStatus(exc.status_code).phrase
    message = exc.detail if isinstance(exc.detail, str) else phrase
    return Problem(exc.status_code, _snake(phrase), message, extra_headers=exc.headers or {})


def _validation_problem(exc: RequestValidationError) -> Problem:
    errors = [
        {"loc": ("body",), "msg": f"not valid JSON: {e.get('ctx', {}).get('error', e['msg'])}"}
        if e["type"] == "json_invalid"
        else e
        for e in exc.errors()
    ]
    return problem_for(InvalidRequestError.from_errors(errors))


def _problem_of(exc: Exception) -> Problem:
    if isinstance(exc, ServiceError):
        return problem_for(exc)
    if isinstance(exc, KafkaClientError):
        problem = problem_for(exc)
        logger.warning("Kafka error answered with %d %s: %s", problem.status, problem.code, exc)
        return problem
    if isinstance(exc, RequestValidationError):
        return _validation_problem(exc)
    if isinstance(exc, StarletteHTTPException):
        return _framework_problem(exc)
    # A genuine fault of the service: logged with its traceback, answered without it.
    logger.error("unhandled error", exc_info=exc)
    return problem_for(ServiceError("the service failed; see its log"))


async def _answer(request: Request, exc: Exception) -> JSONResponse:
    return problem_response(_problem_of(exc), request)


# What the handlers below answer for a route's own errors (not the framework's, not faults).
CLIENT_ERRORS = (ServiceError, KafkaClientError)


def error_response(request: Request, exc: ServiceError | KafkaClientError) -> JSONResponse:
    """The answer the app's handler gives for `exc` (one of `CLIENT_ERRORS`), for code that
    runs outside FastAPI's routing (`app.api.lean.LeanDispatch`)."""
    return problem_response(_problem_of(exc), request)


def install_error_handlers(app: FastAPI) -> None:
    """Make every error, FastAPI's own and unexpected ones included, answer with the
    contract's body. One handler; it is registered for each root because Starlette picks a
    handler by the exception's class (and runs the one for `Exception` outside the other
    middleware, for the 500)."""
    for root in (
        ServiceError,
        KafkaClientError,
        StarletteHTTPException,
        RequestValidationError,
        Exception,
    ):
        app.add_exception_handler(root, _answer)
