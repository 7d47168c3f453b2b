"""Shutdown in order: after SIGTERM the service says it is not ready and takes no new work,
while what is in flight finishes."""

import time


class Shutdown:
    """Whether the service is draining: set once by the signal, read by `/readyz` and by the
    write endpoints."""

    def __init__(self) -> None:
        self._since: float | None = None

    @property
    def draining(self) -> bool:
        """True from the first SIGTERM (or Ctrl-C) on."""
        return self._since is not None

    def begin(self) -> None:
        """Start draining (idempotent)."""
        if self._since is None:
            self._since = time.monotonic()

    def elapsed_s(self) -> float:
        """Seconds since draining began; 0 before."""
        return time.monotonic() - self._since if self._since is not None else 0.0
