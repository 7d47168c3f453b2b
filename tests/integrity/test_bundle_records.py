"""app/integrity/bundle_records.py called directly (no broker): the record steps of a bundle
check over record lines built by the spec's helpers — a window with gaps links where it can,
one broken link is one finding, copies are duplicates or conflicts, a record without a proof is
not covered."""

from app.integrity.bundle import KafkaLine
from app.integrity.bundle_records import CheckedRecord, RecordChecks, TrustedCheckpoints
from app.integrity.report import Finding
from tests.helpers.integrity import ChainedWriter, Record


def member(records: list[Record]) -> bytes:
    return b"".join(
        KafkaLine("audit", 0, i, 0, None, r.value, tuple(r.headers)).encode()
        for i, r in enumerate(records)
    )


def checked(records: list[Record]) -> tuple[list[CheckedRecord], int, list[Finding]]:
    problems: list[Finding] = []
    checks = RecordChecks([], problems, [], strict=False)
    placed, _ = checks.records(member(records))
    valid = checks.positions(placed, TrustedCheckpoints())
    return placed, valid, problems


def test_unit_a_window_with_gaps_is_linked_where_its_predecessor_is_there() -> None:
    records = ChainedWriter().records(6)
    placed, valid, problems = checked([records[i] for i in (0, 1, 3, 5)])
    assert problems == []
    assert (len(placed), valid) == (4, 4)


def test_unit_one_broken_link_is_one_finding() -> None:
    records = ChainedWriter().records(4)
    forged = Record(
        records[1].value,
        [(n, b"sha256:" + b"ab" * 32 if n == "rg-chain" else v) for n, v in records[1].headers],
    )
    _, valid, problems = checked([records[0], forged, records[2], records[3]])
    # Seq 2 follows from the forged link no more, but is not checked against it.
    assert [(p.kind, p.seq) for p in problems] == [("forged", 1)]
    assert valid == 3


def test_unit_copies_are_duplicates_and_rivals_conflicts() -> None:
    writer = ChainedWriter()
    records = writer.records(2)
    rival_writer = ChainedWriter(writer=writer.writer)
    rival = rival_writer.record({"event_id": "other"})
    _, valid, problems = checked([*records, records[1], rival])
    assert sorted((p.kind, p.seq, p.offset) for p in problems) == [
        ("conflict", 0, 3),
        ("duplicate", 1, 2),
    ]
    assert valid == 3


def test_unit_a_record_without_a_proof_is_not_covered_a_problem_when_strict() -> None:
    records = ChainedWriter().records(2)
    for strict in (False, True):
        problems: list[Finding] = []
        warnings: list[Finding] = []
        checks = RecordChecks([], problems, warnings, strict=strict)
        placed, _ = checks.records(member(records))
        checks.proofs(placed, b"", TrustedCheckpoints())
        found = problems if strict else warnings
        assert [f.kind for f in found] == ["not_covered", "not_covered"]
        assert (warnings if strict else problems) == []


def test_unit_a_covered_record_without_a_proof_is_a_bad_proof() -> None:
    writer = ChainedWriter()
    records = writer.records(3)
    problems: list[Finding] = []
    warnings: list[Finding] = []
    checks = RecordChecks([], problems, warnings, strict=False)
    placed, _ = checks.records(member(records))
    # A trusted version 2 checkpoint up to seq 1: seqs 0 and 1 could have been proven.
    checks.proofs(placed, b"", TrustedCheckpoints(heads={writer.writer: 1}))
    assert [(p.kind, p.seq) for p in problems] == [("bad_proof", 0), ("bad_proof", 1)]
    assert [(w.kind, w.seq) for w in warnings] == [("not_covered", 2)]
