"""A lean runtime path for the busiest routes (POST /audit, POST /publish).

FastAPI's request handling (solving a dozen small dependencies, validating the body as Python
objects, validating the returned model again to serialise it) cost about a third of the
service's CPU per audit event. A route declared with `route_class=LeanRoute` and marked
`@serves_lean(handler)` keeps its declaration (signature, dependencies, `responses=`: the
OpenAPI document) and its full FastAPI handler, but each request goes to `handler` first:

- `handler(request)` serves the common case itself (the same checks as the declared
  dependencies, the body parsed and validated in one pass from its bytes, the answer written
  as JSON bytes) and returns the `Response`;
- it returns None for anything unusual (a body that does not validate, a query or header it
  does not read, another content type), and the declared route serves the request as before
  (the body is read once; FastAPI reads it again from the request's cache). So every error
  the route describes is still made by FastAPI and the app's error handlers, byte for byte;
- what it raises (401, 403, 503 ...) goes to the app's error handlers, as a dependency's would.
"""

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from fastapi import Request, Response
from fastapi.routing import APIRoute

LeanHandler = Callable[[Request], Awaitable[Response | None]]
Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])

_LEAN = "__lean_handler__"


def serves_lean(handler: LeanHandler) -> Callable[[Endpoint], Endpoint]:
    """Mark a route's endpoint: requests go to `handler` first (see the module docstring)."""

    def mark(endpoint: Endpoint) -> Endpoint:
        setattr(endpoint, _LEAN, handler)
        return endpoint

    return mark


class LeanRoute(APIRoute):
    """An `APIRoute` whose endpoint, when marked with `serves_lean`, is served by its lean
    handler first and by FastAPI's full handler when that one declines."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        full = super().get_route_handler()
        lean: LeanHandler | None = getattr(self.endpoint, _LEAN, None)
        if lean is None:
            return full

        async def serve(request: Request) -> Response:
            response = await lean(request)
            return response if response is not None else await full(request)

        return serve


def is_json(content_type: str | None) -> bool:
    """True for `application/json` (with parameters or not): the body the lean handlers
    parse. Other JSON types (`+json`) and a missing header are left to FastAPI."""
    if content_type is None:
        return False
    media_type = content_type.partition(";")[0].strip().lower()
    return media_type == "application/json"


_WAIT = {b"": True, b"wait=true": True, b"wait=false": False, b"wait=1": True, b"wait=0": False}


def wait_of(request: Request) -> bool | None:
    """`?wait=` of the common queries (none, `wait=true|false|1|0`); None for any other query,
    which the declared route parses (and refuses when it must)."""
    return _WAIT.get(request.scope.get("query_string", b""))
