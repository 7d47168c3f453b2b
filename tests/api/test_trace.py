"""W3C traceparent parsing (unit, no broker)."""

import pytest
from starlette.requests import Request

from app.api.trace import trace_headers

VALID = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def request_with(**headers: str) -> Request:
    raw = [(k.encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": "POST", "path": "/", "headers": raw})


async def test_a_valid_traceparent_and_tracestate_travel_on() -> None:
    headers = await trace_headers(request_with(traceparent=VALID, tracestate="vendor=abc"))
    assert headers == {"traceparent": VALID, "tracestate": "vendor=abc"}


@pytest.mark.parametrize(
    "value",
    [
        "",
        "garbage",
        VALID.upper(),
        "ff" + VALID[2:],
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        VALID + "-extra",
    ],
)
async def test_an_invalid_traceparent_is_dropped(value: str) -> None:
    assert await trace_headers(request_with(traceparent=value)) == {}


async def test_a_tracestate_without_a_traceparent_or_too_long_is_dropped() -> None:
    assert await trace_headers(request_with(tracestate="a=b")) == {}
    long_state = await trace_headers(request_with(traceparent=VALID, tracestate="a=" + "b" * 600))
    assert long_state == {"traceparent": VALID}
