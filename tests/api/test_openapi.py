"""openapi.json is what the app serves, and documents every endpoint (no broker needed)."""

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.api.openapi import render
from app.api.otlp_status import OTLP_PATHS
from app.cli import main
from app.main import create_app, openapi_document
from app.settings import Settings
from tests.helpers import ROOT

COMMITTED = ROOT / "openapi.json"

PROXY_PREFIX = "/openai/"


def test_the_committed_openapi_json_matches_the_app() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == render(openapi_document()), (
        "openapi.json is stale: run `.venv/bin/ractogateway-kafka openapi`"
    )


def test_the_openapi_command_writes_and_checks(tmp_path: Path) -> None:
    target = tmp_path / "openapi.json"
    assert main(["openapi", "--check", "--output", str(target)]) == 1
    assert main(["openapi", "--output", str(target)]) == 0
    assert main(["openapi", "--check", "--output", str(target)]) == 0
    assert json.loads(target.read_text())["info"]["title"] == "ractogateway-kafka"


def _operations() -> list[tuple[str, str, dict[str, Any]]]:
    document = json.loads(COMMITTED.read_text(encoding="utf-8"))
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]


def _with_refs(node: Any, schemas: dict[str, Any], seen: set[str] | None = None) -> str:
    """The node's JSON with every schema it references, transitively."""
    seen = set() if seen is None else seen
    text = json.dumps(node)
    for name, schema in schemas.items():
        if f'"#/components/schemas/{name}"' in text and name not in seen:
            seen.add(name)
            text += _with_refs(schema, schemas, seen)
    return text


@pytest.mark.parametrize(("method", "path", "operation"), _operations())
def test_every_operation_has_a_summary_an_example_and_its_errors(
    method: str, path: str, operation: dict[str, Any]
) -> None:
    schemas = json.loads(COMMITTED.read_text(encoding="utf-8"))["components"]["schemas"]
    assert operation.get("summary"), f"{method} {path} has no summary"
    assert operation.get("description"), f"{method} {path} has no description"
    assert "example" in _with_refs(operation, schemas), f"{method} {path} has no example"
    responses = operation["responses"]
    if path in OTLP_PATHS:
        # OTLP/HTTP answers errors with a google.rpc.Status in the request's encoding, as its
        # exporters expect (checked in tests/api/test_otlp.py), not the contract's ErrorBody.
        return
    takes_input = "requestBody" in operation or operation.get("parameters")
    if takes_input:
        assert "422" in responses, f"{method} {path} does not document 422"
    for status, response in responses.items():
        if path.startswith(PROXY_PREFIX) and status in {"502", "503", "504"}:
            # The recording proxy answers its own failures in the OpenAI API's error shape,
            # which the app's SDK reads (docs/proxy.md).
            continue
        if int(status) >= 400:
            schema = response["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (method, path, status)


def test_every_reference_resolves() -> None:
    document = json.loads(COMMITTED.read_text(encoding="utf-8"))
    text = json.dumps(document)
    names = {part.split('"')[0] for part in text.split('"#/components/schemas/')[1:]}
    assert names <= set(document["components"]["schemas"])


def test_no_parameter_schema_offers_null() -> None:
    # A query or header parameter is absent or a string on the wire: it is never JSON null.
    # FastAPI writes an optional one as anyOf [its type, null]; clients then generate nullable
    # types, and a fuzzer turns the null branch into values (`model=false`) that reach the
    # service as valid strings, so a 200 reads as "invalid input accepted".
    document = json.loads(COMMITTED.read_text(encoding="utf-8"))
    offending = [
        (method, path, parameter["name"])
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        for parameter in operation.get("parameters", [])
        if {"type": "null"} in parameter["schema"].get("anyOf", [])
    ]
    assert offending == []


async def test_the_document_is_served_and_no_page_loading_third_party_script() -> None:
    # /docs and /redoc loaded their scripts from a CDN (floating version, no integrity check)
    # on the origin of /ui, whose page keeps an API key; and showed nothing offline.
    app = create_app(Settings(_env_file=None, audit_topic="audit", api_keys={}))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://rg") as client:
        document = await client.get("/openapi.json")
        pages = [await client.get(path) for path in ("/docs", "/redoc", "/docs/oauth2-redirect")]
    assert document.status_code == 200
    assert document.json()["info"]["title"] == "ractogateway-kafka"
    assert [page.status_code for page in pages] == [404, 404, 404]
