"""`export` and `verify --bundle` as real processes: a real service run on the session broker
is exported (one user's window, everyone's), and the bundle verifies with no broker — also in a
network namespace with no interface; each kind of tampering gives its finding."""

import asyncio
import base64
import hashlib
import json
import os
import subprocess
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.integrity.bundle import (
    KEYS,
    MANIFEST,
    PROOFS,
    RECORDS,
    SIGNATURE,
    KafkaLine,
    sign_manifest,
)
from app.integrity.checkpoint import canonical_json
from app.main import create_app
from app.settings import Settings
from tests.helpers.processes import SCRIPT, run_cli

ORIGIN = "ractogateway-kafka/bundle-tests"
USERS = [f"user-{i}" for i in range(4)]
PER_USER = 5


@dataclass
class Exported:
    """A service run's trail on the broker, its key, and bundles exported from it."""

    folder: Path
    env: dict[str, str]
    key: Ed25519PrivateKey
    public: Path
    user_bundle: Path
    all_bundle: Path

    def verify(self, bundle: Path, *extra: str) -> tuple[int, dict[str, Any]]:
        """`verify --bundle --json` with the service's public key; exit code and report."""
        done = self.run_verify(bundle, "--public-key", str(self.public), "--json", *extra)
        assert done.returncode in {0, 1}, done.stderr
        report: dict[str, Any] = json.loads(done.stdout)
        return done.returncode, report

    def run_verify(self, bundle: Path, *extra: str) -> "subprocess.CompletedProcess[str]":
        """`verify --bundle` with no reachable broker (nothing listens on port 1)."""
        env = {**self.env, "RG_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
        return run_cli(["verify", "--bundle", str(bundle), *extra], cwd=self.folder, env=env)


def pem_files(folder: Path) -> tuple[Ed25519PrivateKey, Path, Path]:
    """A signing key as `keys generate` writes one (owner-only), and its public key."""
    key = Ed25519PrivateKey.generate()
    private, public = folder / "signing.key.pem", folder / "signing.pub.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    os.chmod(private, 0o600)
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return key, private, public


async def service_run(bootstrap: str, topic: str, key: Path) -> None:
    """The service writes PER_USER records of each user and waits until a checkpoint covers
    them all (their proofs are served); its shutdown writes the last checkpoint and stop."""
    settings = Settings(
        _env_file=None,
        kafka_bootstrap_servers=[bootstrap],
        audit_topic=topic,
        audit_signing_key_file=key,
        audit_checkpoint_s=0.2,
        audit_writers_s=0.2,
        audit_log_origin=ORIGIN,
    )
    async with LifespanManager(create_app(settings), startup_timeout=60, shutdown_timeout=60) as m:
        transport = httpx.ASGITransport(app=m.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://rg") as client:
            receipts = []
            for i in range(PER_USER):
                for user in USERS:
                    event = {"user_id": user, "model": "m", "prompt": f"p{i}", "response": "r"}
                    answer = await client.post("/audit", json=event)
                    assert answer.status_code == 201, answer.text
                    receipts.append(answer.json())
            last = receipts[-1]
            for _ in range(300):
                answer = await client.get(
                    "/audit/proof", params={"writer": last["writer"], "seq": last["seq"]}
                )
                if answer.status_code == 200:
                    break
                await asyncio.sleep(0.1)
            assert answer.status_code == 200, answer.text


@pytest.fixture(scope="module")
def exported(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Exported:
    folder = tmp_path_factory.mktemp("bundle")
    topic = f"test-{uuid.uuid4().hex}"
    key, private, public = pem_files(folder)
    asyncio.run(service_run(kafka_bootstrap, topic, private))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RG_")}
    env |= {
        "RG_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "RG_AUDIT_TOPIC": topic,
        "RG_AUDIT_SIGNING_KEY_FILE": str(private),
        "RG_AUDIT_LOG_ORIGIN": ORIGIN,
    }
    user_bundle, all_bundle = folder / "user-1.zip", folder / "all.zip"
    for args in (["--user", "user-1", "--out", str(user_bundle)], ["--out", str(all_bundle)]):
        done = run_cli(["export", *args], cwd=folder, env=env)
        assert done.returncode == 0, done.stderr
        assert "export:" in done.stderr
    return Exported(folder, env, key, public, user_bundle, all_bundle)


def members(bundle: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(bundle) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def rewrite(
    exported: Exported,
    name: str,
    change: Callable[[dict[str, bytes]], None],
    *,
    resign: bool = False,
) -> Path:
    """A copy of the user's bundle with its members changed by `change`; with `resign`, the
    manifest's hashes updated and signed again with the service's key (as its holder could)."""
    held = members(exported.user_bundle)
    change(held)
    if resign:
        manifest = json.loads(held[MANIFEST])
        for member in manifest["members"]:
            data = held[member]
            manifest["members"][member] = {
                "sha256": hashlib.sha256(data).hexdigest(),
                "size": len(data),
            }
        manifest["records"] = len(held[RECORDS].splitlines())
        held[MANIFEST] = canonical_json(manifest)
        held[SIGNATURE] = sign_manifest(held[MANIFEST], exported.key)
    out = exported.folder / f"{name}.zip"
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for member, data in held.items():
            archive.writestr(member, data)
    return out


def kinds(report: dict[str, Any]) -> list[tuple[str, str | None]]:
    return sorted((p["kind"], p["topic"]) for p in report["problems"])


def test_a_clean_export_of_a_service_run_verifies(exported: Exported) -> None:
    code, report = exported.verify(exported.user_bundle)
    assert code == 0, report
    assert report["clean"], report
    assert report["signed"]
    assert report["trusted_keys"] == "given"
    assert report["records_checked"] == report["records_valid"] == PER_USER
    assert report["warnings"] == []
    lines = [KafkaLine.decode(line) for line in members(exported.user_bundle)[RECORDS].splitlines()]
    assert {line.key for line in lines} == {b"user-1"}
    assert len({line.partition for line in lines}) == 1  # one user, one partition
    code, report = exported.verify(exported.all_bundle)
    assert code == 0, report
    assert report["records_checked"] == len(USERS) * PER_USER
    assert report["checkpoints_valid"] == report["checkpoints_checked"] > 0
    text = exported.run_verify(exported.user_bundle, "--public-key", str(exported.public))
    assert text.returncode == 0, text.stderr
    assert f"{PER_USER} record(s) checked, {PER_USER} valid" in text.stdout


def test_a_window_holds_the_records_of_its_time_only(exported: Exported) -> None:
    lines = [KafkaLine.decode(line) for line in members(exported.all_bundle)[RECORDS].splitlines()]
    times = sorted(line.timestamp for line in lines)
    middle = times[len(times) // 2]
    moment = datetime.fromtimestamp(middle / 1000, tz=UTC)
    out = exported.folder / "window.zip"
    done = run_cli(
        ["export", "--since", moment.isoformat(), "--out", str(out)],
        cwd=exported.folder,
        env=exported.env,
    )
    assert done.returncode == 0, done.stderr
    held = [KafkaLine.decode(line) for line in members(out)[RECORDS].splitlines()]
    assert len(held) == sum(1 for t in times if t >= middle)
    code, report = exported.verify(out)
    assert code == 0, report


def test_a_member_altered_is_found_by_the_manifest(exported: Exported) -> None:
    def change(held: dict[str, bytes]) -> None:
        held[KEYS] = held[KEYS].replace(b'"current":true', b'"current":false')

    code, report = exported.verify(rewrite(exported, "member", change))
    assert code == 1
    assert kinds(report) == [("altered", KEYS)]


def test_a_record_dropped_from_the_bundle_is_found_by_the_manifest(exported: Exported) -> None:
    def change(held: dict[str, bytes]) -> None:
        held[RECORDS] = b"".join(held[RECORDS].splitlines(keepends=True)[1:])

    code, report = exported.verify(rewrite(exported, "dropped", change))
    assert code == 1
    assert kinds(report) == [("altered", RECORDS)]
    assert report["records_checked"] == PER_USER - 1


def altered_value(held: dict[str, bytes]) -> None:
    first, *rest = held[RECORDS].splitlines(keepends=True)
    line = json.loads(first)
    value = base64.b64decode(line["value"]).replace(b'"p', b'"P', 1)
    line["value"] = base64.b64encode(value).decode()
    held[RECORDS] = b"".join([canonical_json(line) + b"\n", *rest])


def test_a_record_value_altered_is_found_even_with_the_manifest_signed_again(
    exported: Exported,
) -> None:
    code, report = exported.verify(rewrite(exported, "value", altered_value, resign=True))
    assert code == 1
    (problem,) = report["problems"]
    assert problem["kind"] == "altered"
    first = KafkaLine.decode(members(exported.user_bundle)[RECORDS].splitlines()[0])
    assert (problem["partition"], problem["offset"]) == (first.partition, first.offset)
    assert report["records_valid"] == PER_USER - 1


def test_a_flipped_proof_bit_is_a_bad_proof(exported: Exported) -> None:
    def change(held: dict[str, bytes]) -> None:
        first, *rest = held[PROOFS].splitlines(keepends=True)
        line = json.loads(first)
        text = line["proof"].split("\n")
        hashed = bytearray(base64.b64decode(text[3]))
        hashed[0] ^= 0x01
        text[3] = base64.b64encode(bytes(hashed)).decode()
        line["proof"] = "\n".join(text)
        held[PROOFS] = b"".join([canonical_json(line) + b"\n", *rest])

    code, report = exported.verify(rewrite(exported, "proof", change, resign=True))
    assert code == 1
    assert [p["kind"] for p in report["problems"]] == ["bad_proof"]
    assert "does not verify" in report["problems"][0]["detail"]


def test_a_wrong_key_trusts_neither_the_manifest_nor_the_checkpoints(
    exported: Exported, tmp_path: Path
) -> None:
    _, _, other = pem_files(tmp_path)
    done = exported.run_verify(exported.user_bundle, "--public-key", str(other), "--json")
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    found = {p["kind"] for p in report["problems"]}
    assert {"bad_signature", "unsigned", "bad_proof"} <= found
    assert ("bad_signature", MANIFEST) in kinds(report)


def test_members_missing_or_added_are_findings(exported: Exported) -> None:
    def change(held: dict[str, bytes]) -> None:
        del held[PROOFS]
        held["notes.txt"] = b"hello"

    code, report = exported.verify(rewrite(exported, "members", change))
    assert code == 1
    assert ("missing", PROOFS) in kinds(report)
    assert ("forged", "notes.txt") in kinds(report)
    assert {w["kind"] for w in report["warnings"]} == {"not_covered"}


def test_the_bundles_own_keys_are_trusted_only_when_asked(exported: Exported) -> None:
    done = exported.run_verify(exported.user_bundle, "--trust-bundle-keys", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["trusted_keys"] == "bundle"
    keyless = exported.run_verify(exported.user_bundle)
    assert keyless.returncode == 2
    assert "--bundle needs the keys you trust" in keyless.stderr
    not_one = exported.folder / "not-a-bundle.zip"
    not_one.write_bytes(b"PK nothing")
    done = exported.run_verify(not_one, "--public-key", str(exported.public))
    assert done.returncode == 2
    assert "not a ZIP file" in done.stderr


def test_export_errors_are_one_line_with_exit_2(exported: Exported) -> None:
    env = {k: v for k, v in exported.env.items() if k != "RG_AUDIT_SIGNING_KEY_FILE"}
    out = str(exported.folder / "never.zip")
    done = run_cli(["export", "--out", out], cwd=exported.folder, env=env)
    assert done.returncode == 2
    assert "set RG_AUDIT_SIGNING_KEY_FILE or give --signing-key FILE" in done.stderr
    backwards = ["--since", "2026-03-02T00:00:00Z", "--until", "2026-03-01T00:00:00Z"]
    done = run_cli(["export", *backwards, "--out", out], cwd=exported.folder, env=exported.env)
    assert done.returncode == 2
    assert "is not after --since" in done.stderr
    assert not Path(out).exists()


def test_verify_bundle_runs_in_a_network_namespace_with_no_interface(exported: Exported) -> None:
    # As root `unshare -n`, else a user namespace too; a failure to unshare fails the test.
    unshare = ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-rn"]
    probe = subprocess.run(
        [*unshare, "cat", "/proc/net/dev"], capture_output=True, text=True, check=False
    )
    assert probe.returncode == 0, f"cannot make a network namespace: {probe.stderr}"
    interfaces = [line.split(":")[0].strip() for line in probe.stdout.splitlines()[2:]]
    assert interfaces == ["lo"], interfaces  # and lo is down: nothing reachable at all
    args = ["verify", "--bundle", str(exported.user_bundle), "--public-key", str(exported.public)]
    done = subprocess.run(
        [*unshare, SCRIPT, *args, "--json"],
        cwd=exported.folder,
        env=exported.env,  # the real broker's address: unreachable from in there
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["clean"]
