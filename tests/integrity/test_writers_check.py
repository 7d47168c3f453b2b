"""verify's conclusions from the log of writers (app/integrity/writers_check.py), fed by hand;
the same on a real broker is in tests/cli/test_verify.py and tests/integrity/test_end_to_end.py."""

import json

from app.integrity.writers_check import Conclusion, Seen, SignedHead, WritersCheck

A, B = "a" * 32, "b" * 32


def entry(kind: str, writer: str, size: int = 0) -> bytes:
    body: dict[str, object] = {"kind": kind, "writer": writer, "time": "t"}
    if kind == "start":
        body["origin"] = f"o/writer/{writer}"
    else:
        body |= {"size": size, "root": "sha256:" + "0" * 64}
    return json.dumps(body).encode()


def kinds(found: list[Conclusion]) -> list[tuple[str, str | None, int | None, int | None]]:
    return [(f.kind, f.writer, f.seq, f.last_seq) for f in found]


def check(*values: bytes) -> WritersCheck:
    log = WritersCheck({}, topic="w")
    for offset, value in enumerate(values):
        log.add_entry(0, offset, value)
    return log


def test_unit_missing_rolled_back_and_unknown_writers() -> None:
    log = check(entry("start", A), entry("start", B), entry("head", A, 5), entry("stop", B, 3))
    problems, warnings = log.conclude({A: 4, "c" * 32: 1}, [], from_start=True, strict=False)
    assert kinds(problems) == [("rollback", A, 4, 4), ("writer_missing", B, 0, 2)]
    assert kinds(warnings) == [("unknown_writer", "c" * 32, None, None)]
    problems, warnings = log.conclude({A: 5, B: 3}, [], from_start=True, strict=True)
    assert (problems, warnings) == ([], [])


def test_unit_a_window_does_not_call_a_writer_missing_and_a_start_alone_needs_nothing() -> None:
    log = check(entry("start", A), entry("head", A, 5), entry("start", B))
    assert log.conclude({}, [], from_start=False, strict=True) == ([], [])
    problems, _ = log.conclude({}, [], from_start=True, strict=True)
    assert kinds(problems) == [("writer_missing", A, 0, 4)]


def test_unit_no_log_no_conclusion_and_a_hole_is_a_rollback() -> None:
    assert WritersCheck({}, topic="w").conclude({A: 1}, [], from_start=True, strict=True) == (
        [],
        [],
    )
    log = WritersCheck({}, topic="w")
    log.add_entry(0, 1, entry("start", A))  # offset 0 is gone
    problems, _ = log.conclude({A: 1}, [], from_start=True, strict=False)
    assert [p.kind for p in problems] == ["rollback"]


def test_unit_two_heads_of_one_size_with_different_roots_fork() -> None:
    where = Seen("c", 0, 1)
    heads = [
        SignedHead(A, 3, b"\x01" * 32, Seen("c", 0, 0)),
        SignedHead(A, 3, b"\x01" * 32, where),
        SignedHead(A, 3, b"\x02" * 32, where),
        SignedHead(B, 3, b"\x02" * 32, where),
    ]
    problems, _ = WritersCheck({}, topic="w").conclude({}, heads, from_start=True, strict=False)
    assert kinds(problems) == [("fork", A, 2, None)]


def test_unit_a_malformed_entry_is_forged() -> None:
    problems, _ = check(b"{}").conclude({}, [], from_start=True, strict=False)
    assert [p.kind for p in problems] == ["forged"]
