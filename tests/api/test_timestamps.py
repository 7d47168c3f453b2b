"""Trusted time on the session broker with a real timestamp authority (OpenSSL's `ts -reply`
behind HTTP on loopback): every record is covered by a timestamped note of the log of writers
within one interval and a margin, `verify --tsa-ca` finds the trail clean and reports an edited
note time, a token moved to another note and a token from an authority outside the CA; an
authority that is down holds no write back, is counted, and the tokens resume when it is back."""

import asyncio
import json
import os
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from asgi_lifespan import LifespanManager
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.integrity.checkpoint import rfc3339
from app.integrity.keys import load_signing_key
from app.integrity.timestamp import TimestampRecord, timestamp_query
from app.integrity.writers import WriterEntry, WritersNote
from app.main import create_app
from app.settings import Settings
from tests.helpers.integrity import Record, read_raw
from tests.helpers.metrics import metric
from tests.helpers.polling import eventually
from tests.helpers.processes import run_cli
from tests.helpers.tsa import Authority, TsaServer

EVENT = {"user_id": "u1", "model": "m", "prompt": "p", "response": "r"}
ORIGIN = "ractogateway-kafka/tsa-tests"
INTERVAL_S = 1.0
WRITERS_S = 0.2
# Beyond the interval: the head entry (WRITERS_S), the proof index's read of it (its fetches
# wait up to 250 ms) and the authority's answer.
MARGIN_S = 2.0


def signing_key(folder: Path) -> Path:
    """An Ed25519 private key file, owner-only, as `keys generate` writes one."""
    path = folder / "signing.key.pem"
    path.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    os.chmod(path, 0o600)
    return path


@asynccontextmanager
async def stamping_service(
    bootstrap: str, folder: Path, tsa: TsaServer, **settings: Any
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(
        Settings(
            _env_file=None,
            kafka_bootstrap_servers=[bootstrap],
            audit_signing_key_file=signing_key(folder),
            audit_log_origin=ORIGIN,
            audit_checkpoint_s=0.2,
            audit_writers_s=WRITERS_S,
            audit_tsa_urls=[tsa.url],
            audit_tsa_ca_file=tsa.authority.ca_file,
            audit_tsa_interval_s=INTERVAL_S,
            **settings,
        )
    )
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=60) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://rg") as client:
            yield client


def verify(bootstrap: str, folder: Path, topic: str, *extra: str) -> tuple[int, dict[str, Any]]:
    """`ractogateway-kafka verify --json` on `topic`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RG_")}
    env["RG_KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
    done = run_cli(["verify", "--topic", topic, "--json", *extra], cwd=folder, env=env)
    assert done.returncode in {0, 1}, done.stderr
    return done.returncode, json.loads(done.stdout)


def stamps_of(checkpoints: list[Record]) -> list[TimestampRecord]:
    return [TimestampRecord.from_json(r.value) for r in checkpoints if r.key == b"timestamps"]


def covered_at(
    entries: list[Record], stamps: list[TimestampRecord], writer: str, seq: int
) -> datetime | None:
    """The genTime of the first token whose note covers the writer's position `seq`: a note
    of size s covers the heads among the log's first s entries."""
    best: datetime | None = None
    for stamp in stamps:
        heads = [WriterEntry.from_json(e.value) for e in entries[: stamp.size]]
        if any(h.writer == writer and h.size > seq for h in heads if h.kind != "start"):
            moment = datetime.fromisoformat(stamp.time)
            best = moment if best is None or moment < best else best
    return best


async def test_every_record_is_stamped_within_an_interval_and_verify_checks_the_tokens(
    kafka_bootstrap: str,
    tmp_path: Path,
    tsa_server: TsaServer,
    timestamp_authority: Authority,
    outside_authority: Authority,
) -> None:
    topic = f"test-{uuid.uuid4().hex}"
    written: list[tuple[str, int, datetime]] = []
    async with stamping_service(kafka_bootstrap, tmp_path, tsa_server, audit_topic=topic) as client:
        for _ in range(15):
            answer = await client.post("/audit", json=EVENT)
            assert answer.status_code == 201, answer.text
            receipt = answer.json()
            written.append((receipt["writer"], receipt["seq"], datetime.now().astimezone()))
            await asyncio.sleep(0.2)

        async def all_covered() -> bool:
            entries = await read_raw(kafka_bootstrap, f"{topic}.writers")
            stamps = stamps_of(await read_raw(kafka_bootstrap, f"{topic}.checkpoints"))
            return all(covered_at(entries, stamps, w, s) is not None for w, s, _ in written)

        await eventually(all_covered, timeout_s=30)
        served = (await client.get("/metrics")).text
        assert metric(served, "rg_audit_tsa_tokens_total") >= 1
        assert 0 <= metric(served, "rg_audit_tsa_last_token_age_seconds") < 30
        # The coverage of GET /messages passes the tokens over (not "no trusted checkpoint").
        ignored = 'rg_messages_records_skipped_total{reason="checkpoint_ignored"}'
        assert metric(served, ignored) == 0
        keys = (await client.get("/audit/keys")).json()["keys"]

    entries = await read_raw(kafka_bootstrap, f"{topic}.writers")
    checkpoints = await read_raw(kafka_bootstrap, f"{topic}.checkpoints")
    stamps = stamps_of(checkpoints)
    for writer, seq, at in written:
        stamped = covered_at(entries, stamps, writer, seq)
        assert stamped is not None
        # genTime has whole seconds (the authority's accuracy is 1 s): one more allowed.
        assert stamped - at <= timedelta(seconds=INTERVAL_S + WRITERS_S + MARGIN_S + 1), (
            seq,
            stamped,
            at,
        )
    public = tmp_path / "public.pem"
    public.write_text(keys[0]["public_key_pem"])
    ca = str(timestamp_authority.ca_file)
    code, report = verify(kafka_bootstrap, tmp_path, topic, "--public-key", str(public),
                          "--tsa-ca", ca)  # fmt: skip
    assert code == 0, report["problems"]
    assert report["timestamps_checked"] == report["timestamps_valid"] == len(stamps)
    assert [w for w in report["warnings"] if w["kind"] == "not_timestamped"] == []
    # The wrong CA: every token is reported, with the note it concerns.
    code, report = verify(kafka_bootstrap, tmp_path, topic, "--public-key", str(public),
                          "--tsa-ca", str(outside_authority.ca_file))  # fmt: skip
    assert code == 1
    kinds = {p["kind"] for p in report["problems"]}
    assert kinds == {"bad_timestamp"}, report["problems"]
    assert report["timestamps_valid"] == 0

    # Three forgeries, each written after the trail, by a holder of the real signing key.
    notes = {
        (n.size, n.time): (n, r)
        for r in checkpoints
        if r.key == b"writers"
        for n in [WritersNote.from_json(r.value)]
    }
    first, last = stamps[0], stamps[-1]
    assert first.size < last.size
    stamped_note, stamped_at = notes[(first.size, first.note_time)]
    key = load_signing_key(Path(tmp_path / "signing.key.pem"))
    # 1. A note's time set back an hour and its envelope signed again (the note's own bytes do
    #    not change), with the token's record naming the new time: backdated.
    earlier = rfc3339(datetime.fromisoformat(stamped_note.time) - timedelta(hours=1))
    edited = WritersNote.sign(
        ORIGIN,
        stamped_note.size,
        stamped_note.root_bytes,
        time=earlier,
        key_id=key.key_id,
        key=key.private,
    )
    assert edited.note == stamped_note.note
    moved_time = replace(first, note_time=earlier)
    # 2. The last token's record made to name the first note: its imprint is another note's.
    moved = replace(
        last,
        size=first.size,
        root=first.root,
        note_sha256=first.note_sha256,
        note_time=first.note_time,
    )
    # 3. A token of an authority outside the CA over the first note, with its own nonce.
    query = timestamp_query(stamped_note.note)
    outside = outside_authority.reply(query.der)
    foreign = replace(first, token=outside, nonce=query.nonce, tsa="http://outside/")
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        put = [
            (b"writers", edited.to_bytes()),
            (b"timestamps", moved_time.to_bytes()),
            (b"timestamps", moved.to_bytes()),
            (b"timestamps", foreign.to_bytes()),
        ]
        offsets = [
            (await producer.send_and_wait(f"{topic}.checkpoints", v, key=k)).offset for k, v in put
        ]
    finally:
        await producer.stop()
    code, report = verify(kafka_bootstrap, tmp_path, topic, "--public-key", str(public),
                          "--tsa-ca", ca)  # fmt: skip
    assert code == 1
    found = sorted((p["kind"], p["offset"], p["detail"]) for p in report["problems"])
    assert [(kind, offset) for kind, offset, _ in found] == [
        ("backdated", offsets[0]),
        ("bad_timestamp", stamped_at.offset),
        ("bad_timestamp", stamped_at.offset),
    ], found
    assert "first saw it" in found[0][2]
    details = " ".join(detail for _, _, detail in found[1:])
    assert "stamps sha256:" in details
    assert "does not verify" in details
    assert report["timestamps_valid"] == len(stamps)


async def test_an_authority_down_holds_no_write_back_and_tokens_resume(
    kafka_bootstrap: str, tmp_path: Path, timestamp_authority: Authority
) -> None:
    tsa = TsaServer(timestamp_authority)
    topic = f"test-{uuid.uuid4().hex}"
    failures = f'rg_audit_tsa_failures_total{{tsa="{tsa.url}"}}'
    try:
        async with stamping_service(kafka_bootstrap, tmp_path, tsa, audit_topic=topic) as client:

            async def scraped(name: str) -> float:
                return metric((await client.get("/metrics")).text, name, default=0.0)

            assert (await client.post("/audit", json=EVENT)).status_code == 201

            async def stamped() -> bool:
                return await scraped("rg_audit_tsa_tokens_total") >= 1

            await eventually(stamped, timeout_s=30)
            tsa.stop()
            started = time.monotonic()
            for _ in range(5):
                answer = await client.post("/audit", json=EVENT)
                assert answer.status_code == 201, answer.text
                await asyncio.sleep(0.3)
            assert time.monotonic() - started < 5  # no write waited for the authority

            async def failing() -> bool:
                return await scraped(failures) >= 2

            await eventually(failing, timeout_s=30)
            tokens = await scraped("rg_audit_tsa_tokens_total")
            assert await scraped("rg_audit_tsa_last_token_age_seconds") >= INTERVAL_S
            last = (await client.post("/audit", json=EVENT)).json()
            tsa.start()

            async def resumed() -> bool:
                return await scraped("rg_audit_tsa_tokens_total") > tokens

            await eventually(resumed, timeout_s=30)

            async def covers_all() -> bool:
                entries = await read_raw(kafka_bootstrap, f"{topic}.writers")
                stamps = stamps_of(await read_raw(kafka_bootstrap, f"{topic}.checkpoints"))
                return covered_at(entries, stamps, last["writer"], last["seq"]) is not None

            await eventually(covers_all, timeout_s=30)
    finally:
        tsa.stop()
