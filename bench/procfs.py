"""What Linux's /proc says about a process: resident memory and CPU time used so far."""

import contextlib
import os
import threading
import time
from pathlib import Path

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    """Resident set size in KiB (`VmRSS` of /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])  # "VmRSS:  123456 kB"
    raise ProcessLookupError(f"no VmRSS in /proc/{pid}/status")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of every thread of `pid` (fields 14 and 15 of its stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    # The command name (field 2) may hold spaces; everything after its ")" splits cleanly.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


class CpuProbe:
    """CPU used by a few named processes over a window, as a percentage of one core; after
    `stop()`, `used_s` holds the CPU seconds themselves (for CPU time per request)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self._pids = pids
        self._start: dict[str, float] = {}
        self._started_at = 0.0
        self.used_s: dict[str, float] = {}

    def start(self) -> None:
        """Open the window."""
        self._start = {name: cpu_seconds(pid) for name, pid in self._pids.items()}
        self._started_at = time.monotonic()

    def stop(self) -> dict[str, float]:
        """Close the window: each process's CPU use in percent of one core (200 = two cores)."""
        elapsed = time.monotonic() - self._started_at
        self.used_s = {
            name: cpu_seconds(pid) - self._start[name] for name, pid in self._pids.items()
        }
        return {name: round(100 * used / elapsed, 1) for name, used in self.used_s.items()}


class RssSampler:
    """The peak resident memory of one process over a window, sampled by a thread every
    `interval_s` (VmHWM would give the peak since the process started, not over the window)."""

    def __init__(self, pid: int, interval_s: float = 0.1) -> None:
        self._pid = pid
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.peak_kib = 0

    def _sample(self) -> None:
        with contextlib.suppress(ProcessLookupError, FileNotFoundError):
            self.peak_kib = max(self.peak_kib, rss_kib(self._pid))

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            self._sample()

    def start(self) -> "RssSampler":
        """Begin sampling (one sample at once)."""
        self._sample()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> int:
        """Stop sampling; the peak in KiB (0 when the process was never seen)."""
        self._sample()
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return self.peak_kib
