"""Schemathesis against the committed openapi.json and the served process (real HTTP, real
broker): generated requests, valid and invalid, each sent with no key, a key holding every
scope, and a key holding only `audit:write`. No answer may be a server error, and every answer
must be one openapi.json documents for the operation, in status, media type and schema."""

import collections
import json
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig

from app.integrity.keys import generate
from tests.helpers import ROOT
from tests.helpers.logs import SECRET_MARKER
from tests.helpers.service import LiveService, running_service

FULL_KEY = f"{SECRET_MARKER}-fuzz-full"
AUDIT_KEY = f"{SECRET_MARKER}-fuzz-audit"
KEYS: dict[str, dict[str, str]] = {
    "no key": {},
    "every scope (Bearer)": {"Authorization": f"Bearer {FULL_KEY}"},
    "audit:write only (X-API-Key)": {"X-API-Key": AUDIT_KEY},
}
# The one topic /publish may write here; generated topic names get 403 (none is created).
PUBLISH_TOPIC = f"fuzz-{uuid.uuid4().hex}"
# What openapi.json's examples publish to; swapped for PUBLISH_TOPIC so valid requests land.
EXAMPLE_TOPIC = "events.orders"
MIN_REQUESTS = 1000
PROXY_PATHS = "^/openai/"


def _fields(error: dict[str, Any]) -> set[str]:
    return {detail.get("field") for detail in error["details"]}


def _messages_refusal(error: dict[str, Any]) -> bool:
    return _fields(error) == {"query.topic"} or error["details"] == [
        {"field": "query.until", "message": "is before `since`"}
    ]


# Why a schema-valid request may still get 422, by operation: what the service does not have
# (a topic /messages does not keep, a partition the topic lacks), bounds a schema of "any
# JSON" cannot state (metadata depth and item count, integers within 64 bits, a time range
# whose `until` lies before its `since`, a publish timestamp within a day of now, header names
# other than rg-*), a tombstone without the key it deletes, what earlier requests did (an
# Idempotency-Key or event_id sent before with another body), and the audit record's rule across
# fields: a schema_version 1 record has prompt and response and no field of version 2.
_JSON_FIELDS = {
    "body.metadata",
    "body.system_instructions",
    "body.input_messages",
    "body.output_messages",
}
REFUSED_THOUGH_VALID: dict[str, Callable[[dict[str, Any]], bool]] = {
    "POST /audit": lambda error: (
        # metadata's bounds hold for the GenAI messages too (depth, items, 64-bit integers)
        set() < _fields(error) <= _JSON_FIELDS | {"body.prompt", "body.response"}
        or error["code"] == "idempotency_key_reused"
        or "schema_version 1 has no field" in error["details"][0]["message"]
    ),
    "POST /publish": lambda error: (
        error["code"] in {"unknown_partition", "invalid_record"}
        or set() < _fields(error) <= {"body.value", "body.timestamp_ms", "body.headers"}
    ),
    "GET /messages": _messages_refusal,
    "GET /messages/stream": _messages_refusal,
    # A time range whose `until` lies before its `since`; a cursor this service did not make.
    "GET /audit/records": lambda error: (
        error["details"] == [{"field": "query.until", "message": "is before `since`"}]
        or _fields(error) == {"query.cursor"}
    ),
    # Which parameters go together (event_id, or writer and seq; old not above new).
    "GET /audit/proof": lambda error: (
        error["message"] == "name the record by event_id, or by writer and seq"
    ),
    "GET /audit/consistency": lambda error: (
        " is larger than new " in error["message"]
        or error["message"] == "name the log by writer, or by log=writers"
    ),
}


@schemathesis.serializer("application/x-protobuf")
def _protobuf(_context: Any, value: Any) -> bytes:
    # OTLP's protobuf body is bytes on the wire, as an octet stream is.
    if isinstance(value, bytes):
        return value
    return json.dumps(value).encode() if not isinstance(value, str) else value.encode()


schema = schemathesis.openapi.from_path(
    ROOT / "openapi.json",
    config=SchemathesisConfig.from_dict(
        {
            "request-timeout": 10,
            "generation": {"max-examples": 50},
            # Invalid input may also be too large to read: 413 is a refusal too.
            "checks": {
                "negative_data_rejection": {
                    "expected-statuses": ["400", "401", "403", "404", "405", "413", "415", "422"]
                }
            },
            "operations": [
                # An event stream never ends: read it for a second, then judge what came.
                {"include-path": "/messages/stream", "request-timeout": 1},
                # Until the service signed its first checkpoint there is none to give.
                {
                    "include-path": "/audit/checkpoint",
                    "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "404"]}},
                },
                # A proof of a record that was never written is 404 no_proof; parameters that do
                # not go together are 422 (REFUSED_THOUGH_VALID).
                {
                    "include-path-regex": "^/audit/(proof|consistency)$",
                    "checks": {
                        "positive_data_acceptance": {"expected-statuses": ["2xx", "404", "422"]}
                    },
                },
                # A schema-valid request may still be refused for a reason no JSON Schema
                # states; REFUSED_THOUGH_VALID says which, and the test checks each such 422.
                {
                    "include-path-regex": "^/(audit$|audit/batch|audit/records|messages|publish)",
                    "checks": {
                        "positive_data_acceptance": {
                            "expected-statuses": ["2xx", "401", "403", "422"]
                        }
                    },
                },
                # OTLP/HTTP: a JSON object or bytes need not be an OTLP message (400, the
                # spec's answer for a payload that cannot be decoded).
                {
                    "include-path-regex": "^/v1/(traces|logs)$",
                    "checks": {
                        "positive_data_acceptance": {
                            "expected-statuses": ["2xx", "400", "401", "403", "415"]
                        }
                    },
                },
            ],
        }
    ),
    # The recording proxy's answers are its upstream's (docs/proxy.md): tests/api/
    # test_openai_proxy.py drives it with the OpenAI SDK instead.
).exclude(path_regex=PROXY_PATHS)


@pytest.fixture(scope="module")
def fuzzed(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    """The served process with authentication on, signing checkpoints."""
    workdir = tmp_path_factory.mktemp("fuzzed")
    _, private_key, _ = generate(workdir / "keys")
    with running_service(
        kafka_bootstrap,
        workdir,
        audit_signing_key_file=str(private_key),
        api_keys=f'{{"{FULL_KEY}": ["audit:write", "publish:write", "messages:read", "audit:read"],'
        f' "{AUDIT_KEY}": ["audit:write"]}}',
        publish_topics=PUBLISH_TOPIC,
        openai_upstream_url="http://127.0.0.1:9/v1",  # nothing leaves the machine
    ) as service:
        yield service


@pytest.fixture(scope="module")
def sent() -> collections.Counter[tuple[str, str, int]]:
    """Requests sent, by operation, key and status answered."""
    return collections.Counter()


@schema.parametrize()
def test_generated_requests_get_documented_answers(
    case: Any, fuzzed: LiveService, sent: collections.Counter[tuple[str, str, int]]
) -> None:
    if isinstance(case.body, dict) and case.body.get("topic") == EXAMPLE_TOPIC:
        case.body["topic"] = PUBLISH_TOPIC
    # Schemathesis may generate credentials of its own (unknown keys: kept for the "no key"
    # round); next to a key of ours they would make two keys, which is a 401 of its own.
    generated = dict(case.headers or {})
    rest = {k: v for k, v in generated.items() if k.lower() not in {"authorization", "x-api-key"}}
    for key, credentials in KEYS.items():
        case.headers = rest if credentials else generated
        # Passed apart from the case, so Schemathesis knows them for valid ones and also
        # checks that the same request without them, or with wrong ones, is refused.
        response = case.call_and_validate(base_url=fuzzed.url, headers=credentials)
        if response.status_code == 422 and case.meta.generation.mode.is_positive:
            error = response.json()["error"]
            refused: Callable[[dict[str, Any]], bool] = REFUSED_THOUGH_VALID.get(
                case.operation.label, lambda _: False
            )
            assert refused(error), f"schema-valid request refused: {error}"
        sent[case.operation.label, key, response.status_code] += 1


@pytest.mark.broker  # counts what the run against the served process sent
def test_the_run_sent_enough_requests_to_every_operation_with_each_key(
    sent: collections.Counter[tuple[str, str, int]],
) -> None:
    by_operation: collections.Counter[tuple[str, str]] = collections.Counter()
    by_status: collections.Counter[int] = collections.Counter()
    for (operation, key, status), count in sent.items():
        by_operation[operation, key] += count
        by_status[status] += count
    # The figures, for `pytest -s` (the closing notes quote them).
    print(f"\nschemathesis: {sum(sent.values())} requests, by status {sorted(by_status.items())}")
    for (operation, key), count in sorted(by_operation.items()):
        print(f"  {operation:24} {key:30} {count:5}")
    document = json.loads((ROOT / "openapi.json").read_text(encoding="utf-8"))
    operations = {
        f"{method.upper()} {path}"
        for path, item in document["paths"].items()
        for method in item
        if not re.match(PROXY_PATHS, path)
    }
    assert {(operation, key) for operation in operations for key in KEYS} <= set(by_operation)
    assert sum(sent.values()) >= MIN_REQUESTS
    assert max(by_status) < 500
