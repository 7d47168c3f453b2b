"""The detectors redaction runs (app/ingest/detectors.py), called directly; what a redacted
event looks like is tests/ingest/test_redaction.py."""

import base64
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


def test_unit_a_jwt_shaped_token_with_a_header_nested_too_deep_is_no_jwt() -> None:
    # The header is the prompt's text, so anyone's: JSON nested past the parser's recursion limit
    # raised RecursionError out of the redaction (a 500 for the request). It is no JWT header.
    (jwt,) = (detector for detector in DETECTORS if detector.kind == "JWT")
    head = base64.urlsafe_b64encode(b'{"a":' + b"[" * 100_000).decode().rstrip("=")
    token = f"{head}.eyJzdWIiOiIxIn0.abcdefghij"
    assert not jwt.check(token, 0, len(token))
    real = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abcdefghij"
    assert jwt.check(real, 0, len(real))
