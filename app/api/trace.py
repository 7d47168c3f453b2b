"""W3C Trace Context: an incoming `traceparent` travels on into the Kafka record's headers, so
a trace can be followed from the calling app to whoever consumes the record."""

import re

from fastapi import Request

# version-traceid-parentid-flags, lowercase hex (W3C Trace Context, level 1).
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")
_MAX_TRACESTATE = 512


async def trace_headers(request: Request) -> dict[str, str]:
    """`traceparent` (and `tracestate`) of the request when valid; an invalid one is dropped,
    as the specification asks, rather than failing the request."""
    parent = request.headers.get("traceparent", "").strip()
    match = _TRACEPARENT.fullmatch(parent)
    if match is None or parent.startswith("ff") or set(match[1]) == {"0"} or set(match[2]) == {"0"}:
        return {}
    headers = {"traceparent": parent}
    state = request.headers.get("tracestate", "").strip()
    if state and len(state) <= _MAX_TRACESTATE and state.isascii() and state.isprintable():
        headers["tracestate"] = state
    return headers
