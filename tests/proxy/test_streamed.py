"""The proxy's streamed answer (`app.proxy.streamed.StreamedAnswer`) with a scripted server side:
the chunks go out as they come; an app that goes away ends the answer quietly, and the chunks'
generator is closed at once, whether it was waiting for the upstream or for the send; a
cancellation that is not the app's going away goes on."""

import asyncio
from collections.abc import AsyncIterator

import pytest
from starlette.types import Message

from app.proxy.streamed import StreamedAnswer


class App:
    """The server's side of one request: what was sent, and a disconnect on demand."""

    def __init__(self) -> None:
        self.sent: list[Message] = []
        self.leave = asyncio.Event()
        self.send_blocks = False

    async def receive(self) -> Message:
        await self.leave.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        self.sent.append(message)
        if self.send_blocks and message["type"] == "http.response.body":
            await asyncio.Event().wait()  # a full socket buffer, for good


class Chunks:
    """A generator of chunks that waits where told, and says how it ended."""

    def __init__(self, count: int, hold_after: int | None = None) -> None:
        self.count, self.hold_after = count, hold_after
        self.ended: str | None = None
        self.given = 0

    async def __call__(self) -> AsyncIterator[bytes]:
        try:
            for n in range(self.count):
                if n == self.hold_after:
                    await asyncio.Event().wait()  # the upstream says nothing more
                self.given += 1
                yield b"chunk %d\n" % n
            self.ended = "done"
        except BaseException as exc:
            self.ended = type(exc).__name__
            raise


async def _serve(chunks: Chunks, app: App) -> "asyncio.Task[None]":
    answer = StreamedAnswer(chunks(), status_code=200, headers={"content-type": "text/plain"})
    task = asyncio.create_task(answer({"type": "http"}, app.receive, app.send))
    await asyncio.sleep(0.01)
    return task


async def test_unit_chunks_go_out_as_they_come() -> None:
    app, chunks = App(), Chunks(3)
    await (await _serve(chunks, app))
    assert [m["type"] for m in app.sent] == ["http.response.start"] + ["http.response.body"] * 4
    assert b"".join(m.get("body", b"") for m in app.sent) == b"chunk 0\nchunk 1\nchunk 2\n"
    assert app.sent[-1]["more_body"] is False
    assert chunks.ended == "done"


@pytest.mark.parametrize("waiting_for", ["the upstream", "the send"])
async def test_unit_an_app_that_goes_away_ends_the_answer_and_its_chunks(waiting_for: str) -> None:
    app, chunks = App(), Chunks(3, hold_after=1)
    app.send_blocks = waiting_for == "the send"
    task = await _serve(chunks, app)
    app.leave.set()
    await asyncio.wait_for(task, timeout=5)  # ended quietly: no CancelledError
    assert not task.cancelled()
    assert chunks.given == 1
    # The generator's own ending ran now (a relay records what the app was sent there).
    assert chunks.ended == ("CancelledError" if waiting_for == "the upstream" else "GeneratorExit")


async def test_unit_a_cancellation_not_from_the_app_goes_on() -> None:
    app, chunks = App(), Chunks(3, hold_after=1)
    task = await _serve(chunks, app)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert chunks.ended == "CancelledError"
