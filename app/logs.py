"""Logging set-up: one JSON object per line (or plain text for a terminal).

Log lines carry structured fields through `extra={"fields": {...}}`. What goes in is chosen at
the call site; prompt and response text, API keys and passwords are never passed.
"""

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal

FIELDS = "fields"
# Loggers that print record contents (keys, values: prompts) at DEBUG; kept at INFO or above.
RECORD_LOGGERS = ("aiokafka",)


class JsonFormatter(logging.Formatter):
    """`{"time", "level", "logger", "message", ...fields, "error"?}` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, FIELDS, None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`time level logger: message key=value ...` for people reading a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = getattr(record, FIELDS, None)
        if isinstance(fields, dict) and fields:
            line += " " + " ".join(f"{k}={v}" for k, v in fields.items())
        return line


def configure_logging(level: str, fmt: Literal["json", "text"] = "json") -> None:
    """Send every logger (uvicorn's and aiokafka's too) to stderr in one format. aiokafka
    stays at INFO even with `level="DEBUG"`: its debug lines contain the records' values."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in RECORD_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.getLevelName(level), logging.INFO))
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        # uvicorn's own handlers would print a second, differently formatted line.
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
