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
  retriable errors on its own until `request_timeout_ms` runs out.
"""

import inspect
from typing import Any, Literal, Self

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.helpers import create_ssl_context
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

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
    }

    client_id: str = "ractogateway-producer"
    acks: Literal["all", "0", "1"] | int = "all"
    linger_ms: int = Field(default=5, ge=0)
    compression_type: Literal["gzip", "snappy", "lz4", "zstd"] | None = "gzip"
    retries: int = Field(default=3, ge=0)
    request_timeout_ms: int = Field(default=30_000, gt=0)
    enable_idempotence: bool = True
    # aiokafka's name: the most bytes of records buffered per partition (one batch).
    max_batch_size: int = Field(default=1024 * 1024, ge=1024)

    @model_validator(mode="after")
    def _check_acks(self) -> Self:
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
            **self.extra,
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
    }

    topics: list[str] = Field(min_length=1)
    group_id: str | None = None
    auto_offset_reset: Literal["earliest", "latest", "none"] = "latest"
    enable_auto_commit: bool = False
    max_poll_records: int = Field(default=500, gt=0)
    poll_timeout_ms: int = Field(default=1_000, ge=0)
    session_timeout_ms: int = Field(default=10_000, gt=0)
    client_id: str = "ractogateway-consumer"
    value_format: ValueFormat = "auto"

    @model_validator(mode="after")
    def _check_group(self) -> Self:
        if self.enable_auto_commit and self.group_id is None:
            raise ValueError("enable_auto_commit needs a group_id: offsets belong to a group")
        return self

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
            **self.extra,
        }


class KafkaStreamConfig(BaseModel):
    """Batch processing configuration for `KafkaStreamProcessor`.

    With `commit_on_success`, outputs are always acknowledged before offsets are committed,
    whatever `wait_for_publish` says: a crash then reprocesses a batch, it never skips one.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_size: int = Field(default=32, gt=0)
    max_wait_ms: int = Field(default=250, ge=0)
    poll_timeout_ms: int = Field(default=100, ge=0)
    commit_on_success: bool = True
    wait_for_publish: bool = True
    dead_letter_topic: str | None = Field(default=None, min_length=1)
    publish_timeout_s: float = Field(default=30.0, gt=0)
