"""What the embedded servers (Kafka nodes, the Schema Registry) share as child processes of ours:
dying with their parent, stopping cleanly then by force, one download at a time."""

import contextlib
import ctypes
import fcntl
import logging
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """`preexec_fn` of a child: the kernel sends it SIGTERM when the thread that started it
    ends (Linux), so not even a SIGKILLed parent leaves a JVM behind."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def terminate(process: "subprocess.Popen[bytes]", *, timeout_s: float, name: str) -> None:
    """SIGTERM (the server's clean shutdown), then SIGKILL when it has not exited after
    `timeout_s`; returns once it has exited."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        logger.warning("%s did not stop within %ss: killing it", name, timeout_s)
        process.kill()
        process.wait()


@contextlib.contextmanager
def exclusive(lock_file: Path) -> Iterator[None]:
    """Hold an exclusive lock on `lock_file` (created when missing): one process downloads into
    a cache folder while the others wait for it."""
    with lock_file.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
