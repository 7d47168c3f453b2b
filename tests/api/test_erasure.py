"""Erasure over HTTP on a real broker of the test's own (its data directory is grepped): sealed
fields from the first record, POST /audit/erase, compaction of the keys topic, a second replica,
every read path (GET /messages, its stream, /audit/records, `tail`, `export`), a wrong KEK, an
unknown subject, and the keys topic failing writes."""

import asyncio
import base64
import json
import os
import uuid
import zipfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from app.embedded import EmbeddedKafka, KafkaDistribution, free_port
from app.integrity.bundle import OPENED
from app.privacy.erasure import ERASED_MARKER
from app.privacy.keystore import KEYS_TOPIC_CONFIGS
from app.privacy.sealing import is_sealed
from app.services import StartupError
from tests.helpers import goverifier
from tests.helpers.app import client_for, services_of
from tests.helpers.broker import in_thread_start, in_thread_stop
from tests.helpers.kafka import describe_topic, records_of
from tests.helpers.polling import eventually
from tests.helpers.processes import run_cli
from tests.helpers.service import launch_service
from tests.helpers.sse import sse_events

SUBJECTS = 100
PER_SUBJECT = 100
# The cleaner looks for work every half second, not every 15 s: compaction within the test.
BROKER = {"log.cleaner.backoff.ms": "500"}


@pytest.fixture(scope="module")
def broker(
    tmp_path_factory: pytest.TempPathFactory, kafka_distribution: KafkaDistribution
) -> Iterator[EmbeddedKafka]:
    """A real broker whose segment files the tests grep."""
    kafka = EmbeddedKafka(
        tmp_path_factory.mktemp("erasure-kafka"),
        port=free_port(),
        distribution=kafka_distribution,
        overrides=BROKER,
        stop_timeout_s=20,
    )
    with kafka:
        yield kafka


def kek_file(tmp_path: Path, name: str = "kek") -> Path:
    path = tmp_path / name
    path.write_bytes(base64.b64encode(os.urandom(32)) + b"\n")
    path.chmod(0o600)
    return path


def settings_for(topic: str, kek: Path, **more: Any) -> dict[str, Any]:
    return {"audit_topic": topic, "erasure": "on", "erasure_kek_file": kek, **more}


def segment_bytes(broker: EmbeddedKafka, topic: str) -> bytes:
    """Every byte of the topic's files in the broker's log directory."""
    found = list(broker.log_dir.glob(f"{topic}-*/*"))
    assert found, f"no files of {topic} under {broker.log_dir}"
    return b"".join(path.read_bytes() for path in found if path.is_file())


def generate_key(folder: Path, key_id: str) -> Path:
    """`ractogateway-kafka keys generate`; the private key's path."""
    done = run_cli(
        ["keys", "generate", "--out", str(folder), "--key-id", key_id],
        cwd=folder.parent,
        env=plain_env(),
    )
    assert done.returncode == 0, done.stderr
    return folder / f"{key_id}.key.pem"


def plain_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RG_")}
    return {**env, **settings}


def verify(broker: EmbeddedKafka, topic: str, public: Path) -> tuple[int, dict[str, Any]]:
    """`verify --json` of the trail as an operator runs it: exit code and report."""
    done = run_cli(
        [
            "verify",
            "--json",
            "--topic",
            topic,
            "--checkpoints-topic",
            f"{topic}.checkpoints",
            "--public-key",
            str(public),
        ],
        cwd=public.parent,
        env=plain_env(RG_KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap_servers),
    )
    assert done.returncode in {0, 1}, done.stderr
    return done.returncode, json.loads(done.stdout)


def as_json(value: object) -> dict[str, Any]:
    """A record's value as the JSON object it holds."""
    if isinstance(value, bytes | str):
        value = json.loads(value)
    assert isinstance(value, dict)
    return value


def canary(subject: int, n: int) -> str:
    return f"CANARY-{subject:03d}-{n:03d}-zq"


async def test_erasure_shreds_one_subject_and_leaves_the_rest_readable(
    broker: EmbeddedKafka, tmp_path: Path
) -> None:
    topic = f"test-{uuid.uuid4().hex}"
    kek = kek_file(tmp_path)
    signing = {
        "audit_signing_key_file": generate_key(tmp_path / "keys", "erasure-test"),
        "audit_key_id": "erasure-test",
        "audit_checkpoint_s": 0.5,
    }
    async with client_for(
        broker.bootstrap_servers, **settings_for(topic, kek, **signing)
    ) as client:
        for subject in range(SUBJECTS):
            events = [
                {
                    "user_id": f"person-{subject}",
                    "model": "m",
                    "prompt": canary(subject, n),
                    "response": f"answer {n}",
                }
                for n in range(PER_SUBJECT)
            ]
            answer = await client.post("/audit/batch", json={"events": events})
            assert answer.status_code == 200, answer.text
        keys_topic = f"{topic}.keys"
        victim_key = (await records_of(broker.bootstrap_servers, keys_topic))[0]
        wrapped = as_json(victim_key.value)["wrapped"]
        victim = services_of(client).erasure
        assert victim is not None
        victim_hash = victim.kek.subject_hash("person-0")
        kids = victim.store.kids_of(victim_hash)
        # The first key written is person-0's (the first batch).
        assert victim_key.key == f"key/{victim_hash}/{kids[0]}"

        erased = await client.post(
            "/audit/erase", json={"subject": "person-0", "reason": "Art. 17 request #1"}
        )
        assert erased.status_code == 202, erased.text
        erasure_id = erased.json()["event_id"]
        assert erased.json()["status"] == "acked"
        marker = ERASED_MARKER.format(erasure=erasure_id)

        # GET /audit/records names the erasure in the erased subject's fields and opens the
        # others'; GET /messages forgot the erased subject's records and opens the others'.
        async def prompts(path: str, params: dict[str, Any]) -> set[str]:
            answer = await client.get(path, params={**params, "limit": 5})
            assert answer.status_code == 200, answer.text
            body = answer.json()
            return {m["value"]["prompt"] for m in body.get("records", body.get("messages"))}

        assert await prompts("/audit/records", {"user_id": "person-0"}) == {marker}
        found = await prompts("/audit/records", {"user_id": "person-1"})
        assert found
        assert found <= {canary(1, n) for n in range(PER_SUBJECT)}
        assert await prompts("/messages", {"key": "person-0"}) == set()
        last = SUBJECTS - 1
        found = await prompts("/messages", {"key": f"person-{last}"})
        assert found
        assert found <= {canary(last, n) for n in range(PER_SUBJECT)}

        records = await records_of(broker.bootstrap_servers, topic)
        assert len(records) == SUBJECTS * PER_SUBJECT + 1
        opened_ok = 0
        for message in records:
            value = as_json(message.value)
            if value["user_id"] == "rg-erasure":
                assert value["metadata"]["rg_erasure"]["subject"] == victim_hash
                assert "person-0" not in json.dumps(value)
                continue
            assert is_sealed(value["prompt"])
            assert is_sealed(value["response"])
            opened = victim.open_value(value)
            if value["user_id"] == "person-0":
                assert opened["prompt"] == marker
            else:
                assert opened["prompt"].startswith("CANARY-")
                opened_ok += 1
        assert opened_ok == (SUBJECTS - 1) * PER_SUBJECT

        # No canary in plaintext anywhere in the audit topic's segments, from the first record.
        assert b"CANARY-" not in segment_bytes(broker, topic)

        unknown = await client.post("/audit/erase", json={"subject": "nobody", "reason": "x"})
        assert unknown.status_code == 404
        assert unknown.json()["error"]["code"] == "unknown_subject"

        async def gone() -> bool:
            status = await client.get(f"/audit/erase/{erasure_id}")
            assert status.status_code == 200, status.text
            return bool(status.json()["gone_from_segments"])

        await eventually(gone, timeout_s=120)

        async def bytes_gone() -> bool:
            return wrapped.encode() not in segment_bytes(broker, keys_topic)

        # The replaced segments are deleted after file.delete.delay.ms.
        await eventually(bytes_gone, timeout_s=30)
        assert (await client.get("/audit/erase/no-such-erasure")).status_code == 404

    # The whole trail verifies (signed checkpoints, chain, digests over the ciphertext),
    # the erased subject's records included, and the erasure record is counted.
    code, report = verify(broker, topic, tmp_path / "keys" / "erasure-test.pub.pem")
    assert code == 0, report["problems"]
    assert report["problems"] == []
    assert report["signed"] is True
    assert report["records_checked"] == report["records_valid"] == SUBJECTS * PER_SUBJECT + 1
    assert report["erasure_records"] == 1

    # The evidence bundle keeps the records as stored (its proofs are over them) and shows the
    # sealed fields opened beside them, the erased subject's as the marker; both verifiers
    # take it, with one report.
    bundle = tmp_path / "bundle.zip"
    exported = run_cli(
        ["export", "--out", str(bundle)],
        cwd=tmp_path,
        env=plain_env(
            RG_KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap_servers,
            RG_AUDIT_TOPIC=topic,
            RG_AUDIT_SIGNING_KEY_FILE=str(signing["audit_signing_key_file"]),
            RG_AUDIT_KEY_ID="erasure-test",
            RG_ERASURE="on",
            RG_ERASURE_KEK_FILE=str(kek),
        ),
    )
    assert exported.returncode == 0, exported.stderr
    with zipfile.ZipFile(bundle) as archive:
        stored = archive.read("records.ndjson")
        views = [as_json(line) for line in archive.read(OPENED).splitlines()]
    assert b"CANARY-" not in stored
    assert len(views) == SUBJECTS * PER_SUBJECT
    shredded = [view for view in views if view["value"]["user_id"] == "person-0"]
    assert len(shredded) == PER_SUBJECT
    assert {view["value"]["prompt"] for view in shredded} == {marker}
    assert all(
        view["value"]["prompt"].startswith("CANARY-")
        for view in views
        if view["value"]["user_id"] != "person-0"
    )
    public = ["--public-key", str(tmp_path / "keys" / "erasure-test.pub.pem")]
    checked = run_cli(
        ["verify", "--json", "--bundle", str(bundle), *public], cwd=tmp_path, env=plain_env()
    )
    assert checked.returncode == 0, checked.stdout
    go_exit, go_report, go_err = goverifier.run(goverifier.build(), bundle, public)
    assert go_exit == 0, go_err
    assert go_report is not None
    assert goverifier.normalised(go_report) == goverifier.normalised(json.loads(checked.stdout))


async def test_an_erasure_on_one_replica_is_honoured_by_another_within_the_bound(
    broker: EmbeddedKafka, tmp_path: Path
) -> None:
    topic = f"test-{uuid.uuid4().hex}"
    kek = kek_file(tmp_path)
    bound_s = 3.0
    settings = settings_for(topic, kek, erasure_key_cache_s=bound_s)
    async with (
        client_for(broker.bootstrap_servers, **settings) as one,
        client_for(broker.bootstrap_servers, **settings) as two,
    ):
        event = {"user_id": "carol", "model": "m", "prompt": "CANARY-c", "response": "r"}
        assert (await one.post("/audit", json=event)).status_code == 201

        async def two_reads_it() -> bool:
            page = (await two.get("/messages", params={"key": "carol"})).json()
            return bool(page["count"]) and page["messages"][0]["value"]["prompt"] == "CANARY-c"

        # The other replica opens what this one sealed.
        await eventually(two_reads_it, timeout_s=10)
        erasure_two = services_of(two).erasure
        assert erasure_two is not None
        hashed = erasure_two.kek.subject_hash("carol")

        async def two_knows() -> bool:
            return bool(erasure_two.store.kids_of(hashed))

        await eventually(two_knows, timeout_s=bound_s)
        (kid,) = erasure_two.store.kids_of(hashed)
        erased = await one.post("/audit/erase", json={"subject": "carol", "reason": "r"})
        assert erased.status_code == 202
        started = asyncio.get_running_loop().time()

        async def two_forgot() -> bool:
            return erasure_two.store.key_by_kid(kid) is None

        await eventually(two_forgot, timeout_s=bound_s)
        assert asyncio.get_running_loop().time() - started <= bound_s
        erasure_id = erased.json()["event_id"]
        assert erasure_two.store.erasure_of(kid) == erasure_id
        # Purged from the other replica's GET /messages buffer too.
        page = (await two.get("/messages", params={"key": "carol"})).json()
        assert page["count"] == 0
    # A replica started afterwards reads the record back: its fields name the erasure.
    async with client_for(broker.bootstrap_servers, **settings) as three:

        async def shown() -> bool:
            page = (await three.get("/messages", params={"key": "carol"})).json()
            return bool(page["count"])

        await eventually(shown, timeout_s=10)
        (message,) = (await three.get("/messages", params={"key": "carol"})).json()["messages"]
        marker = ERASED_MARKER.format(erasure=erasure_id)
        assert message["value"]["prompt"] == marker
        assert message["value"]["response"] == marker


async def next_message(events: AsyncIterator[dict[str, str]]) -> dict[str, Any]:
    """The next record a GET /messages/stream sends, decoded."""
    while True:
        event = await asyncio.wait_for(anext(events), 20)
        if event.get("event") == "message":
            return as_json(event["data"])


async def test_the_stream_search_and_tail_open_sealed_fields_and_name_an_erasure(
    broker: EmbeddedKafka, tmp_path: Path
) -> None:
    topic, copies = f"test-{uuid.uuid4().hex}", f"test-{uuid.uuid4().hex}"
    kek = kek_file(tmp_path)
    # Record schema v2's structured messages: sealed value by value, opened to what was sent.
    asked = [{"role": "user", "parts": [{"type": "text", "content": "CANARY-structured"}]}]
    service = launch_service(
        broker.bootstrap_servers,
        tmp_path / "service",
        audit_topic=topic,
        # A second topic GET /messages keeps, where a copy of a sealed record turns up later.
        messages_topics=f"{topic},{copies}",
        erasure="on",
        erasure_kek_file=str(kek),
    )
    try:
        await asyncio.to_thread(service.wait_ready)
        async with (
            httpx.AsyncClient(base_url=service.url, timeout=30) as client,
            client.stream("GET", "/messages/stream") as response,
        ):
            events = sse_events(response)
            assert (await anext(events))["comment"] == "subscribed"
            for user in ("dave", "erin"):
                event = {"user_id": user, "model": "m", "prompt": f"P-{user}", "response": "r"}
                written = await client.post("/audit", json={**event, "input_messages": asked})
                assert written.status_code == 201, written.text
            streamed = [await next_message(events) for _ in range(2)]
            assert {m["value"]["prompt"] for m in streamed} == {"P-dave", "P-erin"}

            async def prompt_of(user: str) -> str:
                answer = await client.get("/audit/records", params={"user_id": user})
                assert answer.status_code == 200, answer.text
                (record,) = answer.json()["records"]
                prompt: str = record["value"]["prompt"]
                return prompt

            assert await prompt_of("dave") == "P-dave"
            erased = await client.post("/audit/erase", json={"subject": "dave", "reason": "r"})
            assert erased.status_code == 202, erased.text
            marker = ERASED_MARKER.format(erasure=erased.json()["event_id"])

            async def dave_erased() -> bool:
                return await prompt_of("dave") == marker

            await eventually(dave_erased, timeout_s=10)
            assert await prompt_of("erin") == "P-erin"
            (record,) = (await client.get("/audit/records", params={"user_id": "erin"})).json()[
                "records"
            ]
            assert record["value"]["input_messages"] == asked
            assert (await next_message(events))["value"]["user_id"] == "rg-erasure"
            # A copy of dave's stored record read after the erasure: streamed with the marker.
            (stored,) = [
                as_json(m.value)
                for m in await records_of(broker.bootstrap_servers, topic)
                if m.key in {"dave", b"dave"}
            ]
            copy = {"topic": copies, "key": "dave", "value": stored}
            assert (await client.post("/publish", json=copy)).status_code == 201
            shown = await next_message(events)
            assert (shown["topic"], shown["value"]["prompt"]) == (copies, marker)
    finally:
        assert service.stop() == 0, service.log()
    # `tail` opens what it can and names the erasure in the rest.
    done = run_cli(
        ["tail", topic, "--from-beginning", "--json", "--max-messages", "3"],
        cwd=tmp_path,
        env=plain_env(
            RG_KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap_servers,
            RG_AUDIT_TOPIC=topic,
            RG_ERASURE="on",
            RG_ERASURE_KEK_FILE=str(kek),
        ),
    )
    assert done.returncode == 0, done.stderr
    values = {
        v["user_id"]: v for v in (json.loads(line)["value"] for line in done.stdout.splitlines())
    }
    assert (values["dave"]["prompt"], values["dave"]["response"]) == (marker, marker)
    assert (values["erin"]["prompt"], values["erin"]["response"]) == ("P-erin", "r")
    assert "rg-erasure" in values
    assert b"CANARY-" not in segment_bytes(broker, topic)


async def test_a_wrong_kek_stops_the_start_naming_the_setting(
    broker: EmbeddedKafka, tmp_path: Path
) -> None:
    topic = f"test-{uuid.uuid4().hex}"
    async with client_for(
        broker.bootstrap_servers, **settings_for(topic, kek_file(tmp_path))
    ) as client:
        event = {"user_id": "dave", "model": "m", "prompt": "p", "response": "r"}
        assert (await client.post("/audit", json=event)).status_code == 201
    with pytest.raises(StartupError) as refused:
        async with client_for(
            broker.bootstrap_servers, **settings_for(topic, kek_file(tmp_path, "other"))
        ):
            pass
    message = str(refused.value)
    assert "RG_ERASURE_KEK_FILE" in message
    assert "\n" not in message
    # The console script: exit status 3 and one line naming the setting.
    done = run_cli(
        ["serve"],
        cwd=tmp_path,
        env=plain_env(
            RG_KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap_servers,
            RG_AUDIT_TOPIC=topic,
            RG_PORT=str(free_port()),
            RG_ERASURE="on",
            RG_ERASURE_KEK_FILE=str(tmp_path / "other"),
        ),
    )
    assert done.returncode == 3, done.stderr
    named = [line for line in done.stderr.splitlines() if "RG_ERASURE_KEK_FILE" in line]
    assert len(named) == 1, done.stderr
    assert "does not unwrap" in named[0]


async def test_entries_of_the_keys_topic_not_written_by_the_service_are_skipped(
    broker: EmbeddedKafka, tmp_path: Path
) -> None:
    # Anyone who may write the keys topic chooses its bytes. A record that is no key or erasure
    # entry stopped the reading at its start: retried every 2 s for good, the store never fresh,
    # every write of the service refused; a key that did not unwrap refused the start. Such
    # records are skipped (and logged); what follows is read.
    topic = f"test-{uuid.uuid4().hex}"
    kek = kek_file(tmp_path)
    event = {"user_id": "erin", "model": "m", "prompt": "p", "response": "r"}
    async with client_for(broker.bootstrap_servers, **settings_for(topic, kek)) as client:
        assert (await client.post("/audit", json=event)).status_code == 201
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers)
    await producer.start()
    try:
        for key, value in [
            (b"key/mallory/k1", b"[" * 100_000),  # past the JSON parser's recursion limit
            (b"key/mallory/k2", b"not json"),
            (b"key/mallory/k3", b"[]"),
            (b"erased/mallory", b"{}"),
            (b"erased/mallory", b'{"erasure": 5, "kids": "k1"}'),
            # Well formed, but not wrapped by this KEK: among keys that do unwrap, not a
            # wrong KEK (which stops the start: the test above).
            (b"key/mallory/k4", b'{"wrapped": "%s"}' % base64.urlsafe_b64encode(os.urandom(60))),
        ]:
            await producer.send_and_wait(f"{topic}.keys", value, key=key)
    finally:
        await producer.stop()
    async with client_for(broker.bootstrap_servers, **settings_for(topic, kek)) as client:
        again = await client.post("/audit", json={**event, "user_id": "frank"})
        erased = await client.post("/audit/erase", json={"subject": "erin", "reason": "r"})
    assert again.status_code == 201, again.text
    assert erased.status_code == 202, erased.text


async def test_keys_topic_unreachable_answers_503_and_writes_nothing(
    tmp_path: Path, kafka_distribution: KafkaDistribution
) -> None:
    topic = f"test-{uuid.uuid4().hex}"
    kafka = EmbeddedKafka(
        tmp_path / "kafka", port=free_port(), distribution=kafka_distribution, stop_timeout_s=20
    )
    with kafka:
        async with client_for(
            kafka.bootstrap_servers,
            **settings_for(topic, kek_file(tmp_path), erasure_key_cache_s=2.0),
        ) as client:
            event = {"user_id": "erin", "model": "m", "prompt": "CANARY-e", "response": "r"}
            assert (await client.post("/audit", json=event)).status_code == 201
            await in_thread_stop(kafka)
            await asyncio.sleep(3.0)
            answer = await client.post("/audit", json={**event, "user_id": "frank"})
            assert answer.status_code == 503, answer.text
            assert answer.headers["retry-after"]
            again = await client.post("/audit", json=event)
            assert again.status_code == 503
            assert again.json()["error"]["code"] == "erasure_keys_unavailable"
            # Back: writes are taken again once the keys topic is read (and the clients close
            # cleanly).
            await in_thread_start(kafka)

            async def taken() -> bool:
                return (await client.post("/audit", json=event)).status_code == 201

            await eventually(taken, timeout_s=60)
        assert b"CANARY-" not in b"".join(
            p.read_bytes() for p in kafka.log_dir.glob(f"{topic}-*/*") if p.is_file()
        )


async def set_keys_topic_configs(bootstrap: str, topic: str, configs: dict[str, str]) -> None:
    """Set the keys topic's configs (all of them: AlterConfigs replaces the topic's set), and
    wait until the broker applies them (it learns them from the metadata log, just after)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs)])
    finally:
        await admin.close()
    default = str(1024 * 1024 + 12)  # the broker's message.max.bytes

    async def applied() -> bool:
        found = (await describe_topic(bootstrap, topic)).configs["max.message.bytes"]
        return found == configs.get("max.message.bytes", default)

    await eventually(applied, timeout_s=10)


async def test_a_keys_topic_that_takes_no_write_refuses_new_subjects_and_writes_nothing(
    broker: EmbeddedKafka, tmp_path: Path
) -> None:
    """A fault of the keys topic alone: its max.message.bytes set below a key's size, so the
    broker refuses every write to it (MESSAGE_TOO_LARGE) while the audit topic takes records.
    (min.insync.replicas above the replica count does not do it: the broker caps it at the
    replication factor.) A new subject's key cannot be stored: its record answers 503 and
    never reaches the trail, sealed or not."""
    topic = f"test-{uuid.uuid4().hex}"
    settings = settings_for(topic, kek_file(tmp_path), erasure_key_cache_s=2.0)
    keys_topic = f"{topic}.keys"
    async with client_for(broker.bootstrap_servers, **settings) as client:
        known = {"user_id": "ivan", "model": "m", "prompt": "CANARY-i", "response": "r"}
        assert (await client.post("/audit", json=known)).status_code == 201
        await set_keys_topic_configs(
            broker.bootstrap_servers, keys_topic, {**KEYS_TOPIC_CONFIGS, "max.message.bytes": "64"}
        )
        new = {**known, "user_id": "judy", "prompt": "CANARY-j"}
        refused = await client.post("/audit", json=new)
        assert refused.status_code == 503, refused.text
        assert refused.headers["retry-after"]
        assert refused.json()["error"]["code"] == "erasure_keys_unavailable"
        # The audit topic itself takes records: a subject whose key is stored is written.
        assert (await client.post("/audit", json=known)).status_code == 201
        users = [
            as_json(m.value)["user_id"] for m in await records_of(broker.bootstrap_servers, topic)
        ]
        assert users == ["ivan", "ivan"]

        await set_keys_topic_configs(broker.bootstrap_servers, keys_topic, KEYS_TOPIC_CONFIGS)

        async def taken() -> bool:
            answer = await client.post("/audit", json=new)
            return answer.status_code == 201

        await eventually(taken, timeout_s=30)
    values = [as_json(m.value) for m in await records_of(broker.bootstrap_servers, topic)]
    assert sorted(v["user_id"] for v in values) == ["ivan", "ivan", "judy"]
    assert all(is_sealed(v["prompt"]) for v in values)


async def test_erase_needs_its_own_scope_and_the_console_does_the_same(
    broker: EmbeddedKafka, tmp_path: Path
) -> None:
    topic = f"test-{uuid.uuid4().hex}"
    kek = kek_file(tmp_path)
    keys = {"w": ["audit:write", "publish:write", "messages:read"], "e": ["audit:erase"]}
    settings = settings_for(topic, kek, api_keys=keys)
    async with client_for(broker.bootstrap_servers, **settings) as client:
        event = {"user_id": "gina", "model": "m", "prompt": "p", "response": "r"}
        written = await client.post("/audit", json=event, headers={"X-API-Key": "w"})
        assert written.status_code == 201
        body = {"subject": "gina", "reason": "request 7"}
        refused = await client.post("/audit/erase", json=body, headers={"X-API-Key": "w"})
        assert refused.status_code == 403
    done = run_cli(
        ["erase", "--subject", "gina", "--reason", "request 7"],
        cwd=tmp_path,
        env=plain_env(
            RG_KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap_servers,
            RG_AUDIT_TOPIC=topic,
            RG_ERASURE="on",
            RG_ERASURE_KEK_FILE=str(kek),
        ),
    )
    assert done.returncode == 0, done.stderr
    receipt = json.loads(done.stdout)
    assert receipt["status"] == "acked"
    again = run_cli(
        ["erase", "--subject", "gina", "--reason", "request 7"],
        cwd=tmp_path,
        env=plain_env(
            RG_KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap_servers,
            RG_AUDIT_TOPIC=topic,
            RG_ERASURE="on",
            RG_ERASURE_KEK_FILE=str(kek),
        ),
    )
    assert again.returncode == 1
    assert "no key of that subject" in again.stderr
