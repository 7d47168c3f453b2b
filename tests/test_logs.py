"""Log formats (unit, no broker)."""

import json
import logging

import pytest

from app.logs import FIELDS, JsonFormatter, TextFormatter, configure_logging


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
