"""A trail written through the served process, with a signing key, verifies clean with the
public key it serves, and the receipts its clients kept verify too; the same trail, one record
rewritten by an independent producer, does not."""

import asyncio
import json
import os
import uuid
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from app.integrity.checkpoint import Checkpoint, writer_log
from tests.helpers.kafka import read_all, records_in, records_of
from tests.helpers.processes import run_cli
from tests.helpers.service import Launch
from tests.helpers.tlog import TlogCheck

EVENTS = 30


def verify(bootstrap: str, folder: Path, topic: str, *extra: str) -> tuple[int, dict[str, Any]]:
    """`ractogateway-kafka verify --json` on `topic` and its checkpoints topic."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RG_")}
    env["RG_KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
    done = run_cli(["verify", "--topic", topic, "--json", *extra], cwd=folder, env=env)
    assert done.returncode in {0, 1}, done.stderr
    return done.returncode, json.loads(done.stdout)


async def test_a_signed_trail_written_through_the_service_verifies_clean(
    kafka_bootstrap: str, tmp_path: Path, start_service: Launch
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RG_")}
    keys = tmp_path / "keys"
    made = run_cli(["keys", "generate", "--out", str(keys)], cwd=tmp_path, env=env)
    assert made.returncode == 0, made.stderr
    (private,) = keys.glob("*.key.pem")
    service = start_service(
        kafka_bootstrap,
        tmp_path / "run",
        audit_signing_key_file=str(private),
        audit_checkpoint_s="0.2",
    )
    service.wait_ready()
    receipts = []
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        for n in range(EVENTS):
            event = {"user_id": f"user-{n % 4}", "model": "m", "prompt": f"p{n}", "response": "r"}
            answer = await client.post("/audit", json=event)
            assert answer.status_code == 201, answer.text
            receipts.append(answer.json())
        served = (await client.get("/audit/keys")).json()["keys"]
    assert service.stop() == 0  # the last checkpoint is written at shutdown
    public = tmp_path / "served.pem"
    public.write_text(served[0]["public_key_pem"])
    receipt_file = tmp_path / "receipts.json"
    receipt_file.write_text(json.dumps(receipts))

    code, report = verify(
        kafka_bootstrap,
        tmp_path,
        service.audit_topic,
        "--public-key",
        str(public),
        "--receipt",
        str(receipt_file),
    )
    assert code == 0, report
    assert report["problems"] == []
    assert report["warnings"] == []  # every record covered by a signed checkpoint
    assert report["records_checked"] == report["records_valid"] == EVENTS

    # An independent producer appends a rewritten copy of one record, headers kept: found.
    original = (await records_of(kafka_bootstrap, service.audit_topic))[7]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        assert isinstance(original.value, dict)
        assert isinstance(original.key, str)
        forged_value = json.dumps({**original.value, "response": "changed"}).encode()
        sent = await producer.send_and_wait(
            service.audit_topic,
            forged_value,
            key=original.key.encode(),
            partition=original.partition,
            headers=[(name, value or b"") for name, value in original.headers.items()],
        )
    finally:
        await producer.stop()
    code, report = verify(
        kafka_bootstrap, tmp_path, service.audit_topic, "--public-key", str(public)
    )
    assert code == 1
    kinds = {(p["kind"], p["partition"], p["offset"]) for p in report["problems"]}
    assert ("altered", sent.partition, sent.offset) in kinds, report
    assert uuid.UUID(receipts[0]["event_id"])


async def test_the_services_v2_checkpoints_open_with_the_served_verifier_key_in_go(
    kafka_bootstrap: str, tmp_path: Path, start_service: Launch, tlogcheck: TlogCheck
) -> None:
    """Go's sumdb/note and transparency-dev/formats open every checkpoint note the service
    wrote with the verifier key GET /audit/keys publishes, and Go's sumdb/tlog computes the same
    RFC 6962 root over the leaf entries of the records 0..seq read off the topic."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RG_")}
    keys = tmp_path / "keys"
    made = run_cli(["keys", "generate", "--out", str(keys)], cwd=tmp_path, env=env)
    assert made.returncode == 0, made.stderr
    (private,) = keys.glob("*.key.pem")
    service = start_service(
        kafka_bootstrap,
        tmp_path / "run",
        audit_signing_key_file=str(private),
        audit_checkpoint_s="0.1",
        audit_writers_s="0.2",
    )
    service.wait_ready()
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        for burst in range(4):  # bursts a few checkpoint intervals apart: several checkpoints
            for n in range(5 + burst * 3):
                event = {"user_id": f"u{n % 3}", "model": "m", "prompt": f"p{n}", "response": "r"}
                answer = await client.post("/audit", json=event)
                assert answer.status_code == 201, answer.text
            await asyncio.sleep(0.4)
        (served,) = (await client.get("/audit/keys")).json()["keys"]
        latest = (await client.get("/audit/checkpoint")).json()
        writers_note = await served_note(client, "writers")
        own_note = await served_note(client, latest["writer"])
        bad = await client.get("/audit/checkpoint", params={"log": "nope"})
        assert bad.status_code == 422, bad.text
        assert bad.json()["error"]["code"]
    assert service.stop() == 0
    origin = f"ractogateway-kafka/{service.audit_topic}"
    assert served["verifier_key"].startswith(origin + "+")
    # The printed verifier key of `keys generate` is the served one.
    assert "verifier key: ractogateway-kafka/ractogateway.audit+" in made.stdout

    records = await records_of(kafka_bootstrap, service.audit_topic)
    digests: dict[tuple[str, int], str] = {}
    for record in records:
        fields = [record.header(name) for name in ("rg-writer", "rg-seq", "rg-digest")]
        assert None not in fields, record
        of, seq, digest = (str(field) for field in fields)
        digests[(of, int(seq))] = digest.removeprefix("sha256:")
    (writer,) = {of for of, _ in digests}
    entries = [
        f"rg-leaf-v1\n{writer}\n{seq}\n{digests[(writer, seq)]}".encode()
        for seq in range(len(digests))
    ]
    go_roots = tlogcheck.roots(entries)
    kept = await records_of(kafka_bootstrap, f"{service.audit_topic}.checkpoints")
    # The checkpoints topic holds the log of writers' notes too, keyed `writers`.
    written = [record for record in kept if record.key != "writers"]
    notes = [record for record in kept if record.key == "writers"]
    assert len(written) >= 3
    assert notes
    for record in written:
        checkpoint = Checkpoint.from_json(record.value)
        assert (record.key, checkpoint.version, checkpoint.writer) == (writer, 2, writer)
        opened = tlogcheck.checkpoint(
            checkpoint.note.encode(), writer_log(origin, writer), [served["verifier_key"]]
        )
        assert opened == (checkpoint.count, go_roots[checkpoint.count]), opened
        assert checkpoint.tree == go_roots[checkpoint.count].hex()
    assert Checkpoint.from_json(written[-1].value).count == len(entries) == 5 + 8 + 11 + 14
    assert latest["tree"] == "sha256:" + go_roots[latest["count"]].hex()
    # verify agrees: clean, trees checked.
    public = tmp_path / "served.pem"
    public.write_text(served["public_key_pem"])
    code, report = verify(
        kafka_bootstrap, tmp_path, service.audit_topic, "--public-key", str(public)
    )
    assert code == 0, report
    assert report["checkpoints_valid"] == len(kept)
    # The log of writers: start, heads, stop of this one writer; its notes open in Go with
    # origin <origin>/writers and their roots are Go's over the writers topic's values.
    code, report = verify(
        kafka_bootstrap, tmp_path, service.audit_topic, "--public-key", str(public), "--strict"
    )
    assert code == 0, report
    assert report["warnings"] == []
    entries_raw = [
        m.value
        for m in await read_all(
            kafka_bootstrap,
            f"{service.audit_topic}.writers",
            await records_in(kafka_bootstrap, f"{service.audit_topic}.writers"),
            value_format="bytes",
        )
    ]
    assert all(isinstance(value, bytes) for value in entries_raw)
    values = [value for value in entries_raw if isinstance(value, bytes)]
    kinds = [json.loads(value)["kind"] for value in values]
    assert (kinds[0], kinds[-1], set(kinds[1:-1])) == ("start", "stop", {"head"}), kinds
    stop = json.loads(values[-1])
    assert (stop["writer"], stop["size"]) == (writer, len(entries))
    assert stop["root"] == "sha256:" + go_roots[len(entries)].hex()
    writers_roots = tlogcheck.roots(values)
    kept_notes = [n.value["note"] for n in notes if isinstance(n.value, dict)]
    assert len(kept_notes) == len(notes)
    for note in [writers_note, *kept_notes]:
        opened = tlogcheck.checkpoint(note.encode(), f"{origin}/writers", [served["verifier_key"]])
        assert isinstance(opened, tuple), opened
        size, root = opened
        assert root == writers_roots[size]
    opened = tlogcheck.checkpoint(
        own_note.encode(), writer_log(origin, writer), [served["verifier_key"]]
    )
    assert isinstance(opened, tuple), opened
    assert opened[1] == go_roots[opened[0]], opened


async def served_note(client: httpx.AsyncClient, log: str) -> str:
    """GET /audit/checkpoint?log=`log` once it answers (the proof reader caught up)."""
    for _ in range(100):
        answer = await client.get("/audit/checkpoint", params={"log": log})
        if answer.status_code == 200:
            assert answer.headers["content-type"].startswith("text/plain")
            return answer.text
        assert answer.status_code == 404, answer.text
        await asyncio.sleep(0.1)
    raise AssertionError(f"no checkpoint note of log {log}")
