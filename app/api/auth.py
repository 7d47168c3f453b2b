"""Who may call what: the API key of a request (`Authorization: Bearer` or `X-API-Key`) and the
scope a route needs."""

import hashlib
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from starlette.requests import HTTPConnection

from app.api.deps import Check, ServicesDep
from app.auth import ApiKeys, Scope
from app.errors import ForbiddenError, UnauthorizedError
from app.services import Services

# auto_error=False: the service answers missing keys itself, with the contract's body. These
# declare both schemes in openapi.json; the keys are read from every header line (`_offered`),
# where these would read the first of each name only.
_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <key>`")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="`X-API-Key: <key>`")


def require(scope: Scope) -> Check:
    """A check refusing requests without a key holding `scope` (401 no or unknown key, 403
    scope missing); with authentication off it lets everything through."""

    def check(request: Request, services: Services) -> None:
        _check(services.api_keys, request, scope)

    async def solved(
        request: Request,
        services: ServicesDep,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        api_key: Annotated[str | None, Depends(_api_key)],
    ) -> None:
        check(request, services)

    return Check(check, solved)


def _offered(request: HTTPConnection) -> set[str]:
    """The distinct keys `request` carries: each `X-API-Key` line and each `Authorization`
    line's Bearer credentials; another `Authorization` scheme counts as a distinct value."""
    offered = set(request.headers.getlist("x-api-key"))
    for authorization in request.headers.getlist("authorization"):
        scheme, credentials = get_authorization_scheme_param(authorization)
        if scheme.lower() == "bearer":
            offered.add(credentials)
        elif len(request.headers.getlist("authorization")) > 1:
            offered.add(authorization)  # beside another: which one the client means is unclear
    return offered - {""}


def _check(keys: ApiKeys, request: HTTPConnection, scope: Scope) -> None:
    if not keys.enabled:
        return
    offered = _offered(request)
    if len(offered) > 1:
        # Which of two keys counts must not depend on header order (an appending proxy's key
        # came after the client's); refuse both.
        raise UnauthorizedError(
            "send one API key: the `Authorization: Bearer` and `X-API-Key` values differ"
        )
    presented = offered.pop() if offered else None
    if not presented:
        raise UnauthorizedError(
            "an API key is required: send `Authorization: Bearer <key>` or `X-API-Key: <key>`"
        )
    scopes = keys.scopes_of(presented)
    if scopes is None:
        raise UnauthorizedError("unknown API key")
    if scope not in scopes:
        raise ForbiddenError(f"this API key lacks the scope {scope}")


async def caller_of(request: Request, keys: ApiKeys) -> str:
    """Who sent an authorized request, as a namespace for its idempotency keys and event ids:
    a prefix of its API key's SHA-256 (the key itself is never kept); "" with authentication
    off, one namespace for all."""
    if not keys.enabled:
        return ""
    bearer, api_key = await _bearer(request), await _api_key(request)
    presented = (bearer.credentials if bearer is not None else "") or api_key or ""
    # 64 bits: distinct for any set of configured keys, short beside tens of thousands of keys.
    return hashlib.sha256(presented.encode("utf-8")).hexdigest()[:16]


def key_from_header(keys: ApiKeys, request: HTTPConnection, scope: Scope) -> str | None:
    """The sidecar key of a request whose `Authorization` belongs to someone else (the recording
    proxy's goes to the upstream API): read from `X-API-Key` only, checked for `scope` (401,
    403 as `require`). None with authentication off."""
    if not keys.enabled:
        return None
    offered = set(request.headers.getlist("x-api-key")) - {""}
    if len(offered) > 1:
        raise UnauthorizedError("send one API key: the `X-API-Key` lines differ")
    if not offered:
        raise UnauthorizedError(
            "an API key is required: send `X-API-Key: <key>` (on this route `Authorization` "
            "is the upstream API's and is passed on to it)"
        )
    presented = offered.pop()
    scopes = keys.scopes_of(presented)
    if scopes is None:
        raise UnauthorizedError("unknown API key")
    if scope not in scopes:
        raise ForbiddenError(f"this API key lacks the scope {scope}")
    return presented


def key_label(key: str) -> str:
    """A name for an API key that is no secret and stable: `key-` and 12 hex digits of its
    SHA-256 (the key cannot be recovered from it)."""
    return f"key-{hashlib.sha256(key.encode('utf-8')).hexdigest()[:12]}"


def caller_of_key(key: str | None) -> str:
    """`caller_of`'s namespace for a key already read ("" with authentication off)."""
    return "" if key is None else hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
