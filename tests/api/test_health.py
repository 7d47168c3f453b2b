"""GET /healthz and GET /readyz against a real broker, and with the broker gone."""

from pathlib import Path

from app.embedded import EmbeddedKafka, KafkaDistribution, free_port
from tests.helpers.app import assert_contract_error, client_for, services_of


async def test_healthz_answers_while_the_process_serves(kafka_bootstrap: str) -> None:
    async with client_for(kafka_bootstrap) as client:
        response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_healthz_does_not_depend_on_the_broker() -> None:
    async with client_for(f"127.0.0.1:{free_port()}") as client:
        response = await client.get("/healthz")
    assert response.status_code == 200


async def test_readyz_is_200_with_the_broker_up(kafka_bootstrap: str) -> None:
    async with client_for(kafka_bootstrap) as client:
        response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


async def test_readyz_is_503_without_a_broker() -> None:
    port = free_port()
    async with client_for(f"127.0.0.1:{port}") as client:
        response = await client.get("/readyz")
    assert_contract_error(response, 503, "broker_unavailable")
    assert str(port) in response.json()["error"]["message"]
    assert int(response.headers["retry-after"]) > 0


async def test_readyz_turns_503_after_the_broker_stops(
    tmp_path: Path, kafka_distribution: KafkaDistribution
) -> None:
    # A broker of its own: the session's broker must stay up for the other tests.
    broker = EmbeddedKafka(tmp_path / "kafka", distribution=kafka_distribution).start()
    try:
        async with client_for(broker.bootstrap_servers) as client:
            assert (await client.get("/readyz")).status_code == 200
            broker.stop()
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
