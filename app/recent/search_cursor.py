"""The cursor of GET /audit/records: where the next page of one query goes on.

A cursor is `<payload>.<tag>`, both base64url without padding. The payload is JSON:
`{"v": 1, "q": <query id>, "w": [since_ms, until_ms], "r": [[partition, next, stop], ...]}`:
the query it belongs to (`query_id()` of its filters and order), the time window fixed by its
first page, and per partition the offsets still to read (oldest first: from `next` up to
`stop`, exclusive; newest first: from `next`, exclusive, down to `stop`). The tag is an
HMAC-SHA-256 (first 16 bytes) of the payload under the search's secret
(RG_AUDIT_SEARCH_CURSOR_SECRET, or one drawn per process). A cursor whose tag does not match
is refused as tampered; one of another query is refused as such: a cursor can only continue
the query that made it. It grants nothing the query could not ask for itself: it only saves
the reading already done.
"""

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass

import orjson

CURSOR_VERSION = 1
_TAG_BYTES = 16


class CursorError(ValueError):
    """A cursor that is not one of ours, was altered, or belongs to another query."""


@dataclass(frozen=True, slots=True)
class CursorState:
    """What a cursor carries: the window of its query and the offsets still to read."""

    since_ms: int
    until_ms: int
    # partition -> (next, stop), as the module docstring says.
    ranges: dict[int, tuple[int, int]]


def query_id(**filters: str | int | None) -> str:
    """An id of a query's filters and order as the client gave them (not its limit, which
    may change from page to page)."""
    return hashlib.sha256(orjson.dumps(filters, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


class CursorCodec:
    """Writes and checks cursors under one secret."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _tag(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, payload, hashlib.sha256).digest()[:_TAG_BYTES]

    def encode(self, query: str, state: CursorState) -> str:
        """The cursor continuing `query` from `state`."""
        payload = orjson.dumps(
            {
                "v": CURSOR_VERSION,
                "q": query,
                "w": [state.since_ms, state.until_ms],
                "r": [[p, nxt, stop] for p, (nxt, stop) in sorted(state.ranges.items())],
            }
        )
        return f"{_b64(payload)}.{_b64(self._tag(payload))}"

    def decode(self, cursor: str, query: str) -> CursorState:
        """The state of `cursor`; `CursorError` unless it is intact and made for `query`."""
        body, dot, tag = cursor.partition(".")
        try:
            payload, presented = _unb64(body), _unb64(tag)
        except (binascii.Error, ValueError):
            raise CursorError("is not a cursor of GET /audit/records") from None
        if not dot or not hmac.compare_digest(self._tag(payload), presented):
            raise CursorError(
                "was altered, or made by an instance with another RG_AUDIT_SEARCH_CURSOR_SECRET"
            )
        try:
            data = orjson.loads(payload)
            if data["v"] != CURSOR_VERSION:
                raise CursorError(f"has version {data['v']!r}; this service reads {CURSOR_VERSION}")
            if data["q"] != query:
                raise CursorError("belongs to another query (other filters or order)")
            since_ms, until_ms = (int(x) for x in data["w"])
            ranges = {int(p): (int(nxt), int(stop)) for p, nxt, stop in data["r"]}
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, CursorError):
                raise
            raise CursorError("is not a cursor of GET /audit/records") from None
        return CursorState(since_ms, until_ms, ranges)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not text.isascii():
        raise ValueError("not ASCII")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
