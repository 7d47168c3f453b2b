"""Schema contracts on the write path (docs/schemas.md): `POST /publish` values checked against
their topic's JSON Schema, and the audit event's own schema kept registered.

The subject of a topic's values is `<topic>-value` (Confluent's TopicNameStrategy). For a
`/publish`, `TopicContracts.encode` takes the subject's latest schema from a cache (each topic's
answer, a schema or none, is used for RG_SCHEMA_CACHE_S, then asked again; concurrent requests
for a topic share one lookup), checks the value (422 `schema_violation` naming each path and
rule), and returns the bytes to produce: the canonical JSON, framed with the schema's id when
RG_SCHEMA_WIRE_FORMAT=confluent. A topic without a schema is left as today, or refused (422
`schema_required`) with RG_SCHEMA_REQUIRED. A registry that does not answer when a lookup is due
is 503 `schema_registry_unavailable` with Retry-After, never a 500.

The audit schema (`AuditSchemaGuard`): at start the JSON Schema generated from `KafkaAuditEvent`
(draft 7, with `$schema`) is checked against the latest version under `<audit topic>-value` and
registered. A breaking change keeps the service unready and refuses audit writes (503
`audit_schema_incompatible`, naming the fields); the guard looks again every half minute. The
registry away: `/readyz` says so; audit writes go on with plain JSON, and wait (503) for the id
with the Confluent framing.
"""

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.errors import (
    AuditSchemaIncompatibleError,
    RegistryUnavailableError,
    SchemaMismatchError,
    SchemaMissingError,
    SchemaUnusableError,
    ServiceError,
)
from app.kafka import KafkaAuditEvent, KafkaSerializationError
from app.kafka.audit import SCHEMA_ID_HEADER
from app.kafka.registry import (
    SchemaIncompatibleError,
    SchemaRegistryClient,
    SchemaRegistryConfig,
    SchemaRegistryError,
    SchemaRegistryUnavailableError,
)
from app.kafka.schemas import JSON_SCHEMA_DRAFT, Framing, SchemaContract, frame
from app.kafka.serde import CONTENT_TYPE, JSON_CONTENT_TYPE, canonical_json
from app.settings import Settings
from app.tasks import BackgroundTask, Backoff

logger = logging.getLogger(__name__)

# How often an incompatible audit schema is looked at again.
RECHECK_S = 30.0


def subject_of(topic: str) -> str:
    """The subject of a topic's values (TopicNameStrategy)."""
    return f"{topic}-value"


def registry_client(settings: Settings) -> SchemaRegistryClient:
    """The registry client RG_SCHEMA_REGISTRY_* describe (the URL must be set)."""
    assert settings.schema_registry_url is not None  # noqa: S101 - callers check
    return SchemaRegistryClient(
        SchemaRegistryConfig(
            url=settings.schema_registry_url,
            username=settings.schema_registry_username,
            password=settings.schema_registry_password,
            ca_file=settings.schema_registry_ca_file,
            timeout_s=settings.ready_timeout_s,
        )
    )


def audit_json_schema() -> dict[str, Any]:
    """The JSON Schema of the audit event as it is stored, with `$schema` (draft 7: see
    `app.kafka.schemas.JSON_SCHEMA_DRAFT`)."""
    return {"$schema": JSON_SCHEMA_DRAFT, **KafkaAuditEvent.model_json_schema(mode="serialization")}


def breaking_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What in `new` cannot read records written with `old` (BACKWARD), field by field: the
    registry says whether, this says where."""
    old_props: dict[str, Any] = old.get("properties", {})
    new_props: dict[str, Any] = new.get("properties", {})
    found: list[str] = []
    for name in new.get("required", []):
        if name not in old.get("required", []):
            if name in old_props:
                found.append(f"field {name!r} became required")
            else:
                found.append(f"new required field {name!r}")
    for name in sorted(old_props.keys() & new_props.keys()):
        before, after = _types(old_props[name]), _types(new_props[name])
        if before and after and not before <= after:
            found.append(
                f"field {name!r} changed type from {'|'.join(sorted(before))} to "
                f"{'|'.join(sorted(after))}"
            )
    if new.get("additionalProperties") is False:
        for name in sorted(old_props.keys() - new_props.keys()):
            found.append(f"field {name!r} removed while other fields are refused")
    return found


def _types(prop: Any) -> set[str]:
    if not isinstance(prop, dict):
        return set()
    if isinstance(prop.get("type"), str):
        return {prop["type"]}
    if isinstance(prop.get("type"), list):
        return set(prop["type"])
    return set().union(*(_types(p) for p in prop.get("anyOf", []))) if "anyOf" in prop else set()


@dataclass(frozen=True)
class Verdict:
    """The audit schema against the registry: the id when registered (or registrable), else
    why not."""

    subject: str
    schema_id: int | None
    latest_version: int | None
    changes: list[str]
    registry_says: str = ""

    @property
    def compatible(self) -> bool:
        """True unless it breaks the latest version."""
        return not self.changes and not self.registry_says

    def message(self) -> str:
        """One line naming the fields."""
        what = "; ".join(self.changes) or self.registry_says
        return (
            f"the audit event's schema breaks version {self.latest_version} of {self.subject!r} "
            f"(compatibility BACKWARD): {what}"
        )


async def check_audit_schema(
    client: SchemaRegistryClient, topic: str, *, register: bool
) -> Verdict:
    """Compare the audit schema with the subject's latest version; with `register`, register
    it when compatible. Raises `SchemaRegistryUnavailableError` when the registry is away."""
    subject, schema = subject_of(topic), audit_json_schema()
    latest = await client.latest(subject)
    if latest is not None and latest.schema == schema:
        return Verdict(subject, latest.schema_id, latest.version, [])
    if latest is not None and not await client.is_compatible(subject, schema):
        changes = breaking_changes(latest.schema, schema)
        return Verdict(
            subject,
            None,
            latest.version,
            changes,
            "" if changes else "the registry reports an incompatible change",
        )
    if not register:
        return Verdict(subject, None, latest.version if latest else None, [])
    try:
        schema_id = await client.register(subject, schema)
    except SchemaIncompatibleError as exc:  # a version registered in between
        return Verdict(subject, None, latest.version if latest else None, [], str(exc))
    return Verdict(subject, schema_id, latest.version if latest else None, [])


class AuditSchemaGuard:
    """Keeps the audit schema registered (see the module docstring); `problem()` for
    `/readyz`, `write_problem()` for the audit writes."""

    def __init__(
        self,
        settings: Settings,
        client: SchemaRegistryClient,
        *,
        on_registered: Callable[[int], None],
    ) -> None:
        self._settings = settings
        self._client = client
        self._on_registered = on_registered
        self._task = BackgroundTask("audit-schema", self._run)
        self.schema_id: int | None = None
        self._problem: ServiceError | None = RegistryUnavailableError(
            "the audit schema is not registered yet"
        )
        self.attempted = asyncio.Event()

    async def start(self, *, wait_s: float) -> None:
        """Begin in the background; wait up to `wait_s` for the first attempt."""
        self._task.start()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.attempted.wait(), wait_s)

    async def close(self) -> None:
        """Stop trying."""
        await self._task.close()

    def problem(self) -> ServiceError | None:
        """Why the service is not ready as far as the audit schema goes, or None."""
        return self._problem

    def write_problem(self) -> ServiceError | None:
        """Why audit writes are refused now: an incompatible schema; the registry away only
        while the Confluent framing still needs the id."""
        if isinstance(self._problem, AuditSchemaIncompatibleError):
            return self._problem
        if self.schema_id is None and self._settings.schema_wire_format == "confluent":
            return self._problem
        return None

    async def _run(self) -> None:
        backoff = Backoff(max_s=RECHECK_S)
        topic = self._settings.audit_topic
        while True:
            try:
                verdict = await check_audit_schema(self._client, topic, register=True)
            except asyncio.CancelledError:
                raise
            except SchemaRegistryError as exc:
                self._problem = RegistryUnavailableError(
                    f"the audit schema is not registered: {exc}"
                )
                logger.warning("%s; retrying in %.1fs", self._problem.message, backoff.delay_s)
            else:
                if verdict.schema_id is not None:
                    self.schema_id = verdict.schema_id
                    self._on_registered(verdict.schema_id)
                    self._problem = None
                    self.attempted.set()
                    logger.info(
                        "audit schema registered under %r: id %d", verdict.subject, self.schema_id
                    )
                    return
                self._problem = AuditSchemaIncompatibleError(
                    verdict.message(), details=[{"field": c} for c in verdict.changes]
                )
                logger.error("%s: the service is not ready", verdict.message())
                backoff = Backoff(initial_s=RECHECK_S, max_s=RECHECK_S)
            self.attempted.set()
            await backoff.wait()


@dataclass
class _Cached:
    contract: SchemaContract | None
    until: float
    # A schema that cannot be used is an answer too: asked again once the entry expires.
    problem: SchemaUnusableError | None = None


# Topics whose schema (or its absence) is cached at once; beyond, the least recently used go.
MAX_CACHED_TOPICS = 1000


class TopicContracts:
    """The latest schema of each topic `/publish` writes, cached (see the module docstring)
    for at most `max_topics` topics: a name a client made up once does not stay for good."""

    def __init__(
        self,
        client: SchemaRegistryClient,
        *,
        cache_s: float,
        required: bool,
        framing: Framing,
        clock: Callable[[], float] = time.monotonic,
        max_topics: int = MAX_CACHED_TOPICS,
    ) -> None:
        self.client = client
        self._cache_s = cache_s
        self._required = required
        self._framing: Framing = framing
        self._clock = clock
        self._max_topics = max_topics
        self._cache: collections.OrderedDict[str, _Cached] = collections.OrderedDict()
        self._lookups: dict[str, asyncio.Future[SchemaContract | None]] = {}

    async def contract(self, topic: str) -> SchemaContract | None:
        """The topic's latest schema, from the cache while it is fresh."""
        cached = self._cache.get(topic)
        if cached is not None and cached.until > self._clock():
            self._cache.move_to_end(topic)
            if cached.problem is not None:
                raise cached.problem
            return cached.contract
        pending = self._lookups.get(topic)
        if pending is None:
            pending = asyncio.ensure_future(self._fetch(topic))
            self._lookups[topic] = pending
            pending.add_done_callback(lambda _: self._lookups.pop(topic, None))
        return await asyncio.shield(pending)

    def __len__(self) -> int:
        return len(self._cache)

    def _keep(self, topic: str, cached: _Cached) -> None:
        self._cache[topic] = cached
        self._cache.move_to_end(topic)
        while len(self._cache) > self._max_topics:
            self._cache.popitem(last=False)

    async def _fetch(self, topic: str) -> SchemaContract | None:
        subject = subject_of(topic)
        try:
            latest = await self.client.latest(subject)
        except SchemaRegistryUnavailableError as exc:
            raise RegistryUnavailableError(
                f"the schema of {topic!r} ({subject!r}) cannot be looked up: {exc}"
            ) from exc
        except SchemaRegistryError as exc:
            raise RegistryUnavailableError(f"the Schema Registry refused: {exc}") from exc
        until = self._clock() + self._cache_s
        if latest is None:
            self._keep(topic, _Cached(None, until))
            return None
        try:
            # Compiling a large schema takes a while: not on the event loop.
            contract = await asyncio.to_thread(SchemaContract, latest)
        except KafkaSerializationError as exc:
            problem = SchemaUnusableError(f"the schema of {topic!r} cannot be used: {exc}")
            self._keep(topic, _Cached(None, until, problem))
            raise problem from exc
        self._keep(topic, _Cached(contract, until))
        return contract

    async def encode(self, topic: str, value: Any) -> tuple[Any, dict[str, str]]:
        """The value to produce for `topic` and headers to add: unchanged without a schema;
        checked and encoded with one. Raises `SchemaMissingError`, `SchemaMismatchError` or
        `RegistryUnavailableError`."""
        contract = await self.contract(topic)
        if contract is None:
            if self._required:
                raise SchemaMissingError(
                    f"topic {topic!r} has no schema under {subject_of(topic)!r} and "
                    "RG_SCHEMA_REQUIRED is on: register one first",
                    details=[{"field": "topic", "message": "no registered schema"}],
                )
            return value, {}
        if value is None:
            return None, {}  # a tombstone deletes; it has no schema
        if violations := contract.violations(value):
            shown = "; ".join(str(v) for v in violations[:5])
            raise SchemaMismatchError(
                f"value does not match the schema of {subject_of(topic)!r} (version "
                f"{contract.version}, id {contract.schema_id}): {shown}",
                details=[
                    {
                        "field": "value" + v.path.replace("/", "."),
                        "path": v.path or "/",
                        "rule": v.rule,
                        "message": v.message,
                    }
                    for v in violations
                ],
            )
        # Checked above: encoded without checking again.
        payload = canonical_json(value)
        if self._framing == "confluent":
            payload = frame(contract.schema_id, payload)
        return payload, {CONTENT_TYPE: JSON_CONTENT_TYPE, SCHEMA_ID_HEADER: str(contract.schema_id)}
