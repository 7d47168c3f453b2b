"""Configuration of the producer, the consumer and the stream processor.

Field names and defaults follow the reference API. Changed defaults, and why:
- `KafkaProducerConfig.enable_idempotence=True` (new): with `acks="all"` a retried batch is never
  written twice and order per partition holds across retries.
- `KafkaProducerConfig.max_batch_size=1 MiB` (new; aiokafka's own is 16 KiB): the producer keeps
  one batch per partition, and while it is full every further send to that partition waits for
  it to be sent. With acks=all and idempotence one batch per partition is in flight, so 16 KiB
  (about seven 2 KB audit records) per round trip capped a busy partition; 1 MiB fits every
  record the broker accepts (its `message.max.bytes`), and a batch only takes the memory of
  the records in it (docs/operations.md, "Producer batching").
- `KafkaProducerConfig.retries` is kept for compatibility; aiokafka has no such knob: it retries
  retriable errors on its own, an idempotent producer until the record is delivered (a
  partition without a leader included: `KafkaProducerClient` keeps its batches), one without
  idempotence until `request_timeout_ms` runs out.
"""

import inspect
from typing import Any, Literal, Self

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.helpers import create_ssl_context
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from app.kafka.partitioner import KeyHashPartitioner
from app.kafka.serde import ValueFormat

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


def server_list(servers: str | list[str]) -> list[str]:
    """`"a:9092, b:9092"` or `["a:9092", "b:9092"]` as a clean list."""
    parts = servers.split(",") if isinstance(servers, str) else servers
    return [part.strip() for part in parts if part.strip()]


def _parameters(cls: type) -> frozenset[str]:
    return frozenset(inspect.signature(cls).parameters) - {"loop"}


class _ConnectionConfig(BaseModel):
    """Fields every client needs to reach and authenticate to the cluster."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # The aiokafka class `extra` is passed to, and the options our own fields already set.
    _client_class: type
    _owned_options: frozenset[str] = frozenset()

    bootstrap_servers: str | list[str] = "localhost:9092"
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_plain_username: str | None = None
    sasl_plain_password: SecretStr | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    extra: dict[str, Any] = Field(default_factory=dict)

    @field_validator("bootstrap_servers")
    @classmethod
    def _servers_not_empty(cls, value: str | list[str]) -> str | list[str]:
        if not server_list(value):
            raise ValueError("at least one broker address is needed, e.g. localhost:9092")
        return value

    @model_validator(mode="after")
    def _check_connection(self) -> Self:
        if self.security_protocol.startswith("SASL") and self.sasl_mechanism is None:
            raise ValueError(f"security_protocol {self.security_protocol} needs sasl_mechanism")
        if self.sasl_mechanism is not None and not (
            self.sasl_plain_username and self.sasl_plain_password
        ):
            raise ValueError(
                f"sasl_mechanism {self.sasl_mechanism} needs sasl_plain_username "
                "and sasl_plain_password"
            )
        known = _parameters(self._client_class)
        unknown = sorted(set(self.extra) - known)
        if unknown:
            raise ValueError(
                f"extra: unknown {self._client_class.__name__} option(s) {', '.join(unknown)}"
            )
        clashing = sorted(set(self.extra) & self._owned_options)
        if clashing:
            raise ValueError(
                f"extra: {', '.join(clashing)} must be set through the config's own fields"
            )
        return self

    def _connection_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "bootstrap_servers": server_list(self.bootstrap_servers),
            "security_protocol": self.security_protocol,
        }
        if self.sasl_mechanism is not None:
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            kwargs["sasl_plain_username"] = self.sasl_plain_username
            if self.sasl_plain_password is not None:
                kwargs["sasl_plain_password"] = self.sasl_plain_password.get_secret_value()
        if self.security_protocol in ("SSL", "SASL_SSL"):
            kwargs["ssl_context"] = create_ssl_context(
                cafile=self.ssl_cafile, certfile=self.ssl_certfile, keyfile=self.ssl_keyfile
            )
        return kwargs


_CONNECTION_OPTIONS = frozenset(
    {
        "bootstrap_servers",
        "client_id",
        "security_protocol",
        "sasl_mechanism",
        "sasl_plain_username",
        "sasl_plain_password",
        "ssl_context",
        "key_serializer",
        "value_serializer",
        "key_deserializer",
        "value_deserializer",
    }
)


class KafkaProducerConfig(_ConnectionConfig):
    """Configuration for `KafkaProducerClient`."""

    _client_class = AIOKafkaProducer
    _owned_options = _CONNECTION_OPTIONS | {
        "acks",
        "linger_ms",
        "compression_type",
        "request_timeout_ms",
        "enable_idempotence",
        "max_batch_size",
        "transactional_id",
        "transaction_timeout_ms",
    }

    client_id: str = "ractogateway-producer"
    acks: Literal["all", "0", "1"] | int = "all"
    linger_ms: int = Field(default=5, ge=0)
    # False: a record that finds the producer idle (nothing on its way, nothing lingering)
    # goes at once, and linger gathers only what arrives while a request is out.
    linger_when_idle: bool = True
    compression_type: Literal["gzip", "snappy", "lz4", "zstd"] | None = "gzip"
    retries: int = Field(default=3, ge=0)
    request_timeout_ms: int = Field(default=30_000, gt=0)
    enable_idempotence: bool = True
    # aiokafka's name: the most bytes of records buffered per partition (one batch).
    max_batch_size: int = Field(default=1024 * 1024, ge=1024)
    # Set only for the producers of exactly-once processing (see KafkaStreamProcessor): sends
    # then happen inside transactions, and starting the producer fences older holders of the id.
    transactional_id: str | None = Field(default=None, min_length=1)
    transaction_timeout_ms: int = Field(default=60_000, gt=0)

    @model_validator(mode="after")
    def _check_acks(self) -> Self:
        if self.transactional_id is not None and not self.enable_idempotence:
            raise ValueError("a transactional_id needs enable_idempotence=True")
        if self.enable_idempotence and self.acks not in ("all", -1):
            raise ValueError(
                f"acks={self.acks!r} contradicts enable_idempotence=True: use acks='all' "
                "or turn idempotence off"
            )
        return self

    def to_aiokafka(self) -> dict[str, Any]:
        """Keyword arguments for `aiokafka.AIOKafkaProducer`."""
        acks: str | int = self.acks if self.acks == "all" else int(self.acks)
        return {
            **self._connection_kwargs(),
            "client_id": self.client_id,
            "acks": acks,
            "linger_ms": self.linger_ms,
            "compression_type": self.compression_type,
            "request_timeout_ms": self.request_timeout_ms,
            "enable_idempotence": self.enable_idempotence,
            "max_batch_size": self.max_batch_size,
            # aiokafka's default rule, each key's hash kept (an `extra` partitioner wins).
            "partitioner": KeyHashPartitioner(),
            **self._transactional_kwargs(),
            **self.extra,
        }

    def _transactional_kwargs(self) -> dict[str, Any]:
        if self.transactional_id is None:
            return {}  # aiokafka's own defaults, exactly as before transactions existed
        return {
            "transactional_id": self.transactional_id,
            "transaction_timeout_ms": self.transaction_timeout_ms,
        }


class KafkaConsumerConfig(_ConnectionConfig):
    """Configuration for `KafkaConsumerClient`.

    Without a `group_id` the consumer reads every partition of `topics` on its own (assign, no
    group coordination) and cannot commit offsets.
    """

    _client_class = AIOKafkaConsumer
    _owned_options = _CONNECTION_OPTIONS | {
        "group_id",
        "auto_offset_reset",
        "enable_auto_commit",
        "max_poll_records",
        "session_timeout_ms",
        "heartbeat_interval_ms",
        "isolation_level",
    }

    topics: list[str] = Field(min_length=1)
    group_id: str | None = None
    auto_offset_reset: Literal["earliest", "latest", "none"] = "latest"
    enable_auto_commit: bool = False
    max_poll_records: int = Field(default=500, gt=0)
    poll_timeout_ms: int = Field(default=1_000, ge=0)
    session_timeout_ms: int = Field(default=10_000, gt=0)
    # None: aiokafka's 3 s, or a third of the session timeout when that is shorter (a member
    # must heartbeat several times per session, or a short session keeps expiring).
    heartbeat_interval_ms: int | None = Field(default=None, gt=0)
    # "read_committed": records of open or aborted transactions are never returned (what a
    # reader of an exactly-once processor's outputs wants); the default returns every record.
    isolation_level: Literal["read_uncommitted", "read_committed"] = "read_uncommitted"
    client_id: str = "ractogateway-consumer"
    value_format: ValueFormat = "auto"

    @model_validator(mode="after")
    def _check_group(self) -> Self:
        if self.enable_auto_commit and self.group_id is None:
            raise ValueError("enable_auto_commit needs a group_id: offsets belong to a group")
        if self.heartbeat_interval_ms is not None and (
            self.heartbeat_interval_ms >= self.session_timeout_ms
        ):
            raise ValueError("heartbeat_interval_ms must be shorter than session_timeout_ms")
        return self

    @property
    def effective_heartbeat_interval_ms(self) -> int:
        """The heartbeat interval handed to aiokafka (see `heartbeat_interval_ms`)."""
        if self.heartbeat_interval_ms is not None:
            return self.heartbeat_interval_ms
        return max(1, min(3_000, self.session_timeout_ms // 3))

    def to_aiokafka(self) -> dict[str, Any]:
        """Keyword arguments for `aiokafka.AIOKafkaConsumer` (topics are subscribed separately)."""
        return {
            **self._connection_kwargs(),
            "client_id": self.client_id,
            "group_id": self.group_id,
            "auto_offset_reset": self.auto_offset_reset,
            "enable_auto_commit": self.enable_auto_commit,
            "max_poll_records": self.max_poll_records,
            "session_timeout_ms": self.session_timeout_ms,
            "heartbeat_interval_ms": self.effective_heartbeat_interval_ms,
            "isolation_level": self.isolation_level,
            **self.extra,
        }


ProcessingGuarantee = Literal["at_least_once", "exactly_once"]


class KafkaStreamConfig(BaseModel):
    """Batch processing configuration for `KafkaStreamProcessor`.

    `processing_guarantee="at_least_once"` (the default): with `commit_on_success`, outputs are
    always acknowledged before offsets are committed, whatever `wait_for_publish` says: a crash
    then reprocesses a batch, it never skips one.

    `"exactly_once"`: each batch's outputs, dead letters and consumed offsets go into one Kafka
    transaction per input partition, committed together or not at all; readers of the outputs
    use `isolation_level="read_committed"`. The transactional ids are
    `<transactional_id_prefix>.<topic>.<partition>` (the prefix defaults to the consumer's
    group id); see docs/streams.md for why.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_size: int = Field(default=32, gt=0)
    max_wait_ms: int = Field(default=250, ge=0)
    poll_timeout_ms: int = Field(default=100, ge=0)
    commit_on_success: bool = True
    wait_for_publish: bool = True
    dead_letter_topic: str | None = Field(default=None, min_length=1)
    publish_timeout_s: float = Field(default=30.0, gt=0)
    processing_guarantee: ProcessingGuarantee = "at_least_once"
    transactional_id_prefix: str | None = Field(default=None, min_length=1)
    # How long the broker lets a transaction stay open before it aborts it on its own (a
    # processor killed mid-batch whose partitions nobody takes over holds back read_committed
    # readers of its outputs until then).
    transaction_timeout_ms: int = Field(default=60_000, gt=0)

    @model_validator(mode="after")
    def _check_guarantee(self) -> Self:
        if self.processing_guarantee == "exactly_once" and not self.commit_on_success:
            raise ValueError(
                "exactly_once commits the consumed offsets in each batch's transaction: "
                "commit_on_success=False contradicts it"
            )
        return self
