"""Where the session broker comes from, and brokers a test stops and starts."""

import asyncio
import contextlib
import os
from pathlib import Path

from app.embedded import EmbeddedKafka

BOOTSTRAP_ENV = "RG_KAFKA_BOOTSTRAP_SERVERS"


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
