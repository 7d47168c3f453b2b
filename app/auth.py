"""API keys and their scopes (`RG_API_KEYS`), checked in constant time.

Keys are kept only as SHA-256 digests; a presented key is hashed and compared with every
configured digest (`hmac.compare_digest`, no early exit), so neither the answer's timing nor a
memory dump tells which key, or how much of one, matched.
"""

import hashlib
import hmac
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal, get_args

Scope = Literal["audit:write", "publish:write", "messages:read", "audit:read", "audit:erase"]
SCOPES: tuple[str, ...] = get_args(Scope)


class ApiKeys:
    """The configured keys; empty means authentication is off."""

    def __init__(self, keys: Mapping[str, Sequence[str]] | None) -> None:
        self._keys = [(_digest(key), frozenset(scopes)) for key, scopes in (keys or {}).items()]

    @property
    def enabled(self) -> bool:
        """True when at least one key is configured."""
        return bool(self._keys)

    def scopes_of(self, presented: str) -> frozenset[str] | None:
        """The scopes of `presented`, or None when it is no configured key."""
        wanted = _digest(presented)
        found: frozenset[str] | None = None
        for digest, scopes in self._keys:
            if hmac.compare_digest(digest, wanted):
                found = scopes
        return found


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback addresses: only this machine can connect."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def presents_a_key(headers: Iterable[tuple[bytes, bytes]], keys: ApiKeys) -> bool:
    """True when authentication is off or the raw request headers carry a configured key
    (`X-API-Key` or `Authorization: Bearer`, any scope): what the body reader needs to know
    before it reserves bytes for a body. The route's own check still decides the answer."""
    if not keys.enabled:
        return True
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"x-api-key":
            presented = value
        elif lowered == b"authorization" and value[:7].lower() == b"bearer ":
            presented = value[7:]
        else:
            continue
        key = presented.strip().decode("latin-1")
        if key and keys.scopes_of(key) is not None:
            return True
    return False
