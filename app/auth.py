"""API keys and their scopes (`RG_API_KEYS`), checked in constant time.

Keys are kept only as SHA-256 digests; a presented key is hashed and compared with every
configured digest (`hmac.compare_digest`, no early exit), so neither the answer's timing nor a
memory dump tells which key, or how much of one, matched.
"""

import hashlib
import hmac
import ipaddress
from collections.abc import Mapping, Sequence
from typing import Literal, get_args

Scope = Literal["audit:write", "publish:write", "messages:read"]
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
