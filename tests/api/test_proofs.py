"""GET /audit/proof and GET /audit/consistency on the session broker: proofs of records of this
writer, of an earlier start and of another replica, checked with Go's transparency-dev/formats
and sumdb/tlog (tests/helpers/tlog.py), which this project did not write."""

import asyncio
import base64
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from asgi_lifespan import LifespanManager
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.integrity.checkpoint import Checkpoint, writer_log
from app.integrity.merkle import leaf_entry, leaf_hash
from app.integrity.note import TlogProof
from app.main import create_app
from app.settings import Settings
from tests.helpers.app import assert_contract_error
from tests.helpers.kafka import read_all, records_of
from tests.helpers.tlog import TlogCheck

EVENT = {"user_id": "u1", "model": "m", "prompt": "p", "response": "r"}
ORIGIN = "ractogateway-kafka/proof-tests"


def signing_key(folder: Path) -> Path:
    """An Ed25519 private key file, owner-only, as `keys generate` writes one."""
    path = folder / "signing.key.pem"
    key = Ed25519PrivateKey.generate()
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    os.chmod(path, 0o600)
    return path


@asynccontextmanager
async def proving_service(bootstrap: str, **settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(
        Settings(
            _env_file=None,
            kafka_bootstrap_servers=[bootstrap],
            **{"audit_checkpoint_s": 0.2, "audit_log_origin": ORIGIN, **settings},
        )
    )
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=60) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://rg") as client:
            yield client


async def proof_of(client: httpx.AsyncClient, timeout_s: float = 30, **query: Any) -> bytes:
    """The proof once it is there (a checkpoint covers the record within its interval)."""
    for _ in range(int(timeout_s / 0.1)):
        answer = await client.get("/audit/proof", params=query)
        if answer.status_code == 200:
            return answer.content
        assert answer.status_code == 404, answer.text
        assert answer.json()["error"]["code"] == "no_proof", answer.text
        await asyncio.sleep(0.1)
    raise AssertionError(f"no proof of {query} in {timeout_s}s: {answer.text}")


async def verifier_key(client: httpx.AsyncClient) -> str:
    keys = (await client.get("/audit/keys")).json()["keys"]
    found: str = next(key["verifier_key"] for key in keys if key["current"])
    return found


def check(tlogcheck: TlogCheck, proof: bytes, vkey: str, receipt: dict[str, Any]) -> None:
    """Go reads the proof, opens its checkpoint with `vkey` and checks the receipt's record."""
    writer, seq, digest = receipt["writer"], receipt["seq"], receipt["digest"][7:]
    entry = leaf_entry(writer, seq, digest)
    assert TlogProof.parse(proof).extra == entry
    origin = writer_log(ORIGIN, writer)
    assert tlogcheck.tlog_proof(proof, origin, [vkey], leaf_hash(entry)) is None
    wrong = leaf_hash(leaf_entry(writer, seq, "0" * 64))
    assert tlogcheck.tlog_proof(proof, origin, [vkey], wrong) is not None


async def test_every_receipt_gets_a_proof_go_accepts(
    kafka_bootstrap: str, topic: str, tmp_path: Path, tlogcheck: TlogCheck
) -> None:
    key = signing_key(tmp_path)
    async with proving_service(
        kafka_bootstrap, audit_topic=topic, audit_signing_key_file=key
    ) as client:
        receipts = []
        for i in range(12):
            answer = await client.post("/audit", json={**EVENT, "event_id": f"evt-{i}"})
            assert answer.status_code == 201, answer.text
            receipts.append(answer.json())
        vkey = await verifier_key(client)
        for receipt in receipts:
            by_position = await proof_of(client, writer=receipt["writer"], seq=receipt["seq"])
            check(tlogcheck, by_position, vkey, receipt)
        by_id = await proof_of(client, event_id="evt-5")
        check(tlogcheck, by_id, vkey, receipts[5])
        answer = await client.get("/audit/proof", params={"event_id": "evt-5"})
        assert answer.headers["content-type"] == "text/plain; charset=utf-8"


async def test_consistency_between_checkpoints_is_accepted_by_go(
    kafka_bootstrap: str, topic: str, tmp_path: Path, tlogcheck: TlogCheck
) -> None:
    key = signing_key(tmp_path)
    async with proving_service(
        kafka_bootstrap, audit_topic=topic, audit_signing_key_file=key
    ) as client:
        first = (await client.post("/audit", json=EVENT)).json()
        await proof_of(client, writer=first["writer"], seq=first["seq"])
        old = (await client.get("/audit/checkpoint")).json()
        for _ in range(9):
            last = (await client.post("/audit", json=EVENT)).json()
        await proof_of(client, writer=last["writer"], seq=last["seq"])
        new = (await client.get("/audit/checkpoint")).json()
        answer = await client.get(
            "/audit/consistency",
            params={"writer": first["writer"], "old": old["count"], "new": new["count"]},
        )
        assert answer.status_code == 200, answer.text
        proof = [base64.b64decode(line) for line in answer.text.splitlines()]
        assert (
            tlogcheck.consistency(
                old["count"],
                new["count"],
                bytes.fromhex(old["tree"][7:]),
                bytes.fromhex(new["tree"][7:]),
                proof,
            )
            is None
        )
        too_far = await client.get(
            "/audit/consistency",
            params={"writer": first["writer"], "old": 1, "new": new["count"] + 100},
        )
        assert_contract_error(too_far, 404, "no_proof")


async def test_records_of_an_earlier_start_and_of_another_replica_are_proven(
    kafka_bootstrap: str, topic: str, tmp_path: Path, tlogcheck: TlogCheck
) -> None:
    key = signing_key(tmp_path)
    settings = {"audit_topic": topic, "audit_signing_key_file": key}
    async with proving_service(kafka_bootstrap, **settings) as earlier:
        before = (await earlier.post("/audit", json={**EVENT, "event_id": "before"})).json()
        await proof_of(earlier, event_id="before")
    async with (
        proving_service(kafka_bootstrap, **settings) as one,
        proving_service(kafka_bootstrap, **settings) as other,
    ):
        theirs = (await other.post("/audit", json={**EVENT, "event_id": "theirs"})).json()
        vkey = await verifier_key(one)
        assert theirs["writer"] != before["writer"]
        check(tlogcheck, await proof_of(one, event_id="before"), vkey, before)
        check(tlogcheck, await proof_of(one, event_id="theirs"), vkey, theirs)


async def test_what_cannot_be_proven_gets_a_clear_error(
    kafka_bootstrap: str, topic: str, tmp_path: Path
) -> None:
    key = signing_key(tmp_path)
    async with proving_service(
        kafka_bootstrap, audit_topic=topic, audit_signing_key_file=key
    ) as client:
        unknown = await client.get("/audit/proof", params={"event_id": "never-written"})
        assert_contract_error(unknown, 404, "no_proof")
        queries: list[dict[str, str | int]] = [
            {},
            {"writer": "0" * 32},
            {"event_id": "x", "seq": 1},
            {"seq": 1},
        ]
        for query in queries:
            answer = await client.get("/audit/proof", params=query)
            assert_contract_error(answer, 422, "invalid_request")
        bad = await client.get("/audit/proof", params={"writer": "XYZ", "seq": 0})
        assert_contract_error(bad, 422, "invalid_request")
    async with proving_service(
        kafka_bootstrap, audit_topic=topic, audit_signing_key_file=key, audit_proofs=False
    ) as without_index:
        answer = await without_index.get("/audit/proof", params={"event_id": "x"})
        error = assert_contract_error(answer, 404, "no_proof")
        assert "RG_AUDIT_PROOFS=false" in error["message"]
    async with proving_service(kafka_bootstrap, audit_topic=topic) as unsigned:
        answer = await unsigned.get("/audit/proof", params={"event_id": "x"})
        assert_contract_error(answer, 404, "unsigned")


async def test_every_pair_of_a_run_s_checkpoints_is_consistent_in_go(
    kafka_bootstrap: str, topic: str, tmp_path: Path, tlogcheck: TlogCheck
) -> None:
    key = signing_key(tmp_path)
    async with proving_service(
        kafka_bootstrap, audit_topic=topic, audit_signing_key_file=key
    ) as client:
        for round_ in range(5):
            for i in range(4):
                answer = await client.post("/audit", json={**EVENT, "event_id": f"r{round_}-{i}"})
                assert answer.status_code == 201, answer.text
            await proof_of(client, event_id=f"r{round_}-3")
        # The topic also holds the notes of the log of writers, keyed `writers`.
        checkpoints = [
            Checkpoint.from_json(record.value)
            for record in await records_of(kafka_bootstrap, f"{topic}.checkpoints")
            if record.key not in ("writers", b"writers")
        ]
        sizes = sorted({(c.count, c.tree) for c in checkpoints})
        assert len(sizes) >= 3, sizes
        for old, old_root in sizes:
            for new, new_root in sizes:
                if old > new:
                    continue
                writer = checkpoints[0].writer
                answer = await client.get(
                    "/audit/consistency", params={"writer": writer, "old": old, "new": new}
                )
                assert answer.status_code == 200, answer.text
                proof = [base64.b64decode(line) for line in answer.text.splitlines()]
                checked = tlogcheck.consistency(
                    old, new, bytes.fromhex(old_root), bytes.fromhex(new_root), proof
                )
                assert checked is None, (old, new, checked)


async def test_a_framed_record_s_proof_covers_its_schema_id(
    kafka_bootstrap: str,
    topic: str,
    schema_registry_url: str,
    tmp_path: Path,
    tlogcheck: TlogCheck,
) -> None:
    # The digest leaves the Confluent frame out; the leaf entry's fifth line is the schema id.
    key = signing_key(tmp_path)
    async with proving_service(
        kafka_bootstrap,
        audit_topic=topic,
        audit_signing_key_file=key,
        schema_registry_url=schema_registry_url,
        schema_wire_format="confluent",
    ) as client:
        answer = await client.post("/audit", json={**EVENT, "event_id": "framed-1"})
        assert answer.status_code == 201, answer.text
        receipt = answer.json()
        proof = await proof_of(client, event_id="framed-1")
        vkey = await verifier_key(client)
    (record,) = await read_all(kafka_bootstrap, topic, 1, value_format="bytes")
    assert record.value[:1] == b"\0"
    schema_id = int.from_bytes(record.value[1:5], "big")
    writer, seq, digest = receipt["writer"], receipt["seq"], receipt["digest"][7:]
    entry = f"rg-leaf-v1\n{writer}\n{seq}\n{digest}\n{schema_id}".encode()
    assert TlogProof.parse(proof).extra == entry
    origin = writer_log(ORIGIN, writer)
    assert tlogcheck.tlog_proof(proof, origin, [vkey], leaf_hash(entry)) is None
    unframed = leaf_hash(leaf_entry(writer, seq, digest))
    assert tlogcheck.tlog_proof(proof, origin, [vkey], unframed) is not None
    other = leaf_hash(f"rg-leaf-v1\n{writer}\n{seq}\n{digest}\n{schema_id + 1}".encode())
    assert tlogcheck.tlog_proof(proof, origin, [vkey], other) is not None
