"""Console-script processes for tests: run to completion, or running with their output read
in the background, and waiting for an HTTP endpoint to answer."""

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

SCRIPT = str(Path(sys.executable).parent / "ractogateway-kafka")


class Running:
    """A console-script process whose output lines are read in the background."""

    def __init__(self, args: list[str], *, cwd: Path, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [SCRIPT, *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for_line(self, prefix: str, timeout_s: float = 180) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                assert self.process.poll() is None, f"exited early: {self.seen}"
                continue
            self.seen.append(line)
            if line.startswith(prefix):
                return line
        raise AssertionError(f"no line starting with {prefix!r} in {timeout_s}s: {self.seen}")

    def output(self) -> str:
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return "\n".join(self.seen)

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout_s: float = 60) -> int:
        self.process.send_signal(sig)
        code = self.process.wait(timeout=timeout_s)
        self.close()
        return code

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._reader.join(timeout=10)
        assert self.process.stdout is not None
        self.process.stdout.close()


def run_cli(args: list[str], *, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the console script to completion, capturing its output."""
    return subprocess.run(
        [SCRIPT, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def wait_http(
    url: str,
    status: int = 200,
    timeout_s: float = 180,
    *,
    process: "subprocess.Popen[bytes] | None" = None,
    context: "Callable[[], str]" = lambda: "",
) -> httpx.Response:
    """Poll `url` until it answers `status`; fail after `timeout_s`, or at once when `process`
    (the server) exited. `context()` adds to the failure message (e.g. the server's log)."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    # One client for every poll: making one costs more than a request.
    with httpx.Client(timeout=5) as client:
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise AssertionError(f"the server exited ({process.returncode}): {context()}")
            try:
                response = client.get(url)
                if response.status_code == status:
                    return response
                last = response.status_code
            except httpx.TransportError as exc:
                last = exc
            time.sleep(0.2)
    raise AssertionError(
        f"{url} did not answer {status} within {timeout_s}s (last: {last!r}) {context()}"
    )


def freeze(pid: int, timeout_s: float = 10) -> None:
    """SIGSTOP `pid` and return once every thread of it is stopped. `kill()` returns before
    the stop has reached each thread: a broker's threads already running on another core
    may answer a request sent right after it (a producer that sends at once)."""
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + timeout_s
    while not _all_stopped(pid):
        assert time.monotonic() < deadline, f"process {pid} not stopped after {timeout_s}s"
        time.sleep(0.001)


def _all_stopped(pid: int) -> bool:
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        try:
            text = stat.read_text()
        except FileNotFoundError:  # a thread that ended meanwhile
            continue
        # The state follows the command's closing parenthesis: "T" stopped by a signal.
        if text[text.rindex(")") + 2] not in "Tt":
            return False
    return True
