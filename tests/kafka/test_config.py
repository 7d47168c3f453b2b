"""Unit tests of the configs: reference fields and defaults, secrets, TLS, `extra` checks."""

import ssl

import certifi
import pytest
from pydantic import ValidationError

from app.kafka import KafkaConsumerConfig, KafkaProducerConfig, KafkaStreamConfig

# Field -> default of the reference API (ractogateway.kafka 0.1.4).
REFERENCE_PRODUCER = {
    "bootstrap_servers": "localhost:9092",
    "client_id": "ractogateway-producer",
    "acks": "all",
    "linger_ms": 5,
    "compression_type": "gzip",
    "retries": 3,
    "request_timeout_ms": 30_000,
    "security_protocol": "PLAINTEXT",
    "sasl_mechanism": None,
    "sasl_plain_username": None,
    "sasl_plain_password": None,
    "extra": {},
}
REFERENCE_CONSUMER: dict[str, object] = {
    "bootstrap_servers": "localhost:9092",
    "group_id": None,
    "auto_offset_reset": "latest",
    "enable_auto_commit": False,
    "max_poll_records": 500,
    "poll_timeout_ms": 1_000,
    "session_timeout_ms": 10_000,
    "client_id": "ractogateway-consumer",
    "security_protocol": "PLAINTEXT",
    "sasl_mechanism": None,
    "sasl_plain_username": None,
    "sasl_plain_password": None,
    "extra": {},
}
REFERENCE_STREAM = {
    "batch_size": 32,
    "max_wait_ms": 250,
    "poll_timeout_ms": 100,
    "commit_on_success": True,
    "wait_for_publish": True,
}


@pytest.mark.parametrize(
    ("config", "reference"),
    [
        (KafkaProducerConfig(), REFERENCE_PRODUCER),
        (KafkaConsumerConfig(topics=["t"]), REFERENCE_CONSUMER),
        (KafkaStreamConfig(), REFERENCE_STREAM),
    ],
)
def test_unit_every_reference_field_exists_with_its_default(
    config: object, reference: dict[str, object]
) -> None:
    for name, default in reference.items():
        assert getattr(config, name) == default, name


def test_unit_new_fields_have_safe_defaults() -> None:
    producer = KafkaProducerConfig()
    assert producer.enable_idempotence is True
    # 1 MiB, not aiokafka's 16 KiB: a full batch makes every further send to its partition wait.
    assert producer.to_aiokafka()["max_batch_size"] == 1024 * 1024
    assert (producer.ssl_cafile, producer.ssl_certfile, producer.ssl_keyfile) == (None,) * 3
    assert KafkaConsumerConfig(topics=["t"]).value_format == "auto"
    assert KafkaStreamConfig().dead_letter_topic is None


def test_unit_sasl_password_is_a_secret() -> None:
    config = KafkaProducerConfig(
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_plain_username="svc",
        sasl_plain_password="s3cr3t-pw",
        ssl_cafile=certifi.where(),
    )
    assert "s3cr3t-pw" not in repr(config)
    assert "s3cr3t-pw" not in str(config.model_dump())
    kwargs = config.to_aiokafka()
    assert kwargs["sasl_plain_password"] == "s3cr3t-pw"
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert isinstance(kwargs["ssl_context"], ssl.SSLContext)


def test_unit_extra_reaches_aiokafka_and_unknown_keys_are_named() -> None:
    extra = {"max_request_size": 2 * 1024 * 1024}
    assert KafkaProducerConfig(extra=extra).to_aiokafka()["max_request_size"] == 2 * 1024 * 1024
    with pytest.raises(ValidationError, match=r"unknown AIOKafkaProducer option.*max_batch_sise"):
        KafkaProducerConfig(extra={"max_batch_sise": 1})
    with pytest.raises(ValidationError, match=r"unknown AIOKafkaConsumer option.*linger_ms"):
        KafkaConsumerConfig(topics=["t"], extra={"linger_ms": 1})
    with pytest.raises(ValidationError, match="own fields"):
        KafkaProducerConfig(extra={"acks": 1})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"acks": "1"}, "contradicts enable_idempotence"),
        ({"security_protocol": "SASL_PLAINTEXT"}, "needs sasl_mechanism"),
        ({"sasl_mechanism": "PLAIN"}, "needs sasl_plain_username"),
        ({"bootstrap_servers": " , "}, "at least one broker"),
        ({"compression_type": "brotli"}, "compression_type"),
        ({"max_batch_size": 100}, "max_batch_size"),
        ({"extra": {"max_batch_size": 4096}}, "max_batch_size"),
    ],
)
def test_unit_contradictions_are_rejected(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        KafkaProducerConfig(**kwargs)


def test_unit_acks_one_without_idempotence_is_an_int_for_aiokafka() -> None:
    assert KafkaProducerConfig(acks="1", enable_idempotence=False).to_aiokafka()["acks"] == 1


def test_unit_auto_commit_needs_a_group() -> None:
    with pytest.raises(ValidationError, match="group_id"):
        KafkaConsumerConfig(topics=["t"], enable_auto_commit=True)


def test_unit_bootstrap_servers_accept_a_comma_separated_string() -> None:
    kwargs = KafkaConsumerConfig(topics=["t"], bootstrap_servers="a:1, b:2").to_aiokafka()
    assert kwargs["bootstrap_servers"] == ["a:1", "b:2"]


def test_unit_processing_guarantee_and_isolation_level_keep_todays_behaviour_by_default() -> None:
    assert KafkaStreamConfig().processing_guarantee == "at_least_once"
    assert KafkaStreamConfig().transactional_id_prefix is None
    consumer = KafkaConsumerConfig(topics=["t"])
    assert consumer.isolation_level == "read_uncommitted"
    kwargs = consumer.to_aiokafka()
    # aiokafka's own defaults, now passed explicitly.
    assert (kwargs["isolation_level"], kwargs["heartbeat_interval_ms"]) == (
        "read_uncommitted",
        3000,
    )
    producer = KafkaProducerConfig().to_aiokafka()
    assert "transactional_id" not in producer
    assert "transaction_timeout_ms" not in producer


def test_unit_read_committed_and_short_sessions_reach_aiokafka() -> None:
    kwargs = KafkaConsumerConfig(
        topics=["t"], isolation_level="read_committed", session_timeout_ms=1500
    ).to_aiokafka()
    assert kwargs["isolation_level"] == "read_committed"
    # A third of a short session: the member heartbeats several times before it expires.
    assert (kwargs["session_timeout_ms"], kwargs["heartbeat_interval_ms"]) == (1500, 500)
    with pytest.raises(ValidationError, match="isolation_level"):
        KafkaConsumerConfig(topics=["t"], isolation_level="committed")
    with pytest.raises(ValidationError, match="shorter than session_timeout_ms"):
        KafkaConsumerConfig(topics=["t"], session_timeout_ms=1000, heartbeat_interval_ms=1000)
    with pytest.raises(ValidationError, match="own fields"):
        KafkaConsumerConfig(topics=["t"], extra={"isolation_level": "read_committed"})


def test_unit_a_transactional_producer_config_reaches_aiokafka() -> None:
    kwargs = KafkaProducerConfig(
        transactional_id="g.t.0", transaction_timeout_ms=10_000
    ).to_aiokafka()
    assert (kwargs["transactional_id"], kwargs["transaction_timeout_ms"]) == ("g.t.0", 10_000)
    with pytest.raises(ValidationError, match="needs enable_idempotence"):
        KafkaProducerConfig(transactional_id="g.t.0", enable_idempotence=False, acks="1")


def test_unit_exactly_once_refuses_to_skip_commits() -> None:
    config = KafkaStreamConfig(processing_guarantee="exactly_once", transactional_id_prefix="p")
    assert (config.processing_guarantee, config.transaction_timeout_ms) == ("exactly_once", 60_000)
    with pytest.raises(ValidationError, match="commit_on_success=False contradicts it"):
        KafkaStreamConfig(processing_guarantee="exactly_once", commit_on_success=False)
    with pytest.raises(ValidationError, match="processing_guarantee"):
        KafkaStreamConfig(processing_guarantee="exactly-once")
