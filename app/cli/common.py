"""What every command shares: the logger, SIGTERM handling, the epilog."""

import logging
import signal
import threading
from types import FrameType

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
