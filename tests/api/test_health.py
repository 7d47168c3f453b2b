"""GET /healthz and GET /readyz against a real broker, and with the broker gone."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from asgi_lifespan import LifespanManager

from app.embedded import EmbeddedKafka, KafkaDistribution, free_port
from app.main import create_app
from app.settings import Settings


@asynccontextmanager
async def client_for(bootstrap: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(_env_file=None, kafka_bootstrap_servers=[bootstrap], ready_timeout_s=1.0)
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://rg") as client:
            yield client


def assert_contract_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str)
    assert error["message"]
    assert isinstance(error["details"], list)


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
