"""Logging set-up: one JSON object per line (or plain text for a terminal).

Log lines carry structured fields through `extra={"fields": {...}}`. What goes in is chosen at
the call site; prompt and response text, API keys and passwords are never passed.
"""

import logging
import math
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

FIELDS = "fields"
# Loggers that print record contents (keys, values: prompts) at DEBUG; kept at INFO or above.
RECORD_LOGGERS = ("aiokafka",)
# Loggers whose lines repeat for every retry while Kafka is away (a line per node per request:
# a 22 s outage wrote about a thousand): kept at WARNING at most and rate-limited by kind. The
# service says once that Kafka went away and once that it is back (app/reachability.py).
CLIENT_LOGGERS = ("aiokafka",)
CLIENT_LINE_EVERY_S = 30.0


class ClientLogLimiter(logging.Filter):
    """For `CLIENT_LOGGERS`: ERROR and above become WARNING, and each kind of line (logger and
    message template) passes once per `every_s`; the next one to pass says how many like it
    were left out meanwhile. Other loggers' lines pass untouched."""

    def __init__(
        self,
        *,
        prefixes: tuple[str, ...] = CLIENT_LOGGERS,
        every_s: float = CLIENT_LINE_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._prefixes = prefixes
        self._children = tuple(prefix + "." for prefix in prefixes)
        self._every_s = every_s
        self._clock = clock
        # kind -> (when its last line passed, lines left out since)
        self._kinds: dict[tuple[str, str], tuple[float, int]] = {}

    def _ours(self, name: str) -> bool:
        # Every line of every logger passes here: one startswith over a tuple, no generator.
        return name in self._prefixes or name.startswith(self._children)

    def filter(self, record: logging.LogRecord) -> bool:
        """False to leave the line out; may lower its level and note the lines left out."""
        if not self._ours(record.name):
            return True
        if record.levelno > logging.WARNING:
            # The client retries by itself: its failures are not the service's errors.
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        kind = (record.name, str(record.msg))
        now = self._clock()
        passed, left_out = self._kinds.get(kind, (None, 0))
        if passed is not None and now - passed < self._every_s:
            self._kinds[kind] = (passed, left_out + 1)
            return False
        if left_out:
            record.msg = (
                f"{record.getMessage()} ({left_out} more like it left out in the last "
                f"{now - passed:.0f}s)"  # type: ignore[operator]  # set with left_out
            )
            record.args = None
        self._kinds[kind] = (now, 0)
        return True


class JsonFormatter(logging.Formatter):
    """`{"time", "level", "logger", "message", ...fields, "error"?}` on one line."""

    def __init__(self) -> None:
        super().__init__()
        # orjson: a twentieth of json.dumps' time, and NaN written as null (valid JSON).
        # Imported here: the console script's parsers import this module, and load nothing
        # a command does not run (app/cli/__init__.py).
        import orjson  # noqa: PLC0415 - see above

        self._dumps = orjson.dumps
        self._second: int | None = None
        self._second_text = ""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self._time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, FIELDS, None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        text: str = self._dumps(entry, default=str).decode()
        return text

    def _time(self, created: float) -> str:
        """`created` as ISO 8601 in UTC to the millisecond (`2026-01-31T12:00:00.123+00:00`),
        the date and time of day formatted once per second: every request has a line."""
        # Rounded as datetime.fromtimestamp rounds (the fraction alone, half to even).
        fraction, whole = math.modf(created)
        second, micros = int(whole), round(fraction * 1_000_000)
        if micros >= 1_000_000:
            second, micros = second + 1, micros - 1_000_000
        elif micros < 0:
            second, micros = second - 1, micros + 1_000_000
        if second != self._second:
            moment = datetime.fromtimestamp(second, UTC).isoformat(timespec="seconds")
            self._second, self._second_text = second, moment.removesuffix("+00:00")
        return f"{self._second_text}.{micros // 1000:03d}+00:00"


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


class RepeatedFailure:
    """Paces the log line of a failure a retry loop meets again and again: the first one is
    logged, then one per `every_s`, each saying how many were left out; `reset()` once it
    succeeds."""

    def __init__(
        self, *, every_s: float = CLIENT_LINE_EVERY_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._every_s = every_s
        self._clock = clock
        self._logged_at: float | None = None
        self._left_out = 0

    def due(self) -> int | None:
        """None to leave this failure's line out; else log it now, noting the number returned
        (the failures left out since the last line)."""
        now = self._clock()
        if self._logged_at is not None and now - self._logged_at < self._every_s:
            self._left_out += 1
            return None
        left_out, self._left_out, self._logged_at = self._left_out, 0, now
        return left_out

    def reset(self) -> None:
        """The loop succeeded: its next failure is logged at once."""
        self._logged_at, self._left_out = None, 0


def configure_logging(level: str, fmt: Literal["json", "text"] = "json") -> None:
    """Send every logger (uvicorn's and aiokafka's too) to stderr in one format. aiokafka
    stays at INFO even with `level="DEBUG"`: its debug lines contain the records' values; its
    lines are WARNING at most and rate-limited (`ClientLogLimiter`)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(ClientLogLimiter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in RECORD_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.getLevelName(level), logging.INFO))
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        # uvicorn's own handlers would print a second, differently formatted line.
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
