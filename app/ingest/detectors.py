"""What redaction finds: one `Detector` per kind of personal data or secret, each a search
linear in the text plus cheap and costly checks of its candidates (app/ingest/redaction.py
applies them and replaces what they find).

The built-in kinds, in order of precedence when two findings overlap (the earlier kind wins):
PEM private-key blocks, JWTs, API keys and tokens, e-mail addresses, IBANs (mod-97 checked),
payment card numbers (13-19 digits starting 2-6, Luhn checked), IPv6 and IPv4 addresses
(checked with `ipaddress`), phone numbers (a pattern, then `phonenumbers` validates the
candidate); then the operator's RG_REDACTION_PATTERNS (`custom_detectors`), run on the `regex`
engine within PATTERN_BUDGET_S of CPU per text, past which `PatternOverrunError` is raised.
"""

import base64
import binascii
import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import regex

# Phone numbers written without a country code are read as numbers of this region.
PHONE_REGION = "US"
# CPU seconds one RG_REDACTION_PATTERNS pattern may take over one text (a linear pattern
# needs a few milliseconds per MB); past it the whole text is replaced by OVERRUN_KIND.
PATTERN_BUDGET_S = 0.25


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
    except (binascii.Error, ValueError, RecursionError):  # the prompt's text: anyone's
        return False
    return isinstance(header, dict) and "alg" in header


_NOT_DIGIT = re.compile(r"\D+")


def _digits(text: str) -> str:
    # Candidates are made of \d and separators only.
    return _NOT_DIGIT.sub("", text)


def _word_start(text: str, start: int, _stop: int) -> bool:
    return start == 0 or not (text[start - 1].isalnum() or text[start - 1] in "_-")


def _card(text: str, start: int, stop: int) -> bool:
    from stdnum import luhn  # noqa: PLC0415 - loaded by load_validators(); here a lookup

    return luhn.is_valid(_digits(text[start:stop]))


def _iban(text: str, start: int, stop: int) -> bool:
    from stdnum import iban  # noqa: PLC0415 - loaded by load_validators(); here a lookup

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


def load_validators() -> None:
    """Load `phonenumbers` (about 4 MB of numbering plans) and `stdnum`'s IBAN and Luhn checks
    (1.6 MB): done when a redactor is built, so a service that redacts nothing keeps none of
    them, and the first number checked does not wait for them."""
    import phonenumbers  # noqa: F401, PLC0415 - see the docstring
    from stdnum import iban, luhn  # noqa: F401, PLC0415


def _phone(text: str, start: int, stop: int) -> bool:
    import phonenumbers  # noqa: PLC0415 - loaded by load_validators(); here a lookup

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
