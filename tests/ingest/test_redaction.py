"""The redactor on its own (no broker): every detector finds its kind, ordinary text is left
as it is, checksums decide, hash placeholders are keyed; the settings refuse an incomplete
policy."""

import hashlib
import hmac
import statistics
import threading
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.ingest.redaction import CONFIRMS_PER_TEXT, REDACTION_VERSION, THREAD_AT_CHARS, Redactor
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


JWT = PII[14][0]
PEM = PII[15][0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # A JWT right after a word is found; a run whose first "eyJ" is no JWT is kept whole.
        ("abc" + JWT, "abc[JWT]"),
        ("-" + JWT, "-[JWT]"),
        ("eyJab." + JWT, "eyJab.[JWT]"),
        ("eyJeyJ" + JWT, "eyJeyJ" + JWT),
        (JWT[:60], JWT[:60]),
        ("eyJhbGciOiJIUzI1NiJ9", "eyJhbGciOiJIUzI1NiJ9"),
        # Keys: the shortest length found, one character less, glued to a word or a dash.
        ("github_pat_" + "a" * 22, "[API_KEY]"),
        ("github_pat_" + "a" * 21, "github_pat_" + "a" * 21),
        ("github_pat_" + "a" * 22 + "-", "github_pat_" + "a" * 22 + "-"),
        ("github_pat_" + "a" * 22 + "_b", "[API_KEY]"),
        ("github_pat_github_pat_" + "a" * 22, "[API_KEY]"),
        ("xgithub_pat_" + "a" * 22, "xgithub_pat_" + "a" * 22),
        ("-github_pat_" + "a" * 22, "-github_pat_" + "a" * 22),
        ("sk-" + "a" * 20 + "-", "[API_KEY]"),
        ("sk-" + "a" * 19, "sk-" + "a" * 19),
        ("sk-sk-" + "a" * 20, "[API_KEY]"),
        ("ghp_" + "a" * 35, "ghp_" + "a" * 35),
        ("ghp_" + "a" * 36 + "_", "ghp_" + "a" * 36 + "_"),
        ("AKIA" + "A" * 17, "AKIA" + "A" * 17),
        ("xAKIA" + "A" * 16, "xAKIA" + "A" * 16),
        # A BEGIN goes up to the first END after it; one without an END is kept.
        ("-----BEGIN PRIVATE KEY-----\nabc\n" + PEM, "[PRIVATE_KEY]"),
        (PEM + PEM, "[PRIVATE_KEY][PRIVATE_KEY]"),
        (
            PEM + "\n-----BEGIN PRIVATE KEY-----\nopen",
            "[PRIVATE_KEY]\n-----BEGIN PRIVATE KEY-----\nopen",
        ),
        ("-----BEGIN PRIVATE KEY-----\nno end", "-----BEGIN PRIVATE KEY-----\nno end"),
        ("-----BEGIN EC PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----", "[PRIVATE_KEY]"),
    ],
)
def test_unit_boundaries_of_keys_tokens_and_key_blocks(text: str, expected: str) -> None:
    assert redactor().text(text) == expected


# The largest prompt or response (MAX_TEXT_CHARS).
WORST_SIZE = 1_000_000
# CPU time one redaction of a worst case may take: far above a linear scan of 1 MB (tens to
# hundreds of milliseconds), far below a quadratic one (minutes).
WORST_CPU_S = 2.0


def worst(unit: str, tail: str = "") -> str:
    """`unit` repeated to WORST_SIZE characters, ending in `tail`."""
    body = WORST_SIZE - len(tail)
    return (unit * (body // len(unit) + 1))[:body] + tail


# Per detector (and the operator's pattern), texts that make a backtracking pattern retry from
# every start in a run, or that hold as many candidates as fit.
WORST_CASES: dict[str, str] = {
    "jwt-run-without-dot": worst("eyJ", "."),
    "jwt-runs-with-one-dot": worst("eyJabcdefgh.", "!"),
    "github-pat-run-ending-in-dash": worst("github_pat_", "-"),
    "sk-run-ending-in-dash": worst("sk-", "!"),
    "ghp-run": worst("ghp_a", "-"),
    "pem-begins-without-end": worst("-----BEGIN PRIVATE KEY-----\n"),
    "pem-ends-without-begin": worst("-----END PRIVATE KEY-----\n"),
    "pem-begin-then-broken-ends": worst("-----END RSA ", "").replace(
        "-----END", "-----BEGIN PRIVATE KEY-----", 1
    ),
    "akia-run": worst("AKIA", "-"),
    "email-at-signs": worst("a@"),
    "email-domain-labels": worst("a.", "@").replace("a.", "x@", 1),
    "email-local-parts": worst("a.b%c+d-", "@x.y1"),
    "iban-groups": worst("GB82 WEST ", "!"),
    "iban-glued": worst("GB82WEST1234"),
    "card-digit-groups": worst("4111 "),
    "card-digits": worst("4"),
    "ipv6-colons": worst(":"),
    "ipv6-groups": worst("a:"),
    "ipv6-addresses": worst("2001:db8::1 "),
    "ipv4-dots": worst("1."),
    "ipv4-addresses": worst("10.1.2.3 "),
    "phone-separators": worst("1-"),
    "phone-groups": worst("+1 202 "),
    # Valid numbers: each was parsed by `phonenumbers` (~25 us: 2 s and more per MB).
    "phone-international": worst("+12025550123 "),
    "phone-national": worst("(415) 555-2671 "),
    # Findings of several kinds in turn: each kind's are merged into the others', not
    # inserted one by one (a copy of the tail each).
    "findings-interleaved": worst("10.1.2.3 4111111111111111 a@b.cd 2001:db8::1 +12025550123 "),
    "findings-before-a-few-others": worst("+12025550123 ", "a@b.cd " * 255),
    # The operator's pattern of `redactor()` (EMP- and six digits).
    "operator-pattern": worst("EMP-12345"),
}


@pytest.mark.parametrize("text", list(WORST_CASES.values()), ids=list(WORST_CASES))
def test_unit_worst_case_inputs_take_linear_time(text: str) -> None:
    active = redactor()
    start = time.process_time()
    active.text(text)
    spent = time.process_time() - start
    assert spent <= WORST_CPU_S, f"{spent:.2f} s of CPU for {len(text):,} characters"


# An operator's pattern that backtracks without end over a run of "a" with no "b".
RUNAWAY = {"runaway": r"(a|aa)+b"}


@pytest.mark.parametrize("mode", ["mask", "hash"])
def test_unit_an_operator_pattern_past_its_budget_replaces_the_text_whole(mode: str) -> None:
    counted: dict[str, int] = {}

    def count(kind: str, n: int) -> None:
        counted[kind] = counted.get(kind, 0) + n

    active = Redactor(mode, key=b"k", patterns=RUNAWAY, count=count)  # type: ignore[arg-type]
    text = "mail jane@example.com " + "a" * WORST_SIZE
    start = time.process_time()
    redacted = active.text(text)
    spent = time.process_time() - start
    mac = hmac.new(b"k", text.encode(), hashlib.sha256).hexdigest()[:12]
    assert redacted == ("[REDACTION_TIMEOUT]" if mode == "mask" else f"[REDACTION_TIMEOUT:{mac}]")
    assert counted == {"REDACTION_TIMEOUT": 1}
    assert spent <= WORST_CPU_S, f"{spent:.2f} s of CPU"
    # Where it has no runaway, the pattern finds as any other.
    assert active.text("aab, mail jane@example.com").startswith(
        ("[RUNAWAY], mail [EMAIL", "[RUNAWAY:")
    )


def test_unit_phone_candidates_past_the_confirmations_are_replaced() -> None:
    # An invalid country code: refused while confirmations last, replaced after (more is
    # replaced, never less).
    text = " ".join(["+99 1234 5678"] * (CONFIRMS_PER_TEXT + 5))
    assert redactor().text(text).count("[PHONE]") == 5
    assert redactor().text("+99 1234 5678") == "+99 1234 5678"


async def test_unit_large_events_and_operator_patterns_are_redacted_off_the_event_loop() -> None:
    threads: set[str] = set()
    here = threading.current_thread().name

    def count(_kind: str, _n: int) -> None:
        threads.add(threading.current_thread().name)

    active = Redactor("mask", count=count)
    small = KafkaAuditEvent(user_id="u", model="m", prompt="mail a@b.cd", response="ok")
    large = small.model_copy(update={"prompt": "mail a@b.cd " * (THREAD_AT_CHARS // 12 + 1)})
    assert (await active.event_async(small)).prompt == "mail [EMAIL]"
    assert threads == {here}
    threads.clear()
    [redacted] = await active.events([large])
    assert (redacted.prompt or "").startswith("mail [EMAIL] mail [EMAIL]")
    assert threads == threads - {here} != set()
    # A batch of many small events counts as large in all.
    threads.clear()
    await active.events([small] * (THREAD_AT_CHARS // 10))
    assert threads == threads - {here} != set()
    # An operator's pattern may run its whole budget over a short text.
    threads.clear()
    assert (await redactor(count=count).event_async(small)).prompt == "mail [EMAIL]"
    assert threads == threads - {here} != set()


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
