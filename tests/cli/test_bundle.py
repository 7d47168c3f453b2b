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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.integrity.bundle import (
    KEYS,
    MANIFEST,
    MEMBERS,
    PROOFS,
    RECORDS,
    SIGNATURE,
    KafkaLine,
    sign_manifest,
)
from app.integrity.checkpoint import canonical_json, unb64url, writer_log
from app.integrity.merkle import leaf_hash
from app.integrity.note import TlogProof
from tests.corpus.make_corpus import write_zip
from tests.helpers import zipcheck
from tests.helpers.bundles import ORIGIN, PER_USER, USERS, pem_files, service_run, trail_env
from tests.helpers.integrity import (
    ChainedWriter,
    SigningKey,
    checkpoint_record,
    checkpoint_v2,
    write_records,
)
from tests.helpers.processes import SCRIPT, run_cli
from tests.helpers.tlog import TlogCheck


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


@pytest.fixture(scope="module")
def exported(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Exported:
    folder = tmp_path_factory.mktemp("bundle")
    topic = f"test-{uuid.uuid4().hex}"
    key, private, public = pem_files(folder)
    asyncio.run(service_run(kafka_bootstrap, topic, private))
    env = trail_env(kafka_bootstrap, topic, private)
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
        ["export", "--since", moment.isoformat(), "--out", str(out), "--progress"],
        cwd=exported.folder,
        env=exported.env,
    )
    assert done.returncode == 0, done.stderr
    assert f"export [{'#' * 30}] {len(times):,}/{len(times):,} records" in done.stderr
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
    # Without proofs.ndjson every record lacks the proof its covering checkpoint allows.
    assert {p["kind"] for p in report["problems"]} == {"missing", "forged", "bad_proof"}


def test_the_bundles_own_keys_are_trusted_only_when_asked(exported: Exported) -> None:
    done = exported.run_verify(exported.user_bundle, "--trust-bundle-keys", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["trusted_keys"] == "bundle"
    mixed = exported.run_verify(
        exported.user_bundle, "--public-key", str(exported.public), "--since", "2026-01-01T00:00Z"
    )
    assert mixed.returncode == 2
    assert "--since cannot go with it" in mixed.stderr
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
    nowhere = str(exported.folder / "no" / "such.zip")
    done = run_cli(["export", "--out", nowhere], cwd=exported.folder, env=exported.env)
    assert done.returncode == 2
    assert "no folder" in done.stderr
    unreachable = {**exported.env, "RG_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    done = run_cli(["export", "--out", out], cwd=exported.folder, env=unreachable)
    assert done.returncode == 2
    assert "cannot read the trail" in done.stderr
    assert "Traceback" not in done.stderr
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


def test_go_and_openssl_read_the_bundle_as_the_page_says(
    exported: Exported, tmp_path: Path
) -> None:
    code, answer = zipcheck.read(exported.user_bundle, exported.public)
    assert code == 0, answer
    held = members(exported.user_bundle)
    assert [m["name"] for m in answer["members"]] == list(MEMBERS)
    listed = json.loads(held[MANIFEST])["members"]
    assert answer["manifest_members"] == len(listed) == len(MEMBERS) - 2
    for member in answer["members"]:
        if member["name"] in listed:
            assert listed[member["name"]] == {"sha256": member["sha256"], "size": member["size"]}
    assert answer["signature_valid"]
    # OpenSSL verifies the manifest's Ed25519 signature with the PEM key (pure EdDSA, raw input).
    (tmp_path / "manifest.json").write_bytes(held[MANIFEST])
    (tmp_path / "manifest.bin").write_bytes(unb64url(held[SIGNATURE][:86].decode()))
    verified = subprocess.run(
        ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(exported.public), "-rawin",
         "-in", str(tmp_path / "manifest.json"), "-sigfile", str(tmp_path / "manifest.bin")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr
    # A byte flipped in a stored member: Go's archive/zip refuses it by its CRC-32, as we do.
    broken = tmp_path / "bad-crc.zip"
    write_zip(broken, list(held.items()), stored=True)
    code, answer = zipcheck.read(broken, exported.public)
    assert code == 1
    assert "checksum" in answer["error"]
    code, report = exported.verify(broken)
    assert kinds(report) == [("altered", RECORDS)]


def test_the_bundles_proofs_are_checked_by_go_with_its_own_verifier_key(
    exported: Exported, tlogcheck: TlogCheck
) -> None:
    held = members(exported.all_bundle)
    (key,) = json.loads(held[KEYS])["keys"]
    assert key["current"]
    lines = [json.loads(line) for line in held[PROOFS].splitlines()]
    assert len(lines) == len(USERS) * PER_USER
    for line in lines:
        proof = line["proof"].encode()
        entry = TlogProof.parse(proof).extra
        assert entry is not None
        origin = writer_log(ORIGIN, line["writer"])
        assert tlogcheck.tlog_proof(proof, origin, [key["verifier_key"]], leaf_hash(entry)) is None


async def test_records_that_do_not_give_the_signed_root_are_exported_without_proofs_and_found(
    kafka_bootstrap: str, create_topic: Callable[..., Awaitable[str]], tmp_path: Path
) -> None:
    # A trail an independent producer wrote: its checkpoint signs another tree than the
    # records give (a record rewritten with its headers before the checkpoint was kept).
    key = SigningKey.generate()
    writer = ChainedWriter()
    records = writer.records(3)
    topic = await create_topic(3)
    checkpoints = await create_topic(1, {"cleanup.policy": "delete"})
    await write_records(kafka_bootstrap, topic, records, partitions=3)
    signed = checkpoint_v2(key, writer, tree=b"\x07" * 32, origin=ORIGIN)
    await write_records(kafka_bootstrap, checkpoints, [checkpoint_record(signed)])
    private, public = tmp_path / "k.key.pem", key.write_public(tmp_path)
    private.write_bytes(key.private_pem())
    private.chmod(0o600)
    env = trail_env(kafka_bootstrap, topic, private)
    out = tmp_path / "tampered.zip"
    done = run_cli(
        ["export", "--out", str(out), "--checkpoints-topic", checkpoints], cwd=tmp_path, env=env
    )
    assert done.returncode == 0, done.stderr
    assert "no proofs: writer" in done.stderr
    assert "do not have the root its checkpoint" in done.stderr
    checked = run_cli(
        ["verify", "--bundle", str(out), "--public-key", str(public), "--json"],
        cwd=tmp_path,
        env=env,
    )
    assert checked.returncode == 1, checked.stderr
    found = json.loads(checked.stdout)["problems"]
    assert sorted((p["kind"], p["seq"]) for p in found) == [
        ("bad_proof", 0),
        ("bad_proof", 1),
        ("bad_proof", 2),
    ]
