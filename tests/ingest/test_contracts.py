"""Schema contracts (app/ingest/contracts.py) against a real broker and a real Schema Registry:
the audit schema registered at start, the Confluent framing of audit records read back by an
independent consumer and verified, a breaking change keeping the service unready, /publish
under contract (both handlers of app/api/lean.py), RG_SCHEMA_REQUIRED, and a registry stopped
and started again mid-run."""

import asyncio
import hashlib
import json
import os
import threading
import uuid
from pathlib import Path
from typing import Any, cast

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer

import app.ingest.contracts as contracts_module
from app.embedded.registry import EmbeddedRegistry, RegistryDistribution
from app.ingest.contracts import TopicContracts, audit_json_schema, breaking_changes
from app.kafka.registry import RegisteredSchema, SchemaRegistryClient
from app.kafka.schemas import JSON_SCHEMA_DRAFT, SchemaContract
from tests.helpers.app import assert_contract_error, client_for, reader_connected, services_of
from tests.helpers.http_standin import recording_server
from tests.helpers.polling import eventually
from tests.helpers.processes import run_cli

EVENT = {
    "user_id": "user-42",
    "model": "gpt-4o",
    "prompt": "What is our refund window?",
    "response": "Fourteen days.",
    "metadata": {"app": "support-bot"},
}
ORDER_SCHEMA = {
    "$schema": JSON_SCHEMA_DRAFT,
    "type": "object",
    "properties": {
        "order_id": {"type": "integer"},
        "status": {"type": "string", "enum": ["paid", "shipped"]},
    },
    "required": ["order_id", "status"],
}
# The lean handler takes no query but `wait`; `via` sends a request to the declared route.
PATHS = {"lean": "/publish", "declared": "/publish?via=declared"}


def register(url: str, subject: str, schema: dict[str, Any]) -> int:
    answer = httpx.post(
        f"{url}/subjects/{subject}/versions",
        json={"schemaType": "JSON", "schema": json.dumps(schema)},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    schema_id: int = answer.json()["id"]
    return schema_id


def latest(url: str, subject: str) -> dict[str, Any]:
    answer = httpx.get(f"{url}/subjects/{subject}/versions/latest", timeout=10)
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


async def raw_records(bootstrap: str, topic: str, count: int) -> list[Any]:
    """The records as bytes, read by a plain aiokafka consumer (not the library's)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    try:
        found: list[Any] = []
        while len(found) < count:
            batches = await consumer.getmany(timeout_ms=10_000)
            assert batches, f"read {len(found)} of {count}"
            found += [record for records in batches.values() for record in records]
        return found
    finally:
        await consumer.stop()


async def test_the_audit_schema_is_registered_at_start_and_fetched_back(
    kafka_bootstrap: str, schema_registry_url: str, topic: str
) -> None:
    async with client_for(
        kafka_bootstrap, audit_topic=topic, schema_registry_url=schema_registry_url
    ) as client:
        assert (await client.get("/readyz")).status_code == 200
        stored = latest(schema_registry_url, f"{topic}-value")
        assert stored["id"] == services_of(client).audit_schema.schema_id  # type: ignore[union-attr]
        schema = json.loads(stored["schema"])
        assert schema == audit_json_schema()
        assert schema["$schema"] == JSON_SCHEMA_DRAFT
        # prompt and response: required of version 1 records by the model, optional in version 2.
        assert set(schema["required"]) == {"user_id", "model"}
        # Plain JSON (the default): the record is the canonical JSON, as before.
        answer = await client.post("/audit", json=EVENT)
        assert answer.status_code == 201, answer.text
    (record,) = await raw_records(kafka_bootstrap, topic, 1)
    assert record.value[:1] == b"{"


async def test_a_confluent_framed_audit_record_is_read_independently_and_verifies(
    kafka_bootstrap: str, schema_registry_url: str, topic: str, tmp_path: Path
) -> None:
    async with client_for(
        kafka_bootstrap,
        audit_topic=topic,
        schema_registry_url=schema_registry_url,
        schema_wire_format="confluent",
    ) as client:
        await reader_connected(client)
        receipts = [(await client.post("/audit", json=EVENT)).json() for _ in range(3)]
        assert all(r["status"] == "acked" for r in receipts), receipts

        async def all_shown() -> bool:
            answer = await client.get("/messages", params={"topic": topic})
            shown[:] = answer.json()["messages"]
            return len(shown) == 3

        shown: list[dict[str, Any]] = []
        await eventually(all_shown, timeout_s=20)
    schema_id = latest(schema_registry_url, f"{topic}-value")["id"]
    records = await raw_records(kafka_bootstrap, topic, 3)
    digests = {r["digest"] for r in receipts}
    for record in records:
        value: bytes = record.value
        # Magic byte 0, the registry's schema id (4 bytes, big-endian), then the canonical JSON.
        assert value[0] == 0
        assert int.from_bytes(value[1:5], "big") == schema_id
        body = value[5:]
        assert body == orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS)
        assert orjson.loads(body)["prompt"] == EVENT["prompt"]
        # The digest covers the canonical JSON, not the frame.
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        assert dict(record.headers)["rg-digest"].decode() == digest
        assert digest in digests
        assert dict(record.headers)["rg-schema-id"].decode() == str(schema_id)
    # GET /messages decodes the framed values and names their schema.
    assert len(shown) == 3
    assert {m["schema_id"] for m in shown} == {schema_id}
    assert {m["schema_version"] for m in shown} == {1}
    assert all(m["value"]["user_id"] == "user-42" for m in shown)
    # `verify` hashes the JSON inside the frame: the trail is clean.
    env = {k: v for k, v in os.environ.items() if not k.startswith("RG_")}
    env["RG_KAFKA_BOOTSTRAP_SERVERS"] = kafka_bootstrap
    done = await asyncio.to_thread(
        run_cli, ["verify", "--topic", topic, "--json"], cwd=tmp_path, env=env
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["records_checked"] == 3
    assert not report["problems"]
    # `tail` with the registry decodes them and names their schema too.
    env["RG_SCHEMA_REGISTRY_URL"] = schema_registry_url
    tailed = await asyncio.to_thread(
        run_cli,
        ["tail", topic, "--from-beginning", "--json", "--max-messages", "3"],
        cwd=tmp_path,
        env=env,
    )
    assert tailed.returncode == 0, tailed.stderr
    lines = [json.loads(line) for line in tailed.stdout.splitlines()]
    assert [(x["schema_id"], x["schema_version"]) for x in lines] == [(schema_id, 1)] * 3
    assert all(x["value"]["model"] == "gpt-4o" for x in lines)


async def test_the_v2_schema_registers_over_the_v1_schema_backward_compatibly(
    kafka_bootstrap: str, schema_registry_url: str, topic: str
) -> None:
    # The schema as release 1 registered it (kept as a file): the registry (Apicurio, BACKWARD)
    # accepts version 2 over it, and version 1 events are written as before.
    v1 = json.loads((Path(__file__).parent / "audit_schema_v1.json").read_text())
    register(schema_registry_url, f"{topic}-value", v1)
    async with client_for(
        kafka_bootstrap, audit_topic=topic, schema_registry_url=schema_registry_url
    ) as client:
        assert (await client.get("/readyz")).status_code == 200
        assert (await client.post("/audit", json=EVENT)).status_code == 201
        v2 = {**EVENT, "operation": "chat", "input_tokens": 3, "verified_by": ["dr-a"]}
        assert (await client.post("/audit", json=v2)).status_code == 201
    assert latest(schema_registry_url, f"{topic}-value")["version"] == 2
    first, second = sorted(await raw_records(kafka_bootstrap, topic, 2), key=lambda r: r.offset)
    assert orjson.loads(first.value)["schema_version"] == 1
    assert "operation" not in orjson.loads(first.value)
    assert orjson.loads(second.value)["schema_version"] == 2


def _older_audit_schema_without(field: str) -> dict[str, Any]:
    """The audit schema as an older release would have had it: without `field`."""
    schema = audit_json_schema()
    schema["properties"] = {k: v for k, v in schema["properties"].items() if k != field}
    schema["required"] = [name for name in schema["required"] if name != field]
    return schema


async def test_a_breaking_change_keeps_the_service_unready_naming_the_field(
    kafka_bootstrap: str, schema_registry_url: str, topic: str, tmp_path: Path
) -> None:
    # The registry holds a version without `model`: ours adds it as required, which cannot
    # read the records written before (BACKWARD).
    register(schema_registry_url, f"{topic}-value", _older_audit_schema_without("model"))
    async with client_for(
        kafka_bootstrap, audit_topic=topic, schema_registry_url=schema_registry_url
    ) as client:
        ready = await client.get("/readyz")
        assert_contract_error(ready, 503, "audit_schema_incompatible")
        assert ready.headers["retry-after"] == "5"
        write = await client.post("/audit", json=EVENT)
        # /readyz is open to anyone: the field is named to a writer (and in the log).
        error = assert_contract_error(write, 503, "audit_schema_incompatible")
        assert "'model'" in error["message"], error
    # Nothing was registered over it.
    assert latest(schema_registry_url, f"{topic}-value")["version"] == 1
    # `schemas check` says the same for CI: exit status 1, naming the field.
    env = {k: v for k, v in os.environ.items() if not k.startswith("RG_")}
    env |= {"RG_SCHEMA_REGISTRY_URL": schema_registry_url, "RG_AUDIT_TOPIC": topic}
    done = await asyncio.to_thread(run_cli, ["schemas", "check"], cwd=tmp_path, env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "'model'" in done.stdout


@pytest.mark.parametrize("via", list(PATHS))
async def test_publish_under_contract_accepts_good_values_and_names_the_failing_path(
    kafka_bootstrap: str, schema_registry_url: str, topic: str, via: str
) -> None:
    orders = f"test-orders-{uuid.uuid4().hex}"
    schema_id = register(schema_registry_url, f"{orders}-value", ORDER_SCHEMA)
    async with client_for(
        kafka_bootstrap,
        audit_topic=topic,
        schema_registry_url=schema_registry_url,
        schema_wire_format="confluent",
    ) as client:
        path = PATHS[via]
        good = await client.post(
            path, json={"topic": orders, "key": "o-1", "value": {"order_id": 1, "status": "paid"}}
        )
        assert good.status_code == 201, good.text
        bad = await client.post(
            path, json={"topic": orders, "value": {"order_id": "one", "status": "lost"}}
        )
        error = assert_contract_error(bad, 422, "schema_violation")
        assert "/order_id" in error["message"]
        by_path = {d["path"]: d for d in error["details"]}
        assert by_path["/order_id"]["rule"] == "type"
        assert by_path["/order_id"]["field"] == "value.order_id"
        assert by_path["/status"]["rule"] == "enum"
        missing = await client.post(path, json={"topic": orders, "value": {"order_id": 2}})
        error = assert_contract_error(missing, 422, "schema_violation")
        assert error["details"][0]["rule"] == "required"
        assert "status" in error["details"][0]["message"]
        # A topic without a schema is written as before (RG_SCHEMA_REQUIRED is off).
        free = await client.post(
            path, json={"topic": f"test-free-{uuid.uuid4().hex}", "value": [1]}
        )
        assert free.status_code == 201, free.text
    (record,) = await raw_records(kafka_bootstrap, orders, 1)
    assert record.value[0] == 0
    assert int.from_bytes(record.value[1:5], "big") == schema_id
    assert orjson.loads(record.value[5:]) == {"order_id": 1, "status": "paid"}


@pytest.mark.parametrize("via", list(PATHS))
async def test_schema_required_refuses_a_topic_without_one(
    kafka_bootstrap: str, schema_registry_url: str, topic: str, via: str
) -> None:
    orders = f"test-orders-{uuid.uuid4().hex}"
    register(schema_registry_url, f"{orders}-value", ORDER_SCHEMA)
    async with client_for(
        kafka_bootstrap,
        audit_topic=topic,
        schema_registry_url=schema_registry_url,
        schema_required=True,
    ) as client:
        refused = await client.post(
            PATHS[via], json={"topic": f"test-nameless-{uuid.uuid4().hex}", "value": {"a": 1}}
        )
        error = assert_contract_error(refused, 422, "schema_required")
        assert "-value" in error["message"]
        accepted = await client.post(
            PATHS[via], json={"topic": orders, "value": {"order_id": 7, "status": "shipped"}}
        )
        assert accepted.status_code == 201, accepted.text
    # Plain JSON framing (the default): the value is the canonical JSON itself.
    (record,) = await raw_records(kafka_bootstrap, orders, 1)
    assert orjson.loads(record.value) == {"order_id": 7, "status": "shipped"}


async def test_registry_stopped_mid_run_is_503_then_recovers(
    kafka_bootstrap: str,
    registry_distribution: RegistryDistribution,
    topic: str,
    tmp_path: Path,
) -> None:
    registry = EmbeddedRegistry(distribution=registry_distribution, log_file=tmp_path / "r.log")
    registry.start()
    try:
        orders = f"test-orders-{uuid.uuid4().hex}"
        register(registry.url, f"{orders}-value", ORDER_SCHEMA)
        good = {"topic": orders, "value": {"order_id": 1, "status": "paid"}}
        async with client_for(
            kafka_bootstrap,
            audit_topic=topic,
            schema_registry_url=registry.url,
            schema_cache_s=0.3,
        ) as client:
            assert (await client.post("/publish", json=good)).status_code == 201
            await asyncio.to_thread(registry.stop)
            await asyncio.sleep(0.4)  # the cached schema is due for a lookup
            for path in PATHS.values():
                away = await client.post(path, json=good)
                error = assert_contract_error(away, 503, "schema_registry_unavailable")
                assert away.headers["retry-after"] == "5"
                assert orders in error["message"]
            # Audit writes with plain JSON do not need the registry once it is registered.
            assert (await client.post("/audit", json=EVENT)).status_code == 201
            # Back on the same port; its storage is in memory, so the schema comes back too.
            await asyncio.to_thread(registry.start)
            register(registry.url, f"{orders}-value", ORDER_SCHEMA)
            again = await client.post("/publish", json=good)
            assert again.status_code == 201, again.text
    finally:
        registry.stop()


def test_unit_breaking_changes_name_the_fields() -> None:
    old = {
        "properties": {"a": {"type": "string"}, "b": {"type": "integer"}, "c": {}},
        "required": ["a"],
    }
    new = {
        "properties": {
            "a": {"type": "string"},
            "b": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "d": {"type": "string"},
        },
        "required": ["a", "b", "d"],
        "additionalProperties": False,
    }
    assert breaking_changes(old, new) == [
        "field 'b' became required",
        "new required field 'd'",
        "field 'b' changed type from integer to null|string",
        "field 'c' removed while other fields are refused",
    ]
    assert breaking_changes(new, new) == []


async def test_a_schema_with_an_external_ref_is_refused_and_never_fetched(
    kafka_bootstrap: str, schema_registry_url: str, topic: str
) -> None:
    # Whoever may register a schema must not make the service call an internal address.
    target = f"test-ssrf-{uuid.uuid4().hex}"
    with recording_server() as (base, paths):
        ref = f"{base}/internal-only/latest/meta-data"
        schema = {
            "$schema": JSON_SCHEMA_DRAFT,
            "type": "object",
            "properties": {"a": {"$ref": ref}},
        }
        register(schema_registry_url, f"{target}-value", schema)
        async with client_for(
            kafka_bootstrap, audit_topic=topic, schema_registry_url=schema_registry_url
        ) as client:
            for path in PATHS.values():
                answer = await client.post(path, json={"topic": target, "value": {"a": 1}})
                error = assert_contract_error(answer, 502, "schema_unusable")
                assert f"{target}-value" in error["message"]
                assert ref in error["message"]
            assert (await client.get("/healthz")).status_code == 200
    assert paths == []


async def test_unit_a_topic_s_schema_is_compiled_off_the_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A large schema takes a while to compile: /healthz and every other request wait meanwhile
    # if it runs on the loop.
    compiled_in: list[threading.Thread] = []
    real = SchemaContract

    def recording(registered: RegisteredSchema) -> SchemaContract:
        compiled_in.append(threading.current_thread())
        return real(registered)

    class OneSchema:
        async def latest(self, subject: str) -> RegisteredSchema:
            return RegisteredSchema(schema_id=1, schema={"type": "object"}, subject=subject)

    monkeypatch.setattr(contracts_module, "SchemaContract", recording)
    contracts = TopicContracts(
        cast(SchemaRegistryClient, OneSchema()), cache_s=60, required=False, framing="json"
    )
    assert await contracts.contract("t") is not None
    assert compiled_in
    assert compiled_in[0] is not threading.main_thread()


async def test_unit_the_schema_cache_keeps_at_most_max_topics_the_least_recent_go_first() -> None:
    # Every topic name a client publishes to is looked up once: without a bound the cache
    # would grow with each new name for as long as the service runs.
    asked: list[str] = []

    class NoSchemas:
        async def latest(self, subject: str) -> RegisteredSchema | None:
            asked.append(subject)
            return None

    contracts = TopicContracts(
        cast(SchemaRegistryClient, NoSchemas()),
        cache_s=600,
        required=False,
        framing="json",
        max_topics=100,
    )
    for i in range(1000):
        await contracts.contract(f"t{i}")
        await contracts.contract("hot")  # used all along: never the least recent
    assert len(contracts) == 100
    asked.clear()
    await contracts.contract("hot")
    await contracts.contract("t999")
    await contracts.contract("t0")
    assert asked == ["t0-value"]
