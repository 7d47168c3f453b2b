"""A trail written through the served process, with a signing key, verifies clean with the
public key it serves, and the receipts its clients kept verify too; the same trail, one record
rewritten by an independent producer, does not."""

import asyncio
import base64
import hashlib
import json
import os
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from app.integrity.checkpoint import Checkpoint, writer_log
from app.integrity.keys import load_signing_key
from tests.helpers.integrity import Record, read_raw, spec_leaf, spec_root, write_records
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
        signed_size = int(writers_note.split("\n")[1])
        answer = await client.get(
            "/audit/consistency", params={"log": "writers", "old": 1, "new": signed_size}
        )
        assert answer.status_code == 200, answer.text
        writers_proof = [base64.b64decode(line) for line in answer.text.splitlines()]
        beyond = await client.get(
            "/audit/consistency", params={"log": "writers", "old": 1, "new": signed_size + 99}
        )
        assert beyond.status_code == 404, beyond.text
        both = await client.get(
            "/audit/consistency",
            params={"log": "writers", "writer": latest["writer"], "old": 0, "new": 1},
        )
        assert both.status_code == 422, both.text
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
    # Go's sumdb/tlog accepts the served consistency proof of the log of writers.
    assert (
        tlogcheck.consistency(
            1, signed_size, writers_roots[1], writers_roots[signed_size], writers_proof
        )
        is None
    )
    opened = tlogcheck.checkpoint(
        own_note.encode(), writer_log(origin, writer), [served["verifier_key"]]
    )
    assert isinstance(opened, tuple), opened
    assert opened[1] == go_roots[opened[0]], opened


async def served_note(client: httpx.AsyncClient, log: str) -> str:
    """GET /audit/checkpoint?log=`log` once it answers (the proof reader caught up)."""
    for _ in range(300):
        answer = await client.get("/audit/checkpoint", params={"log": log})
        if answer.status_code == 200:
            assert answer.headers["content-type"].startswith("text/plain")
            return answer.text
        assert answer.status_code == 404, answer.text
        await asyncio.sleep(0.1)
    raise AssertionError(f"no checkpoint note of log {log}")


async def test_a_writer_deleted_or_cut_back_or_resigned_is_found_by_the_log_of_writers(
    kafka_bootstrap: str, tmp_path: Path, start_service: Launch, create_topic: Any
) -> None:
    """Two runs of the service write one trail; copies of it to new topics, the writers topic
    kept: without one writer's records and checkpoints it is `writer_missing`; cut back to an
    earlier seq with its later checkpoints gone it is a `rollback`; a checkpoint the key holder
    signs again over a rewritten record is a `fork`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RG_")}
    keys = tmp_path / "keys"
    made = run_cli(["keys", "generate", "--out", str(keys)], cwd=tmp_path, env=env)
    assert made.returncode == 0, made.stderr
    (private,) = keys.glob("*.key.pem")
    topic = f"test-{uuid.uuid4().hex}"
    for run in range(2):
        service = start_service(
            kafka_bootstrap,
            tmp_path / f"run{run}",
            audit_topic=topic,
            audit_signing_key_file=str(private),
            audit_checkpoint_s="0.2",
            audit_writers_s="0.2",
        )
        service.wait_ready()
        async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
            for n in range(6):
                event = {"user_id": "u", "model": "m", "prompt": f"p{run}-{n}", "response": "r"}
                answer = await client.post("/audit", json=event)
                assert answer.status_code == 201, answer.text
            (served,) = (await client.get("/audit/keys")).json()["keys"]
        assert service.stop() == 0
    public = tmp_path / "served.pem"
    public.write_text(served["public_key_pem"])
    records = await read_raw(kafka_bootstrap, topic)
    checkpoints = await read_raw(kafka_bootstrap, f"{topic}.checkpoints")
    writers = f"{topic}.writers"

    def writer_of(record: Record) -> str:
        return record.header("rg-writer")

    def seq_of(record: Record) -> int:
        return int(record.header("rg-seq"))

    # The runs in the order they started, as the log of writers has them.
    starts = [
        json.loads(e.value)["writer"]
        for e in await read_raw(kafka_bootstrap, writers)
        if json.loads(e.value)["kind"] == "start"
    ]
    first, second = starts
    assert {writer_of(r) for r in records} == {first, second}

    async def copy(
        keep_record: Any, keep_checkpoint: Any, extra: list[Any] | None = None
    ) -> tuple[int, dict[str, Any]]:
        audit_copy, checkpoints_copy = await create_topic(1), await create_topic(1)
        await write_records(kafka_bootstrap, audit_copy, [r for r in records if keep_record(r)])
        kept = [c for c in checkpoints if keep_checkpoint(c)] + (extra or [])
        await write_records(kafka_bootstrap, checkpoints_copy, kept)
        return verify(
            kafka_bootstrap,
            tmp_path,
            audit_copy,
            "--checkpoints-topic",
            checkpoints_copy,
            "--writers-topic",
            writers,
            "--public-key",
            str(public),
        )

    code, report = verify(kafka_bootstrap, tmp_path, topic, "--public-key", str(public), "--strict")
    assert code == 0, report

    # Deleted whole: no record and no checkpoint of the second writer left.
    code, report = await copy(lambda r: writer_of(r) != second, lambda c: c.key != second.encode())
    assert code == 1
    assert [(p["kind"], p["writer"], p["seq"], p["last_seq"]) for p in report["problems"]] == [
        ("writer_missing", second, 0, 5)
    ], report

    # Cut back to seq 2 with its later checkpoints: only the log of writers remembers.
    def early(checkpoint: Any) -> bool:
        if checkpoint.key != first.encode():
            return True
        return bool(json.loads(checkpoint.value)["seq"] <= 2)

    code, report = await copy(lambda r: writer_of(r) != first or seq_of(r) <= 2, early)
    assert code == 1
    assert [(p["kind"], p["writer"], p["seq"], p["last_seq"]) for p in report["problems"]] == [
        ("rollback", first, 3, 5)
    ], report

    # The key holder rewrites record 1 of the first writer and signs its tree of 6 again.
    mine = sorted((r for r in records if writer_of(r) == first), key=seq_of)
    digests = [r.header("rg-digest")[7:] for r in mine]
    digests[1] = hashlib.sha256(b'{"prompt":"rewritten"}').hexdigest()
    root = spec_root([spec_leaf(first, n, d) for n, d in enumerate(digests)])
    last = max(
        (Checkpoint.from_json(c.value) for c in checkpoints if c.key == first.encode()),
        key=lambda c: c.seq,
    )
    assert last.count == 6
    key = load_signing_key(private, allow_insecure=True)
    resigned = replace(last, tree=root.hex()).sign(key.private, name=f"ractogateway-kafka/{topic}")
    forged = Record(resigned.to_bytes(), [], key=first.encode())
    code, report = await copy(lambda r: True, lambda c: True, [forged])
    assert code == 1
    forks = [(p["kind"], p["writer"], p["seq"]) for p in report["problems"] if p["kind"] == "fork"]
    assert forks == [("fork", first, 5)], report
