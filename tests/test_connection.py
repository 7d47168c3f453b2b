"""RG_KAFKA_* security settings turn into the right aiokafka arguments (no broker involved)."""

import logging
import ssl
import subprocess
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

import app.connection as connection_module
from app.connection import ProducerConnection, consumer_config, producer_config
from app.embedded import free_port
from app.settings import Settings
from app.tasks import Backoff
from tests.helpers.polling import eventually

PASSWORD = "rg-test-secret-sasl-password"


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate and its key (the CA file is the certificate itself)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "client.pem", folder / "client.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=ractogateway-test", "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return cert, key


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
async def test_unit_sasl_over_tls_reaches_aiokafka(
    mechanism: str, tls_files: tuple[Path, Path]
) -> None:
    cert, key = tls_files
    settings = Settings(
        _env_file=None,
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism=mechanism,
        kafka_sasl_username="svc-audit",
        kafka_sasl_password=PASSWORD,
        kafka_ssl_cafile=str(cert),
        kafka_ssl_certfile=str(cert),
        kafka_ssl_keyfile=str(key),
    )
    for config in (producer_config(settings), consumer_config(settings, topics=["t"])):
        kwargs = config.to_aiokafka()
        assert kwargs["security_protocol"] == "SASL_SSL"
        assert kwargs["sasl_mechanism"] == mechanism
        assert kwargs["sasl_plain_username"] == "svc-audit"
        assert kwargs["sasl_plain_password"] == PASSWORD
        context = kwargs["ssl_context"]
        assert isinstance(context, ssl.SSLContext)
        assert context.verify_mode == ssl.CERT_REQUIRED
        assert context.check_hostname
        # The secret is in the arguments aiokafka needs, nowhere else.
        assert PASSWORD not in repr(config)
        assert PASSWORD not in str(config.model_dump())
    assert PASSWORD not in repr(settings)
    # aiokafka takes the arguments as they are (nothing is sent before start()).
    producer = AIOKafkaProducer(**producer_config(settings).to_aiokafka())
    consumer = AIOKafkaConsumer("t", **consumer_config(settings, topics=["t"]).to_aiokafka())
    try:
        assert producer.client._sasl_mechanism == mechanism
        assert consumer._client._security_protocol == "SASL_SSL"
    finally:
        await producer.stop()
        await consumer.stop()


async def test_unit_tls_alone_and_plaintext(tls_files: tuple[Path, Path]) -> None:
    cert, _ = tls_files
    tls = producer_config(
        Settings(_env_file=None, kafka_security_protocol="SSL", kafka_ssl_cafile=str(cert))
    ).to_aiokafka()
    assert tls["security_protocol"] == "SSL"
    assert isinstance(tls["ssl_context"], ssl.SSLContext)
    assert "sasl_mechanism" not in tls
    plain = producer_config(Settings(_env_file=None)).to_aiokafka()
    assert plain["security_protocol"] == "PLAINTEXT"
    assert "ssl_context" not in plain
    assert "sasl_plain_password" not in plain


def test_unit_sasl_without_credentials_is_refused_naming_them() -> None:
    settings = Settings(
        _env_file=None, kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="PLAIN"
    )
    with pytest.raises(ValueError, match="sasl_plain_username and sasl_plain_password"):
        producer_config(settings)


def test_unit_the_producer_compresses_as_rg_kafka_compression_type_says() -> None:
    # None by default: gzip would run in the service's event loop (see the setting).
    assert producer_config(Settings(_env_file=None)).to_aiokafka()["compression_type"] is None
    gzip = Settings(_env_file=None, kafka_compression_type="gzip")
    assert producer_config(gzip).to_aiokafka()["compression_type"] == "gzip"
    with pytest.raises(ValueError, match="kafka_compression_type"):
        Settings(_env_file=None, kafka_compression_type="brotli")


async def test_unit_the_producer_batches_as_rg_kafka_max_batch_size_and_linger_ms_say() -> None:
    options = producer_config(Settings(_env_file=None)).to_aiokafka()
    assert (options["max_batch_size"], options["linger_ms"]) == (1024 * 1024, 5)
    tuned = Settings(_env_file=None, kafka_max_batch_size=65536, kafka_linger_ms=0)
    options = producer_config(tuned).to_aiokafka()
    assert (options["max_batch_size"], options["linger_ms"]) == (65536, 0)
    await AIOKafkaProducer(**options).stop()  # aiokafka takes them as they are
    # A record alone is sent at once unless RG_KAFKA_LINGER_WHEN_IDLE says otherwise.
    assert not producer_config(Settings(_env_file=None)).linger_when_idle
    assert producer_config(Settings(_env_file=None, kafka_linger_when_idle=True)).linger_when_idle
    # Beyond what a broker takes in one batch by default: refused, naming the setting.
    with pytest.raises(ValueError, match="kafka_max_batch_size"):
        Settings(_env_file=None, kafka_max_batch_size=2 * 1024 * 1024)


async def test_connecting_to_an_absent_kafka_logs_the_first_failure_then_paces_the_rest(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nothing listens on that port: every attempt fails (0.5 s, 1, 2, 4 s apart; here a tenth
    # of that, the same doubling).
    monkeypatch.setattr(connection_module, "Backoff", lambda: Backoff(initial_s=0.05, max_s=0.5))
    settings = Settings(_env_file=None, kafka_bootstrap_servers=f"127.0.0.1:{free_port()}")
    connection = ProducerConnection(settings)
    attempts: list[float] = []
    start = connection.producer.start_uninterrupted

    async def counted(*, grace_s: float = 2.0) -> None:
        attempts.append(1)
        await start(grace_s=grace_s)

    monkeypatch.setattr(connection.producer, "start_uninterrupted", counted)
    caplog.set_level(logging.WARNING, logger="app.connection")
    await connection.start()

    async def failed_thrice() -> bool:
        return len(attempts) > 3  # the fourth attempt begun: three have failed

    await eventually(failed_thrice, timeout_s=30)
    await connection.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "app.connection"]
    assert len(lines) == 1, lines  # one line, not one per attempt
    assert "not reachable yet" in lines[0]


async def test_readiness_asks_for_one_topic_never_all_topics(
    kafka_bootstrap: str, topic: str
) -> None:
    connection = ProducerConnection(
        Settings(_env_file=None, kafka_bootstrap_servers=[kafka_bootstrap], audit_topic=topic)
    )
    await connection.start()
    try:
        assert await connection.wait_connected(30)
        client = connection.producer._producer.client  # type: ignore[union-attr]
        everything = client.fetch_all_metadata
        asked_for_all: list[int] = []

        async def counted() -> object:
            asked_for_all.append(1)
            return await everything()

        client.fetch_all_metadata = counted
        assert await connection.is_ready()
        assert asked_for_all == []
        # Asking about a missing topic did not create it with the broker's defaults.
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            assert topic not in await admin.list_topics()
        finally:
            await admin.close()
    finally:
        await connection.close()
