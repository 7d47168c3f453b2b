"""The detectors redaction runs (app/ingest/detectors.py), called directly; what a redacted
event looks like is tests/ingest/test_redaction.py."""

import re

import pytest

from app.ingest.detectors import DETECTORS, PatternOverrunError, custom_detectors, spans


def test_unit_the_built_in_kinds_keep_their_order_of_precedence() -> None:
    assert [d.kind for d in DETECTORS] == [
        "PRIVATE_KEY",
        "JWT",
        "API_KEY",
        "EMAIL",
        "IBAN",
        "CARD",
        "IP",
        "IP",
        "PHONE",
    ]


def test_unit_a_skipped_run_yields_no_span() -> None:
    find = spans(re.compile(r"ab(?:c|(?P<skip>x+))"))
    assert list(find("abc abxxx abc")) == [(0, 3), (10, 13)]


def test_unit_an_operator_pattern_is_named_and_runs_within_its_budget() -> None:
    (ticket,) = custom_detectors({"ticket": r"T-\d{4}"})
    assert ticket.kind == "TICKET"
    assert list(ticket.find("see T-1234 and T-9")) == [(4, 10)]
    (slow,) = custom_detectors({"slow": r"(a|aa)+b"})
    with pytest.raises(PatternOverrunError, match="'slow' took more than"):
        slow.find("a" * 50_000)
    assert custom_detectors({}) == ()
