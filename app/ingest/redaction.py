"""Redaction before publish: personal data and secrets out of an audit event before it is
serialized, digested and chained, so the trail never holds them (RG_REDACTION, off by default).

What is found, and how, is app/ingest/detectors.py: PEM private-key blocks, JWTs, API keys and
tokens, e-mail addresses, IBANs, payment card numbers, IP addresses, phone numbers and the
patterns of RG_REDACTION_PATTERNS. Each kind's pattern is cheap and anchored on what the value
must contain ('@', '-----BEGIN', 'eyJ', a run of digits, ':'), and a kind whose marker is not
in the text is not searched at all: ordinary prose costs a few regex scans.

Bounded work, as a prompt is anyone's text: every built-in search is linear in the text (no
start inside a run scans the run again; tested at 1 MB); `phonenumbers` confirms at most
CONFIRMS_PER_TEXT candidates of a text; the operator's patterns run on the `regex` engine within
PATTERN_BUDGET_S of CPU per text, past which the text is replaced whole (fail closed); events of
THREAD_AT_CHARS characters or more, and all events when there are operator patterns, are
redacted in a worker thread, off the event loop.

Never flagged, by construction (and tested): UUIDs and hex digests (digit runs inside words are
not candidates), dates and times, prices, order numbers (no separator, no `+`: not a phone; not
a card unless it starts 2-6 and passes Luhn), version numbers: a dotted quad right after `v`,
`version` or `release` (e.g. `version 1.2.3.4`) is a version, any other one an IPv4 address.

`mask` replaces a finding by its kind (`[EMAIL]`); `hash` by its kind and the first 12 hex
digits of HMAC-SHA256(key, value) (`[EMAIL:3f9a…]`), so equal values stay linkable. The
policy is stamped on every record as `rg-redaction: <mode>;v=<REDACTION_VERSION>`.
"""

import asyncio
import bisect
import hashlib
import hmac
import logging
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Literal

from app.ingest.detectors import (
    DETECTORS,
    PatternOverrunError,
    custom_detectors,
    load_validators,
)
from app.kafka import KafkaAuditEvent

REDACTION_HEADER = "rg-redaction"
# Bumped whenever a detector changes what it finds: the header says which rules a record met.
# 2: phone candidates past CONFIRMS_PER_TEXT are replaced unconfirmed; a text an operator
# pattern runs out of time over is replaced whole.
REDACTION_VERSION = 2
# How many candidates of one text a costly confirmation (`phonenumbers`, ~25 us each) is run
# for; later ones that pass the cheap checks are taken as found (more is replaced, never less).
CONFIRMS_PER_TEXT = 1_000
# Events holding more characters than this are redacted in a worker thread, so the event loop
# keeps serving meanwhile (a 1 MB worst case takes about a second); smaller ones inline.
THREAD_AT_CHARS = 16_384

# The placeholder kind of a text replaced whole because a pattern ran out of time.
OVERRUN_KIND = "REDACTION_TIMEOUT"

RedactionMode = Literal["mask", "hash"]
# Findings of the kinds before that a finding is inserted among one by one (see _findings).
_INSERT_BELOW = 256

logger = logging.getLogger(__name__)


class Redactor:
    """Redacts the prompt, the response and the chosen metadata fields of audit events.

    `count(kind, n)` learns what was replaced (the metrics' `rg_redactions_total{kind}`)."""

    def __init__(
        self,
        mode: RedactionMode,
        *,
        key: bytes | None = None,
        patterns: Mapping[str, str] | None = None,
        metadata_fields: Sequence[str] = (),
        count: Callable[[str, int], None] | None = None,
    ) -> None:
        if mode == "hash" and not key:
            raise ValueError("RG_REDACTION=hash needs a key: set RG_REDACTION_KEY_FILE")
        self.mode = mode
        self._key = key or b""
        self._detectors = DETECTORS + custom_detectors(patterns or {})
        load_validators()
        # An operator's pattern may spend its whole budget on a short text: never on the loop.
        self._inline_below = 0 if patterns else THREAD_AT_CHARS
        self._metadata_fields = tuple(metadata_fields)
        self._count = count or (lambda _kind, _n: None)

    @property
    def stamp(self) -> str:
        """The `rg-redaction` header value: the policy and its version."""
        return f"{self.mode};v={REDACTION_VERSION}"

    def event(self, event: KafkaAuditEvent) -> KafkaAuditEvent:
        """`event` with its prompt, response and chosen metadata fields redacted (the same
        object when nothing was found)."""
        update: dict[str, Any] = {}
        for name in _CONTENT_FIELDS:
            content = getattr(event, name)
            if content is None:
                continue
            redacted = self._walk(content)
            if redacted != content:
                update[name] = redacted
        chosen = [name for name in self._metadata_fields if name in event.metadata]
        if chosen:
            metadata = dict(event.metadata)
            for name in chosen:
                metadata[name] = self._walk(metadata[name])
            if metadata != event.metadata:
                update["metadata"] = metadata
        return event.model_copy(update=update) if update else event

    async def event_async(self, event: KafkaAuditEvent) -> KafkaAuditEvent:
        """`event()`, in a worker thread when the event is large (see `events()`)."""
        [redacted] = await self.events([event])
        return redacted

    async def events(self, events: Sequence[KafkaAuditEvent]) -> list[KafkaAuditEvent]:
        """`event()` of each: inline when they hold fewer than THREAD_AT_CHARS characters in
        all and there are no operator patterns, else in one worker thread, so the event loop
        is not held meanwhile (the thread gives the interpreter up between regex calls, each
        short: the built-in patterns are linear, the operator's release it)."""
        if sum(self._size(event) for event in events) < self._inline_below:
            return [self.event(event) for event in events]
        return await asyncio.to_thread(lambda: [self.event(event) for event in events])

    def _size(self, event: KafkaAuditEvent) -> int:
        chosen = [event.metadata[name] for name in self._metadata_fields if name in event.metadata]
        return _chars([getattr(event, name) for name in _CONTENT_FIELDS]) + _chars(chosen)

    def text(self, text: str) -> str:
        """`text` with every finding replaced by its placeholder; replaced whole by
        `[REDACTION_TIMEOUT]` when an operator pattern runs out of time over it (nothing
        it may have found gets through)."""
        try:
            findings = sorted(self._findings(text), key=lambda found: (found[0], found[1]))
        except PatternOverrunError as exc:
            logger.warning("%s: the text is replaced whole by [%s]", exc, OVERRUN_KIND)
            self._count(OVERRUN_KIND, 1)
            return self._placeholder(OVERRUN_KIND, text)
        if not findings:
            return text
        parts: list[str] = []
        end = 0
        counts: dict[str, int] = {}
        for start, _rank, stop, kind in findings:
            if start < end:
                continue  # overlaps a finding of a kind that goes first
            parts += (text[end:start], self._placeholder(kind, text[start:stop]))
            counts[kind] = counts.get(kind, 0) + 1
            end = stop
        parts.append(text[end:])
        for kind, n in counts.items():
            self._count(kind, n)
        return "".join(parts)

    def _findings(self, text: str) -> Iterator[tuple[int, int, int, str]]:
        # Spans found so far, sorted and disjoint: a later kind's match that overlaps one of
        # them is dropped (two bisections, not a scan, as findings can be many). A kind's own
        # matches are disjoint and in order, so inserting one copies at most the earlier
        # kinds' spans after it: done one by one while those are few, else merged in after
        # the kind (two sorted runs, linear; one by one would be quadratic).
        starts: list[int] = []
        stops: list[int] = []
        markers: dict[str | re.Pattern[str], bool] = {}
        confirms = CONFIRMS_PER_TEXT
        for rank, detector in enumerate(self._detectors):
            if not self._has(detector.marker, text, markers):
                continue
            merged: list[tuple[int, int]] | None = [] if len(starts) >= _INSERT_BELOW else None
            for start, stop in detector.find(text):
                at = bisect.bisect_right(starts, start)
                if start == stop or (at and stops[at - 1] > start):
                    continue
                if at < len(starts) and starts[at] < stop:
                    continue
                if not detector.check(text, start, stop):
                    continue
                if detector.confirm is not None and confirms > 0:
                    confirms -= 1
                    if not detector.confirm(text, start, stop):
                        continue
                if merged is None:
                    starts.insert(at, start)
                    stops.insert(at, stop)
                else:
                    merged.append((start, stop))
                yield start, rank, stop, detector.kind
            if merged:
                spans = sorted([*zip(starts, stops, strict=True), *merged])
                starts = [start for start, _ in spans]
                stops = [stop for _, stop in spans]

    @staticmethod
    def _has(
        marker: "str | re.Pattern[str] | None",
        text: str,
        known: dict["str | re.Pattern[str]", bool],
    ) -> bool:
        # Whether `text` holds `marker`, each marker looked for once per text.
        if marker is None:
            return True
        if marker not in known:
            known[marker] = marker in text if isinstance(marker, str) else bool(marker.search(text))
        return known[marker]

    def _placeholder(self, kind: str, value: str) -> str:
        if self.mode == "mask":
            return f"[{kind}]"
        mac = hmac.new(self._key, value.encode(), hashlib.sha256).hexdigest()
        return f"[{kind}:{mac[:12]}]"

    def _walk(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {key: self._walk(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self._walk(item) for item in value]
        return value


# The fields of an event that hold what was said (schema version 2 adds the structured ones).
_CONTENT_FIELDS = (
    "prompt",
    "response",
    "match_input",
    "system_instructions",
    "input_messages",
    "output_messages",
)


def _chars(value: Any) -> int:
    # The characters of the strings in a JSON value (a redaction's work).
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(len(key) + _chars(item) for key, item in value.items())
    if isinstance(value, list):
        return sum(_chars(item) for item in value)
    return 0
