"""Redaction through the service on the real broker: the stored record holds placeholders and
the `rg-redaction` header, its digest (header and receipt) is of the redacted bytes, a replay
writes nothing; with redaction off the record is the event as sent, without the header; the
service answers while a worst-case prompt is redacted; a text an operator's pattern runs out
of time over is stored as a placeholder."""

import asyncio
import hashlib
import hmac
import json
from pathlib import Path

from app.embedded import free_port
from app.ingest.redaction import REDACTION_VERSION
from tests.helpers.app import BROKER_AWAY, ServiceFactory, client_for, services_of
from tests.helpers.kafka import read_all, records_in
from tests.helpers.metrics import metric

SECRET_PROMPT = (
    "I am jane.doe@example.com, card 4111 1111 1111 1111, call +44 20 7946 0958; my key is "
    "sk-proj-Abc123def456GHI789jkl012mno and the server is 192.168.10.20. Version 1.2.3.4."
)
EVENT = {
    "user_id": "user-42",
    "model": "gpt-4o",
    "prompt": SECRET_PROMPT,
    "response": "Noted, jane.doe@example.com: IBAN GB82 WEST 1234 5698 7654 32 is on file.",
    "metadata": {"customer": {"emails": ["jane.doe@example.com"]}, "app": "x@example.com"},
}


async def test_stored_records_are_redacted_and_digested_as_stored(
    service: ServiceFactory, kafka_bootstrap: str, topic: str
) -> None:
    async with service(redaction="mask", redaction_metadata_fields=["customer"]) as client:
        response = await client.post("/audit", json=EVENT)
        assert response.status_code == 201, response.text
        receipt = response.json()
        replay = await client.post("/audit", json={**EVENT, "event_id": receipt["event_id"]})
        clean = await client.post(
            "/audit", json={**EVENT, "prompt": "hi", "response": "hello", "metadata": {}}
        )
        assert clean.status_code == 201, clean.text
        metrics = (await client.get("/metrics")).text

    records = await read_all(kafka_bootstrap, topic, 2, value_format="bytes")
    by_id = {record.header("rg-event-id"): record for record in records}
    # The policy is stamped on every record, also one where nothing was found.
    assert by_id[clean.json()["event_id"]].header("rg-redaction") == f"mask;v={REDACTION_VERSION}"
    record = by_id[receipt["event_id"]]
    stored = json.loads(record.value)
    assert stored["prompt"] == (
        "I am [EMAIL], card [CARD], call [PHONE]; my key is [API_KEY] and the server is [IP]. "
        "Version 1.2.3.4."
    )
    assert stored["response"] == "Noted, [EMAIL]: IBAN [IBAN] is on file."
    # The chosen field is walked; the others are stored as sent.
    assert stored["metadata"] == {"customer": {"emails": ["[EMAIL]"]}, "app": "x@example.com"}
    assert record.header("rg-redaction") == f"mask;v={REDACTION_VERSION}"
    digest = "sha256:" + hashlib.sha256(record.value).hexdigest()
    assert record.header("rg-digest") == digest
    assert receipt["digest"] == digest
    # A replay by event_id is answered with the first receipt and writes nothing.
    assert replay.status_code == 201, replay.text
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json() == receipt
    assert await records_in(kafka_bootstrap, topic) == 2
    assert metric(metrics, 'rg_redactions_total{kind="EMAIL"}') >= 3
    assert metric(metrics, 'rg_redactions_total{kind="CARD"}') >= 1


async def test_hash_mode_stores_keyed_placeholders(
    service: ServiceFactory, kafka_bootstrap: str, topic: str, tmp_path: Path
) -> None:
    key = tmp_path / "redaction.key"
    key.write_bytes(b"a key of the test\n")
    key.chmod(0o600)
    async with service(
        redaction="hash", redaction_key_file=key, redaction_metadata_fields=["customer", "app"]
    ) as client:
        response = await client.post("/audit/batch", json={"events": [EVENT, EVENT]})
    assert response.status_code == 200, response.text

    records = await read_all(kafka_bootstrap, topic, 2, value_format="bytes")
    mac = hmac.new(b"a key of the test", b"jane.doe@example.com", hashlib.sha256).hexdigest()
    for record in records:
        stored = json.loads(record.value)
        assert stored["prompt"].startswith(f"I am [EMAIL:{mac[:12]}], card [CARD:")
        assert "jane" not in record.value.decode()
        assert record.header("rg-redaction") == f"hash;v={REDACTION_VERSION}"
        assert record.header("rg-digest") == "sha256:" + hashlib.sha256(record.value).hexdigest()


async def test_without_redaction_the_event_is_stored_as_sent(
    service: ServiceFactory, kafka_bootstrap: str, topic: str
) -> None:
    async with service() as client:
        response = await client.post("/audit", json=EVENT)
    assert response.status_code == 201, response.text

    [record] = await read_all(kafka_bootstrap, topic, 1, value_format="bytes")
    stored = json.loads(record.value)
    assert stored["prompt"] == SECRET_PROMPT
    assert stored["metadata"] == EVENT["metadata"]
    assert record.header("rg-redaction") is None
    assert response.json()["digest"] == "sha256:" + hashlib.sha256(record.value).hexdigest()


async def test_spooled_records_are_redacted_on_disk(tmp_path: Path) -> None:
    # No broker at that port: the event waits in the spool, and what the spool keeps (and
    # later forwards as it is) is the redacted record with its header.
    async with client_for(
        f"127.0.0.1:{free_port()}",
        spool_dir=tmp_path,
        spool_after_s=0.5,
        **BROKER_AWAY,
        redaction="mask",
        redaction_metadata_fields=["customer"],
    ) as client:
        response = await client.post("/audit", json=EVENT)
        assert response.status_code == 202, response.text
        spool = services_of(client).spool
        assert spool is not None
        [spooled] = await spool.read(10)

    assert b"jane" not in spooled.record.value
    assert json.loads(spooled.record.value)["prompt"].startswith("I am [EMAIL], card [CARD]")
    assert spooled.record.headers["rg-redaction"] == f"mask;v={REDACTION_VERSION}"
    digest = "sha256:" + hashlib.sha256(spooled.record.value).hexdigest()
    assert spooled.record.headers["rg-digest"] == response.json()["digest"] == digest


# Findings of every cheap kind in turn and valid phone numbers: the longest redaction of a
# prompt of the largest size (about a second of CPU).
WORST_UNIT = "10.1.2.3 4111111111111111 a@b.cd 2001:db8::1 +12025550123 "


async def test_health_answers_while_a_worst_case_prompt_is_redacted(
    service: ServiceFactory, kafka_bootstrap: str, topic: str
) -> None:
    # A liveness check, not a speed claim: /healthz keeps answering (within a generous
    # second) while the largest worst-case prompt is redacted (not on the event loop).
    prompt = (WORST_UNIT * (1_000_000 // len(WORST_UNIT) + 1))[:1_000_000]
    loop = asyncio.get_running_loop()
    async with service(redaction="mask") as client:
        assert (await client.get("/healthz")).status_code == 200
        post = asyncio.create_task(
            client.post("/audit", json={**EVENT, "prompt": prompt, "metadata": {}})
        )
        # From one answer to the next (a pause of 20 ms between them): a loop held by the
        # redaction shows wherever it happens, also during the pause.
        waits: list[float] = []
        last = loop.time()
        while not post.done():
            health = await client.get("/healthz")
            assert health.status_code == 200
            waits.append(loop.time() - last)
            last = loop.time()
            await asyncio.sleep(0.02)
        response = await post

    assert response.status_code == 201, response.text
    [record] = await read_all(kafka_bootstrap, topic, 1, value_format="bytes")
    assert json.loads(record.value)["prompt"].startswith("[IP] [CARD] [EMAIL] [IP] [PHONE] [IP]")
    print(f"/healthz during the redaction: {len(waits)} answers, longest {max(waits):.3f} s")
    assert len(waits) > 1
    assert max(waits) < 1.0


async def test_a_text_an_operator_pattern_runs_out_of_time_over_is_replaced_whole(
    service: ServiceFactory, kafka_bootstrap: str, topic: str
) -> None:
    # `(a|aa)+b` backtracks without end over a run of "a" with no "b": the prompt is stored
    # as one placeholder (none of it unredacted), the response as usual.
    prompt = "I am jane.doe@example.com " + "a" * 200
    async with service(redaction="mask", redaction_patterns={"runaway": r"(a|aa)+b"}) as client:
        response = await client.post("/audit", json={**EVENT, "prompt": prompt})
        assert response.status_code == 201, response.text
        metrics = (await client.get("/metrics")).text

    [record] = await read_all(kafka_bootstrap, topic, 1, value_format="bytes")
    stored = json.loads(record.value)
    assert stored["prompt"] == "[REDACTION_TIMEOUT]"
    assert stored["response"] == "Noted, [EMAIL]: IBAN [IBAN] is on file."
    assert metric(metrics, 'rg_redactions_total{kind="REDACTION_TIMEOUT"}') == 1
