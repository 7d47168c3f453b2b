"""The redactor on its own (no broker): every detector finds its kind, ordinary text is left
as it is, checksums decide, hash placeholders are keyed; the settings refuse an incomplete
policy."""

import hashlib
import hmac
import statistics
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.ingest.redaction import REDACTION_VERSION, Redactor
from app.kafka import KafkaAuditEvent
from app.metrics import ServiceMetrics
from app.services import redactor_of
from app.settings import Settings

# Each value and the placeholder it must become (mask mode).
PII: list[tuple[str, str]] = [
    ("jane.doe+audit@example.co.uk", "[EMAIL]"),
    ("+44 20 7946 0958", "[PHONE]"),
    ("(415) 555-2671", "[PHONE]"),
    ("4111 1111 1111 1111", "[CARD]"),
    ("5500-0000-0000-0004", "[CARD]"),
    ("378282246310005", "[CARD]"),
    ("GB82 WEST 1234 5698 7654 32", "[IBAN]"),
    ("DE89370400440532013000", "[IBAN]"),
    ("sk-proj-Abc123def456GHI789jkl012mno", "[API_KEY]"),
    ("sk-ant-api03-abcdefghijklmnopqrstuv", "[API_KEY]"),
    ("AKIAIOSFODNN7EXAMPLE", "[API_KEY]"),
    ("ghp_abcdefghijklmnopqrstuvwxyz0123456789", "[API_KEY]"),
    ("gho_ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", "[API_KEY]"),
    ("github_pat_11ABCDEFG0123456789_abcdefghijklmnop", "[API_KEY]"),
    (
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
        "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        "[JWT]",
    ),
    (
        "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIBd8kq5nN0y\n-----END PRIVATE KEY-----",
        "[PRIVATE_KEY]",
    ),
    (
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----",
        "[PRIVATE_KEY]",
    ),
    ("192.168.10.20", "[IP]"),
    ("2001:db8::8a2e:370:7334", "[IP]"),
    ("fe80::1", "[IP]"),
    ("EMP-123456", "[EMPLOYEE]"),
]

# Ordinary text that must come through unchanged.
CLEAN = [
    "The refund window is fourteen days; ask again if anything is unclear.",
    "Request 550e8400-e29b-41d4-a716-446655440000 and 12345678-1234-1234-1234-123456789012.",
    "sha256:9f2c4d1e0a3b5c7d9e1f2a4b6c8d0e1f3a5b7c9d1e2f4a6b8c0d2e4f6a8b0c2d, commit 3f9a1c2",
    "At 2024-05-01T12:30:00.123456Z, on 2024-05-01 12:30:00, 01.05.2024 or 05/01/2024 at 10:30.",
    "Upgrade to version 1.2.3.4 (v10.0.0.1, release 4.3.2.1), then 2.14.0 and 3.11.9.",
    "It costs $1,234.56 or 19.99 EUR, 1 234 567 EUR in all; 42 items at 0.5 each.",
    "Order #4839201938, order 1234567812345678, invoice 2024-000123, ticket 123-456.",
    "def f(x):\n    return x @ y  # matmul\n\n@decorator\nclass A: a = b[1::2]",
    "std::vector<int> v; auto p = &v; if (a::b) {} abc::def::face(); dead::beef;",
    "MAC 00:1a:2b:3c:4d:5e, ratio 3:2, port 127:8080? no: 8080, ISBN 978-3-16-148410-0.",
    'JSON {"alg": 1, "id": 99, "total": 100.00}, token count 4096, eyJ alone, sk-short.',
]


def redactor(**kwargs: object) -> Redactor:
    return Redactor("mask", patterns={"employee": r"\bEMP-\d{6}\b"}, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(("value", "placeholder"), PII)
def test_unit_each_detector_finds_its_kind(value: str, placeholder: str) -> None:
    text = f"Please note: {value}. Thanks."
    assert redactor().text(text) == f"Please note: {placeholder}. Thanks."


def test_unit_every_kind_is_found_in_prompt_response_and_chosen_metadata() -> None:
    counted: dict[str, int] = {}

    def count(kind: str, n: int) -> None:
        counted[kind] = counted.get(kind, 0) + n

    corpus = "\n".join(f"item {index}: {value} ;" for index, (value, _) in enumerate(PII))
    expected = "\n".join(f"item {index}: {ph} ;" for index, (_, ph) in enumerate(PII))
    event = KafkaAuditEvent(
        user_id="u",
        model="m",
        prompt=corpus,
        response=corpus,
        metadata={"notes": {"deep": [corpus]}, "other": corpus, "tokens": 3},
    )
    redacted = redactor(metadata_fields=["notes", "absent"], count=count).event(event)
    assert redacted.prompt == expected
    assert redacted.response == expected
    assert redacted.metadata == {"notes": {"deep": [expected]}, "other": corpus, "tokens": 3}
    assert redacted.event_id == event.event_id
    assert redacted.digest() != event.digest()  # computed afresh over the redacted event
    kinds = {placeholder[1:-1] for _, placeholder in PII}
    assert set(counted) == kinds
    assert sum(counted.values()) == 3 * len(PII)


@pytest.mark.parametrize("text", CLEAN)
def test_unit_ordinary_text_is_not_changed(text: str) -> None:
    assert redactor().text(text) == text


def test_unit_an_event_without_findings_is_the_same_event() -> None:
    event = KafkaAuditEvent(user_id="u", model="m", prompt="\n".join(CLEAN), response="ok")
    assert redactor(metadata_fields=["app"]).event(event) is event


@pytest.mark.parametrize(
    "text",
    [
        "card 4111 1111 1111 1112 fails Luhn",
        "number 4111111111111112",
        "IBAN GB82 WEST 1234 5698 7654 33 fails mod-97",
        "IBAN DE89370400440532013001",
        "JWT-like eyJub3QiOiJhIGp3dCJ9.eyJzdWIiOiIxIn0.abcdefghij (no alg)",
        "not an address 999.1.1.1",
    ],
)
def test_unit_values_that_fail_their_check_are_kept(text: str) -> None:
    assert redactor().text(text) == text


def test_unit_hash_mode_links_equal_values_and_depends_on_the_key() -> None:
    text = "from jane@example.com, again jane@example.com, then john@example.com"
    one = Redactor("hash", key=b"key one").text(text)
    other = Redactor("hash", key=b"key two").text(text)
    mac = hmac.new(b"key one", b"jane@example.com", hashlib.sha256).hexdigest()[:12]
    assert one.startswith(f"from [EMAIL:{mac}], again [EMAIL:{mac}], then [EMAIL:")
    assert "jane" not in one
    assert "john" not in one
    assert one.split(", then ")[1] != f"[EMAIL:{mac}]"
    assert other != one
    assert Redactor("hash", key=b"k").stamp == f"hash;v={REDACTION_VERSION}"


def test_unit_hash_mode_needs_its_key_file(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="RG_REDACTION_KEY_FILE"):
        Settings(redaction="hash")
    with pytest.raises(ValueError, match="RG_REDACTION_KEY_FILE"):
        Redactor("hash")
    empty = tmp_path / "empty.key"
    empty.write_bytes(b"")
    empty.chmod(0o600)
    with pytest.raises(ValueError, match="RG_REDACTION_KEY_FILE"):
        redactor_of(Settings(redaction="hash", redaction_key_file=empty), ServiceMetrics())
    with pytest.raises(ValueError, match="RG_REDACTION_KEY_FILE"):
        redactor_of(
            Settings(redaction="hash", redaction_key_file=tmp_path / "absent"), ServiceMetrics()
        )


def test_unit_settings_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key = tmp_path / "redaction.key"
    key.write_bytes(b"s3cret\n")
    key.chmod(0o600)
    monkeypatch.setenv("RG_REDACTION", "hash")
    monkeypatch.setenv("RG_REDACTION_KEY_FILE", str(key))
    monkeypatch.setenv("RG_REDACTION_PATTERNS", '{"employee": "EMP-\\\\d{6}"}')
    monkeypatch.setenv("RG_REDACTION_METADATA_FIELDS", "notes, customer")
    settings = Settings()
    assert settings.redaction_patterns == {"employee": "EMP-\\d{6}"}
    assert settings.redaction_metadata_fields == ["notes", "customer"]
    built = redactor_of(settings, ServiceMetrics())
    assert built is not None
    mac = hmac.new(b"s3cret", b"EMP-123456", hashlib.sha256).hexdigest()[:12]
    assert built.text("EMP-123456") == f"[EMPLOYEE:{mac}]"
    monkeypatch.delenv("RG_REDACTION")
    assert redactor_of(Settings(), ServiceMetrics()) is None  # off by default


@pytest.mark.parametrize(
    "patterns", [{"bad name": "x"}, {"ok": "(unclosed"}], ids=["name", "regex"]
)
def test_unit_bad_custom_patterns_are_refused(patterns: dict[str, str]) -> None:
    with pytest.raises(ValidationError, match="RG_REDACTION_PATTERNS"):
        Settings(redaction_patterns=patterns)


def test_unit_a_4kb_prompt_costs_little() -> None:
    # Not a timing assertion (the bench measures): the figures, printed for the report.
    prompt = (" ".join(CLEAN) + " mail jane@example.com from 10.0.0.7 ")[:4096]
    prompt = (prompt * (4096 // len(prompt) + 1))[:4096]
    active = redactor()
    times = []
    for _ in range(300):
        start = time.perf_counter()
        active.text(prompt)
        times.append(time.perf_counter() - start)
    cuts = statistics.quantiles(times, n=100)
    print(f"redaction of a 4 KB prompt: p50 {cuts[49] * 1e3:.3f} ms, p99 {cuts[98] * 1e3:.3f} ms")
