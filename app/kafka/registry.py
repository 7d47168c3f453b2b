"""A small async client of a Confluent-compatible Schema Registry API (JSON Schemas only).

The handful of calls the library and the service make: register a schema under a subject, fetch
a subject's latest version, fetch a schema by id (ids are immutable: cached for good, with the
subject and version they were registered as), and ask whether a schema is compatible with a
subject's latest version. On httpx (already in the stack), not on confluent-kafka's
`schema_registry` module: that one would bring librdkafka, a second Kafka client, into the
image for six HTTP calls; and the validation it runs per record is the pure-Python `jsonschema`.

Errors (`SchemaRegistryError` and its subclasses) say which of three things happened:

SchemaRegistryError                   anything this module raises
├── SchemaRegistryUnavailableError    no answer, a timeout or a 5xx: try again later
├── SchemaIncompatibleError           409: the schema breaks the subject's compatibility rule
└── SchemaRefusedError                another 4xx: a schema it will not take, no permission
"""

import asyncio
import re
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import orjson
from pydantic import BaseModel, ConfigDict, Field, SecretStr

JSON_SCHEMA_TYPE = "JSON"
# Confluent's "subject not found" and "version not found" codes (Apicurio answers the same).
_NOT_FOUND_CODES = frozenset({40401, 40402, 40403})


class SchemaRegistryError(Exception):
    """Root of the registry client's errors."""


class SchemaRegistryUnavailableError(SchemaRegistryError):
    """The registry did not answer, timed out, or failed (5xx)."""


class SchemaIncompatibleError(SchemaRegistryError):
    """The registry refused a schema as incompatible with the subject's latest version."""


class SchemaRefusedError(SchemaRegistryError):
    """The registry refused the request (an invalid schema, no permission ...)."""


class SchemaRegistryConfig(BaseModel):
    """Where the registry is and how to reach it: basic auth and TLS as for Kafka."""

    model_config = ConfigDict(frozen=True)

    url: str = Field(description="Base URL of the Confluent-compatible API.")
    username: str | None = None
    password: SecretStr | None = None
    ca_file: str | None = Field(default=None, description="CA bundle (PEM) to trust for https.")
    timeout_s: float = Field(default=5.0, gt=0)


@dataclass(frozen=True)
class RegisteredSchema:
    """A schema as the registry holds it; `subject` and `version` are None when unknown."""

    schema_id: int
    schema: dict[str, Any]
    subject: str | None = None
    version: int | None = None


class SchemaRegistryClient:
    """Async client of the Confluent-compatible API (see the module docstring). One HTTP
    connection pool per client; `aclose()` releases it."""

    def __init__(self, config: SchemaRegistryConfig) -> None:
        # Imported here, not with the module: a service without a registry never pays its ~7 MB.
        import httpx  # noqa: PLC0415

        self.config = config
        auth = None
        if config.username is not None:
            password = config.password.get_secret_value() if config.password else ""
            auth = httpx.BasicAuth(config.username, password)
        verify: ssl.SSLContext | bool = True
        if config.ca_file:
            verify = ssl.create_default_context(cafile=config.ca_file)
        self._http = httpx.AsyncClient(
            base_url=config.url.rstrip("/"),
            auth=auth,
            verify=verify,
            timeout=config.timeout_s,
            headers={"Accept": "application/vnd.schemaregistry.v1+json, application/json"},
        )
        self._by_id: dict[int, RegisteredSchema] = {}
        self._lock = asyncio.Lock()

    @property
    def url(self) -> str:
        """The API's base URL, without credentials (`user:password@`): what messages show."""
        return without_userinfo(self.config.url.rstrip("/"))

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def register(self, subject: str, schema: dict[str, Any]) -> int:
        """Register `schema` (a JSON Schema) under `subject`; the id, new or existing. Raises
        `SchemaIncompatibleError` when it breaks the subject's compatibility rule."""
        answer = await self._call("POST", f"/subjects/{_q(subject)}/versions", _body(schema))
        return int(answer["id"])

    async def latest(self, subject: str) -> RegisteredSchema | None:
        """The subject's latest version, or None when the subject has none."""
        answer = await self._call(
            "GET", f"/subjects/{_q(subject)}/versions/latest", missing_ok=True
        )
        if answer is None:
            return None
        found = RegisteredSchema(
            schema_id=int(answer["id"]),
            schema=_parsed(answer.get("schema", "{}")),
            subject=answer.get("subject", subject),
            version=int(answer["version"]),
        )
        self._by_id.setdefault(found.schema_id, found)
        return found

    async def by_id(self, schema_id: int) -> RegisteredSchema | None:
        """The schema with that id and the first subject/version it is registered as; None when
        the registry has no such id. Cached for good: an id never changes its schema."""
        if (known := self._by_id.get(schema_id)) is not None:
            return known
        answer = await self._call("GET", f"/schemas/ids/{schema_id}", missing_ok=True)
        if answer is None:
            return None
        versions = await self._call("GET", f"/schemas/ids/{schema_id}/versions", missing_ok=True)
        subject, version = None, None
        if isinstance(versions, list) and versions:
            subject, version = versions[0].get("subject"), versions[0].get("version")
        found = RegisteredSchema(
            schema_id=schema_id,
            schema=_parsed(answer.get("schema", "{}")),
            subject=subject,
            version=int(version) if version is not None else None,
        )
        self._by_id[schema_id] = found
        return found

    async def is_compatible(self, subject: str, schema: dict[str, Any]) -> bool:
        """Whether `schema` may become the subject's next version (True when it has none)."""
        answer = await self._call(
            "POST", f"/compatibility/subjects/{_q(subject)}/versions/latest", _body(schema)
        )
        return bool(answer.get("is_compatible", False))

    async def _call(
        self, method: str, path: str, body: bytes | None = None, *, missing_ok: bool = False
    ) -> Any:
        import httpx  # noqa: PLC0415 - loaded by __init__ already; see there

        try:
            response = await self._http.request(
                method,
                path,
                content=body,
                headers={"Content-Type": "application/vnd.schemaregistry.v1+json"}
                if body is not None
                else None,
            )
        except httpx.HTTPError as exc:
            said = _USERINFO.sub("//", f"{type(exc).__name__} {exc}")
            raise SchemaRegistryUnavailableError(
                f"Schema Registry at {self.url} does not answer: {said}".strip()
            ) from exc
        if response.status_code < 300:
            return response.json()
        try:
            error = response.json()
        except ValueError:
            error = {}
        code = error.get("error_code") if isinstance(error, dict) else None
        message = (error.get("message") if isinstance(error, dict) else None) or response.text
        if response.status_code == 404 and missing_ok and code in _NOT_FOUND_CODES:
            return None
        text = f"Schema Registry {method} {path}: {response.status_code} {message}"[:1000]
        if response.status_code == 409:
            raise SchemaIncompatibleError(text)
        if response.status_code >= 500 or response.status_code in (408, 429):
            raise SchemaRegistryUnavailableError(text)
        raise SchemaRefusedError(text)


# `//user:password@` in any URL a message might quote.
_USERINFO = re.compile(r"//[^/@\s]*@")


def without_userinfo(url: str) -> str:
    """`url` without its `user:password@` part, if any: credentials never go into messages."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def _q(subject: str) -> str:
    return quote(subject, safe="")


def _body(schema: dict[str, Any]) -> bytes:
    return orjson.dumps({"schemaType": JSON_SCHEMA_TYPE, "schema": orjson.dumps(schema).decode()})


def _parsed(text: str) -> dict[str, Any]:
    parsed = orjson.loads(text)
    if not isinstance(parsed, dict):
        raise SchemaRefusedError(f"the registry holds a schema that is no JSON object: {text!r}")
    return parsed
