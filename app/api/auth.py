"""Who may call what: the API key of a request (`Authorization: Bearer` or `X-API-Key`) and the
scope a route needs."""

import hashlib
from typing import Annotated

from fastapi import Depends, Request
from fastapi.params import Depends as DependsParam
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from app.api.deps import ServicesDep
from app.auth import ApiKeys, Scope
from app.errors import ForbiddenError, UnauthorizedError

# auto_error=False: the service answers missing keys itself, with the contract's body. These
# also declare both schemes in openapi.json.
_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <key>`")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="`X-API-Key: <key>`")


def require(scope: Scope) -> DependsParam:
    """A dependency refusing requests without a key holding `scope` (401 no or unknown key,
    403 scope missing); with authentication off it lets everything through."""

    async def check(
        services: ServicesDep,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        api_key: Annotated[str | None, Depends(_api_key)],
    ) -> None:
        _check(services.api_keys, bearer, api_key, scope)

    dependency: DependsParam = Depends(check)
    return dependency


async def authorize(request: Request, keys: ApiKeys, scope: Scope) -> None:
    """What `require(scope)` checks, for a handler that solves no dependencies
    (`app.api.lean`): the same headers read the same way, the same errors."""
    if keys.enabled:
        _check(keys, await _bearer(request), await _api_key(request), scope)


def _check(
    keys: ApiKeys,
    bearer: HTTPAuthorizationCredentials | None,
    api_key: str | None,
    scope: Scope,
) -> None:
    if not keys.enabled:
        return
    offered = {bearer.credentials if bearer is not None else "", api_key or ""} - {""}
    if len(offered) > 1:
        # Which of two keys counts must not depend on header order; refuse both.
        raise UnauthorizedError("send one API key: `Authorization: Bearer` and `X-API-Key` differ")
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
