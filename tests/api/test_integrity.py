"""GET /audit/checkpoint, GET /audit/keys and the checkpoints topic, on the session broker.

Until the write side's chain (app/integrity/chain.py) is merged, the service's chain is a
stand-in the test moves by hand (tests/helpers/unit_chain.py): those tests say `unit`, the
broker, the producer, the topics and the HTTP answers in them are real.
"""

import asyncio
import os
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from aiokafka.admin import AIOKafkaAdminClient
from asgi_lifespan import LifespanManager
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from app.integrity.checkpoint import Checkpoint, verify_note, verify_signature
from app.integrity.note import Verifier, open_note
from app.main import create_app
from app.services import Services
from app.settings import Settings
from tests.helpers.app import assert_contract_error
from tests.helpers.kafka import describe_topic, records_of
from tests.helpers.processes import run_cli
from tests.helpers.service import launch_service
from tests.helpers.unit_chain import At, UnitChain

EVENT = {"user_id": "u1", "model": "m", "prompt": "p", "response": "r"}


def generate_key(folder: Path, key_id: str) -> Path:
    """`ractogateway-kafka keys generate`, as an operator runs it; the private key's path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RG_")}
    done = run_cli(
        ["keys", "generate", "--out", str(folder), "--key-id", key_id], cwd=folder.parent, env=env
    )
    assert done.returncode == 0, done.stderr
    assert key_id in done.stdout
    return folder / f"{key_id}.key.pem"


@asynccontextmanager
async def signing_service(
    bootstrap: str, chain: UnitChain | None, **settings: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, Services]]:
    """The app in process with `chain` standing in for the writer's chain."""
    app = create_app(Settings(_env_file=None, kafka_bootstrap_servers=[bootstrap], **settings))
    services: Services = app.state.services
    services.checkpoints.chain = chain
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://rg") as client:
            yield client, services


async def eventually(condition: Any, timeout_s: float = 30) -> None:
    for _ in range(int(timeout_s / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def topic_exists(bootstrap: str, name: str) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return name in await admin.list_topics()
    finally:
        await admin.close()


async def test_unit_chain_checkpoints_verify_with_the_served_key_and_only_when_new(
    kafka_bootstrap: str, topic: str, tmp_path: Path
) -> None:
    key_file = generate_key(tmp_path / "keys", "current-key")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    retired = tmp_path / "retired"
    retired.mkdir()
    old_public = generate_key(tmp_path / "old", "old-key").with_name("old-key.pub.pem")
    (retired / "old-key.pem").write_bytes(old_public.read_bytes())
    chain = UnitChain()
    async with signing_service(
        kafka_bootstrap,
        chain,
        audit_topic=topic,
        audit_signing_key_file=key_file,
        audit_key_id="current-key",
        audit_retired_keys_dir=retired,
        audit_checkpoint_s=0.05,
    ) as (client, services):
        assert_contract_error(await client.get("/audit/checkpoint"), 404, "no_checkpoint")
        keys = (await client.get("/audit/keys")).json()["keys"]
        assert [(k["key_id"], k["current"], k["algorithm"]) for k in keys] == [
            ("current-key", True, "ed25519"),
            ("old-key", False, "ed25519"),
        ]
        assert keys[1]["public_key_pem"] == old_public.read_text()
        # The same keys in C2SP verifier-key form, named by the default log origin.
        verifiers = [Verifier.parse(k["verifier_key"]) for k in keys]
        assert [v.name for v in verifiers] == [f"ractogateway-kafka/{topic}"] * 2
        assert (await client.post("/audit", json=EVENT)).status_code == 201
        chain.head, chain.tree = At(0, "1f" * 32), b"\x1f" * 32
        await eventually(lambda: services.checkpoints.written == 1)
        answer = await client.get("/audit/checkpoint")
        assert answer.status_code == 200
        checkpoint = Checkpoint.from_json(answer.json())
        assert (checkpoint.version, checkpoint.writer, checkpoint.seq, checkpoint.chain) == (
            2,
            chain.writer_id,
            0,
            "1f" * 32,
        )
        assert answer.json()["tree"] == "sha256:" + "1f" * 32
        public = load_pem_public_key(keys[0]["public_key_pem"].encode())
        assert verify_signature(checkpoint, public)  # type: ignore[arg-type]
        assert verify_note(checkpoint, public)  # type: ignore[arg-type]
        opened = open_note(checkpoint.note.encode(), verifiers[:1])
        assert opened.text.startswith(f"ractogateway-kafka/{topic}/writer/{chain.writer_id}\n1\n")
        await asyncio.sleep(0.5)  # ten ticks with nothing new
        assert services.checkpoints.written == 1
        metrics = (await client.get("/metrics")).text
        assert "rg_audit_checkpoints_total 1.0" in metrics
        assert "rg_audit_checkpoint_seq 0.0" in metrics
    checkpoints_topic = f"{topic}.checkpoints"
    # The log of writers' notes share the topic, keyed `writers`.
    (record,) = [
        r for r in await records_of(kafka_bootstrap, checkpoints_topic) if r.key != "writers"
    ]
    assert record.key == chain.writer_id
    assert Checkpoint.from_json(record.value) == checkpoint
    described = await describe_topic(kafka_bootstrap, checkpoints_topic)
    assert described.partitions == 1
    assert described.configs["cleanup.policy"] == "delete"
    # The log of writers: created like the checkpoints topic; the writer's start first (before
    # its checkpoint), its stop at shutdown with the durable head.
    described = await describe_topic(kafka_bootstrap, f"{topic}.writers")
    assert described.partitions == 1
    assert described.configs["cleanup.policy"] == "delete"
    entries = await records_of(kafka_bootstrap, f"{topic}.writers")
    assert {e.key for e in entries} == {chain.writer_id}
    values = [e.value for e in entries if isinstance(e.value, dict)]
    assert len(values) == len(entries)
    assert values[0] == {
        "kind": "start",
        "writer": chain.writer_id,
        "time": values[0]["time"],
        "origin": f"ractogateway-kafka/{topic}/writer/{chain.writer_id}",
    }
    assert {k: v for k, v in values[-1].items() if k != "time"} == {
        "kind": "stop",
        "writer": chain.writer_id,
        "size": 1,
        "root": "sha256:" + "1f" * 32,
    }


async def test_unit_chain_the_last_checkpoint_is_written_at_shutdown(
    kafka_bootstrap: str, topic: str, tmp_path: Path
) -> None:
    key_file = generate_key(tmp_path / "keys", "k")
    chain = UnitChain()
    async with signing_service(
        kafka_bootstrap,
        chain,
        audit_topic=topic,
        audit_signing_key_file=key_file,
        audit_checkpoint_s=3600,  # the timer never fires: only the shutdown writes
        audit_log_origin="audit.example.com/trail",
    ) as (client, services):
        assert (await client.post("/audit", json=EVENT)).status_code == 201
        chain.head = At(0, "2e" * 32)
        chain.void = {}
        assert services.checkpoints.written == 0
        (served,) = (await client.get("/audit/keys")).json()["keys"]
    (record,) = [
        r for r in await records_of(kafka_bootstrap, f"{topic}.checkpoints") if r.key != "writers"
    ]
    written = Checkpoint.from_json(record.value)
    assert (written.seq, written.chain, written.key_id) == (
        0,
        "2e" * 32,
        services.checkpoints.public_keys[0].key_id,
    )
    assert verify_signature(written, services.checkpoints.public_keys[0].key)
    # The note is signed under RG_AUDIT_LOG_ORIGIN: the served verifier key opens it.
    assert written.key_name == "audit.example.com/trail"
    opened = open_note(written.note.encode(), [Verifier.parse(served["verifier_key"])])
    assert opened.text.startswith(f"audit.example.com/trail/writer/{chain.writer_id}\n1\n")


async def test_without_a_key_no_checkpoints_and_404_unsigned(
    kafka_bootstrap: str, topic: str
) -> None:
    async with signing_service(
        kafka_bootstrap, UnitChain(head=At(0, "3d" * 32)), audit_topic=topic
    ) as (
        client,
        services,
    ):
        assert_contract_error(await client.get("/audit/checkpoint"), 404, "unsigned")
        assert (await client.get("/audit/keys")).json() == {"keys": []}
        assert (await client.post("/audit", json=EVENT)).status_code == 201
        assert services.checkpoints.checkpointer is None
    assert not await topic_exists(kafka_bootstrap, f"{topic}.checkpoints")


def test_a_bad_signing_key_file_stops_the_start_naming_it(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    bad = tmp_path / "not-a-key.pem"
    bad.write_text("-----BEGIN PRIVATE KEY-----\nbm9wZQ==\n-----END PRIVATE KEY-----\n")
    service = launch_service(kafka_bootstrap, tmp_path / "run", audit_signing_key_file=str(bad))
    assert service.process.wait(timeout=60) == 3
    assert f"RG_AUDIT_SIGNING_KEY_FILE {bad}" in service.log()
