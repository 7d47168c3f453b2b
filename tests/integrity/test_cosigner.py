"""The cosigner (app/integrity/cosigner.py): in unit tests against a witness written here from
the spec; then the service on the session broker with real litewitnesses (filippo.io/torchwood):
every checkpoint of the log of writers cosigned by two witnesses and `verify --witness-policy`
2-of-2 clean; a rewritten history refused, reported by the service and by `verify`; a witness
stopped mid-run (writes go on, the lag shows, it catches up); a witness restored from an old
copy of its database (409 with its size, the service resumes)."""

import asyncio
import base64
import json
import os
import re
import shutil
import socket
import statistics
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.integrity.cosigner import Cosigner
from app.integrity.merkle import MerkleTree, ProofError, verify_consistency
from app.integrity.note import NoteError, TreeHead, Verifier, open_note, verifier_key
from app.integrity.witness import (
    CosignatureRecord,
    WitnessKey,
    cosign,
    witness_key_text,
)
from app.integrity.witness_policy import WitnessPolicy
from app.integrity.writers import COSIGNATURES_KEY, WritersNote, writers_log
from app.main import create_app
from app.settings import Settings
from tests.helpers.integrity import Record, read_raw, write_records
from tests.helpers.kafka import new_topic, records_of
from tests.helpers.processes import run_cli
from tests.helpers.witness import CosigCheck, Litewitness, MakeWitness

NAME = "example.test/cosigner"
ORIGIN = writers_log(NAME)
EVENT = {"user_id": "u1", "model": "m", "prompt": "p", "response": "r"}
TIME = "2026-12-07T10:00:00.000000Z"


# -- unit: a witness written here from c2sp.org/tlog-witness ---------------------------------


class _SpecWitness:
    """Keeps the latest checkpoint it cosigned; answers add-checkpoint as the spec says."""

    def __init__(self, name: str, log: Verifier) -> None:
        self.name = name
        self.key = Ed25519PrivateKey.generate()
        self.vkey = witness_key_text(name, self.key.public_key())
        self._log = log
        self.size, self.root = 0, b""
        self.down = False
        self.bodies: list[bytes] = []

    async def post(self, url: str, body: bytes) -> tuple[int, str, bytes]:
        if self.down:
            raise httpx.ConnectError("down")
        self.bodies.append(body)
        head_text, _, note = body.partition(b"\n\n")
        lines = head_text.decode().split("\n")
        old, proof = int(lines[0].removeprefix("old ")), [base64.b64decode(x) for x in lines[1:]]
        try:
            head = TreeHead.parse(open_note(note, [self._log]).text)
        except NoteError:
            return 403, "text/plain", b"no trusted signature"
        if old != self.size:
            return 409, "text/x.tlog.size", f"{self.size}\n".encode()
        try:
            if self.size:
                verify_consistency(old, head.size, self.root, head.root, proof)
        except ProofError:
            return 422, "text/plain", b"bad consistency proof"
        self.size, self.root = head.size, head.root
        return 200, "text/plain", (cosign(self.name, self.key, head.text(), 1) + "\n").encode()


class _Log:
    def __init__(self) -> None:
        self.key = Ed25519PrivateKey.generate()
        self.verifier = Verifier.of(NAME, self.key.public_key())
        self.tree = MerkleTree()
        self.note: WritersNote | None = None

    def grow(self, entries: int) -> None:
        for _ in range(entries):
            self.tree.append(os.urandom(8))
        root = self.tree.root()
        self.note = WritersNote.sign(
            NAME, len(self.tree), root, time=TIME, key_id="k", key=self.key
        )

    def latest(self) -> tuple[WritersNote, MerkleTree] | None:
        return None if self.note is None else (self.note, self.tree)


def _cosigner(log: _Log, witnesses: list[_SpecWitness], k: int) -> tuple[Cosigner, list[bytes]]:
    policy = WitnessPolicy.model_validate(
        {"k": k, "witnesses": [{"url": f"http://{w.name}", "key": w.vkey} for w in witnesses]}
    )
    written: list[bytes] = []
    by_url = {f"http://{w.name}": w for w in witnesses}

    async def write(key: str, value: bytes) -> None:
        assert key == COSIGNATURES_KEY
        written.append(value)

    async def post(url: str, body: bytes) -> tuple[int, str, bytes]:
        return await by_url[url].post(url, body)

    return Cosigner(policy, log.latest, write, post=post), written


async def test_unit_each_checkpoint_goes_with_the_proof_from_the_witness_size() -> None:
    log = _Log()
    one, two = _SpecWitness("w.test/one", log.verifier), _SpecWitness("w.test/two", log.verifier)
    cosigner, written = _cosigner(log, [one, two], 2)
    quorum: list[float] = []
    cosigner.on_quorum = quorum.append
    log.grow(3)
    await cosigner.submit(*log.latest())  # type: ignore[misc]
    assert (one.size, two.size) == (3, 3)
    assert one.bodies[0].startswith(b"old 0\n\n")
    log.grow(5)
    await cosigner.submit(*log.latest())  # type: ignore[misc]
    assert one.bodies[1].startswith(b"old 3\n")
    assert one.bodies[1].count(b"\n") > 3  # the proof's lines
    assert len(written) == 4
    assert len(quorum) == 2
    head = TreeHead.parse(open_note(log.note.note.encode(), [log.verifier]).text)  # type: ignore[union-attr]
    assert len(cosigner.cosignatures(head)) == 2
    assert cosigner.status()["w.test/one"]["cosigned_size"] == 8
    # Nothing new: nothing sent again.
    await cosigner.submit(*log.latest())  # type: ignore[misc]
    assert len(one.bodies) == 2


async def test_unit_a_witness_down_lags_and_catches_up_a_restored_one_resumes() -> None:
    clock = [0.0]
    log = _Log()
    one = _SpecWitness("w.test/one", log.verifier)
    cosigner, _ = _cosigner(log, [one], 1)
    cosigner._clock = lambda: clock[0]
    log.grow(2)
    await cosigner.submit(*log.latest())  # type: ignore[misc]
    one.down = True
    log.grow(2)
    await cosigner.submit(*log.latest())  # type: ignore[misc]
    clock[0] = 7.0
    status = cosigner.status()["w.test/one"]
    assert (status["cosigned_size"], status["age_seconds"], status["failures"]) == (2, 7, 1)
    one.down = False
    log.grow(1)
    await cosigner.submit(*log.latest())  # type: ignore[misc]
    status = cosigner.status()["w.test/one"]
    assert (status["cosigned_size"], status["age_seconds"]) == (5, 0)
    # Restored from a copy of size 2: it answers 409 2, the cosigner goes on from there.
    one.size, one.root = 2, log.tree.root(2)
    log.grow(1)
    await cosigner.submit(*log.latest())  # type: ignore[misc]
    assert one.size == 6
    assert one.bodies[-2].startswith(b"old 5\n")
    assert one.bodies[-1].startswith(b"old 2\n")
    assert cosigner.alarms() == []


async def test_unit_a_refusal_is_an_alarm_until_a_later_cosignature() -> None:
    log = _Log()
    one = _SpecWitness("w.test/one", log.verifier)
    cosigner, _ = _cosigner(log, [one], 1)
    log.grow(4)
    await cosigner.submit(*log.latest())  # type: ignore[misc]
    one.root = bytes(32)  # it saw another tree of size 4
    log.grow(2)
    await cosigner.submit(*log.latest())  # type: ignore[misc]
    assert cosigner.status()["w.test/one"]["refusals"] == 1
    assert cosigner.alarms() == [
        f"witness w.test/one: refused checkpoint 6 of {ORIGIN} (HTTP 422: bad consistency proof)"
    ]
    await cosigner.submit(*log.latest())  # type: ignore[misc]
    assert cosigner.status()["w.test/one"]["refusals"] == 1  # not sent again


async def test_unit_cosignatures_read_back_tell_the_witness_size() -> None:
    log = _Log()
    one = _SpecWitness("w.test/one", log.verifier)
    cosigner, written = _cosigner(log, [one], 1)
    log.grow(3)
    await cosigner.submit(*log.latest())  # type: ignore[misc]
    again, _ = _cosigner(log, [one], 1)
    again.take(CosignatureRecord.from_json(written[0]))
    forged = CosignatureRecord(ORIGIN, 9, "00" * 32, "w.test/one", json.loads(written[0])["line"])
    again.take(forged)  # does not verify: ignored
    assert again.status()["w.test/one"]["cosigned_size"] == 3
    await again.submit(*log.latest())  # type: ignore[misc]
    assert len(one.bodies) == 1  # cosigned already: not sent again
    log.grow(1)
    await again.submit(*log.latest())  # type: ignore[misc]
    assert one.bodies[-1].startswith(b"old 3\n")


# -- the service with real litewitnesses ------------------------------------------------------


def _key_file(folder: Path) -> tuple[Path, str]:
    key = Ed25519PrivateKey.generate()
    path = folder / "signing.key.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    os.chmod(path, 0o600)
    public = folder / "signing.pub.pem"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path, verifier_key(NAME, key.public_key())


def _policy(k: int, *witnesses: Litewitness) -> str:
    return json.dumps({"k": k, "witnesses": [{"url": w.url, "key": w.vkey} for w in witnesses]})


@asynccontextmanager
async def _service(bootstrap: str, **settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(
        Settings(
            _env_file=None,
            kafka_bootstrap_servers=[bootstrap],
            **{
                "audit_checkpoint_s": 0.2,
                "audit_writers_s": 0.3,
                "audit_log_origin": NAME,
                **settings,
            },
        )
    )
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=60) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://rg") as client:
            yield client


async def _note(client: httpx.AsyncClient) -> tuple[TreeHead, list[str]]:
    """The latest note of the log of writers and its cosignature lines (after the first)."""
    answer = await client.get("/audit/checkpoint", params={"log": "writers"})
    assert answer.status_code == 200, answer.text
    text, _, signatures = answer.text.partition("\n\n")
    return TreeHead.parse(text + "\n"), signatures.splitlines()[1:]


async def _until(check: Any, timeout_s: float = 30, what: str = "") -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        found = await check()
        if found:
            return found
        assert time.monotonic() < deadline, f"not within {timeout_s}s: {what}"
        await asyncio.sleep(0.05)


async def _write(client: httpx.AsyncClient, event_id: str) -> None:
    answer = await client.post("/audit", json={**EVENT, "event_id": event_id})
    assert answer.status_code == 201, answer.text


def _metrics(text: str, name: str) -> dict[str, float]:
    found = re.findall(rf'^{name}{{witness="([^"]+)"}} (\S+)$', text, re.MULTILINE)
    return {witness: float(value) for witness, value in found}


async def _cosigned_by(client: httpx.AsyncClient, count: int) -> tuple[TreeHead, list[str]] | None:
    """The latest note once it has `count` cosignatures (None before, or before a note)."""
    answer = await client.get("/audit/checkpoint", params={"log": "writers"})
    if answer.status_code == 404:
        return None
    head, lines = await _note(client)
    return (head, lines) if len(lines) >= count else None


def _verify(bootstrap: str, folder: Path, topic: str, *extra: str) -> tuple[int, dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RG_")}
    env["RG_KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
    done = run_cli(
        [
            "verify",
            "--json",
            "--topic",
            topic,
            "--public-key",
            str(folder / "signing.pub.pem"),
            *extra,
        ],
        cwd=folder,
        env=env,
    )
    assert done.returncode in {0, 1}, done.stderr
    return done.returncode, json.loads(done.stdout)


async def test_every_checkpoint_is_cosigned_by_two_witnesses_and_verify_agrees(
    kafka_bootstrap: str,
    topic: str,
    tmp_path: Path,
    make_witness: MakeWitness,
    cosigcheck: CosigCheck,
) -> None:
    key, vkey = _key_file(tmp_path)
    one = make_witness("witness.test/one", ORIGIN, vkey)
    two = make_witness("witness.test/two", ORIGIN, vkey)
    async with _service(
        kafka_bootstrap,
        audit_topic=topic,
        audit_signing_key_file=key,
        audit_witnesses=_policy(2, one, two),
    ) as client:
        first_seen: dict[int, float] = {}
        quorum_at: dict[int, float] = {}
        for i in range(8):
            await _write(client, f"evt-{i}")
            deadline = time.monotonic() + 30
            # Every note served, from its first sight to its second cosignature.
            while time.monotonic() < deadline:
                answer = await client.get("/audit/checkpoint", params={"log": "writers"})
                if answer.status_code == 200:
                    text, _, signatures = answer.text.partition("\n\n")
                    size = TreeHead.parse(text + "\n").size
                    first_seen.setdefault(size, time.monotonic())
                    if len(signatures.splitlines()) == 3:
                        quorum_at.setdefault(size, time.monotonic())
                        if size >= i + 2:  # the start entry and this record's head
                            break
                await asyncio.sleep(0.01)
            else:
                raise AssertionError(f"no cosigned note of size {i + 2}: {answer.text}")
        waits = [quorum_at[size] - first_seen[size] for size in quorum_at]
        # Each line verifies with its witness's key over the note served.
        keys = [WitnessKey.parse(one.vkey), WitnessKey.parse(two.vkey)]
        head, lines = await _note(client)
        assert [k.verify(line, head.text()).name for k, line in zip(keys, lines, strict=True)]
        # The note served, with its cosignatures, opens in Go with our key and both witnesses'.
        served = (await client.get("/audit/checkpoint", params={"log": "writers"})).content
        opened = cosigcheck.open(served, ORIGIN, vkey, [one.vkey, two.vkey])
        assert opened["ok"], opened
        assert sorted(opened["cosigned_by"]) == ["witness.test/one", "witness.test/two"]
        metrics = (await client.get("/metrics")).text
        assert _metrics(metrics, "rg_audit_witness_cosigned_size")["witness.test/one"] >= 1
        assert _metrics(metrics, "rg_audit_witness_refusals_total") == {
            "witness.test/one": 0,
            "witness.test/two": 0,
        }
        assert "rg_audit_witness_quorum_seconds_count" in metrics
        # Quiet: the latest note stays the latest, cosigned by both.
        await asyncio.sleep(1.0)
        await _until(lambda: _cosigned_by(client, 2), what="the last note cosigned")
        assert (await client.get("/readyz")).json() == {"status": "ready"}
    print(
        f"checkpoint to quorum (2 of 2, on the API): p50 {statistics.median(waits) * 1000:.0f} ms,"
        f" max {max(waits) * 1000:.0f} ms over {len(waits)} checkpoints"
    )
    policy = tmp_path / "policy.json"
    policy.write_text(_policy(2, one, two))
    records = await records_of(kafka_bootstrap, f"{topic}.checkpoints")
    cosignatures = [r for r in records if r.key == COSIGNATURES_KEY]
    assert len({r.value["witness"] for r in cosignatures}) == 2
    code, report = _verify(kafka_bootstrap, tmp_path, topic, "--witness-policy", str(policy))
    assert code == 0, report
    # A policy of three witnesses, k=3, cannot be met: every note is uncosigned.
    third = witness_key_text("witness.test/three", Ed25519PrivateKey.generate().public_key())
    policy.write_text(
        json.dumps(
            {
                "k": 3,
                "witnesses": [
                    {"url": one.url, "key": one.vkey},
                    {"url": two.url, "key": two.vkey},
                    {"url": "http://127.0.0.1:9", "key": third},
                ],
            }
        )
    )
    code, report = _verify(kafka_bootstrap, tmp_path, topic, "--witness-policy", str(policy))
    assert code == 1
    kinds = {p["kind"] for p in report["problems"]}
    assert kinds == {"uncosigned"}, report
    assert "has 2 valid cosignature(s) of the 3" in report["problems"][0]["detail"]


async def test_a_rewritten_history_is_refused_and_reported(
    kafka_bootstrap: str, topic: str, tmp_path: Path, make_witness: MakeWitness
) -> None:
    key, vkey = _key_file(tmp_path)
    one = make_witness("witness.test/one", ORIGIN, vkey)
    two = make_witness("witness.test/two", ORIGIN, vkey)
    policy = _policy(2, one, two)
    async with _service(
        kafka_bootstrap, audit_topic=topic, audit_signing_key_file=key, audit_witnesses=policy
    ) as client:
        for i in range(3):
            assert (
                await client.post("/audit", json={**EVENT, "event_id": f"a{i}"})
            ).status_code == 201
        await _until(lambda: _cosigned_by(client, 2), what="two cosignatures")
    genuine = await read_raw(kafka_bootstrap, f"{topic}.writers")
    # The operator rewrites the log of writers (its first entry dropped, the rest twice) into
    # a new topic and runs the service on it with the real key and the same checkpoints topic.
    rewritten = await new_topic(kafka_bootstrap, partitions=1)
    kept = [Record(r.value, [], key=r.key) for r in genuine[1:]]
    await write_records(kafka_bootstrap, rewritten, kept + kept)
    async with _service(
        kafka_bootstrap,
        audit_topic=topic,
        audit_writers_topic=rewritten,
        audit_checkpoints_topic=f"{topic}.checkpoints",
        audit_signing_key_file=key,
        audit_witnesses=policy,
    ) as client:

        async def alarmed() -> dict[str, Any] | None:
            ready = (await client.get("/readyz")).json()
            return ready if len(ready.get("alarms", [])) == 2 else None

        ready = await _until(alarmed, what="both witnesses refuse")
        strip = (await client.get("/ui/status")).json()["witnesses"]
        assert all("refused checkpoint" in w["alarm"] for w in strip), strip
        assert all("refused checkpoint" in alarm for alarm in ready["alarms"]), ready
        assert "witness.test/one" in ready["alarms"][0]
        metrics = (await client.get("/metrics")).text
        refusals = _metrics(metrics, "rg_audit_witness_refusals_total")
        assert min(refusals.values()) >= 1
        forked, lines = await _note(client)
        assert lines == []  # nothing cosigned it
        await _write(client, "b0")
    path = tmp_path / "policy.json"
    path.write_text(policy)
    code, report = _verify(
        kafka_bootstrap,
        tmp_path,
        topic,
        "--writers-topic",
        rewritten,
        "--witness-policy",
        str(path),
    )
    assert code == 1
    uncosigned = [p for p in report["problems"] if p["kind"] == "uncosigned"]
    assert any(f"checkpoint {forked.size} of {ORIGIN}" in p["detail"] for p in uncosigned), report


async def test_a_witness_down_never_blocks_writes_and_catches_up(
    kafka_bootstrap: str, topic: str, tmp_path: Path, make_witness: MakeWitness
) -> None:
    key, vkey = _key_file(tmp_path)
    one = make_witness("witness.test/one", ORIGIN, vkey)
    two = make_witness("witness.test/two", ORIGIN, vkey)
    async with _service(
        kafka_bootstrap,
        audit_topic=topic,
        audit_signing_key_file=key,
        audit_witnesses=_policy(1, one, two),
    ) as client:
        await _write(client, "a")
        await _until(lambda: _cosigned_by(client, 2), what="two cosignatures")
        two.stop()
        for i in range(5):
            answer = await client.post("/audit", json={**EVENT, "event_id": f"d{i}"})
            assert answer.status_code == 201, answer.text
        await asyncio.sleep(1.5)

        async def lagging() -> dict[str, float] | None:
            metrics = (await client.get("/metrics")).text
            age = _metrics(metrics, "rg_audit_witness_age_seconds")
            failures = _metrics(metrics, "rg_audit_witness_failures_total")
            sizes = _metrics(metrics, "rg_audit_witness_cosigned_size")
            if age["witness.test/two"] > 0.5 and failures["witness.test/two"] > 0:
                return sizes
            return None

        sizes = await _until(lagging, what="the lag in the metrics")
        assert sizes["witness.test/two"] < sizes["witness.test/one"]
        strip = (await client.get("/ui/status")).json()["witnesses"]
        assert [w["name"] for w in strip] == ["witness.test/one", "witness.test/two"]
        assert strip[1]["age_s"] > 0
        assert strip[1]["cosigned_size"] < strip[0]["cosigned_size"]
        head, lines = await _note(client)
        assert len(lines) == 1  # the one up cosigned
        assert (await client.get("/readyz")).json() == {"status": "ready"}
        two.start()
        head, lines = await _until(lambda: _cosigned_by(client, 2), what="the catch-up")
        metrics = (await client.get("/metrics")).text
        assert _metrics(metrics, "rg_audit_witness_age_seconds")["witness.test/two"] == 0
        assert _metrics(metrics, "rg_audit_witness_cosigned_size")["witness.test/two"] == head.size


async def test_a_witness_restored_from_an_old_copy_answers_its_size_and_the_service_resumes(
    kafka_bootstrap: str, topic: str, tmp_path: Path, make_witness: MakeWitness
) -> None:
    key, vkey = _key_file(tmp_path)
    one = make_witness("witness.test/one", ORIGIN, vkey)
    async with _service(
        kafka_bootstrap,
        audit_topic=topic,
        audit_signing_key_file=key,
        audit_witnesses=_policy(1, one),
    ) as client:
        await _write(client, "a")
        old, _ = await _until(lambda: _cosigned_by(client, 1), what="a cosignature")
        copy = one.snapshot(tmp_path / "old-witness.db")
        for i in range(4):
            assert (
                await client.post("/audit", json={**EVENT, "event_id": f"r{i}"})
            ).status_code == 201

        async def grown() -> tuple[TreeHead, list[str]] | None:
            head, lines = await _note(client)
            return (head, lines) if head.size > old.size and lines else None

        await _until(grown, what="a later checkpoint cosigned")
        one.restore(copy)
        for i in range(3):
            assert (
                await client.post("/audit", json={**EVENT, "event_id": f"s{i}"})
            ).status_code == 201

        async def resumed() -> tuple[TreeHead, list[str]] | None:
            head, lines = await _note(client)
            return (head, lines) if lines else None

        head, lines = await _until(resumed, what="cosigned after the restore")
        WitnessKey.parse(one.vkey).verify(lines[0], head.text())
        assert (await client.get("/readyz")).json() == {"status": "ready"}
    shutil.rmtree(tmp_path / "old-witness.db", ignore_errors=True)


@pytest.mark.parametrize("value", ['{"k": 2, "witnesses": []}', "nope"])
def test_unit_a_bad_setting_stops_the_start(value: str, tmp_path: Path) -> None:
    from app.services import StartupError, build_services  # noqa: PLC0415

    key, _ = _key_file(tmp_path)
    settings = Settings(_env_file=None, audit_signing_key_file=key, audit_witnesses=value)
    with pytest.raises(StartupError, match="RG_AUDIT_WITNESSES"):
        build_services(settings)


async def test_two_replicas_share_the_witnesses(
    kafka_bootstrap: str, topic: str, tmp_path: Path, make_witness: MakeWitness
) -> None:
    key, vkey = _key_file(tmp_path)
    one = make_witness("witness.test/one", ORIGIN, vkey)
    settings = {"audit_topic": topic, "audit_signing_key_file": key}
    async with (
        _service(kafka_bootstrap, audit_witnesses=_policy(1, one), **settings) as first,
        _service(kafka_bootstrap, audit_witnesses=_policy(1, one), **settings) as second,
    ):
        for i in range(4):
            await _write(first, f"f{i}")
            await _write(second, f"s{i}")

        async def both_cosigned() -> list[TreeHead] | None:
            found = [await _cosigned_by(client, 1) for client in (first, second)]
            heads = [f[0] for f in found if f is not None]
            return heads if len(heads) == 2 and heads[0] == heads[1] else None

        await asyncio.sleep(1.0)  # both writers' last heads in the log
        heads = await _until(both_cosigned, what="both replicas serve the cosigned note")
        assert heads[0].size >= 4  # two starts and a head of each writer at least
        for client in (first, second):
            assert (await client.get("/readyz")).json() == {"status": "ready"}
            refusals = _metrics(
                (await client.get("/metrics")).text, "rg_audit_witness_refusals_total"
            )
            assert refusals == {"witness.test/one": 0}


async def test_a_witness_that_hangs_holds_up_none_of_the_others(
    kafka_bootstrap: str, topic: str, tmp_path: Path, make_witness: MakeWitness
) -> None:
    key, vkey = _key_file(tmp_path)
    one = make_witness("witness.test/one", ORIGIN, vkey)
    # A witness that takes the connection and never answers (until the 10 s timeout).
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(16)
    silent = witness_key_text("witness.test/silent", Ed25519PrivateKey.generate().public_key())
    policy = {
        "k": 1,
        "witnesses": [
            {"url": f"http://127.0.0.1:{hole.getsockname()[1]}", "key": silent},
            {"url": one.url, "key": one.vkey},
        ],
    }
    try:
        async with _service(
            kafka_bootstrap,
            audit_topic=topic,
            audit_signing_key_file=key,
            audit_witnesses=json.dumps(policy),
        ) as client:
            sizes = set()
            for i in range(3):
                await _write(client, f"h{i}")
                started = time.monotonic()

                async def newly_cosigned() -> int | None:
                    found = await _cosigned_by(client, 1)
                    return found[0].size if found and found[0].size not in sizes else None

                sizes.add(await _until(newly_cosigned, timeout_s=8, what="a new cosigned note"))
                assert time.monotonic() - started < 5
            strip = (await client.get("/ui/status")).json()["witnesses"]
            assert strip[0]["name"] == "witness.test/silent"
            assert strip[0]["cosigned_size"] == 0
            assert strip[0]["age_s"] > 0
    finally:
        hole.close()
