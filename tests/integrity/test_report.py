"""The report of `verify` (app/integrity/report.py), called directly."""

from app.integrity.report import PROBLEM_KINDS, WARNING_KINDS, Finding, Report


def test_unit_a_report_counts_every_kind_and_is_clean_without_problems() -> None:
    report = Report(records_checked=3, records_valid=2)
    assert report.clean
    report.warnings.append(Finding("not_covered", "1 record", "t", 0, 2, "w" * 32, 2))
    assert report.clean
    report.problems.append(Finding("forged", "bad link", "t", 0, 1, "w" * 32, 1))
    document = report.as_dict()
    assert not document["clean"]
    assert set(document["problem_counts"]) == set(PROBLEM_KINDS)
    assert document["problem_counts"]["forged"] == 1
    assert sum(document["problem_counts"].values()) == 1
    assert document["problems"][0] == {
        "kind": "forged",
        "detail": "bad link",
        "topic": "t",
        "partition": 0,
        "offset": 1,
        "writer": "w" * 32,
        "seq": 1,
        "last_seq": None,
    }
    assert set(WARNING_KINDS) <= set(PROBLEM_KINDS)
