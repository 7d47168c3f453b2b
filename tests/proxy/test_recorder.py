"""The proxy's recorder with a trail stand-in that holds its writes: a fail-closed record whose
caller goes away (its task cancelled: the app disconnected) while the trail is taking it is
still written, and retried when that write fails."""

import asyncio
from typing import Any, cast

from app.errors import OverloadedError
from app.ingest.audit_trail import AuditTrail
from app.metrics import ServiceMetrics
from app.proxy.assembly import Answer
from app.proxy.call import Call, event_of
from app.proxy.recorder import ProxyRecorder
from tests.helpers.polling import eventually


class HeldTrail:
    """`record_once` waits for `release`, then fails `failures` times before taking the event."""

    def __init__(self, failures: int = 0) -> None:
        self.release = asyncio.Event()
        self.failures = failures
        self.attempts = 0
        self.taken: list[str] = []

    async def record_once(self, event: Any, *, wait: bool, caller: str) -> tuple[Any, bool]:
        self.attempts += 1
        await self.release.wait()
        if self.failures:
            self.failures -= 1
            raise OverloadedError("busy")
        self.taken.append(event.event_id)
        return object(), False


def _event() -> Any:
    call = Call("chat.completions", {"model": "m", "messages": []}, "u-1", stream=True)
    call.end()
    return event_of(call, Answer(response_model="m", text="ok"))


async def _cancelled_while_recording(trail: HeldTrail) -> ProxyRecorder:
    recorder = ProxyRecorder(cast(AuditTrail, trail), ServiceMetrics())
    waiting = asyncio.create_task(recorder.record(_event(), "caller"))
    await eventually(lambda: _true(trail.attempts == 1), timeout_s=5)
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    assert waiting.cancelled()
    trail.release.set()
    return recorder


async def _true(value: bool) -> bool:
    return value


async def test_unit_a_record_whose_caller_went_away_is_still_written() -> None:
    trail = HeldTrail()
    recorder = await _cancelled_while_recording(trail)
    await eventually(lambda: _true(len(trail.taken) == 1), timeout_s=5)
    await recorder.close(5)
    assert trail.attempts == 1  # the write under way went on: not a second one


async def test_unit_a_record_whose_caller_went_away_is_retried_when_its_write_fails() -> None:
    trail = HeldTrail(failures=1)
    recorder = await _cancelled_while_recording(trail)
    await eventually(lambda: _true(len(trail.taken) == 1), timeout_s=5)
    await recorder.close(5)
    assert trail.attempts == 2
