"""The audit topic on brokers of their own: one that never auto-creates topics, one that is away
when the service starts, one whose authorizer denies the service's principal."""

import asyncio
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.embedded import EmbeddedKafka, KafkaDistribution, free_port
from app.embedded.broker import find_java
from tests.helpers.app import assert_contract_error, client_for
from tests.helpers.broker import in_thread_start, in_thread_stop
from tests.helpers.kafka import describe_topic, read_all
from tests.helpers.logs import SECRET_MARKER
from tests.helpers.polling import eventually

EVENT = {"user_id": "u", "model": "m", "prompt": "p", "response": "r"}
NO_AUTO_CREATE = {"auto.create.topics.enable": "false"}


@pytest.fixture
def strict_broker(tmp_path: Path, kafka_distribution: KafkaDistribution) -> Iterator[EmbeddedKafka]:
    """A real broker that never creates a topic a client merely asks for or writes to."""
    broker = EmbeddedKafka(
        tmp_path / "kafka",
        port=free_port(),
        distribution=kafka_distribution,
        overrides=NO_AUTO_CREATE,
        stop_timeout_s=20,
    )
    with broker:
        yield broker


async def test_without_auto_create_the_service_creates_its_topic_and_writes(
    strict_broker: EmbeddedKafka,
) -> None:
    bootstrap = strict_broker.bootstrap_servers
    topic = f"test-{uuid.uuid4().hex}"
    # Before the fix nothing created the topic here: the write waited for metadata and failed.
    async with client_for(bootstrap, audit_topic=topic, produce_timeout_s=5.0) as client:
        ready = await client.get("/readyz")
        written = await client.post("/audit", json=EVENT)
    assert ready.status_code == 200, ready.text
    assert written.status_code == 201, written.text
    (record,) = await read_all(bootstrap, topic, 1)
    assert record.header("rg-event-id") == written.json()["event_id"]
    described = await describe_topic(bootstrap, topic)
    assert (described.partitions, described.configs["cleanup.policy"]) == (6, "delete")


async def test_broker_away_at_start_the_topic_is_created_once_it_answers(
    strict_broker: EmbeddedKafka,
) -> None:
    bootstrap = strict_broker.bootstrap_servers
    topic = f"test-{uuid.uuid4().hex}"
    await in_thread_stop(strict_broker)
    async with client_for(bootstrap, audit_topic=topic, produce_timeout_s=5.0) as client:
        away = await client.get("/readyz")
        assert_contract_error(away, 503, "broker_unavailable")
        await in_thread_start(strict_broker)

        async def ready() -> bool:
            return (await client.get("/readyz")).status_code == 200

        await eventually(ready, timeout_s=60)
        written = await client.post("/audit", json=EVENT)
    assert written.status_code == 201, written.text
    described = await describe_topic(bootstrap, topic)
    assert described.configs["retention.ms"] == str(400 * 24 * 3600 * 1000)


# The service's principal on the SASL listener; the PLAINTEXT listener (the broker's own probe,
# the test's admin) is anonymous and a super user.
USER, PASSWORD = "writer", f"{SECRET_MARKER}-writer"


@pytest.fixture
def acl_broker(tmp_path: Path, kafka_distribution: KafkaDistribution) -> Iterator[EmbeddedKafka]:
    """A real broker with KRaft's StandardAuthorizer and SASL PLAIN: no ACL, no access."""
    port, controller, sasl = free_port(), free_port(), free_port()
    host = "127.0.0.1"
    broker = EmbeddedKafka(
        tmp_path / "kafka",
        port=port,
        controller_port=controller,
        distribution=kafka_distribution,
        stop_timeout_s=20,
        overrides={
            **NO_AUTO_CREATE,
            "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller},"
            f"SASL_PLAINTEXT://{host}:{sasl}",
            "advertised.listeners": f"PLAINTEXT://{host}:{port},SASL_PLAINTEXT://{host}:{sasl}",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,"
            "SASL_PLAINTEXT:SASL_PLAINTEXT",
            "sasl.enabled.mechanisms": "PLAIN",
            "listener.name.sasl_plaintext.plain.sasl.jaas.config": "org.apache.kafka.common."
            f'security.plain.PlainLoginModule required user_{USER}="{PASSWORD}";',
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users": "User:ANONYMOUS",
        },
    )
    broker.sasl_port = sasl  # type: ignore[attr-defined]
    with broker:
        yield broker


def grant(broker: EmbeddedKafka, operation: str, *resource: str) -> None:
    """Add an ACL with Kafka's own tool: allow the service's user `operation` on `resource`."""
    subprocess.run(
        [
            find_java(),
            "-cp",
            broker.distribution.classpath,
            "kafka.admin.AclCommand",
            "--bootstrap-server",
            broker.bootstrap_servers,
            "--add",
            "--allow-principal",
            f"User:{USER}",
            "--operation",
            operation,
            *resource,
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )


async def as_the_service(broker: EmbeddedKafka, topic: str) -> tuple[httpx.Response, ...]:
    """A fresh service on the SASL listener: what its /readyz and POST /audit answer once it
    has started."""
    async with client_for(
        f"127.0.0.1:{broker.sasl_port}",  # type: ignore[attr-defined]
        audit_topic=topic,
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username=USER,
        kafka_sasl_password=PASSWORD,
    ) as client:
        return await client.get("/readyz"), await client.post("/audit", json=EVENT)


async def test_each_missing_permission_is_named_until_all_are_granted(
    acl_broker: EmbeddedKafka,
) -> None:
    topic = f"test-{uuid.uuid4().hex}"
    # What the idempotent producer needs to start (Write on the topic would imply Describe).
    await asyncio.to_thread(grant, acl_broker, "IdempotentWrite", "--cluster")
    for operation, named in [
        ("Describe", "DESCRIBE"),
        ("Create", "CREATE"),
        ("DescribeConfigs", "DESCRIBE_CONFIGS"),
    ]:
        response, written = await as_the_service(acl_broker, topic)
        # /readyz (open to anyone) says what, generically; a write is told the permission.
        assert_contract_error(response, 503, "audit_topic_unavailable")
        assert topic not in response.text
        assert int(response.headers["retry-after"]) > 0
        # Not knowing the topic, a write could have the broker create it with its defaults.
        error = assert_contract_error(written, 503, "audit_topic_unavailable")
        assert f"may not {named} topic {topic!r}" in error["message"], error["message"]
        await asyncio.to_thread(grant, acl_broker, operation, "--topic", topic)
    response, _ = await as_the_service(acl_broker, topic)
    assert response.status_code == 200, response.text
    described = await describe_topic(acl_broker.bootstrap_servers, topic)
    assert described.configs["cleanup.policy"] == "delete"
