"""Redaction before publish: personal data and secrets out of an audit event before it is
serialized, digested and chained, so the trail never holds them (RG_REDACTION, off by default).

What is found, in this order of precedence when two findings overlap (the earlier kind wins):
PEM private-key blocks, JWTs, API keys and tokens, e-mail addresses, IBANs (mod-97 checked),
payment card numbers (13-19 digits starting 2-6, Luhn checked), IPv6 and IPv4 addresses (checked
with `ipaddress`), phone numbers (a pattern, then `phonenumbers` validates the candidate), and
the patterns of RG_REDACTION_PATTERNS. Each kind's pattern is cheap and anchored on what the
value must contain ('@', '-----BEGIN', 'eyJ', a run of digits, ':'), and a kind whose marker is
not in the text is not searched at all: ordinary prose costs a few regex scans.

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
import base64
import binascii
import bisect
import hashlib
import hmac
import ipaddress
import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import phonenumbers
from stdnum import iban, luhn

from app.kafka import KafkaAuditEvent

if TYPE_CHECKING:
    import regex

REDACTION_HEADER = "rg-redaction"
# Bumped whenever a detector changes what it finds: the header says which rules a record met.
# 2: phone candidates past CONFIRMS_PER_TEXT are replaced unconfirmed; a text an operator
# pattern runs out of time over is replaced whole.
REDACTION_VERSION = 2
# Phone numbers written without a country code are read as numbers of this region.
PHONE_REGION = "US"
# How many candidates of one text a costly confirmation (`phonenumbers`, ~25 us each) is run
# for; later ones that pass the cheap checks are taken as found (more is replaced, never less).
CONFIRMS_PER_TEXT = 1_000
# Events holding more characters than this are redacted in a worker thread, so the event loop
# keeps serving meanwhile (a 1 MB worst case takes about a second); smaller ones inline.
THREAD_AT_CHARS = 16_384

# CPU seconds one RG_REDACTION_PATTERNS pattern may take over one text (a linear pattern
# needs a few milliseconds per MB); past it the whole text is replaced by OVERRUN_KIND.
PATTERN_BUDGET_S = 0.25
# The placeholder kind of a text replaced whole because a pattern ran out of time.
OVERRUN_KIND = "REDACTION_TIMEOUT"

RedactionMode = Literal["mask", "hash"]
# Findings of the kinds before that a finding is inserted among one by one (see _findings).
_INSERT_BELOW = 256

logger = logging.getLogger(__name__)


class PatternOverrunError(Exception):
    """An RG_REDACTION_PATTERNS pattern took more than PATTERN_BUDGET_S over a text."""


# A candidate: the text and its span in it.
Check = Callable[[str, int, int], bool]
# The candidates' spans in a text, in order and disjoint.
Find = Callable[[str], Iterable[tuple[int, int]]]


@dataclass(frozen=True)
class Detector:
    """One kind of finding: its placeholder name, a marker that must be in the text for the
    candidates to be searched (None: always searched), how they are found (in time linear in
    the text), a cheap check of each candidate and a costly one (`confirm`: run for the first
    CONFIRMS_PER_TEXT candidates of a text only)."""

    kind: str
    marker: "str | re.Pattern[str] | None"
    find: Find
    check: Check = lambda _text, _start, _stop: True
    confirm: Check | None = None


def spans(pattern: re.Pattern[str]) -> Find:
    """The spans of `pattern`'s matches, but for those where its group `skip` took part (a
    pattern takes a run that holds no candidate whole that way, so that no later start in
    the run is tried)."""
    if "skip" not in pattern.groupindex:
        return lambda text: (match.span() for match in pattern.finditer(text))
    return lambda text: (
        match.span() for match in pattern.finditer(text) if match.start("skip") < 0
    )


def _jwt(text: str, start: int, stop: int) -> bool:
    # A real JWT's header is base64url JSON naming its algorithm.
    head = text[start:stop].split(".", 1)[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (binascii.Error, ValueError):
        return False
    return isinstance(header, dict) and "alg" in header


_NOT_DIGIT = re.compile(r"\D+")


def _digits(text: str) -> str:
    # Candidates are made of \d and separators only.
    return _NOT_DIGIT.sub("", text)


def _word_start(text: str, start: int, _stop: int) -> bool:
    return start == 0 or not (text[start - 1].isalnum() or text[start - 1] in "_-")


def _card(text: str, start: int, stop: int) -> bool:
    return luhn.is_valid(_digits(text[start:stop]))


def _iban(text: str, start: int, stop: int) -> bool:
    return bool(iban.is_valid(text[start:stop]))


def _ipv4(text: str, start: int, stop: int) -> bool:
    before = text[max(0, start - 9) : start].lower()
    if re.search(r"(?:\bv|version|release)\s*$", before):
        return False  # "v1.2.3.4", "version 1.2.3.4": a version, not an address
    try:
        ipaddress.IPv4Address(text[start:stop])
    except ValueError:
        return False
    return True


def _ipv6(text: str, start: int, stop: int) -> bool:
    text = text[start:stop]
    groups = [group for group in text.split(":") if group]
    # "1::2" in a slice, "12:30:00" in a time: real addresses have a long group or several;
    # "abc::def" in C++ has no digit, which real ones (almost) always have.
    if len(groups) < 3 and not any(len(group) >= 3 for group in groups):
        return False
    if not any(char.isdigit() for char in text):
        return False
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


_DATE = re.compile(r"\d{4}[./-]\d{1,2}[./-]\d{1,2}|\d{1,2}[./-]\d{1,2}[./-]\d{4}")


def _phone_shaped(text: str, start: int, stop: int) -> bool:
    # Cheap refusals (parsing costs tens of microseconds): a national number of PHONE_REGION
    # has 10 digits (11 with its leading 1), an international one 7-15; a date is no number.
    text = text[start:stop]
    digits = len(_digits(text))
    if not (7 <= digits <= 15 if text.startswith("+") else digits in (10, 11)):
        return False
    return not _DATE.search(text)


def _phone(text: str, start: int, stop: int) -> bool:
    text = text[start:stop]
    try:
        number = phonenumbers.parse(text, None if text.startswith("+") else PHONE_REGION)
    except phonenumbers.NumberParseException:
        return False
    return bool(phonenumbers.is_valid_number(number))


# A digit run not inside a word, and not continuing a dotted or dashed number. The lookahead
# first lets the engine skip to a candidate character before it tries the lookbehinds.
_NOT_AFTER = r"(?=[+(\d])(?<![\w+])(?<!\d[.-])"
# Text without a digit has no number of any kind: those detectors are skipped.
_DIGIT = re.compile(r"\d")
_NOT_BEFORE = r"(?!\w|[.-]\d|:\d)"

_PEM_BEGIN = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----")
_PEM_END = re.compile(r"-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----")


def _pem_blocks(text: str) -> Iterator[tuple[int, int]]:
    # Each BEGIN up to the first END after it. Paired by offsets, not by one lazy `.*?` pattern:
    # that one scans from every BEGIN to the end of a text without an END (quadratic); here
    # each character is read once. No END after a BEGIN: none after a later one either.
    pos = 0
    while (begin := _PEM_BEGIN.search(text, pos)) is not None:
        end = _PEM_END.search(text, begin.end())
        if end is None:
            return
        yield begin.start(), end.end()
        pos = end.end()


# A start inside a run must not scan the same run again (once per start: quadratic in the
# run). Where a candidate may start inside a run (a JWT after a word) or where a start inside
# one is refused by a check (keys), a failed candidate takes the rest of its run (group `skip`),
# and the search goes on after it: no later start in that run could be found anyway. Runs are
# read possessively (`++`, `{n,}+`): what follows a run is never a character of it, so giving
# characters back finds nothing more.
DETECTORS: tuple[Detector, ...] = (
    Detector("PRIVATE_KEY", "-----BEGIN", _pem_blocks),
    Detector(
        "JWT",
        "eyJ",
        spans(re.compile(r"eyJ(?:[\w-]{8,}+\.[\w-]{8,}+\.[\w-]*+|(?P<skip>[\w-]*+))")),
        _jwt,
    ),
    Detector(
        "API_KEY",
        None,
        spans(
            re.compile(
                r"(?:sk-[\w-]{20,}+|AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{36,}+"
                r"|github_pat_\w{22,}+)(?:(?![\w-])|(?P<skip>[\w-]*+))"
            )
        ),
        _word_start,
    ),
    Detector(
        "EMAIL",
        "@",
        spans(
            re.compile(r"(?<![\w.%+-])[\w.%+-]++@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
        ),
    ),
    Detector(
        "IBAN",
        _DIGIT,
        spans(
            re.compile(r"[A-Z](?<!\w[A-Z])[A-Z]\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b")
        ),
        _iban,
    ),
    Detector(
        "CARD",
        _DIGIT,
        # The first character outside the lookbehinds: the engine then skips to candidates.
        spans(
            re.compile(r"[2-6](?<![\w+][2-6])(?<!\d[.-][2-6])\d(?:[ -]?\d){11,17}" + _NOT_BEFORE)
        ),
        _card,
    ),
    Detector(
        "IP",
        ":",
        spans(
            re.compile(
                r"[0-9A-Fa-f:](?<![\w:][0-9A-Fa-f:])[0-9A-Fa-f]{0,3}:(?:[0-9A-Fa-f]{0,4}:){1,6}"
                r"[0-9A-Fa-f]{0,4}(?![\w:])"
            )
        ),
        _ipv6,
    ),
    Detector(
        "IP",
        _DIGIT,
        spans(re.compile(r"\d(?<![\w.]\d)\d{0,2}\.\d{1,3}\.\d{1,3}\.\d{1,3}(?![\w]|\.\d)")),
        _ipv4,
    ),
    Detector(
        "PHONE",
        _DIGIT,
        spans(
            re.compile(
                _NOT_AFTER + r"(?:\+\d{7,15}|(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?"
                r"\d{1,4}(?:[ .-]\d{2,4}){1,4})" + _NOT_BEFORE
            )
        ),
        _phone_shaped,
        _phone,
    ),
)


def custom_detectors(patterns: Mapping[str, str]) -> tuple[Detector, ...]:
    """Detectors for RG_REDACTION_PATTERNS (name -> regex): placeholder `[NAME]`. Each runs
    with the `regex` engine within PATTERN_BUDGET_S of CPU per text (the operator's pattern
    may backtrack without end), without holding the interpreter lock; past the budget it
    raises `PatternOverrunError`."""
    if not patterns:
        return ()
    # Imported only when there are patterns: it costs ~11 MB of memory.
    import regex  # noqa: PLC0415

    return tuple(
        Detector(name.upper(), None, _bounded(name, regex.compile(pattern)))
        for name, pattern in patterns.items()
    )


def _bounded(name: str, pattern: "regex.Pattern[str]") -> Find:
    def find(text: str) -> list[tuple[int, int]]:
        try:
            # All at once: the budget also runs while a generator waits for its reader.
            matches = list(pattern.finditer(text, timeout=PATTERN_BUDGET_S, concurrent=True))
        except TimeoutError:
            raise PatternOverrunError(
                f"RG_REDACTION_PATTERNS {name!r} took more than {PATTERN_BUDGET_S}s of CPU "
                f"over {len(text)} characters"
            ) from None
        return [match.span() for match in matches]

    return find


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
        for name in ("prompt", "response"):
            text = getattr(event, name)
            redacted = self.text(text)
            if redacted != text:
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
        return len(event.prompt) + len(event.response) + _chars(chosen)

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


def _chars(value: Any) -> int:
    # The characters of the strings in a JSON value (a redaction's work).
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(len(key) + _chars(item) for key, item in value.items())
    if isinstance(value, list):
        return sum(_chars(item) for item in value)
    return 0
