"""Fixtures shared by the whole suite: one real Apache Kafka broker per session, fresh topics.

Where the broker comes from, in order:
1. `RG_KAFKA_BOOTSTRAP_SERVERS`, when set: an existing cluster;
2. testcontainers' Kafka, when a Docker engine answers;
3. the embedded Apache Kafka (app/embedded) on free loopback ports in a temporary folder.
If none can be had, every test that asks for the broker errors with the reason: never skipped.
"""

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.embedded import EmbeddedKafka, KafkaDistribution, free_port
from app.embedded.distribution import CACHE_DIR_ENV
from app.kafka import (
    KafkaConsumerClient,
    KafkaConsumerConfig,
    KafkaMessage,
    KafkaProducerClient,
    KafkaProducerConfig,
)

ROOT = Path(__file__).resolve().parent.parent
BOOTSTRAP_ENV = "RG_KAFKA_BOOTSTRAP_SERVERS"


def _docker_engine_answers() -> bool:
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


# Every API key and password the suite uses contains this marker, so a leak into a log is found.
SECRET_MARKER = "rg-test-secret"


class _Everything(logging.Handler):
    """Keeps every log line of the session, formatted, tracebacks included."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_any_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """After the suite: no key or password appears in what any logger wrote in this process, or
    in the log of any service process the tests started."""
    handler = _Everything()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
    leaks = [line for line in handler.lines if SECRET_MARKER in line]
    for log in tmp_path_factory.getbasetemp().rglob("service-*.log"):
        text = log.read_text(encoding="utf-8", errors="replace")
        leaks += [f"{log.name}: {line}" for line in text.splitlines() if SECRET_MARKER in line]
    assert not leaks, f"secrets in the logs: {leaks[:3]}"


@pytest.fixture(scope="session")
def kafka_distribution() -> KafkaDistribution:
    """The Apache Kafka jars, downloaded once into the project's cache (as `make` does)."""
    distribution = KafkaDistribution(Path(os.environ.get(CACHE_DIR_ENV, ROOT / ".cache" / "kafka")))
    distribution.ensure()
    return distribution


@pytest.fixture(scope="session")
def kafka_bootstrap(
    tmp_path_factory: pytest.TempPathFactory, kafka_distribution: KafkaDistribution
) -> Iterator[str]:
    """`host:port` of the session's real broker."""
    if servers := os.environ.get(BOOTSTRAP_ENV):
        yield servers
        return
    if _docker_engine_answers():
        from testcontainers.kafka import KafkaContainer  # noqa: PLC0415

        with KafkaContainer().with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    with EmbeddedKafka(
        tmp_path_factory.mktemp("session-kafka"), distribution=kafka_distribution
    ) as broker:
        yield broker.bootstrap_servers


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real filesystem of 4 MiB (a tmpfs; mounting it needs root, as CI has), to fill up."""
    path = tmp_path / "disk"
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.fail(f"a small disk is a tmpfs, and mounting one needs root: {mounted.stderr}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path) -> Path:
    """Write a file in `directory` until its filesystem has not one byte left; the file."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as out:
        for chunk in (b"\0" * 65536, b"\0" * 512, b"\0"):
            with contextlib.suppress(OSError):
                while True:
                    out.write(chunk)
    free = os.statvfs(directory)
    assert free.f_bavail == 0, f"{free.f_bavail} blocks still free in {directory}"
    return filler


@pytest.fixture
def topic() -> str:
    """A topic name no other test uses."""
    return f"test-{uuid.uuid4().hex}"


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


@pytest.fixture
async def create_topic(kafka_bootstrap: str) -> AsyncIterator[Callable[..., Awaitable[str]]]:
    """Create a fresh topic with the given partitions and topic configs; returns its name."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # noqa: PLC0415

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()

    async def create(partitions: int = 3, configs: dict[str, str] | None = None) -> str:
        name = f"test-{uuid.uuid4().hex}"
        await admin.create_topics(
            [NewTopic(name, partitions, 1, topic_configs=configs or {})], timeout_ms=30_000
        )
        return name

    try:
        yield create
    finally:
        await admin.close()


@pytest.fixture
async def producer(kafka_bootstrap: str) -> AsyncIterator[KafkaProducerClient]:
    """A started library producer on the session broker."""
    client = KafkaProducerClient(config=KafkaProducerConfig(bootstrap_servers=kafka_bootstrap))
    async with client:
        yield client


async def read_all(
    bootstrap: str, topic: str, count: int, *, timeout_s: float = 30, **config: Any
) -> list[KafkaMessage]:
    """Read `count` records of `topic` from the beginning with a group-less library consumer."""
    consumer = KafkaConsumerClient(
        config=KafkaConsumerConfig(
            topics=[topic], bootstrap_servers=bootstrap, auto_offset_reset="earliest", **config
        )
    )
    async with consumer:
        messages: list[KafkaMessage] = []
        deadline = time.monotonic() + timeout_s
        while len(messages) < count and time.monotonic() < deadline:
            messages += await consumer.poll(timeout_ms=500)
    assert len(messages) >= count, f"read {len(messages)} of {count} records of {topic}"
    return messages


async def records_in(bootstrap: str, topic: str) -> int:
    """How many records the topic holds (sum of its partitions' end offsets)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition  # noqa: PLC0415

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        ids = await consumer._client._wait_on_metadata(topic)  # aiokafka has no public form
        partitions = [TopicPartition(topic, p) for p in ids]
        return sum((await consumer.end_offsets(partitions)).values())
    finally:
        await consumer.stop()


async def eventually(check: Callable[[], Awaitable[bool]], *, timeout_s: float) -> None:
    """Poll `check` until it is true; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, f"not true within {timeout_s}s"
        await asyncio.sleep(0.2)


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
        deadline = time.monotonic() + timeout_s
        while True:
            assert self.process.poll() is None, f"serve exited: {self.log()}"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}{path}", timeout=2).status_code == 200:
                    return
            assert time.monotonic() < deadline, f"{path} not 200 in {timeout_s}s: {self.log()}"
            time.sleep(0.2)

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
    its own audit topic; `settings` are extra RG_* values (`spool_dir="..."`)."""
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
        **{f"RG_{name.upper()}": value for name, value in settings.items()},
    }
    script = str(Path(sys.executable).parent / "ractogateway-kafka")
    log_file = workdir / f"service-{port}.log"
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            [script, "serve"], cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    return LiveService(
        url=f"http://127.0.0.1:{port}",
        audit_topic=audit_topic,
        log_file=log_file,
        process=process,
    )


Launch = Callable[..., LiveService]


@pytest.fixture
def start_service() -> Iterator[Launch]:
    """`launch_service` for one test: whatever it started and did not stop is killed after the
    test, also when the test fails halfway."""
    started: list[LiveService] = []

    def launch(bootstrap: str, workdir: Path, **settings: str) -> LiveService:
        service = launch_service(bootstrap, workdir, **settings)
        started.append(service)
        return service

    yield launch
    for service in started:
        if service.process.poll() is None:
            service.process.kill()
            service.process.wait()


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


@pytest.fixture(scope="module")
def live_service(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveService]:
    """The service as a process against the session broker, with an audit topic of its own;
    for clients in other languages, real HTTP streaming and load."""
    with running_service(kafka_bootstrap, tmp_path_factory.mktemp("live-service")) as service:
        yield service


# What the service creates its audit topic with (400 days, delete): for tests that create an
# audit topic themselves, so that the service's check accepts it.
AUDIT_TOPIC_CONFIGS = {"retention.ms": str(400 * 24 * 3600 * 1000), "cleanup.policy": "delete"}


@dataclass
class TopicDescription:
    """A topic as the broker describes it."""

    partitions: int
    replication: int
    configs: dict[str, str]


async def describe_topic(bootstrap: str, topic: str) -> TopicDescription:
    """Partitions, replication factor and effective configs of an existing topic."""
    from aiokafka.admin import AIOKafkaAdminClient  # noqa: PLC0415
    from aiokafka.admin.config_resource import (  # noqa: PLC0415
        ConfigResource,
        ConfigResourceType,
    )

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
        assert described["error_code"] == 0, described
        (response,) = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic)]
        )
        (resource,) = response.to_object()["resources"]
        return TopicDescription(
            partitions=len(described["partitions"]),
            replication=len(described["partitions"][0]["replicas"]),
            configs={e["config_names"]: e["config_value"] for e in resource["config_entries"]},
        )
    finally:
        await admin.close()
