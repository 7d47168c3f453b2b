"""POST /audit and POST /audit/batch against the real broker; each record read back by an
independent consumer."""

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from app.embedded import free_port
from tests.helpers.app import (
    BOTH_HANDLERS,
    BROKER_AWAY,
    ServiceFactory,
    assert_contract_error,
    client_for,
)
from tests.helpers.kafka import read_all, records_in

EVENT = {
    "user_id": "user-42",
    "model": "gpt-4o",
    "prompt": "What is our refund window?",
    "response": "Fourteen days.",
    "request_id": "req-1",
    "metadata": {"app": "support-bot", "tokens": 12},
}
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@BOTH_HANDLERS
async def test_an_event_is_acknowledged_and_stored_as_its_receipt_says(
    service: ServiceFactory, kafka_bootstrap: str, topic: str
) -> None:
    async with service() as client:
        response = await client.post("/audit", json=EVENT, headers={"traceparent": TRACEPARENT})
    assert response.status_code == 201, response.text
    receipt = response.json()
    assert receipt["status"] == "acked"
    assert receipt["topic"] == topic
    assert isinstance(receipt["partition"], int)
    assert isinstance(receipt["offset"], int)
    assert receipt["timestamp_utc"].endswith("Z")

    [record] = await read_all(kafka_bootstrap, topic, 1, value_format="bytes")
    assert (record.partition, record.offset) == (receipt["partition"], receipt["offset"])
    assert record.key == "user-42"
    stored = json.loads(record.value)
    assert stored == {
        **EVENT,
        "event_id": receipt["event_id"],
        "timestamp_utc": receipt["timestamp_utc"],
        "schema_version": 1,
    }
    # The digest is the SHA-256 of exactly the stored bytes, which are canonical JSON.
    digest = "sha256:" + hashlib.sha256(record.value).hexdigest()
    assert receipt["digest"] == digest
    assert record.value == json.dumps(stored, sort_keys=True, separators=(",", ":")).encode()
    assert record.header("rg-digest") == digest
    assert record.header("rg-event-id") == receipt["event_id"]
    assert record.header("content-type") == "application/json"
    assert record.header("traceparent") == TRACEPARENT


@BOTH_HANDLERS
async def test_the_callers_event_id_and_timestamp_are_kept(
    service: ServiceFactory, kafka_bootstrap: str, topic: str
) -> None:
    event = {**EVENT, "event_id": "evt-0001", "timestamp_utc": "2026-01-31T13:00:00+01:00"}
    async with service() as client:
        receipt = (await client.post("/audit", json=event)).json()
    assert receipt["event_id"] == "evt-0001"
    assert receipt["timestamp_utc"] == "2026-01-31T12:00:00.000000Z"
    [record] = await read_all(kafka_bootstrap, topic, 1)
    assert record.value["event_id"] == "evt-0001"
    assert record.value["timestamp_utc"] == "2026-01-31T12:00:00.000000Z"


@BOTH_HANDLERS
async def test_wait_false_answers_202_queued_and_the_record_still_arrives(
    service: ServiceFactory, kafka_bootstrap: str, topic: str
) -> None:
    async with service() as client:
        response = await client.post("/audit", params={"wait": "false"}, json=EVENT)
    assert response.status_code == 202
    receipt = response.json()
    assert receipt["status"] == "queued"
    assert (receipt["partition"], receipt["offset"]) == (None, None)
    [record] = await read_all(kafka_bootstrap, topic, 1)
    assert record.header("rg-event-id") == receipt["event_id"]
    assert record.header("rg-digest") == receipt["digest"]


@BOTH_HANDLERS
async def test_an_invalid_traceparent_is_dropped_not_refused(
    service: ServiceFactory, kafka_bootstrap: str, topic: str
) -> None:
    async with service() as client:
        response = await client.post(
            "/audit", json=EVENT, headers={"traceparent": "00-zz-not-a-trace-01"}
        )
    assert response.status_code == 201
    [record] = await read_all(kafka_bootstrap, topic, 1)
    assert record.header("traceparent") is None


@BOTH_HANDLERS
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({k: v for k, v in EVENT.items() if k != "prompt"}, "body.prompt"),
        ({**EVENT, "user_id": ""}, "body.user_id"),
        ({**EVENT, "model": 42}, "body.model"),
        ({**EVENT, "metadata": "not an object"}, "body.metadata"),
        ({**EVENT, "timestamp_utc": "yesterday"}, "body.timestamp_utc"),
        ({**EVENT, "event_id": "has spaces in it"}, "body.event_id"),
        ({**EVENT, "schema_version": 3}, "body.schema_version"),
        ({**EVENT, "schema_version": True}, "body.schema_version"),
        ({**EVENT, "timestamp_utc": ""}, "body.timestamp_utc"),
        ({**EVENT, "timestamp_utc": "0001-01-01T00:00:00+01:00"}, "body.timestamp_utc"),
        ({**EVENT, "colour": "blue"}, "body.colour"),
        ([EVENT], "body"),
    ],
)
async def test_invalid_events_get_422_naming_the_field(
    service: ServiceFactory, body: Any, field: str
) -> None:
    async with service() as client:
        response = await client.post("/audit", json=body)
    error = assert_contract_error(response, 422, "invalid_request")
    assert field in [detail["field"] for detail in error["details"]]
    assert field in error["message"]


@BOTH_HANDLERS
@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'"metadata": {"score": NaN}', "finite"),
        (b'"metadata": {"score": -Infinity}', "finite"),
        (b'"metadata": ' + b'{"k": ' * 20 + b"1" + b"}" * 20, "deeper"),
        (b'"metadata": {"x": [' + b",".join([b"1"] * 1500) + b"]}", "keys and items"),
        (b'"prompt": "' + b"x" * 1_000_001 + b'"', "at most 1000000 characters"),
        (b'"metadata": {"n": 18446744073709551616}', "64 bits"),
        (b'"metadata": {"k\\udfff": 1}', "surrogates"),
        (b'"metadata": {"k": "\\ud800"}', "surrogates"),
        (b'"prompt": "\\ud800"', "unicode string"),
    ],
    ids=[
        "nan",
        "infinity",
        "deep",
        "many-items",
        "huge-prompt",
        "huge-integer",
        "lone-surrogate-key",
        "lone-surrogate-value",
        "lone-surrogate-prompt",
    ],
)
async def test_metadata_and_text_bounds_get_422(
    service: ServiceFactory, raw: bytes, reason: str
) -> None:
    base = b'{"user_id": "u", "model": "m", "response": "r", '
    body = base + raw + (b"" if raw.startswith(b'"prompt"') else b', "prompt": "p"') + b"}"
    async with service(max_body_bytes=4 * 1024 * 1024) as client:
        response = await client.post(
            "/audit", content=body, headers={"content-type": "application/json"}
        )
    error = assert_contract_error(response, 422, "invalid_request")
    assert reason in json.dumps(error["details"])


@BOTH_HANDLERS
async def test_a_body_that_is_not_declared_json_gets_422(service: ServiceFactory) -> None:
    async with service() as client:
        response = await client.post(
            "/audit", content=json.dumps(EVENT), headers={"content-type": "text/plain"}
        )
    error = assert_contract_error(response, 422, "invalid_request")
    assert error["details"][0]["field"] == "body"


@BOTH_HANDLERS
async def test_an_unknown_wait_value_gets_422_naming_it(service: ServiceFactory) -> None:
    async with service() as client:
        response = await client.post("/audit", params={"wait": "perhaps"}, json=EVENT)
    error = assert_contract_error(response, 422, "invalid_request")
    assert error["details"][0]["field"] == "query.wait"


@BOTH_HANDLERS
async def test_a_record_above_kafkas_size_limit_gets_413(service: ServiceFactory) -> None:
    huge = "x" * 700_000  # prompt + response: 1.4 MB, above the producer's 1 MB request size
    async with service(max_body_bytes=4 * 1024 * 1024) as client:
        response = await client.post("/audit", json={**EVENT, "prompt": huge, "response": huge})
    assert_contract_error(response, 413, "record_too_large")


@BOTH_HANDLERS
async def test_without_a_broker_the_answer_is_503_with_retry_after(via: str) -> None:
    async with client_for(
        f"127.0.0.1:{free_port()}", via=via, produce_timeout_s=0.5, **BROKER_AWAY
    ) as client:
        response = await client.post("/audit", json=EVENT)
    assert_contract_error(response, 503, "broker_unavailable")
    assert int(response.headers["retry-after"]) > 0


async def test_a_batch_answers_one_result_per_event_in_order(
    service: ServiceFactory, kafka_bootstrap: str, topic: str
) -> None:
    events = [
        {**EVENT, "user_id": "a"},
        {**EVENT, "prompt": ""},
        "not an object",
        {**EVENT, "user_id": "b"},
    ]
    async with service() as client:
        response = await client.post("/audit/batch", json={"events": events})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["accepted"], body["failed"]) == (2, 2)
    results = body["results"]
    assert [r["index"] for r in results] == [0, 1, 2, 3]
    assert results[0]["receipt"]["status"] == "acked"
    assert results[3]["receipt"]["status"] == "acked"
    assert results[1]["error"]["status"] == 422
    assert results[1]["error"]["details"][0]["field"] == "prompt"
    assert results[2]["error"]["code"] == "invalid_request"
    records = await read_all(kafka_bootstrap, topic, 2)
    assert sorted(r.key for r in records) == ["a", "b"]  # type: ignore[type-var]
    ids = {r.header("rg-event-id") for r in records}
    assert ids == {results[0]["receipt"]["event_id"], results[3]["receipt"]["event_id"]}


@BOTH_HANDLERS
async def test_a_batch_of_many_events_is_written_concurrently(
    service: ServiceFactory, kafka_bootstrap: str, topic: str
) -> None:
    events = [{**EVENT, "user_id": f"u{i % 7}", "request_id": f"r{i}"} for i in range(200)]
    async with service() as client:
        response = await client.post("/audit/batch", json={"events": events})
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["accepted"] == 200
    # Either handler writes every field of the answer, the absent error as null.
    assert [sorted(result) for result in body["results"]] == [["error", "index", "receipt"]] * 200
    assert {result["error"] for result in body["results"]} == {None}
    records = await read_all(kafka_bootstrap, topic, 200)
    assert len({r.header("rg-event-id") for r in records}) == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"events": []}, "body.events"),
        ({"events": "nope"}, "body.events"),
        ({}, "body.events"),
        ({"events": [EVENT] * 3}, "body.events"),
    ],
)
async def test_an_invalid_batch_gets_422(service: ServiceFactory, body: Any, field: str) -> None:
    async with service(audit_batch_max=2) as client:
        response = await client.post("/audit/batch", json=body)
    error = assert_contract_error(response, 422, "invalid_request")
    assert field in [detail["field"] for detail in error["details"]]


@BOTH_HANDLERS
@pytest.mark.parametrize(
    "content",
    [b'{"user_id": "\xff"}', b"{not json", b'{"a":' * 3000 + b"1" + b"}" * 3000],
    ids=["invalid-utf8", "broken-json", "nested-too-deeply"],
)
async def test_an_undecodable_body_gets_422_naming_the_body(
    service: ServiceFactory, content: bytes
) -> None:
    async with service() as client:
        for path in ("/audit", "/audit/batch", "/publish"):
            response = await client.post(
                path, content=content, headers={"content-type": "application/json"}
            )
            error = assert_contract_error(response, 422, "invalid_request")
            assert [detail["field"] for detail in error["details"]] == ["body"]
            assert "not valid JSON" in error["details"][0]["message"]


@BOTH_HANDLERS
async def test_a_retry_with_the_same_event_id_gets_the_same_receipt_and_writes_nothing(
    service: ServiceFactory, kafka_bootstrap: str, topic: str
) -> None:
    event = {**EVENT, "event_id": "evt-retry-1"}
    async with service() as client:
        first = await client.post("/audit", json=event)
        again = await client.post("/audit", json=event)
        batch = (await client.post("/audit/batch", json={"events": [event]})).json()
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert batch["results"][0]["receipt"] == first.json()
    assert await records_in(kafka_bootstrap, topic) == 1


@BOTH_HANDLERS
async def test_a_retry_of_a_queued_event_gets_its_receipt_and_writes_nothing(
    service: ServiceFactory, kafka_bootstrap: str, topic: str
) -> None:
    # A 202 lost on its way back (the connection dropped): the client sends the event again,
    # at once (the record may still be in the producer) and later (acknowledged by then).
    event = {**EVENT, "event_id": "evt-queued-retry"}
    async with service() as client:
        queued = await client.post("/audit", params={"wait": "false"}, json=event)
        at_once = await client.post("/audit", json=event)
        [record] = await read_all(kafka_bootstrap, topic, 1)
        later = await client.post("/audit", params={"wait": "false"}, json=event)
    assert queued.status_code == 202
    assert (at_once.status_code, later.status_code) == (201, 201)
    # At once: answered by the attempt under way (as after a timeout); later: from the kept
    # receipts, a replay.
    assert later.headers["idempotent-replayed"] == "true"
    acked = at_once.json()
    assert acked == later.json()
    assert acked["status"] == "acked"
    assert (acked["partition"], acked["offset"]) == (record.partition, record.offset)
    first = queued.json()
    assert {k: acked[k] for k in ("event_id", "digest", "writer", "seq", "chain")} == {
        k: first[k] for k in ("event_id", "digest", "writer", "seq", "chain")
    }
    assert await records_in(kafka_bootstrap, topic) == 1


@BOTH_HANDLERS
async def test_a_retry_of_an_event_queued_in_a_batch_gets_its_receipt_and_writes_nothing(
    service: ServiceFactory, kafka_bootstrap: str, topic: str
) -> None:
    events = [{**EVENT, "event_id": f"evt-queued-batch-{n}"} for n in range(3)]
    async with service() as client:
        queued = await client.post(
            "/audit/batch", params={"wait": "false"}, json={"events": events}
        )
        alone = await client.post("/audit", json=events[0])
        again = await client.post("/audit/batch", json={"events": events})
    assert queued.status_code == 200, queued.text
    firsts = [result["receipt"] for result in queued.json()["results"]]
    assert [first["status"] for first in firsts] == ["queued"] * 3
    assert alone.status_code == 201
    retried = [alone.json()] + [result["receipt"] for result in again.json()["results"][1:]]
    for first, acked in zip(firsts, retried, strict=True):
        assert acked["status"] == "acked"
        assert (acked["event_id"], acked["seq"], acked["digest"]) == (
            first["event_id"],
            first["seq"],
            first["digest"],
        )
    assert await records_in(kafka_bootstrap, topic) == 3


@BOTH_HANDLERS
async def test_concurrent_retries_write_one_record(
    service: ServiceFactory, kafka_bootstrap: str, topic: str
) -> None:
    event = {**EVENT, "event_id": "evt-race"}
    async with service() as client:
        answers = await asyncio.gather(*(client.post("/audit", json=event) for _ in range(10)))
    assert {a.status_code for a in answers} == {201}
    assert len({a.json()["offset"] for a in answers}) == 1
    assert await records_in(kafka_bootstrap, topic) == 1


@BOTH_HANDLERS
async def test_an_idempotency_key_replays_the_first_receipt(
    service: ServiceFactory, kafka_bootstrap: str, topic: str
) -> None:
    async with service() as client:
        first = await client.post("/audit", json=EVENT, headers={"idempotency-key": "order-77"})
        again = await client.post("/audit", json=EVENT, headers={"idempotency-key": "order-77"})
        other = await client.post("/audit", json=EVENT, headers={"idempotency-key": "order-78"})
    assert again.json() == first.json()
    assert other.json()["event_id"] != first.json()["event_id"]
    assert await records_in(kafka_bootstrap, topic) == 2


@BOTH_HANDLERS
async def test_an_idempotency_key_sent_again_with_another_body_gets_422_naming_it(
    service: ServiceFactory, kafka_bootstrap: str, topic: str
) -> None:
    key = {"idempotency-key": "retry-42"}
    async with service() as client:
        first = await client.post("/audit", json={**EVENT, "prompt": "first"}, headers=key)
        same = await client.post("/audit", json={**EVENT, "prompt": "first"}, headers=key)
        other = await client.post("/audit", json={**EVENT, "prompt": "DIFFERENT BODY"}, headers=key)
    assert first.status_code == 201, first.text
    assert same.json() == first.json()
    assert same.headers["idempotent-replayed"] == "true"
    error = assert_contract_error(other, 422, "idempotency_key_reused")
    assert "retry-42" in error["message"]
    assert [detail["field"] for detail in error["details"]] == ["header.idempotency-key"]
    assert await records_in(kafka_bootstrap, topic) == 1


@BOTH_HANDLERS
async def test_an_event_id_sent_again_with_another_body_gets_422_alone_and_in_a_batch(
    service: ServiceFactory, kafka_bootstrap: str, topic: str
) -> None:
    event = {**EVENT, "event_id": "evt-1001"}
    changed = {**event, "prompt": "a completely different prompt"}
    async with service() as client:
        first = await client.post("/audit", json=event)
        alone = await client.post("/audit", json=changed)
        batch = await client.post("/audit/batch", json={"events": [event, changed]})
    assert first.status_code == 201, first.text
    error = assert_contract_error(alone, 422, "idempotency_key_reused")
    assert "evt-1001" in error["message"]
    assert [detail["field"] for detail in error["details"]] == ["body.event_id"]
    replayed, refused = batch.json()["results"]
    assert replayed["receipt"] == first.json()
    assert (refused["error"]["status"], refused["error"]["code"]) == (422, "idempotency_key_reused")
    assert await records_in(kafka_bootstrap, topic) == 1


@BOTH_HANDLERS
async def test_event_ids_and_idempotency_keys_belong_to_the_api_key_that_sent_them(
    service: ServiceFactory, kafka_bootstrap: str, topic: str
) -> None:
    # Another caller's later event with the same id (or key) is its own: written, not answered
    # with the first caller's receipt.
    keys = {"key-of-tenant-a": ["audit:write"], "key-of-tenant-b": ["audit:write"]}
    a, b = {"x-api-key": "key-of-tenant-a"}, {"authorization": "Bearer key-of-tenant-b"}
    event = {**EVENT, "event_id": "evt-1001"}
    other = {**event, "user_id": "tenant-b", "prompt": "B's own prompt"}
    async with service(api_keys=keys) as client:
        first = await client.post("/audit", json=event, headers=a)
        by_b = await client.post("/audit", json=other, headers=b)
        in_b_batch = await client.post("/audit/batch", json={"events": [other]}, headers=b)
        keyed_a = await client.post("/audit", json=EVENT, headers={**a, "idempotency-key": "k1"})
        keyed_b = await client.post("/audit", json=other, headers={**b, "idempotency-key": "k1"})
        again_a = await client.post("/audit", json=event, headers=a)
    assert first.status_code == by_b.status_code == keyed_a.status_code == 201
    assert keyed_b.status_code == 201
    assert "idempotent-replayed" not in by_b.headers
    assert by_b.json()["offset"] != first.json()["offset"] or (
        by_b.json()["partition"] != first.json()["partition"]
    )
    assert in_b_batch.json()["results"][0]["receipt"] == by_b.json()
    assert keyed_b.json()["event_id"] != keyed_a.json()["event_id"]
    assert again_a.json() == first.json()
    assert await records_in(kafka_bootstrap, topic) == 4


@BOTH_HANDLERS
async def test_an_invalid_idempotency_key_gets_422(service: ServiceFactory) -> None:
    async with service() as client:
        response = await client.post("/audit", json=EVENT, headers={"idempotency-key": "k" * 300})
    error = assert_contract_error(response, 422, "invalid_request")
    assert error["details"][0]["field"] == "header.idempotency-key"


@BOTH_HANDLERS
async def test_beyond_the_in_flight_bound_the_answer_is_503_overloaded(
    service: ServiceFactory, kafka_bootstrap: str, topic: str
) -> None:
    async with service(max_in_flight=1) as client:
        answers = await asyncio.gather(
            *(client.post("/audit", json={**EVENT, "request_id": f"r{i}"}) for i in range(40))
        )
        batch = (await client.post("/audit/batch", json={"events": [EVENT] * 20})).json()
    acked = [a.json() for a in answers if a.status_code == 201]
    refused = [a for a in answers if a.status_code != 201]
    assert acked
    assert refused
    for answer in refused:
        assert_contract_error(answer, 503, "overloaded")
        assert answer.headers["retry-after"] == "1"
    codes = {r["error"]["code"] for r in batch["results"] if r["error"]}
    assert codes == {"overloaded"}
    assert batch["accepted"] >= 1
    # Every acknowledged event is in Kafka, and nothing else is.
    records = await read_all(kafka_bootstrap, topic, len(acked) + batch["accepted"])
    assert {r.header("rg-event-id") for r in records} >= {a["event_id"] for a in acked}
    assert await records_in(kafka_bootstrap, topic) == len(acked) + batch["accepted"]


@BOTH_HANDLERS
async def test_with_a_spool_and_no_broker_events_are_spooled_202(tmp_path: Path, via: str) -> None:
    async with client_for(
        f"127.0.0.1:{free_port()}", via=via, spool_dir=tmp_path, spool_after_s=0.5, **BROKER_AWAY
    ) as client:
        first = await client.post("/audit", json=EVENT)
        again = await client.post("/audit", json={**EVENT, "event_id": first.json()["event_id"]})
        batch = await client.post("/audit/batch", json={"events": [EVENT, EVENT]})
        metrics = (await client.get("/metrics")).text
    assert first.status_code == 202, first.text
    receipt = first.json()
    assert receipt["status"] == "spooled"
    assert receipt["partition"] is None
    assert receipt["offset"] is None
    # A retry of a spooled event is answered from the first receipt; nothing spooled twice.
    assert again.status_code == 202
    assert again.json() == receipt
    assert again.headers["idempotent-replayed"] == "true"
    assert [r["receipt"]["status"] for r in batch.json()["results"]] == ["spooled", "spooled"]
    assert "rg_spool_records 3.0" in metrics
    assert "rg_spool_appended_total 3.0" in metrics
    assert "rg_spool_oldest_age_seconds" in metrics


@BOTH_HANDLERS
async def test_a_full_spool_answers_503_spool_full(tmp_path: Path, via: str) -> None:
    async with client_for(
        f"127.0.0.1:{free_port()}",
        via=via,
        spool_dir=tmp_path,
        spool_max_bytes=1024,
        **BROKER_AWAY,
    ) as client:
        accepted = await client.post("/audit", json=EVENT)
        refused = await client.post("/audit", json={**EVENT, "prompt": "x" * 1000})
    assert accepted.status_code == 202
    assert_contract_error(refused, 503, "spool_full")
    assert int(refused.headers["retry-after"]) > 0
