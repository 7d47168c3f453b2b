"""Fixtures shared by the whole suite: one real Apache Kafka broker per session, fresh topics.

Where the broker comes from, in order:
1. `RG_KAFKA_BOOTSTRAP_SERVERS`, when set: an existing cluster;
2. testcontainers' Kafka, when a Docker engine answers;
3. the embedded Apache Kafka (app/embedded) on free loopback ports in a temporary folder.
If none can be had, every test that asks for the broker errors with the reason: never skipped.
"""

import logging
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from app.embedded import EmbeddedKafka, KafkaDistribution
from app.embedded.distribution import CACHE_DIR_ENV
from app.embedded.registry import REGISTRY_CACHE_DIR_ENV, EmbeddedRegistry, RegistryDistribution
from app.kafka import (
    KafkaProducerClient,
    KafkaProducerConfig,
)
from tests.helpers import ROOT
from tests.helpers.broker import BOOTSTRAP_ENV, docker_engine_answers
from tests.helpers.logs import SECRET_MARKER, LogKeeper
from tests.helpers.openai_upstream import Upstream, openai_upstream
from tests.helpers.service import Launch, LiveService, launch_service, running_service
from tests.helpers.tlog import TlogCheck, build
from tests.helpers.tsa import Authority, TsaServer, make_authority

# A test that asks for one of these (directly or through another fixture) uses a real broker:
# it is marked `broker`, so `pytest -m "not broker"` runs the rest, in well under a minute.
# The Schema Registry is a server too (and a JVM): its tests are marked the same way.
BROKER_FIXTURES = frozenset({"kafka_bootstrap", "kafka_distribution", "schema_registry_url"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses the broker `broker`."""
    for item in items:
        if BROKER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.broker)


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_any_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """After the suite: no key or password appears in what any logger wrote in this process, or
    in the log of any service process the tests started."""
    handler = LogKeeper()
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
    if docker_engine_answers():
        from testcontainers.kafka import KafkaContainer  # noqa: PLC0415

        with KafkaContainer().with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    with EmbeddedKafka(
        tmp_path_factory.mktemp("session-kafka"), distribution=kafka_distribution
    ) as broker:
        yield broker.bootstrap_servers


@pytest.fixture(scope="session")
def registry_distribution() -> RegistryDistribution:
    """Apicurio Registry, downloaded once into the project's cache (as `make` does)."""
    cache = Path(os.environ.get(REGISTRY_CACHE_DIR_ENV, ROOT / ".cache" / "registry"))
    distribution = RegistryDistribution(cache)
    distribution.ensure()
    return distribution


@pytest.fixture(scope="session")
def schema_registry_url(
    tmp_path_factory: pytest.TempPathFactory, registry_distribution: RegistryDistribution
) -> Iterator[str]:
    """The Confluent-compatible API of the session's real Schema Registry:
    `RG_SCHEMA_REGISTRY_URL` when set, else the embedded one (started once)."""
    if url := os.environ.get("RG_SCHEMA_REGISTRY_URL"):
        yield url.rstrip("/")
        return
    log = tmp_path_factory.mktemp("session-registry") / "registry.log"
    with EmbeddedRegistry(distribution=registry_distribution, log_file=log) as registry:
        yield registry.url


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


@pytest.fixture
def topic() -> str:
    """A topic name no other test uses."""
    return f"test-{uuid.uuid4().hex}"


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


@pytest.fixture(scope="module")
def live_service(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveService]:
    """The service as a process against the session broker, with an audit topic of its own;
    for clients in other languages, real HTTP streaming and load."""
    with running_service(kafka_bootstrap, tmp_path_factory.mktemp("live-service")) as service:
        yield service


@pytest.fixture(scope="session")
def tlogcheck() -> Iterator[TlogCheck]:
    """Go's sumdb/tlog, sumdb/note and transparency-dev/formats behind a pipe (built on first
    use): a checker of our trees, proofs and notes that this project did not write."""
    checker = TlogCheck(build())
    yield checker
    checker.close()


@pytest.fixture(scope="session")
def timestamp_authority(tmp_path_factory: pytest.TempPathFactory) -> Authority:
    """A real RFC 3161 authority (OpenSSL's `ts -reply`): a test CA and its TSA, per session."""
    return make_authority(tmp_path_factory.mktemp("tsa"), "trusted")


@pytest.fixture(scope="session")
def outside_authority(tmp_path_factory: pytest.TempPathFactory) -> Authority:
    """A second, unrelated CA and TSA: its tokens do not chain to `timestamp_authority`'s CA."""
    return make_authority(tmp_path_factory.mktemp("tsa-outside"), "outside")


@pytest.fixture
def tsa_server(timestamp_authority: Authority) -> Iterator[TsaServer]:
    """`timestamp_authority` served over HTTP on loopback (a test may stop and start it)."""
    server = TsaServer(timestamp_authority)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def scripted_upstream() -> Iterator[Upstream]:
    """The scripted OpenAI-compatible server (tests/helpers/openai_upstream.py) on loopback,
    for the recording proxy's tests."""
    with openai_upstream() as upstream:
        yield upstream
