"""GET /healthz and GET /readyz against a real broker, and with the broker gone."""

import asyncio
import logging
import math
import time
from pathlib import Path

import pytest

from app.connection import READY_CACHE_S
from app.embedded import EmbeddedKafka, KafkaDistribution, free_port
from tests.helpers.app import BROKER_AWAY, assert_contract_error, client_for, services_of


async def test_healthz_answers_while_the_process_serves(kafka_bootstrap: str) -> None:
    async with client_for(kafka_bootstrap) as client:
        response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_healthz_does_not_depend_on_the_broker() -> None:
    async with client_for(f"127.0.0.1:{free_port()}", **BROKER_AWAY) as client:
        response = await client.get("/healthz")
    assert response.status_code == 200


async def test_readyz_is_200_with_the_broker_up(kafka_bootstrap: str) -> None:
    async with client_for(kafka_bootstrap) as client:
        response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


async def test_readyz_is_503_without_a_broker_naming_no_address(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # /readyz is open to anyone: the broker's address is in the log, not in the answer.
    port = free_port()
    with caplog.at_level(logging.WARNING, logger="app.api.health"):
        async with client_for(f"127.0.0.1:{port}", **BROKER_AWAY) as client:
            response = await client.get("/readyz")
    error = assert_contract_error(response, 503, "broker_unavailable")
    assert (error["message"], error["details"]) == ("Kafka does not answer", [])
    assert str(port) not in response.text
    assert int(response.headers["retry-after"]) > 0
    assert f"Kafka at 127.0.0.1:{port} does not answer" in caplog.text


async def test_readyz_names_no_registry_and_no_error(
    kafka_bootstrap: str, topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Nothing listens on port 9: neither the registry's address nor the error is answered.
    url = "http://127.0.0.1:9/apis/ccompat/v7"
    with caplog.at_level(logging.WARNING, logger="app.api.health"):
        async with client_for(
            kafka_bootstrap, audit_topic=topic, schema_registry_url=url, ready_timeout_s=0.5
        ) as client:
            response = await client.get("/readyz")
    error = assert_contract_error(response, 503, "schema_registry_unavailable")
    assert error["message"] == "the audit schema is not registered in the Schema Registry"
    assert error["details"] == []
    for detail in ("127.0.0.1", "ccompat", "Error", "connect"):
        assert detail not in response.text
    assert "not ready: schema_registry_unavailable" in caplog.text


async def test_readyz_asks_the_cluster_at_most_once_a_second(kafka_bootstrap: str) -> None:
    async with client_for(kafka_bootstrap) as client:
        producer = services_of(client).producer
        asked: list[str | None] = []
        ping = producer.ping

        async def counted(*, timeout_s: float = 2.0, topic: str | None = None) -> bool:
            asked.append(topic)
            return await ping(timeout_s=timeout_s, topic=topic)

        producer.ping = counted  # type: ignore[method-assign]
        started = time.monotonic()
        answers = await asyncio.gather(*(client.get("/readyz") for _ in range(50)))
        answers += [await client.get("/readyz") for _ in range(50)]
        elapsed_s = time.monotonic() - started
    assert {answer.status_code for answer in answers} == {200}
    # One question per started second at most, for the audit topic alone (not all topics).
    assert 1 <= len(asked) <= math.ceil(elapsed_s / READY_CACHE_S) + 1
    assert set(asked) == {services_of(client).settings.audit_topic}


async def test_readyz_turns_503_after_the_broker_stops(
    tmp_path: Path, kafka_distribution: KafkaDistribution
) -> None:
    # A broker of its own: the session's broker must stay up for the other tests.
    broker = EmbeddedKafka(tmp_path / "kafka", distribution=kafka_distribution).start()
    try:
        async with client_for(broker.bootstrap_servers) as client:
            assert (await client.get("/readyz")).status_code == 200
            broker.stop()
            await asyncio.sleep(READY_CACHE_S)  # the last verdict is kept that long
            response = await client.get("/readyz")
            assert_contract_error(response, 503, "broker_unavailable")
            assert (await client.get("/healthz")).status_code == 200
    finally:
        broker.stop()


async def test_unknown_paths_answer_with_the_contract_error_body(kafka_bootstrap: str) -> None:
    async with client_for(kafka_bootstrap) as client:
        response = await client.get("/no-such-thing")
        wrong_method = await client.post("/healthz")
    assert_contract_error(response, 404, "not_found")
    assert_contract_error(wrong_method, 405, "method_not_allowed")


async def test_once_shutdown_begins_readyz_and_writes_answer_503_shutting_down(
    kafka_bootstrap: str, topic: str
) -> None:
    async with client_for(kafka_bootstrap, audit_topic=topic) as client:
        services_of(client).shutdown.begin()  # what the first SIGTERM does
        ready = await client.get("/readyz")
        audit = await client.post(
            "/audit", json={"user_id": "u", "model": "m", "prompt": "p", "response": "r"}
        )
        publish = await client.post("/publish", json={"topic": topic, "value": 1})
        alive = await client.get("/healthz")
    for response in (ready, audit, publish):
        assert_contract_error(response, 503, "shutting_down")
        assert int(response.headers["retry-after"]) > 0
    assert alive.status_code == 200
