"""The real service as a child process: `ractogateway-kafka serve` on a free loopback port."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO

import httpx

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 40.0  # the service itself allows 30 s for in-flight requests


class ServiceError(RuntimeError):
    """The service did not start, or does not answer as it should."""


class Service:
    """`serve` with the bench's settings, its output in `log_path`."""

    def __init__(
        self,
        *,
        bootstrap_servers: str,
        port: int,
        topic: str,
        log_path: Path,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        """`settings`: more RG_* variables, on top of the bench's own."""
        self.url = f"http://127.0.0.1:{port}"
        self.topic = topic
        self.log_path = log_path
        self._env = {
            **os.environ,
            "RG_KAFKA_BOOTSTRAP_SERVERS": bootstrap_servers,
            "RG_HOST": "127.0.0.1",
            "RG_PORT": str(port),
            "RG_AUDIT_TOPIC": topic,
            # One log line per request would cost as much CPU as the request itself.
            "RG_LOG_LEVEL": "WARNING",
            **(settings or {}),
        }
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        """The service's process id (the Python process uvicorn runs in)."""
        if self._process is None:
            raise ServiceError("the service is not running")
        return self._process.pid

    def start(self) -> None:
        """Launch the console script next to this interpreter and wait for /readyz."""
        command = [str(Path(sys.executable).parent / "ractogateway-kafka"), "serve"]
        self._log = self.log_path.open("wb")
        self._process = subprocess.Popen(
            command, env=self._env, stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        with httpx.Client(timeout=5.0) as client:
            while time.monotonic() < deadline:
                if self._process is None or self._process.poll() is not None:
                    raise ServiceError(f"the service exited while starting; see {self.log_path}")
                try:
                    if client.get(f"{self.url}/readyz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass  # not listening yet
                time.sleep(0.2)
        raise ServiceError(
            f"the service was not ready within {READY_TIMEOUT_S:.0f} s; see {self.log_path}"
        )

    def stop(self) -> int | None:
        """SIGTERM (the service drains in-flight requests), SIGKILL if it hangs; the exit code."""
        process, self._process = self._process, None
        code = None
        if process is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            code = process.returncode
        if self._log is not None:
            self._log.close()
            self._log = None
        return code
