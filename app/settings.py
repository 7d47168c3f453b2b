"""The service's settings: `RG_*` environment variables, also read from a `.env` file."""

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.auth import SCOPES, Scope
from app.kafka.audit import DEFAULT_AUDIT_TOPIC
from app.kafka.models import TopicName
from app.runtime import BODY_COST

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
# "a,b" in the environment; a list in code.
CommaList = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    """Everything the service reads from its environment; the table is in docs/operations.md."""

    model_config = SettingsConfigDict(
        env_prefix="RG_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        # An error must not echo a value: RG_API_KEYS holds secrets (see _api_keys_by_position).
        hide_input_in_errors=True,
    )

    kafka_bootstrap_servers: CommaList = Field(
        default=["127.0.0.1:9092"],
        min_length=1,
        description="Broker list, comma-separated.",
    )
    kafka_client_id: str = "ractogateway-kafka"
    kafka_security_protocol: SecurityProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: SaslMechanism | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: str | None = None
    kafka_ssl_certfile: str | None = None
    kafka_ssl_keyfile: str | None = None
    kafka_request_timeout_ms: int = Field(default=30_000, gt=0)

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    ready_timeout_s: float = Field(
        default=2.0, gt=0, description="How long GET /readyz waits for the broker's answer."
    )

    log_format: Literal["json", "text"] = "json"

    audit_topic: TopicName = DEFAULT_AUDIT_TOPIC
    audit_topic_partitions: int = Field(
        default=6, ge=1, description="Partitions of the audit topic when the service creates it."
    )
    audit_topic_replication: int | None = Field(
        default=None,
        ge=1,
        description="Replication factor of the audit topic when the service creates it; "
        "unset: 3, or the number of brokers when fewer.",
    )
    audit_retention_days: int = Field(
        default=400,
        ge=-1,
        description="retention.ms (in days) of the audit topic when the service creates it; "
        "-1 keeps records forever.",
    )
    audit_min_retention_days: int = Field(
        # Six calendar months can be 184 days (July to December).
        default=184,
        ge=0,
        description="Shortest retention (days) accepted on an existing audit topic.",
    )
    audit_legal_hold: bool = Field(
        default=False,
        description="A legal hold: the audit topic must keep every record (retention.ms and "
        "retention.bytes -1; a new one is created so); any other retention makes it "
        "noncompliant (RG_AUDIT_TOPIC_CHECK).",
    )
    audit_topic_check: Literal["enforce", "warn", "off"] = Field(
        default="enforce",
        description="A noncompliant audit topic: enforce = not ready, writes refused (503); "
        "warn = a warning and a metric; off = the topic is neither created nor checked.",
    )
    audit_signing_key_file: Path | None = Field(
        default=None,
        description="Ed25519 private key (PEM, PKCS#8) that signs checkpoints of the audit "
        "chain; unset: the chain is unsigned and no checkpoints are written.",
    )
    audit_key_id: str | None = Field(
        default=None,
        min_length=1,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="Id of the signing key in checkpoints and GET /audit/keys; unset: the first "
        "16 hex digits of SHA-256 of the raw public key.",
    )
    audit_retired_keys_dir: Path | None = Field(
        default=None,
        description="Folder of retired public keys (`<key_id>.pem`) GET /audit/keys serves too, "
        "so checkpoints signed before a rotation still verify.",
    )
    audit_checkpoint_s: float = Field(
        default=1.0,
        gt=0,
        description="How often a signed checkpoint is written when new records were stored.",
    )
    audit_checkpoints_topic: TopicName | None = Field(
        default=None,
        description="Topic of the signed checkpoints; unset: `<audit topic>.checkpoints`.",
    )
    audit_writers_topic: TopicName | None = Field(
        default=None,
        description="Topic of the log of writers (each writer's start, durable heads and stop"
        "; one partition, kept forever); unset: `<audit topic>.writers`.",
    )
    audit_writers_s: float = Field(
        default=5.0,
        gt=0,
        description="How often a writer writes its durable head to the log of writers (when "
        "it advanced), and the writers' tree is signed (when it grew).",
    )
    audit_log_origin: str | None = Field(
        default=None,
        description="Key name of the C2SP signed notes of the checkpoints, and the origin "
        "prefix of the writers' logs (a writer's checkpoint note has origin "
        "`<this>/writer/<writer id>`); no spaces, no '+'; unset: "
        "`ractogateway-kafka/<audit topic>`.",
    )
    audit_witnesses: str | None = Field(
        default=None,
        description='JSON `{"k": 1, "witnesses": [{"url": "http://host:port", "key": '
        '"<verifier key>"}]}`: the C2SP witnesses that cosign the checkpoints of the log of '
        "writers (`url` is the prefix before `/add-checkpoint`, `key` the witness's cosignature "
        "verifier key) and the quorum `k`; unset: none. A value that does not parse stops the "
        "start.",
    )
    audit_proofs: bool = Field(
        default=True,
        description="With a signing key, keep the proof index (every writer's Merkle tree, read "
        "from the topics) and serve GET /audit/proof and /audit/consistency; false: this "
        "instance answers them 404 no_proof (another replica may serve them).",
    )
    audit_tsa_urls: CommaList = Field(
        default=[],
        description="RFC 3161 timestamp authorities (comma-separated, or a JSON list), asked "
        "in order until one answers: every RG_AUDIT_TSA_INTERVAL_S the latest note of the log of "
        "writers is stamped (when it grew) and the token kept on the checkpoints topic keyed "
        "`timestamps`; needs RG_AUDIT_TSA_CA_FILE and the proof index. Empty: no stamps.",
    )
    audit_tsa_interval_s: float = Field(
        default=60.0,
        gt=0,
        description="How often the log of writers is stamped by a timestamp authority (when "
        "it grew since the last token).",
    )
    audit_tsa_ca_file: Path | None = Field(
        default=None,
        description="The timestamp authorities' CA certificates (PEM): an answer that does not "
        "chain to one of them (with the timeStamping key usage) is not kept.",
    )
    audit_search_window_s: int = Field(
        default=86_400,
        ge=1,
        description="GET /audit/records: the window a query without `since` or `until` covers "
        "(ending now, or at the side given).",
    )
    audit_search_scan_limit: int = Field(
        default=100_000,
        ge=100,
        description="GET /audit/records: most records one page reads; a page that stopped at it "
        "says so (`stopped_by: scan_limit`) and its cursor goes on.",
    )
    audit_search_concurrency: int = Field(
        default=4,
        ge=1,
        le=1000,
        description="GET /audit/records: most searches running at once (one consumer each); "
        "more are answered 503 too_many_searches with Retry-After.",
    )
    audit_search_cursor_secret: SecretStr | None = Field(
        default=None,
        description="GET /audit/records: the key of the cursors' HMAC; give replicas the same "
        "one to continue a query on any of them. Unset: one drawn per process.",
    )
    proof_dir: Path | None = Field(
        default=None,
        description="Folder of the proof index (every writer's Merkle tree, for GET /audit/proof"
        "); unset: a temporary folder, rebuilt from the topics at every start.",
    )
    produce_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="How long POST /audit and /publish wait for Kafka's acknowledgement.",
    )
    audit_batch_max: int = Field(default=500, ge=1, le=10_000)
    max_in_flight: int = Field(
        default=10_000, ge=1, description="Most records waiting for Kafka's acknowledgement."
    )
    max_in_flight_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=1024,
        description="Most memory, in bytes, requests in progress and records waiting for "
        "Kafka's acknowledgement cost (a body's byte counts 3 while its request is worked on, a "
        "record's byte 2); beyond it 503 overloaded. At least 3 x RG_MAX_BODY_BYTES.",
    )
    kafka_compression_type: Literal["none", "gzip", "snappy", "lz4", "zstd"] = Field(
        default="none",
        description="Compression of the producer's batches: any codec Kafka offers. It runs "
        "in the service's event loop (gzip about 12 ms per 0.5 MB of text) and caps the rate "
        "of big records; on a sidecar's loopback link it saves nothing (a topic's "
        "compression.type lets the broker compress what it stores).",
    )
    kafka_max_batch_size: int = Field(
        default=1024 * 1024,
        ge=1024,
        le=1024 * 1024,
        description="Most bytes of records the producer gathers per partition before it sends "
        "them (aiokafka's max_batch_size); while a partition's batch is full, more records for "
        "it wait. At most 1 MiB, the most a broker takes in one batch by default.",
    )
    kafka_linger_ms: int = Field(
        default=5,
        ge=0,
        le=1000,
        description="How long the producer waits for more records before it sends a batch that "
        "is not full (aiokafka's linger_ms): a little latency for fewer, larger requests.",
    )
    kafka_linger_when_idle: bool = Field(
        default=False,
        description="Whether a record that finds the producer idle (nothing on its way to "
        "Kafka, nothing lingering) waits RG_KAFKA_LINGER_MS too. false: it is sent at once, "
        "and linger gathers only the records that arrive while a request is out.",
    )
    idempotency_window_s: float = Field(
        default=600.0, ge=0, description="How long an acked event's receipt is kept for retries."
    )
    idempotency_max_keys: int = Field(
        default=50_000, ge=1, description="Most receipts kept for retries (memory bound)."
    )
    messages_topics: Annotated[list[TopicName], NoDecode] = Field(
        default=[], description="Topics kept for GET /messages; empty means the audit topic."
    )
    messages_buffer: int = Field(default=1000, ge=1, le=100_000)
    messages_buffer_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    messages_refresh_s: float = Field(
        default=10.0, gt=0, description="How often GET /messages looks for new partitions."
    )
    messages_stream_send_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="How long a GET /messages/stream client may read nothing while an event "
        "waits to be sent before its connection is closed.",
    )
    publish_topics: CommaList = Field(
        default=[],
        description="Allow-list (names or glob patterns) for POST /publish; empty: no topic. "
        "Never the service's own topics nor _*, connect-configs/offsets/status, mm2-*.",
    )
    api_keys: dict[str, list[Scope]] = Field(
        default={},
        repr=False,  # never in reprs or logs
        description='API keys and their scopes as JSON, e.g. {"k1": ["audit:write"]}; '
        "empty: authentication off.",
    )
    allow_unauthenticated: bool = Field(
        default=False,
        description="Serve on a non-loopback RG_HOST with RG_API_KEYS empty (anyone in reach "
        "may write and read); without it the service refuses to start so.",
    )
    allow_insecure_key_files: bool = Field(
        default=False,
        description="Start with a private key file (the signing key, the redaction key) that "
        "others may read, or its group while the file is the service user's own (one warning "
        "names it); without it the service refuses to start so.",
    )
    max_body_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="Largest request body; larger ones get 413."
    )
    max_headers: int = Field(
        default=100, ge=10, description="Most header lines in a request; more get 431."
    )
    max_header_bytes: int = Field(
        default=32 * 1024,
        ge=1024,
        description="Most bytes of URL, header names and values in a request; more get 431.",
    )
    request_read_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="Longest time from a request's first byte until its body is complete; "
        "a slower request gets 408 and its connection is closed.",
    )
    write_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="Longest time a client may leave an answer unread (the service's send "
        "buffer full, or a closing connection's last bytes pending); then the connection is "
        "closed.",
    )
    max_connections: int = Field(
        default=1000,
        ge=1,
        description="Most client connections open at once; more get 503 too_many_connections.",
    )
    spool_dir: Path | None = Field(
        default=None,
        description="Folder of the disk spool for audit events while Kafka is away; unset: none.",
    )
    spool_max_bytes: int = Field(
        default=1024**3, ge=1024, description="Most bytes of records the spool holds."
    )
    spool_min_free_bytes: int = Field(
        default=16 * 1024**2,
        ge=0,
        description="Free space the spool leaves on its disk, so that removing forwarded "
        "records (which writes too) never finds it full; 0: no floor.",
    )
    spool_after_s: float = Field(
        default=2.0,
        gt=0,
        description="With a spool: how long POST /audit waits for Kafka before spooling.",
    )
    keep_alive_s: float = Field(
        default=75.0,
        gt=0,
        description="How long an idle client connection stays open between requests (longer than "
        "clients' pools); before its first, at most RG_REQUEST_READ_TIMEOUT_S.",
    )
    shutdown_drain_s: float = Field(
        default=1.0,
        ge=0,
        description="After SIGTERM: how long /readyz answers 503 before the listener closes.",
    )
    shutdown_timeout_s: float = Field(
        default=30.0, gt=0, description="After SIGTERM: how long in-flight requests may take."
    )
    redaction: Literal["off", "mask", "hash"] = Field(
        default="off",
        description="Redaction of personal data and secrets before publish: mask = typed "
        "placeholders ([EMAIL]); hash = placeholders with a keyed hash ([EMAIL:3f9a...]).",
    )
    redaction_key_file: Path | None = Field(
        default=None,
        description="File of the HMAC key for RG_REDACTION=hash (required then).",
    )
    redaction_patterns: dict[str, str] = Field(
        default={},
        description="More patterns to redact: a JSON object name -> regex; each match "
        "becomes [NAME] (the name in capitals).",
    )
    redaction_metadata_fields: CommaList = Field(
        default=[],
        description="Top-level metadata keys redacted too (their nested values included).",
    )

    erasure: Literal["off", "on"] = Field(
        default="off",
        description="Per-subject encryption for crypto-shredding erasure (docs/privacy.md): "
        "on from the first record, or earlier records cannot be erased.",
    )
    erasure_kek_file: Path | None = Field(
        default=None,
        description="File of the key-encryption key for RG_ERASURE=on (required then): 32 "
        "random bytes as one line of base64.",
    )
    erasure_subject_field: str | None = Field(
        default=None,
        description="Metadata field naming whose data a record holds; unset: the user_id.",
    )
    erasure_fields: CommaList = Field(
        default=[],
        description="Top-level metadata fields sealed too, besides the prompt and response.",
    )
    erasure_key_cache_s: float = Field(
        default=10.0,
        gt=0,
        description="A replica uses its cached keys only while it read the keys topic within "
        "this: the bound on honouring an erasure made on another replica.",
    )

    schema_registry_url: str | None = Field(
        default=None,
        description="Confluent-compatible Schema Registry API (e.g. http://host:8081, or "
        "Apicurio's .../apis/ccompat/v7), without user:password@ (see the USERNAME and "
        "PASSWORD settings); unset: schema contracts off.",
    )
    schema_registry_username: str | None = Field(
        default=None, description="Basic-auth user for the Schema Registry."
    )
    schema_registry_password: SecretStr | None = Field(
        default=None, description="Basic-auth password for the Schema Registry."
    )
    schema_registry_ca_file: str | None = Field(
        default=None, description="CA bundle (PEM) trusted for an https Schema Registry."
    )
    schema_wire_format: Literal["json", "confluent"] = Field(
        default="json",
        description="Values of audit records and of /publish to topics with a schema: json = "
        "plain JSON; confluent = magic byte 0 + 4-byte schema id + JSON (Confluent's converters).",
    )
    schema_required: bool = Field(
        default=False,
        description="Refuse POST /publish (422 schema_required) to topics whose <topic>-value "
        "subject has no schema.",
    )
    schema_cache_s: float = Field(
        default=60.0,
        gt=0,
        description="How long a topic's latest schema (or its absence) is used before the "
        "registry is asked again.",
    )

    openai_upstream_url: str = Field(
        default="https://api.openai.com/v1",
        description="Where the recording proxy (/openai/v1/...) sends calls: an OpenAI-compatible "
        "API's base URL, ending before /chat/completions.",
    )
    proxy_mode: Literal["fail-closed", "fail-open"] = Field(
        default="fail-closed",
        description="fail-closed: a proxied answer is complete only once its record is stored "
        "(else 503); fail-open: the answer goes through at once and the record follows.",
    )
    proxy_connect_timeout_s: float = Field(
        default=10.0, gt=0, description="How long the proxy waits to connect to the upstream."
    )
    proxy_read_timeout_s: float = Field(
        default=600.0,
        gt=0,
        description="How long the proxy waits for the upstream's next bytes (a slow model's "
        "first token included) before it answers 504.",
    )

    @field_validator(
        "kafka_bootstrap_servers",
        "messages_topics",
        "publish_topics",
        "redaction_metadata_fields",
        "erasure_fields",
        mode="before",
    )
    @classmethod
    def _split_commas(cls, value: object) -> object:
        # An environment variable holds "a,b", not JSON.
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("api_keys", mode="before")
    @classmethod
    def _api_keys_by_position(cls, value: object) -> object:
        # The keys are the secrets, and pydantic names a dict's key in an error's location:
        # checked here first, a problem is named by the key's position, never by the key.
        if not isinstance(value, dict):
            raise ValueError("RG_API_KEYS must be a JSON object: key -> list of scopes")
        for position, scopes in enumerate(value.values(), start=1):
            where = f"RG_API_KEYS: key #{position}"
            if not isinstance(scopes, list):
                raise ValueError(f'{where}: its scopes must be a list, e.g. ["audit:write"]')
            for scope in scopes:
                if scope not in SCOPES:
                    shown = repr(scope) if isinstance(scope, str) else type(scope).__name__
                    raise ValueError(
                        f"{where}: unknown scope {shown}; the scopes are {', '.join(SCOPES)}"
                    )
        return value

    @field_validator(
        "spool_dir",
        "audit_signing_key_file",
        "audit_retired_keys_dir",
        "redaction_key_file",
        "audit_tsa_ca_file",
        "erasure_kek_file",
        mode="before",
    )
    @classmethod
    def _empty_path_is_unset(cls, value: object) -> object:
        # `RG_SPOOL_DIR=` (as a chart or a container run writes it) turns the spool off; read
        # as a path, "" would be "." and the spool would land in the working folder.
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @model_validator(mode="after")
    def _retention_meets_its_minimum(self) -> Self:
        # The service would create a topic that its own check then refuses.
        if self.audit_retention_days == 0:
            raise ValueError("RG_AUDIT_RETENTION_DAYS=0: give days, or -1 to keep forever")
        if 0 < self.audit_retention_days < self.audit_min_retention_days:
            raise ValueError(
                f"RG_AUDIT_RETENTION_DAYS={self.audit_retention_days} is shorter than "
                f"RG_AUDIT_MIN_RETENTION_DAYS={self.audit_min_retention_days}"
            )
        return self

    @model_validator(mode="after")
    def _a_body_fits_in_flight(self) -> Self:
        # Otherwise a body of the largest size would be refused as overloaded forever (a body's
        # byte is counted BODY_COST times, what it costs in memory).
        if self.max_in_flight_bytes < BODY_COST * self.max_body_bytes:
            raise ValueError(
                f"max_in_flight_bytes ({self.max_in_flight_bytes}) must be at least "
                f"{BODY_COST} x max_body_bytes ({self.max_body_bytes}): what a body of the "
                "largest size costs in memory"
            )
        return self

    @model_validator(mode="after")
    def _erasure_is_complete(self) -> Self:
        if self.erasure == "on" and self.erasure_kek_file is None:
            raise ValueError("RG_ERASURE=on needs RG_ERASURE_KEK_FILE (the key-encryption key)")
        return self

    @model_validator(mode="after")
    def _redaction_is_complete(self) -> Self:
        # Refuse to start rather than write records the policy would have redacted.
        if self.redaction == "hash" and self.redaction_key_file is None:
            raise ValueError("RG_REDACTION=hash needs RG_REDACTION_KEY_FILE (the HMAC key)")
        for name, pattern in self.redaction_patterns.items():
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
                raise ValueError(f"RG_REDACTION_PATTERNS: name {name!r} is not letters/digits/_")
            # The engine the patterns run on (app.ingest.redaction); imported only when there
            # are patterns, as it costs ~11 MB.
            import regex  # noqa: PLC0415

            try:
                regex.compile(pattern)
            except regex.error as exc:
                raise ValueError(f"RG_REDACTION_PATTERNS: {name!r} is no regex: {exc}") from None
        return self

    @model_validator(mode="after")
    def _contracts_need_a_registry(self) -> Self:
        # Either would be silently ignored without a registry.
        if self.schema_registry_url is None and (
            self.schema_wire_format == "confluent" or self.schema_required
        ):
            raise ValueError(
                "RG_SCHEMA_WIRE_FORMAT=confluent and RG_SCHEMA_REQUIRED need "
                "RG_SCHEMA_REGISTRY_URL (the Schema Registry)"
            )
        return self

    @field_validator("audit_tsa_urls", mode="before")
    @classmethod
    def _urls_as_json_list(cls, value: object) -> object:
        # A JSON list, as a chart's values may write it, or "a,b".
        if isinstance(value, str) and value.lstrip().startswith("["):
            try:
                return json.loads(value)
            except ValueError as exc:
                raise ValueError(f"RG_AUDIT_TSA_URLS: not a JSON list: {exc}") from None
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("audit_tsa_urls")
    @classmethod
    def _tsa_urls_are_http(cls, value: list[str]) -> list[str]:
        for url in value:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(f"RG_AUDIT_TSA_URLS: {url[:80]!r} is not an http(s) URL")
            if "@" in parts.netloc:
                raise ValueError("RG_AUDIT_TSA_URLS: no credentials in a URL (user:password@)")
        return value

    @model_validator(mode="after")
    def _tokens_are_checked(self) -> Self:
        # A token kept unchecked could be anyone's: the CA is what makes it evidence.
        if self.audit_tsa_urls and self.audit_tsa_ca_file is None:
            raise ValueError(
                "RG_AUDIT_TSA_URLS needs RG_AUDIT_TSA_CA_FILE (the authorities' CA, PEM)"
            )
        return self

    @field_validator("audit_log_origin")
    @classmethod
    def _origin_is_a_key_name(cls, value: str | None) -> str | None:
        # It names the signing key in every note (C2SP signed-note): a verifier key is
        # `<name>+<id>+<key>` and a signature line `— <name> <signature>`.
        if value is not None and (not value or "+" in value or any(c.isspace() for c in value)):
            raise ValueError("a log origin is a key name: non-empty, no spaces, no '+'")
        return value

    @field_validator("schema_registry_url", "schema_registry_ca_file", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # `RG_SCHEMA_REGISTRY_URL=` (as a chart writes it) turns contracts off.
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("schema_registry_url")
    @classmethod
    def _no_credentials_in_url(cls, value: str | None) -> str | None:
        # In the URL they would show wherever the registry is named (logs, /readyz, errors).
        if value is not None and "@" in urlsplit(value).netloc:
            raise ValueError(
                "RG_SCHEMA_REGISTRY_URL carries credentials (user:password@): put them in "
                "RG_SCHEMA_REGISTRY_USERNAME and RG_SCHEMA_REGISTRY_PASSWORD instead"
            )
        return value

    @property
    def checkpoints_topic(self) -> str:
        """RG_AUDIT_CHECKPOINTS_TOPIC, or else `<audit topic>.checkpoints`."""
        return self.audit_checkpoints_topic or f"{self.audit_topic}.checkpoints"

    @property
    def writers_topic(self) -> str:
        """RG_AUDIT_WRITERS_TOPIC, or else `<audit topic>.writers`."""
        return self.audit_writers_topic or f"{self.audit_topic}.writers"

    @property
    def log_origin(self) -> str:
        """RG_AUDIT_LOG_ORIGIN, or else `ractogateway-kafka/<audit topic>`."""
        return self.audit_log_origin or f"ractogateway-kafka/{self.audit_topic}"

    @property
    def recent_topics(self) -> list[str]:
        """The topics GET /messages shows: `messages_topics`, or else the audit topic."""
        return self.messages_topics or [self.audit_topic]


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once; tests build their own `Settings(...)` instead."""
    return Settings()
