"""The records the library hands out and takes in."""

import re
from collections.abc import Mapping, Set
from datetime import datetime
from typing import Annotated, Any, ClassVar, Final, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from app.kafka.errors import KafkaSerializationError
from app.kafka.json_bounds import (
    MAX_ID_CHARS,
    MAX_METADATA_ITEMS,
    check_messages,
    check_metadata,
    json_integer,
)
from app.kafka.serde import canonical_json, plain_json, sha256_digest
from app.kafka.stamps import format_utc, new_event_id, parse_utc, utc_now_iso

AUDIT_SCHEMA_VERSION: Final = 1
# The version of a record that uses any field of `AUDIT_V2_FIELDS` (docs/opentelemetry.md).
AUDIT_SCHEMA_VERSION_2: Final = 2


# Kafka's rule: 1 to 249 of these characters, but not "." or ".." (written without lookahead,
# so every JSON Schema tool can use it).
TOPIC_NAME_PATTERN = r"^(?:[A-Za-z0-9._-]{3,249}|[A-Za-z0-9_-][A-Za-z0-9._-]?|\.[A-Za-z0-9_-])$"
_TOPIC_NAME = re.compile(TOPIC_NAME_PATTERN)
MAX_TEXT_CHARS = 1_000_000
# 9999-12-31T23:59:59.999Z: Kafka takes any 64-bit value, but no reader can show a later time.
MAX_TIMESTAMP_MS = 253_402_300_799_999
_EVENT_ID = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"


def check_topic_name(name: str) -> str:
    """Return `name` if Kafka accepts it as a topic name, else raise `ValueError` saying why."""
    if not _TOPIC_NAME.fullmatch(name):
        raise ValueError(
            "a topic name is 1 to 249 characters of letters, digits, '.', '_' and '-' "
            "(and not '.' or '..')"
        )
    return name


TopicName = Annotated[
    str,
    AfterValidator(check_topic_name),
    Field(json_schema_extra={"pattern": TOPIC_NAME_PATTERN, "minLength": 1, "maxLength": 249}),
]


_new, _set, _get = object.__new__, object.__setattr__, object.__getattribute__


class KafkaMessage(BaseModel):
    """One record read from Kafka, decoded (see `app.kafka.serde`)."""

    model_config = ConfigDict(frozen=True)

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None = None
    key: str | bytes | None = None
    value: Any = None
    headers: dict[str, bytes | None] = Field(default_factory=dict)
    # A value in the Confluent wire format names its schema (app/kafka/schemas.py); the version
    # is known when the consumer's deserializer could ask the registry.
    schema_id: int | None = None
    schema_version: int | None = None

    @classmethod
    def decoded(
        cls,
        *,
        topic: str,
        partition: int,
        offset: int,
        timestamp_ms: int | None,
        key: str | bytes | None,
        value: Any,
        headers: dict[str, bytes | None],
    ) -> "KafkaMessage":
        """A message of values the consumer's own decoding made (their types are the fields'):
        not validated again, nor copied (validating copied the headers of every record read)."""
        message = _new(cls)
        fields = {
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "timestamp_ms": timestamp_ms,
            "key": key,
            "value": value,
            "headers": headers,
            "schema_id": None,
            "schema_version": None,
        }
        _set(message, "__dict__", fields)
        _set(message, "__pydantic_fields_set__", set(fields))
        _set(message, "__pydantic_extra__", None)
        _set(message, "__pydantic_private__", None)
        return message

    def header(self, name: str) -> str | None:
        """A header's value as text (None when absent or without a value)."""
        raw = self.headers.get(name)
        return raw.decode("utf-8", errors="replace") if raw is not None else None


class KafkaProduceResult(BaseModel):
    """Where the cluster stored a record, once it acknowledged it."""

    model_config = ConfigDict(frozen=True)

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None = None


class KafkaPublishRequest(BaseModel):
    """One record to publish: what a stream handler returns to route outputs explicitly."""

    topic: TopicName
    value: Any = None
    key: str | bytes | None = None
    headers: dict[str, str | bytes | None] | None = None
    partition: Annotated[int, Field(ge=0), BeforeValidator(json_integer)] | None = None
    timestamp_ms: (
        Annotated[int, Field(ge=0, le=MAX_TIMESTAMP_MS), BeforeValidator(json_integer)] | None
    ) = None


_Id = Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS)]
_Text = Annotated[str, Field(min_length=1, max_length=MAX_TEXT_CHARS)]
# At most 2**53 - 1: exact as a JSON number in any reader (a float near 2**63 is not).
_Count = Annotated[int, Field(ge=0, le=2**53 - 1), BeforeValidator(json_integer)]
_Messages = Annotated[list[dict[str, Any]], AfterValidator(check_messages)]
_Time = Annotated[str, Field(json_schema_extra={"format": "date-time"})]

# Fields of schema version 2: optional, and absent from the stored JSON when not given, so a
# record without them is byte for byte a version 1 record.
AUDIT_V2_FIELDS: Final = (
    "operation",
    "provider",
    "request_model",
    "response_model",
    "response_id",
    "finish_reasons",
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "reasoning_output_tokens",
    "conversation_id",
    "data_source_id",
    "start_time_utc",
    "end_time_utc",
    "system_instructions",
    "input_messages",
    "output_messages",
    "reference_database",
    "match_input",
    "verified_by",
    "trace_id",
    "span_id",
)
# Left out of the stored JSON when None (prompt and response may be absent from a v2 record).
_OMITTED_WHEN_NONE: Final = frozenset({"prompt", "response", *AUDIT_V2_FIELDS})
# For the checks of every event: most use none of them, seen by one set operation.
_V2_NAMES: Final = frozenset(AUDIT_V2_FIELDS)


def _tidy_json_schema(schema: dict[str, Any]) -> None:
    # An optional field is never stored as null (it is left out): its schema is the value's
    # own, without `anyOf: [..., null]` or a null default. Plain types also keep the registry's
    # BACKWARD check simple: prompt stays a string, only no longer required.
    for name, prop in schema.get("properties", {}).items():
        if name not in _OMITTED_WHEN_NONE:
            continue
        options = [o for o in prop.pop("anyOf", []) if o.get("type") != "null"]
        if options:
            prop.update(options[0])
        prop.pop("default", None)


class KafkaAuditEvent(BaseModel):
    """An immutable prompt/response audit record.

    `event_id` (a time-sortable UUIDv7) and `timestamp_utc` are filled when absent; the
    required strings must not be empty, and a caller's `event_id` is 1-128 characters of
    letters, digits and `._:-` (it names the record in logs and receipts). The record
    stored in Kafka is `canonical_json()`, and `digest()` is the SHA-256 of exactly those bytes.

    Schema version 2 adds optional fields named after the OpenTelemetry GenAI conventions and
    the EU AI Act's Art. 12(3) (`AUDIT_V2_FIELDS`, docs/opentelemetry.md). A record that uses
    any of them has `schema_version` 2 and may leave out `prompt` and `response` (a use
    recorded without its content); one that uses none is a version 1 record, unchanged.
    """

    model_config: ClassVar[ConfigDict] = ConfigDict(
        frozen=True, extra="forbid", json_schema_extra=_tidy_json_schema
    )

    user_id: str = Field(min_length=1, max_length=MAX_ID_CHARS)
    model: str = Field(min_length=1, max_length=MAX_ID_CHARS)
    # Before prompt and response: their check needs it (fields validate in this order).
    schema_version: Annotated[Literal[1, 2], BeforeValidator(json_integer)] = AUDIT_SCHEMA_VERSION
    prompt: _Text | None = Field(default=None, validate_default=True)
    response: _Text | None = Field(default=None, validate_default=True)
    request_id: str | None = Field(default=None, min_length=1, max_length=MAX_ID_CHARS)
    metadata: Annotated[dict[str, Any], AfterValidator(check_metadata)] = Field(
        default_factory=dict
    )
    timestamp_utc: str = Field(
        default_factory=utc_now_iso, json_schema_extra={"format": "date-time"}
    )
    event_id: str = Field(default_factory=new_event_id, pattern=_EVENT_ID)
    # Version 2: gen_ai.operation.name, gen_ai.provider.name, ... (docs/opentelemetry.md).
    operation: _Id | None = None
    provider: _Id | None = None
    request_model: _Id | None = None
    response_model: _Id | None = None
    response_id: _Id | None = None
    finish_reasons: Annotated[list[_Id], Field(max_length=MAX_METADATA_ITEMS)] | None = None
    input_tokens: _Count | None = None
    output_tokens: _Count | None = None
    cache_read_input_tokens: _Count | None = None
    cache_creation_input_tokens: _Count | None = None
    reasoning_output_tokens: _Count | None = None
    conversation_id: _Id | None = None
    data_source_id: _Id | None = None
    # Art. 12(3)(a): the period of each use.
    start_time_utc: _Time | None = None
    end_time_utc: _Time | None = None
    system_instructions: _Messages | None = None
    input_messages: _Messages | None = None
    output_messages: _Messages | None = None
    # Art. 12(3)(b), (c), (d): the reference database, the input that led to a match, the
    # persons who verified the result.
    reference_database: _Id | None = None
    match_input: _Text | None = None
    verified_by: Annotated[list[_Id], Field(max_length=MAX_METADATA_ITEMS)] | None = None
    # The OpenTelemetry span the record came from (32 and 16 lowercase hex digits).
    trace_id: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")] | None = None
    span_id: Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")] | None = None
    # What is computed once (`_cache()`): the canonical JSON, its digest, and the fields as JSON
    # values from the canonical JSON's making until `sent_fields()` takes them (a request's
    # fingerprint is of the same values, dumped once rather than twice). In a slot of its own,
    # not pydantic's private attributes: a model with those runs a hook after each instance is
    # made, 2.3 of an event's 16 us of validation.
    __slots__ = ("_cached",)

    @model_validator(mode="before")
    @classmethod
    def _version_of_fields(cls, data: Any) -> Any:
        # A record that uses a version 2 field is a version 2 record unless it says otherwise
        # (and a version 1 record with one is refused below).
        if (
            isinstance(data, dict)
            and "schema_version" not in data
            and not _V2_NAMES.isdisjoint(data)
            and any(data.get(name) is not None for name in AUDIT_V2_FIELDS)
        ):
            return {**data, "schema_version": AUDIT_SCHEMA_VERSION_2}
        return data

    @field_validator("prompt", "response")
    @classmethod
    def _text_of_version_1(cls, value: str | None, info: ValidationInfo) -> str | None:
        # Version 1 records always carry both; a version 2 record may record a use without
        # its content (an OpenTelemetry span whose instrumentation does not capture it).
        if value is None and info.data.get("schema_version", 1) == AUDIT_SCHEMA_VERSION:
            raise PydanticCustomError("missing", "Field required")
        return value

    @field_validator("timestamp_utc", "start_time_utc", "end_time_utc", mode="before")
    @classmethod
    def _normalize_timestamp(cls, value: object, info: ValidationInfo) -> object:
        if isinstance(value, datetime):
            return format_utc(value)
        if isinstance(value, str):
            return format_utc(parse_utc(value, info.field_name or "time"))
        return value

    @model_validator(mode="after")
    def _fields_of_its_version(self) -> Self:
        # A field not given holds its default, None: only the fields given can be used.
        if self.schema_version == AUDIT_SCHEMA_VERSION and not _V2_NAMES.isdisjoint(
            self.model_fields_set
        ):
            used = [name for name in AUDIT_V2_FIELDS if getattr(self, name) is not None]
            if used:
                raise ValueError(f"schema_version 1 has no field {used[0]!r} (use 2)")
        return self

    def model_dump(self, **kwargs: Any) -> dict[str, Any]:
        """The fields as a dict (see pydantic), without the optional ones not given: they are
        left out of the stored JSON rather than written as null."""
        dumped = super().model_dump(**kwargs)
        return {
            name: value
            for name, value in dumped.items()
            if value is not None or name not in _OMITTED_WHEN_NONE
        }

    @model_validator(mode="after")
    def _encodable(self) -> Self:
        # Encoded while validating, so text that is no Unicode (a lone surrogate passes JSON
        # parsing) is refused as invalid input rather than when the record is sent.
        _set(self, "_cached", _empty_cache())
        try:
            self.canonical_json()
        except KafkaSerializationError as exc:
            raise ValueError(str(exc)) from None
        return self

    def canonical_json(self) -> bytes:
        """The bytes stored in Kafka: every field, sorted keys, no whitespace, UTF-8."""
        # Computed once: the record, its digest header and the receipt all need it.
        cache = self._cache()
        canonical: bytes | None = cache["_canonical"]
        if canonical is None:
            dumped = self._as_json_values()
            if dumped is not None:
                canonical = plain_json(dumped)
            if canonical is None:  # values JSON has no type for: pydantic says what they are
                dumped = self.model_dump(mode="json")
                canonical = canonical_json(dumped)
            cache["_dumped"], cache["_canonical"] = dumped, canonical
        return canonical

    def _as_json_values(self) -> dict[str, Any] | None:
        # The fields as `model_dump(mode="json")` gives them when every value is a JSON value
        # already (always, for an event parsed from JSON): the model's own dict, without the
        # optional fields not given, and no serializer's pass over every value.
        if type(self).model_dump is not KafkaAuditEvent.model_dump:
            return None
        return {
            name: value
            for name, value in self.__dict__.items()
            if value is not None or name not in _OMITTED_WHEN_NONE
        }

    def sent_fields(self, names: Set[str]) -> dict[str, Any]:
        """The fields in `names` as JSON values (`model_dump(mode="json", include=names)`),
        from the dump the canonical JSON was made of when there is one (it is let go then)."""
        cache = self._cache()
        dumped: dict[str, Any] | None = cache["_dumped"]
        if dumped is None:
            return self.model_dump(mode="json", include=set(names))
        cache["_dumped"] = None
        return {name: value for name, value in dumped.items() if name in names}

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy (see pydantic); with `update` its canonical JSON is computed afresh."""
        copied = super().model_copy(update=update, deep=deep)
        _set(copied, "_cached", _empty_cache())
        return copied

    def digest(self) -> str:
        """`sha256:<hex>` of `canonical_json()`."""
        # Also once: the record's header and the receipt both carry it (hashing 1 MB of text
        # takes a millisecond of the event loop).
        cache = self._cache()
        digest: str | None = cache["_digest"]
        if digest is None:
            digest = cache["_digest"] = sha256_digest(self.canonical_json())
        return digest

    def _cache(self) -> dict[str, Any]:
        # Set by validation; an event made without it (`model_construct`, copied or unpickled
        # by the standard library) gets its own on first use.
        try:
            cache: dict[str, Any] = _get(self, "_cached")  # no pydantic __getattr__ on a miss
        except AttributeError:
            cache = _empty_cache()
            _set(self, "_cached", cache)
        return cache


def _empty_cache() -> dict[str, Any]:
    return {"_canonical": None, "_digest": None, "_dumped": None}
