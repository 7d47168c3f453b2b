"""A stream of Server-Sent Events relayed as it passes: whole events go on to the app at once,
except the one that completes the stream (`data: [DONE]`, or the Responses API's
`response.completed`), which the caller releases once the record is stored; each event's data
is read by the endpoint's assembler (`app.proxy.assembly`), after the event went on (`absorb()`):
an event's JSON is parsed off its way to the app unless it may be the one that completes the
stream."""

import json

from app.proxy.assembly import RESPONSE_ENDS, ChatChunks, ResponseEvents

_ENDS = tuple(end.encode() for end in RESPONSE_ENDS)


class SseRelay:
    """Splits a stream of Server-Sent Events as it passes: `feed()` returns the bytes to send
    on now (whole events), and keeps back the event that completes the stream and whatever
    follows it (`held`), to be sent once the record is stored. Every event's data is read by
    the endpoint's assembler."""

    def __init__(self, endpoint: str) -> None:
        self._rest = b""
        self.held = b""
        self.completed = False
        self._chat = endpoint == "chat.completions"
        self._assembler: ChatChunks | ResponseEvents = (
            ChatChunks() if self._chat else ResponseEvents()
        )
        self._sent: list[bytes] = []  # events gone on, their data not read yet

    def feed(self, chunk: bytes) -> bytes:
        """The whole events of `chunk` (and what came before it) to send on now; call
        `absorb()` once they are sent."""
        data = self._rest + chunk if self._rest else chunk
        out: list[bytes] = []
        boundaries = _Boundaries(data)
        start = 0
        while True:
            end, size = boundaries.next(start)
            if end < 0:
                break
            event, start = data[start : end + size], end + size
            if self.completed:
                self.held += event
                continue
            if not self._may_complete(event):
                out.append(event)
                self._sent.append(event)  # read once sent
                continue
            self.absorb()  # the events before it are read first, in order
            if self._take(event):
                self.completed = True
                self.held += event
            else:
                out.append(event)
        self._rest = data[start:]
        return b"".join(out)

    def absorb(self) -> None:
        """Read the data of the events `feed()` gave to send on."""
        for event in self._sent:
            self._take(event)
        self._sent.clear()

    @property
    def assembler(self) -> ChatChunks | ResponseEvents:
        """What the stream said so far (every event `feed()` passed, read)."""
        self.absorb()
        return self._assembler

    def _may_complete(self, raw: bytes) -> bool:
        # A chat stream ends with `[DONE]`; a Responses stream with an event whose name or type
        # is one of RESPONSE_ENDS, said as such (with a JSON escape anywhere, it could be said
        # otherwise: such an event is read now).
        if self._chat:
            return b"[DONE]" in raw
        return b"\\u" in raw or any(end in raw for end in _ENDS)

    def rest(self) -> bytes:
        """What is still kept: an unfinished event's bytes, then the held ones."""
        return self._rest + self.held if not self.completed else self.held + self._rest

    def _take(self, raw: bytes) -> bool:
        # True when `raw` is the event that completes the stream.
        name, data = sse_fields(raw)
        if data is None:
            return False
        if data.strip() == "[DONE]":
            return True
        try:
            parsed = json.loads(data)
        except (ValueError, RecursionError):  # passed on, left out of the record
            return False
        if not isinstance(parsed, dict):
            return False
        self._assembler.take(parsed)
        return not self._chat and (parsed.get("type") in RESPONSE_ENDS or name in RESPONSE_ENDS)


_BLANK_LINES = (b"\n\n", b"\r\n\r\n", b"\r\r")


class _Boundaries:
    """Where the events of one piece end (a blank line, in any of SSE's line endings), found
    in one pass: each ending's next place is looked for again only once an event took it (a
    piece of many events, as a fast upstream's arrive, was split in time quadratic in its
    size: 1.3 ms for 85 events of a chat stream)."""

    __slots__ = ("_data", "_next")

    def __init__(self, data: bytes) -> None:
        self._data = data
        # Without a CR only "\n\n" can end an event.
        endings = _BLANK_LINES if b"\r" in data else _BLANK_LINES[:1]
        self._next = dict.fromkeys(endings, -2)  # -2: not looked for yet

    def next(self, start: int) -> tuple[int, int]:
        """Where the first event from `start` ends, and the size of its blank line; -1 when
        no event ends after `start`."""
        found = (-1, 0)
        for ending, known in self._next.items():
            at = known
            if known == -2 or 0 <= known < start:
                at = self._next[ending] = self._data.find(ending, start)
            if at >= 0 and (found[0] < 0 or at < found[0]):
                found = (at, len(ending))
        return found


def sse_fields(raw: bytes) -> tuple[str | None, str | None]:
    """`(event name, data)` of one raw event; data None for a comment or an event without it."""
    name: str | None = None
    data: list[str] = []
    for line in raw.decode("utf-8", "replace").splitlines():
        if line.startswith(":"):
            continue
        key, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if key == "event":
            name = value
        elif key == "data":
            data.append(value)
    return name, "\n".join(data) if data else None
