"""Log formats (unit, no broker)."""

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.logs import (
    FIELDS,
    ClientLogLimiter,
    JsonFormatter,
    RepeatedFailure,
    TextFormatter,
    configure_logging,
)


def record(message: str = "hello %s", *args: object, **fields: object) -> logging.LogRecord:
    entry = logging.LogRecord("app.test", logging.INFO, __file__, 1, message, args or ("x",), None)
    if fields:
        setattr(entry, FIELDS, fields)
    return entry


def test_json_lines_carry_the_fields() -> None:
    line = JsonFormatter().format(record(route="/audit", status=201))
    entry = json.loads(line)
    assert "\n" not in line
    assert entry["message"] == "hello x"
    assert entry["level"] == "INFO"
    assert entry["logger"] == "app.test"
    assert (entry["route"], entry["status"]) == ("/audit", 201)
    assert entry["time"].endswith("+00:00")


def test_json_lines_include_the_traceback_of_an_error() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys  # noqa: PLC0415

        entry = record()
        entry.exc_info = sys.exc_info()
    parsed = json.loads(JsonFormatter().format(entry))
    assert "ValueError: boom" in parsed["error"]


def test_text_lines_append_the_fields() -> None:
    assert TextFormatter().format(record(status=201)).endswith("hello x status=201")


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_configure_logging_keeps_record_contents_out_even_at_debug(fmt: str) -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging.getLogger("aiokafka").level)
    try:
        configure_logging("DEBUG", fmt)  # type: ignore[arg-type]
        assert root.level == logging.DEBUG
        assert logging.getLogger("aiokafka").level == logging.INFO
        assert logging.getLogger("uvicorn.access").handlers == []
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
        logging.getLogger("aiokafka").setLevel(saved[2])


def client_line(name: str, level: int, message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, args, None)


def test_unit_client_lines_are_warning_at_most_and_one_per_kind_per_interval() -> None:
    now = [0.0]
    limiter = ClientLogLimiter(every_s=30, clock=lambda: now[0])
    unreachable = "Unable connect to node with id %s: %s"
    passed = []
    # A broker away for 20 s: aiokafka logs each retry, ten a second.
    for tick in range(200):
        now[0] = tick / 10
        line = client_line("aiokafka", logging.ERROR, unreachable, 1, "refused")
        if limiter.filter(line):
            passed.append(line)
    other = client_line("aiokafka.consumer.fetcher", logging.ERROR, "Failed fetch %s", 1)
    assert limiter.filter(other)  # another kind: its own allowance
    assert len(passed) == 1
    assert (passed[0].levelno, passed[0].levelname) == (logging.WARNING, "WARNING")
    assert other.levelname == "WARNING"

    now[0] = 31.0
    after = client_line("aiokafka", logging.ERROR, unreachable, 1, "refused")
    assert limiter.filter(after)
    assert after.getMessage() == (
        "Unable connect to node with id 1: refused (199 more like it left out in the last 31s)"
    )
    # The service's own lines are never touched.
    ours = client_line("app.recent.reader", logging.ERROR, "stopped")
    assert all(limiter.filter(ours) for _ in range(5))
    assert ours.levelname == "ERROR"
    # Below WARNING the level stays; still one per kind per interval.
    info = client_line("aiokafka.consumer", logging.INFO, "Updating subscribed topics")
    assert limiter.filter(info)
    assert info.levelname == "INFO"


def test_unit_a_repeated_failure_is_logged_first_then_once_per_interval_with_a_count() -> None:
    now = [0.0]
    failures = RepeatedFailure(every_s=30, clock=lambda: now[0])
    seen = []
    for second in range(61):  # failing every second for a minute
        now[0] = float(second)
        seen.append(failures.due())
    assert [(s, n) for s, n in enumerate(seen) if n is not None] == [(0, 0), (30, 29), (60, 29)]
    failures.reset()
    assert failures.due() == 0  # after a success, the next failure is logged at once


@pytest.mark.parametrize(
    "created",
    [0.0, 1.5, 1765108799.9995, 1765108799.9999996, 1991027234.8629994, 4102444800.0004995],
)
def test_json_lines_time_is_datetimes_to_the_millisecond(created: float) -> None:
    # Formatted once per second: still exactly what datetime makes of every moment, on
    # second boundaries and where a float's fraction rounds up.
    formatter = JsonFormatter()
    for moment in (created - 1, created, created + 0.0004):
        entry = record()
        entry.created = moment
        expected = datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds")
        assert json.loads(formatter.format(entry))["time"] == expected


def test_json_lines_write_any_value_and_nan_as_valid_json() -> None:
    line = JsonFormatter().format(record(path=Path("/x"), ratio=float("nan"), text="é"))
    assert json.loads(line) | {"time": None} == {
        "time": None,
        "level": "INFO",
        "logger": "app.test",
        "message": "hello x",
        "path": "/x",
        "ratio": None,
        "text": "é",
    }
