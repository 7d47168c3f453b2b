"""JSON Schema contracts from a Schema Registry: validation, the Confluent wire format, and a
registry-backed value serializer and deserializer for the clients.

The Confluent wire format, what Kafka Connect's JSON Schema converter and other Confluent-style
consumers expect: one magic byte 0, the schema id as 4 bytes big-endian, then the value's bytes
(here the canonical JSON: sorted keys, no whitespace, UTF-8). A JSON text never starts with a
zero byte, so a framed value is told from a plain one by its first byte.

`SchemaContract` is one registered JSON Schema with its validator compiled once (jsonschema-rs:
Rust, well under a microsecond per small object, where the pure-Python `jsonschema` takes tens;
this check runs on every `/publish`). Only local `$ref`s (`#/...`) resolve: an external one is
refused, never fetched, since whoever can register a schema would otherwise make its user call
any address (SSRF) and wait for it. A value that fails it raises `SchemaViolationError` (a
`KafkaSerializationError`) naming each failing path (a JSON pointer) and the rule (the schema
keyword) it broke.

`JsonSchemaSerializer` is a `KafkaProducerClient` value serializer bound to one subject: each value
is validated, written as canonical JSON and framed with the schema's id (`framing="confluent"`)
or left plain (`"json"`). `JsonSchemaDeserializer` is a `KafkaConsumerClient` value deserializer:
a framed value is unframed and decoded as JSON, and the consumer learns its schema id and, from
the registry (looked up once per id), the subject and version (`KafkaMessage.schema_id`,
`schema_version`).
"""

import asyncio
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from app.kafka.errors import KafkaSerializationError
from app.kafka.registry import RegisteredSchema, SchemaRegistryClient, SchemaRegistryError
from app.kafka.serde import canonical_json

MAGIC_BYTE = 0
HEADER_SIZE = 5
_HEADER = struct.Struct(">bI")
Framing = Literal["json", "confluent"]
# Draft 7: the newest draft Apicurio's compatibility checker reads (2019-09 and 2020-12 are
# registered but cannot be compared: "could not determine version").
JSON_SCHEMA_DRAFT = "http://json-schema.org/draft-07/schema#"


def frame(schema_id: int, payload: bytes) -> bytes:
    """`payload` in the Confluent wire format: magic byte 0, schema id (4 bytes), payload."""
    return _HEADER.pack(MAGIC_BYTE, schema_id) + payload


def unframe(raw: bytes) -> tuple[int | None, bytes]:
    """The schema id and the payload of a framed value; `(None, raw)` for a plain one."""
    if len(raw) >= HEADER_SIZE and raw[0] == MAGIC_BYTE:
        return _HEADER.unpack_from(raw)[1], raw[HEADER_SIZE:]
    return None, raw


def schema_id_of(raw: bytes | None) -> int | None:
    """The schema id of a framed value, None for a plain value or a tombstone."""
    if raw is None:
        return None
    return unframe(raw)[0]


@dataclass(frozen=True)
class Violation:
    """One way a value fails its schema: where (a JSON pointer into the value), which rule
    (the schema keyword), and the validator's sentence."""

    path: str
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.path or '/'}: {self.message} (rule {self.rule!r})"


class SchemaViolationError(KafkaSerializationError):
    """A value that does not match its subject's schema; `violations` says where and why."""

    def __init__(self, subject: str, schema: "SchemaContract", violations: list[Violation]):
        shown = "; ".join(str(v) for v in violations[:5])
        super().__init__(
            f"value does not match the schema of {subject!r} (version {schema.version}, "
            f"id {schema.schema_id}): {shown}"
        )
        self.subject = subject
        self.violations = violations


class SchemaContract:
    """One registered JSON Schema, its validator compiled once (see the module docstring)."""

    def __init__(self, registered: RegisteredSchema) -> None:
        # Imported here, not with the module: a service without a registry never loads it.
        import jsonschema_rs  # noqa: PLC0415

        self.registered = registered
        asked: list[str] = []

        def refuse(uri: str) -> Any:
            # Whoever can register a schema must not make the service fetch any address from
            # its network position (SSRF) and wait for it: only local `#` refs resolve.
            asked.append(uri)
            raise ValueError(f"external $ref {uri!r} is not fetched")

        name = f"schema {registered.schema_id} of {registered.subject!r}"
        try:
            self._validator = jsonschema_rs.validator_for(registered.schema, retriever=refuse)
        except (ValueError, jsonschema_rs.ReferencingError) as exc:
            if asked:
                raise KafkaSerializationError(
                    f"{name} refers to {asked[0]!r}: external $refs are never fetched, a schema "
                    "must be self-contained (local #/... refs only)"
                ) from exc
            first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise KafkaSerializationError(f"{name} cannot be compiled: {first_line}") from exc

    @property
    def schema_id(self) -> int:
        """The registry's id of the schema."""
        return self.registered.schema_id

    @property
    def version(self) -> int | None:
        """The subject's version number of the schema, when known."""
        return self.registered.version

    @property
    def subject(self) -> str | None:
        """The subject it was fetched from."""
        return self.registered.subject

    def violations(self, value: Any, *, limit: int = 10) -> list[Violation]:
        """The ways `value` fails the schema (at most `limit`); empty when it matches."""
        if self._validator.is_valid(value):
            return []
        found: list[Violation] = []
        for error in self._validator.iter_errors(value):
            path = "".join(f"/{_escape(part)}" for part in error.instance_path)
            keywords = [part for part in error.schema_path if isinstance(part, str)]
            found.append(Violation(path, keywords[-1] if keywords else "schema", error.message))
            if len(found) >= limit:
                break
        return found

    def check(self, value: Any) -> None:
        """Raise `SchemaViolationError` unless `value` matches the schema."""
        if violations := self.violations(value):
            raise SchemaViolationError(self.subject or "?", self, violations)

    def encode(self, value: Any, framing: Framing) -> bytes:
        """`value` checked, as canonical JSON, framed with the schema id for `"confluent"`."""
        self.check(value)
        payload = canonical_json(value)
        return frame(self.schema_id, payload) if framing == "confluent" else payload


def _escape(part: str | int) -> str:
    return str(part).replace("~", "~0").replace("/", "~1")


class JsonSchemaSerializer:
    """A value serializer for `KafkaProducerClient(value_serializer=...)`, bound to one
    subject's schema (see the module docstring). Build it with `await for_subject(...)`;
    `await refresh()` takes the subject's newest version."""

    def __init__(
        self,
        client: SchemaRegistryClient,
        subject: str,
        contract: SchemaContract,
        *,
        framing: Framing = "confluent",
    ) -> None:
        self._client = client
        self.subject = subject
        self.contract = contract
        self.framing: Framing = framing

    @classmethod
    async def for_subject(
        cls, client: SchemaRegistryClient, subject: str, *, framing: Framing = "confluent"
    ) -> "JsonSchemaSerializer":
        """A serializer for the subject's latest schema; `KafkaSerializationError` when the
        subject has none."""
        latest = await client.latest(subject)
        if latest is None:
            raise KafkaSerializationError(f"no schema is registered under {subject!r}")
        # Compiled off the event loop: a large schema takes a while.
        return cls(
            client, subject, await asyncio.to_thread(SchemaContract, latest), framing=framing
        )

    async def refresh(self) -> None:
        """Take the subject's latest version (a new schema, a new id)."""
        latest = await self._client.latest(self.subject)
        if latest is not None and latest.schema_id != self.contract.schema_id:
            self.contract = await asyncio.to_thread(SchemaContract, latest)

    def __call__(self, value: Any) -> bytes | None:
        if value is None:
            return None  # a tombstone has no schema
        return self.contract.encode(value, self.framing)


@dataclass(frozen=True)
class SchemaRef:
    """Which schema a framed value names: its id and, when the registry told, where it is
    registered."""

    schema_id: int
    subject: str | None = None
    version: int | None = None


class JsonSchemaDeserializer:
    """A value deserializer for `KafkaConsumerClient(value_deserializer=...)`: framed values
    are unframed and decoded as JSON; a plain value the consumer decodes as it would without
    one (its `value_format`, the record's content-type); called alone, plain values are decoded
    as JSON too (or text when they are not JSON). The consumer calls `await resolve(values)`
    before decoding a batch, so each new schema id is looked up once; a registry that does not
    answer leaves the version unknown (the value still decodes: its JSON needs no schema)."""

    def __init__(self, client: SchemaRegistryClient) -> None:
        self._client = client
        self._refs: dict[int, SchemaRef] = {}

    async def resolve(self, raws: Iterable[bytes | None]) -> None:
        """Look up the schema ids among `raws` not seen before."""
        for schema_id in {schema_id_of(raw) for raw in raws} - {None} - self._refs.keys():
            assert schema_id is not None  # noqa: S101 - removed above
            try:
                found = await self._client.by_id(schema_id)
            except SchemaRegistryError:
                continue  # asked again with the next batch
            self._refs[schema_id] = (
                SchemaRef(schema_id, found.subject, found.version)
                if found is not None
                else SchemaRef(schema_id)
            )

    def schema_of(self, raw: bytes | None) -> SchemaRef | None:
        """The schema a value names (None for a plain value)."""
        schema_id = schema_id_of(raw)
        if schema_id is None:
            return None
        return self._refs.get(schema_id) or SchemaRef(schema_id)

    def __call__(self, raw: bytes | None) -> Any:
        if raw is None:
            return None
        _, payload = unframe(raw)
        try:
            return orjson.loads(payload)
        except orjson.JSONDecodeError:
            try:
                return payload.decode("utf-8")
            except UnicodeDecodeError:
                return payload
