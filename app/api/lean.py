"""A lean runtime path for the busiest routes (POST /audit, POST /publish, the proxy's
`/openai/v1/{path:path}`, a route that takes any path under its prefix).

FastAPI's request handling (solving a dozen small dependencies, validating the body as Python
objects, validating the returned model again to serialise it) cost about a third of the
service's CPU per audit event. A route declared with `route_class=LeanRoute` and marked
`@serves_lean(handler)` keeps its declaration (signature, dependencies, `responses=`: the
OpenAPI document) and its full FastAPI handler, but each request goes to `handler` first:

- `handler(request)` serves the common case itself (the route's checks, one tuple of
  `app.api.deps.Check` that is also the declared route's `dependencies=`, called in its order;
  the body parsed and validated in one pass from its bytes; the answer written as JSON bytes by
  `receipt_answer`, as the declared handler writes it) and returns the `Response`;
- it returns None for anything unusual (a body that does not validate, a query or header it
  does not read, another content type), and the declared route serves the request as before
  (the body is read once; FastAPI reads it again from the request's cache). So every error
  the route describes is still made by FastAPI and the app's error handlers, byte for byte;
- what it raises (401, 403, 503 ...) goes to the app's error handlers, as a dependency's would.

`LeanDispatch` (middleware, inside the body reader) sends those routes' requests to their lean
handlers directly: routing (matching a dozen routes), the framework's exception and exit-stack
wrappers and their coroutine frames, resumed at every await of the request, were the next
fifth of the CPU. The route's errors (`CLIENT_ERRORS`) are rendered by the app's own
`error_response`; a declined request goes on to the router, with its body.

`LeanApp` (the FastAPI application class) takes those requests past the layers outside the
service's own middleware too: FastAPI's and Starlette's entry (a telemetry query of three
OpenTelemetry providers per request), the framework's 500 handler, exception telemetry and body
limit wrappers. It calls the outermost of the service's middleware (the observer) directly and
does what the 500 handler did: an unexpected error is answered by the app's handler for
`Exception`, when no answer has begun, and raised on for the server to log. With FastAPI's own
OpenTelemetry instrumentation active (its providers configured), every request takes the
framework's path, so none goes unseen.
"""

from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, ClassVar, Protocol, TypeVar, cast

from fastapi import FastAPI, Request, Response
from fastapi.routing import APIRoute, APIRouter
from pydantic_core import SchemaSerializer
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.body_limit import replayed
from app.api.errors import CLIENT_ERRORS, error_response
from app.api.observe import REQUEST_ID_HEADER, SERVER_ANSWERED

LeanHandler = Callable[[Request], Awaitable[Response | None]]
ErrorHandler = Callable[[Request, Exception], Awaitable[Response]]
Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])

_LEAN = "__lean_handler__"
_ANY_PATH = "{path:path}"
# Set in the scope of a request its lean handler declined: the route goes straight to FastAPI's.
_DECLINED = "lean_declined"
# The status logged and counted for a request whose client went away before its body was whole
# (no answer is sent): the "client closed request" of common proxies, not a 5xx of the service's.
CLIENT_GONE = 499


def serves_lean(handler: LeanHandler) -> Callable[[Endpoint], Endpoint]:
    """Mark a route's endpoint: requests go to `handler` first (see the module docstring)."""

    def mark(endpoint: Endpoint) -> Endpoint:
        setattr(endpoint, _LEAN, handler)
        return endpoint

    return mark


def lean_handler_of(route: BaseRoute) -> LeanHandler | None:
    """The lean handler serving `route` first, or None for a route without one."""
    lean: LeanHandler | None = getattr(getattr(route, "endpoint", None), _LEAN, None)
    return lean if isinstance(route, LeanRoute) else None


class LeanRoute(APIRoute):
    """An `APIRoute` whose endpoint, when marked with `serves_lean`, is served by its lean
    handler first and by FastAPI's full handler when that one declines."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        full = super().get_route_handler()
        lean = lean_handler_of(self)
        if lean is None:
            return full

        async def serve(request: Request) -> Response:
            if request.scope.get(_DECLINED):
                return await full(request)
            response = await lean(request)
            return response if response is not None else await full(request)

        return serve


REPLAYED_HEADER = "Idempotent-Replayed"


class Receipt(Protocol):
    """What a write route answers with (`AuditReceipt`, `PublishReceipt`)."""

    __pydantic_serializer__: ClassVar[SchemaSerializer]

    @property
    def status(self) -> str:
        """`acked` once Kafka acknowledged the record; else queued or spooled."""


def receipt_answer(receipt: Receipt, *, replayed: bool = False) -> Response:
    """A write route's answer, from either of its handlers: the receipt as JSON bytes, **201**
    once acknowledged, **202** otherwise; `Idempotent-Replayed: true` when it is the receipt of
    an earlier request, nothing new written."""
    return Response(
        receipt.__pydantic_serializer__.to_json(receipt),
        status_code=201 if receipt.status == "acked" else 202,
        headers={REPLAYED_HEADER: "true"} if replayed else None,
        media_type="application/json",
    )


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


class LeanDispatch:
    """Pure ASGI middleware: a request whose method and path are a lean route's goes to that
    route's lean handler without routing (see the module docstring); any other request, or one
    the handler declines, goes on to the app."""

    def __init__(self, app: ASGIApp, *, routers: Iterable[APIRouter]) -> None:
        self.app = app
        self._routes: dict[tuple[str, str], tuple[APIRoute, LeanHandler]] = {}
        # Routes ending in `{path:path}` (any path under a prefix), by method.
        self._prefixes: dict[str, list[tuple[str, APIRoute, LeanHandler]]] = {}
        for router in routers:
            for route in router.routes:
                lean = lean_handler_of(route)
                if isinstance(route, LeanRoute) and lean is not None:
                    for method in route.methods or ():
                        if route.path.endswith(_ANY_PATH):
                            prefix = route.path.removesuffix(_ANY_PATH)
                            self._prefixes.setdefault(method, []).append((prefix, route, lean))
                        else:
                            self._routes[(method, route.path)] = (route, lean)

    def _found(self, scope: Scope) -> tuple[APIRoute, LeanHandler] | None:
        if scope["type"] != "http":
            return None
        method, path = scope["method"], scope["path"]
        found = self._routes.get((method, path))
        if found is None:
            for prefix, route, lean in self._prefixes.get(method, ()):
                if path.startswith(prefix):
                    return route, lean
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = self._found(scope)
        if found is None:
            await self.app(scope, receive, send)
            return
        route, lean = found
        # The body reader (app.api.body_limit) hands the body over as one message.
        message = await receive()
        if message["type"] == "http.disconnect":
            # The client went away (or was cut off by the read timeout, which set its status):
            # nobody to answer. The handlers' body read raised for it, a 500 with tracebacks.
            scope["route"] = route
            scope.setdefault("state", {}).setdefault(SERVER_ANSWERED, CLIENT_GONE)
            return
        if message["type"] != "http.request" or message.get("more_body", False):
            await self.app(scope, replayed(message, receive), send)
            return
        scope["route"] = route  # what the request log and metrics name it by
        request = Request(scope, receive, send)
        # The body becomes the request's cached body, held by nothing here: `request.body()`
        # gives it without a copy (Starlette's own reading joins it with an empty last piece,
        # a copy), and the handler lets it go once parsed (`release_body`).
        request._body = message.get("body", b"")
        del message
        try:
            response = await lean(request)
        except CLIENT_ERRORS as exc:
            response = error_response(request, exc)
        if response is None:
            scope[_DECLINED] = True
            await self.app(scope, replayed(_body_message(await request.body()), receive), send)
            return
        await response(scope, receive, send)


def lean_paths(routers: Iterable[APIRouter]) -> frozenset[tuple[str, str]]:
    """The (method, path) of every route a lean handler serves first; a route taking any
    path under a prefix (`/openai/v1/{path:path}`) as (method, prefix + `*`)."""
    return frozenset(
        (method, route.path.removesuffix(_ANY_PATH) + "*")
        if route.path.endswith(_ANY_PATH)
        else (method, route.path)
        for router in routers
        for route in router.routes
        if isinstance(route, LeanRoute) and lean_handler_of(route) is not None
        for method in route.methods or ()
    )


class LeanApp(FastAPI):
    """The service's FastAPI application: requests for the lean routes (`lean_paths`, set by
    `serve_lean`) enter at the outermost of the service's own middleware, `entry` (see the
    module docstring); all others take the framework's path."""

    _lean: frozenset[tuple[str, str]] = frozenset()
    _prefixes: dict[str, tuple[str, ...]] = {}  # noqa: RUF012 - replaced, never changed in place
    _entry: type | None = None
    _entered: ASGIApp | None = None
    _instrumentation: bool | None = None

    def serve_lean(self, paths: frozenset[tuple[str, str]], *, entry: type) -> None:
        """Serve `paths` (`lean_paths`) from the middleware of class `entry` inward (it must
        be one of the app's middleware, added with `add_middleware`)."""
        self._lean = frozenset(path for path in paths if not path[1].endswith("*"))
        prefixes: dict[str, list[str]] = {}
        for method, path in paths - self._lean:
            prefixes.setdefault(method, []).append(path.removesuffix("*"))
        self._prefixes = {method: tuple(under) for method, under in prefixes.items()}
        self._entry = entry

    def _serves_lean(self, method: str, path: str) -> bool:
        return (method, path) in self._lean or path.startswith(self._prefixes.get(method, ()))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._instrumented():
            await super().__call__(scope, receive, send)
            return
        if self.root_path:
            scope["root_path"] = self.root_path
        scope["app"] = self
        if not self._serves_lean(scope["method"], scope["path"]):
            # Starlette's own entry: FastAPI's adds only its telemetry query.
            if self.middleware_stack is None:
                self.middleware_stack = self.build_middleware_stack()
            await self.middleware_stack(scope, receive, send)
            return
        entered = self._entered or self._enter()
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await entered(scope, receive, sending)
        except Exception as exc:
            # As the framework's outermost layer does: the app's 500, then the server logs it.
            if not started:
                handler = cast(ErrorHandler, self.exception_handlers[Exception])
                response = await handler(Request(scope), exc)
                # Sent past the observer, which echoes the request id on every other answer.
                if request_id := scope.get("state", {}).get("request_id"):
                    response.headers[REQUEST_ID_HEADER] = request_id
                await response(scope, receive, send)
            raise

    def _instrumented(self) -> bool:
        # FastAPI's own OpenTelemetry instrumentation: on when its providers are configured,
        # which happens before an app serves (`opentelemetry-instrument`), so it is asked
        # once (three provider lookups and environment reads, per request, were 4 us).
        if self._instrumentation is None:
            telemetry = getattr(self, "_native_telemetry", None)
            self._instrumentation = telemetry is not None and bool(telemetry.enabled())
        return self._instrumentation

    def _enter(self) -> ASGIApp:
        if self.middleware_stack is None:
            self.middleware_stack = self.build_middleware_stack()
        layer: Any = self.middleware_stack
        while layer is not None and type(layer) is not self._entry:
            layer = getattr(layer, "app", None)
        if layer is None:
            raise RuntimeError(f"no middleware {self._entry!r} in the app's stack")
        entered = cast(ASGIApp, layer)
        self._entered = entered
        return entered


def release_body(request: Request) -> None:
    """Let the request's body go (a lean handler that parsed it and will not decline): while
    the handler waits for Kafka, the parsed event and its record hold the text already."""
    request._body = b""


def _body_message(body: bytes) -> Message:
    return {"type": "http.request", "body": body, "more_body": False}
