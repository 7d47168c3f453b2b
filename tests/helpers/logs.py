"""Every log line of the test session, to look for secrets."""

import logging

# Every API key and password the suite uses contains this marker, so a leak into a log is found.
SECRET_MARKER = "rg-test-secret"


class LogKeeper(logging.Handler):
    """Keeps every log line of the session, formatted, tracebacks included."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))
