"""What `verify` found: the kinds of problem and warning, one `Finding` each, and the `Report`
(counters and findings, as text or as the JSON of `verify --json`). The kinds are described in
app/integrity/verifier.py's docstring and docs/operations.md."""

from dataclasses import asdict, dataclass, field
from typing import Any

PROBLEM_KINDS = (
    "altered",
    "forged",
    "missing",
    "truncated",
    "conflict",
    "duplicate",
    "bad_signature",
    "expired_key",
    "key_mismatch",
    "malformed_checkpoint",
    "receipt",
    "unsigned",
    "not_covered",
    "writer_missing",
    "rollback",
    "fork",
    "unknown_writer",
    "bad_timestamp",
    "backdated",
    "not_timestamped",
    "bad_proof",
    "uncosigned",
)
WARNING_KINDS = ("not_covered", "unsigned", "unknown_writer", "not_timestamped")

# How far a note's time and its timestamp token's genTime may differ before it is `backdated`:
# the default of `verify --tsa-skew` and of app/integrity/timestamp_check.py (docs/integrity.md
# argues it). Here, in a module without cryptography, so `verify --help` stays cheap.
DEFAULT_SKEW_S = 10.0


@dataclass(frozen=True)
class Finding:
    """A problem or a warning, and where: the topic, partition and offset of the record or
    checkpoint, the writer and seq (the first of a range, `last_seq` its end) when known."""

    kind: str
    detail: str
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    writer: str | None = None
    seq: int | None = None
    last_seq: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """The finding as JSON-ready fields."""
        return asdict(self)


@dataclass
class Report:
    """What a verification found."""

    records_checked: int = 0
    records_valid: int = 0
    checkpoints_checked: int = 0
    checkpoints_valid: int = 0
    receipts_checked: int = 0
    writers: int = 0
    # Timestamp tokens (records keyed `timestamps`), counted with `--tsa-ca` only.
    timestamps_checked: int = 0
    timestamps_valid: int = 0
    # Erasure records (RG_ERASURE, docs/privacy.md) among the records checked.
    erasure_records: int = 0
    signed: bool = False
    problems: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)
    # Key ids checkpoints named that no key given answers to (for a hint, not in the JSON).
    unknown_key_ids: set[str] = field(default_factory=set)

    @property
    def clean(self) -> bool:
        """True when no problem was found (warnings allowed)."""
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        """The report as one JSON-ready document."""
        counts = dict.fromkeys(PROBLEM_KINDS, 0)
        for problem in self.problems:
            counts[problem.kind] += 1
        return {
            "clean": self.clean,
            "signed": self.signed,
            "records_checked": self.records_checked,
            "records_valid": self.records_valid,
            "checkpoints_checked": self.checkpoints_checked,
            "checkpoints_valid": self.checkpoints_valid,
            "receipts_checked": self.receipts_checked,
            "writers": self.writers,
            "timestamps_checked": self.timestamps_checked,
            "timestamps_valid": self.timestamps_valid,
            "erasure_records": self.erasure_records,
            "problem_counts": counts,
            "problems": [p.as_dict() for p in self.problems],
            "warnings": [w.as_dict() for w in self.warnings],
        }
