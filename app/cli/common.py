"""What every command shares: the logger, SIGTERM handling, the epilog."""

import logging
import signal
import threading
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # `probe` imports this module and must stay cheap (app/cli/__init__.py)
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

logger = logging.getLogger("ractogateway_kafka")

EPILOG = """\
settings come from RG_* environment variables or a .env file (see docs/operations.md);
for example RG_KAFKA_BOOTSTRAP_SERVERS=broker1:9092,broker2:9092 RG_PORT=8080.
"""


def exit_on_sigterm() -> None:
    # SIGTERM becomes SystemExit(0) so `finally` blocks (stopping the broker) run, exactly as they
    # do for Ctrl-C's KeyboardInterrupt.
    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, handler)


def stop_requested() -> threading.Event:
    """An event set by the first SIGTERM or Ctrl-C: a foreground server's loop waits on it, then
    stops its children cleanly."""
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    return stop


def settings_problem(exc: "ValidationError | SettingsError") -> str:
    """A settings error as one line naming each RG_* variable, without the values (they may
    be secrets) and without pydantic's links."""
    from pydantic_settings import SettingsError  # noqa: PLC0415 - see the imports

    if isinstance(exc, SettingsError):
        # pydantic-settings: 'error parsing value for field "api_keys" from source ...'
        field = str(exc).split('"')[1] if str(exc).count('"') >= 2 else ""
        return f"invalid setting RG_{field.upper()}: not valid JSON" if field else str(exc)
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        message = error["msg"].removeprefix("Value error, ")
        location = error["loc"]
        if location:
            problems.append(f"RG_{str(location[0]).upper()}: {message}")
        else:  # a rule across settings: its message names them
            problems.append(message)
    return "invalid setting " + "; ".join(problems)
