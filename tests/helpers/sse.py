"""Reading a text/event-stream answer (GET /messages/stream) from a test."""

from collections.abc import AsyncIterator

import httpx


async def sse_events(response: httpx.Response) -> AsyncIterator[dict[str, str]]:
    """Parse a text/event-stream into dicts of its fields (comments included as `comment`)."""
    event: dict[str, str] = {}
    async for line in response.aiter_lines():
        if not line:
            if event:
                yield event
            event = {}
        elif line.startswith(":"):
            event["comment"] = line[1:].strip()
        else:
            name, _, value = line.partition(":")
            event[name] = value.removeprefix(" ")
