"""Where the session broker comes from, and brokers a test stops and starts."""

import asyncio
import contextlib
import os
from pathlib import Path

import pytest

from app.embedded import EmbeddedKafka

BOOTSTRAP_ENV = "RG_KAFKA_BOOTSTRAP_SERVERS"

# For brokers a test kills: KRaft refuses a restarted node's registration until the session of
# its killed incarnation expires (9 s by default, then retried with a growing backoff, ~20 s in
# all), and a cluster fences a dead leader only then. 4 s still allows a few missed heartbeats.
QUICK_FENCING = {"broker.session.timeout.ms": "4000", "broker.heartbeat.interval.ms": "1000"}


def docker_engine_answers() -> bool:
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if host.startswith("unix://") and not Path(host.removeprefix("unix://")).exists():
        return False  # the usual case here: a docker client, no engine
    try:
        import docker  # noqa: PLC0415 - only needed when there may be an engine

        client = docker.DockerClient(base_url=host, timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


def java_pids_using(path: Path) -> list[int]:
    """Pids of live java processes whose command line mentions `path` (e.g. a broker's data dir)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            stat = (proc / "stat").read_text()
            zombie = stat.rsplit(")", 1)[1].split()[0] == "Z"
            if not zombie and b"java" in argv[0] and any(str(path).encode() in a for a in argv):
                pids.append(int(proc.name))
    return pids


async def in_thread_stop(broker: EmbeddedKafka) -> None:
    """Stop the broker without blocking the event loop."""
    await asyncio.to_thread(broker.stop)


async def in_thread_start(broker: EmbeddedKafka) -> None:
    """Start the broker again (same port, same data) without blocking the event loop."""
    await asyncio.to_thread(broker.start)


def last_user(request: pytest.FixtureRequest, fixture: str) -> bool:
    """True when no test after this one in the session asks for `fixture`."""
    items = request.session.items
    later = items[items.index(request.node) + 1 :] if request.node in items else []
    return not any(fixture in getattr(item, "fixturenames", ()) for item in later)
