"""Load runs against the served process and what came back."""

import asyncio
import collections
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class Answer:
    """One request of a load run: what it sent and what came back (or how it failed)."""

    index: int
    event_id: str
    user_id: str
    status: int | None
    body: Any
    retry_after: str | None
    seconds: float
    error: str | None = None


def answer_of(
    index: int,
    event: dict[str, Any],
    response: httpx.Response | None,
    seconds: float,
    error: str | None = None,
) -> Answer:
    """The `Answer` of event `index`: its response, or the transport error instead."""
    return Answer(
        index,
        event["event_id"],
        event["user_id"],
        response.status_code if response is not None else None,
        response.json() if response is not None else None,
        response.headers.get("retry-after") if response is not None else None,
        seconds,
        error,
    )


def audit_event(index: int, *, prefix: str, users: int = 20) -> dict[str, Any]:
    """Audit event `index` of a run: its own event_id, one of `users` users."""
    return {
        "event_id": f"{prefix}-{index}",
        "user_id": f"user-{index % users}",
        "model": "m",
        "prompt": f"prompt {index}",
        "response": f"response {index}",
    }


async def post_audits(
    client: httpx.AsyncClient,
    count: int,
    *,
    prefix: str,
    concurrency: int = 32,
    path: str = "/audit",
    answered: Callable[[int], None] | None = None,
) -> list[Answer]:
    """POST `count` audit events with `concurrency` workers, each in order of its index within a
    worker; `answered(n)` is called after every answer (to trigger faults mid-run)."""
    answers: list[Answer] = []
    indexes = iter(range(count))

    async def worker() -> None:
        for index in indexes:
            event = audit_event(index, prefix=prefix)
            started = time.monotonic()
            try:
                response = await client.post(path, json=event)
            except httpx.HTTPError as exc:
                failure = f"{type(exc).__name__}: {exc}"
                answers.append(answer_of(index, event, None, time.monotonic() - started, failure))
            else:
                answers.append(answer_of(index, event, response, time.monotonic() - started))
            if answered is not None:
                answered(len(answers))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return sorted(answers, key=lambda a: a.index)


def summary(answers: list[Answer]) -> str:
    """`201: n, 503 kafka_timeout: n, ...` for the closing figures."""
    kinds = collections.Counter(
        f"{a.status} {a.body['error']['code']}"
        if a.status and a.status >= 400
        else str(a.status or a.error)
        for a in answers
    )
    return ", ".join(f"{kind}: {n}" for kind, n in sorted(kinds.items()))
