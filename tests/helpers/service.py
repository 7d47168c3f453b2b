"""`ractogateway-kafka serve` as a real process, for tests."""

import contextlib
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from app.embedded import free_port
from tests.helpers.processes import SCRIPT, wait_http


@dataclass
class LiveService:
    """`ractogateway-kafka serve` as a real process on a free loopback port."""

    url: str
    audit_topic: str
    log_file: Path
    process: "subprocess.Popen[bytes]"

    def log(self) -> str:
        """Everything the service logged so far."""
        return self.log_file.read_text(encoding="utf-8", errors="replace")

    def wait_ready(self, timeout_s: float = 60) -> None:
        """Block until GET /readyz answers 200."""
        self._wait_for("/readyz", timeout_s)

    def wait_live(self, timeout_s: float = 60) -> None:
        """Block until GET /healthz answers 200 (the broker may still be away)."""
        self._wait_for("/healthz", timeout_s)

    def _wait_for(self, path: str, timeout_s: float) -> None:
        wait_http(f"{self.url}{path}", timeout_s=timeout_s, process=self.process, context=self.log)

    def stop(self, timeout_s: float = 60) -> int:
        """SIGTERM, then wait for the exit (killing it after `timeout_s`); the exit status."""
        self.process.terminate()
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise


def launch_service(bootstrap: str, workdir: Path, **settings: str) -> LiveService:
    """Start `serve` against `bootstrap` in `workdir` (no developer .env is read there) with
    its own audit topic; `settings` are extra RG_* values (`spool_dir="..."`). POST /publish
    may write the suite's `test-*` topics unless `publish_topics` says else (as `client_for`)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    audit_topic = settings.pop("audit_topic", f"test-{uuid.uuid4().hex}")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RG_")},
        "RG_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "RG_HOST": "127.0.0.1",
        "RG_PORT": str(port),
        "RG_AUDIT_TOPIC": audit_topic,
        "RG_MESSAGES_REFRESH_S": "1",
        "RG_PUBLISH_TOPICS": "test-*",
        **{f"RG_{name.upper()}": value for name, value in settings.items()},
    }
    log_file = workdir / f"service-{port}.log"
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            [SCRIPT, "serve"], cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    return LiveService(
        url=f"http://127.0.0.1:{port}",
        audit_topic=audit_topic,
        log_file=log_file,
        process=process,
    )


Launch = Callable[..., LiveService]


@contextlib.contextmanager
def running_service(bootstrap: str, workdir: Path, **settings: str) -> Iterator[LiveService]:
    """`launch_service`, ready; stopped (SIGTERM, killed after 30 s) when the block ends."""
    service = launch_service(bootstrap, workdir, **settings)
    try:
        service.wait_ready()
        yield service
    finally:
        with contextlib.suppress(subprocess.TimeoutExpired):
            service.stop(timeout_s=30)
