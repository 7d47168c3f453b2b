"""`ractogateway-kafka verify` as a real process against trails an independent producer wrote to
a real broker: a clean trail, then each kind of problem found with its partition and offset."""

import base64
import hashlib
import json
import os
import secrets
import socket
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.cli import build_parser, main
from app.integrity.checkpoint import writer_log
from app.integrity.merkle import MerkleTree, leaf_entry
from app.integrity.note import TlogProof, TreeHead, sign_note
from tests.helpers.integrity import (
    ORIGIN,
    ChainedWriter,
    Record,
    SigningKey,
    chain_headers,
    checkpoint_record,
    checkpoint_v2,
    receipt_of,
    sign_json,
    spec_note,
    spec_root,
    with_value,
    write_records,
    writers_entry,
)
from tests.helpers.processes import run_cli

CreateTopic = Callable[..., Awaitable[str]]


@dataclass
class Trail:
    """An audit topic and its checkpoints topic on the broker, and how to verify them."""

    bootstrap: str
    folder: Path
    topic: str
    checkpoints: str
    keys: list[Path] = field(default_factory=list)
    writers: str | None = None  # the log of writers' topic, when the test made one

    def verify(self, *extra: str) -> tuple[int, dict[str, Any]]:
        """Run `verify --json` with the trail's topics and keys; exit code and report."""
        done = self.run("--json", *extra)
        assert done.returncode in {0, 1}, done.stderr
        assert done.stdout, done.stderr
        return done.returncode, json.loads(done.stdout)

    def run(self, *extra: str) -> "subprocess.CompletedProcess[str]":
        """Run `verify` with the trail's topics and keys and `extra`."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("RG_")}
        env["RG_KAFKA_BOOTSTRAP_SERVERS"] = self.bootstrap
        keys = [arg for path in self.keys for arg in ("--public-key", str(path))]
        args = ["verify", "--topic", self.topic, "--checkpoints-topic", self.checkpoints]
        if self.writers is not None:
            args += ["--writers-topic", self.writers]
        return run_cli([*args, *keys, *extra], cwd=self.folder, env=env)

    async def write(self, records: list[Record]) -> list[Record]:
        """Audit records, round robin over the topic's three partitions."""
        return await write_records(self.bootstrap, self.topic, records, partitions=3)

    async def sign(self, *checkpoints: dict[str, Any]) -> None:
        """Checkpoints to the checkpoints topic."""
        await write_records(
            self.bootstrap, self.checkpoints, [*map(checkpoint_record, checkpoints)]
        )


@pytest.fixture
async def trail(kafka_bootstrap: str, create_topic: CreateTopic, tmp_path: Path) -> Trail:
    return Trail(kafka_bootstrap, tmp_path, await create_topic(3), await create_topic(1))


def found(report: dict[str, Any]) -> list[tuple[str, int | None, int | None]]:
    return sorted((p["kind"], p["partition"], p["offset"]) for p in report["problems"])


async def signed_trail(trail: Trail, count: int = 12) -> tuple[ChainedWriter, list[Record]]:
    """A writer's `count` records, all covered by one signed checkpoint."""
    key = SigningKey.generate()
    trail.keys.append(key.write_public(trail.folder))
    writer = ChainedWriter()
    records = await trail.write(writer.records(count))
    await trail.sign(key.checkpoint(writer))
    return writer, records


async def test_a_clean_trail_of_two_writers_verifies(trail: Trail) -> None:
    key = SigningKey.generate()
    trail.keys.append(key.write_public(trail.folder))
    a, b = ChainedWriter(), ChainedWriter()
    records = await trail.write(
        [r for p in zip(a.records(20), b.records(20), strict=True) for r in p]
    )
    await trail.sign(key.checkpoint(a), key.checkpoint(b))
    receipt = trail.folder / "receipt.json"
    receipt.write_text(json.dumps(receipt_of(records[7], trail.topic)))
    code, report = trail.verify("--receipt", str(receipt))
    assert code == 0, report
    assert report["clean"]
    assert report["signed"]
    assert (report["records_checked"], report["records_valid"], report["writers"]) == (40, 40, 2)
    assert (report["checkpoints_checked"], report["checkpoints_valid"]) == (2, 2)
    assert report["warnings"] == []
    assert set(report["problem_counts"]) == {
        "altered", "forged", "missing", "truncated", "conflict", "duplicate", "bad_signature",
        "expired_key", "key_mismatch", "malformed_checkpoint", "receipt", "unsigned",
        "not_covered", "writer_missing", "rollback", "fork", "unknown_writer", "bad_proof",
    }  # fmt: skip
    text = trail.run("--progress")
    assert text.returncode == 0
    assert "40/40 records" in text.stderr
    assert "40 record(s) checked, 40 valid, 2 writer(s), 2 of 2 checkpoint(s) valid" in text.stdout


async def test_an_unsigned_trail_is_clean_with_a_warning(trail: Trail) -> None:
    await trail.write(ChainedWriter().records(5))
    code, report = trail.verify()
    assert code == 0
    assert not report["signed"]
    assert [w["kind"] for w in report["warnings"]] == ["unsigned"]


async def test_a_rewritten_copy_with_its_headers_kept_is_altered(trail: Trail) -> None:
    _, records = await signed_trail(trail)
    (copy,) = await trail.write([with_value(records[4], b'{"prompt":"rewritten"}')])
    code, report = trail.verify()
    assert code == 1
    assert found(report) == [("altered", copy.partition, copy.offset)]


async def framed_trail(trail: Trail, frame: int, header: int) -> tuple[Record, Record]:
    """A writer's trail in the Confluent wire format under schema id 7, one position lost (its
    schema id in the checkpoint's void), signed; on the topic, record 2 is framed with schema id
    `frame` and says `header` in its rg-schema-id. The record at 2 and the checkpoint."""
    key = SigningKey.generate()
    trail.keys.append(key.write_public(trail.folder))
    writer = ChainedWriter()
    records = [writer.record(schema_id=7) for _ in range(5)]
    lost = writer.lose(schema_id=7)
    records += [writer.record(schema_id=7) for _ in range(3)]
    digest = records[2].header("rg-digest").removeprefix("sha256:")
    headers = [(n, v) for n, v in records[2].headers if n != "rg-schema-id"]
    records[2] = Record(
        b"\x00" + frame.to_bytes(4, "big") + records[2].value[5:],
        [*headers, ("rg-schema-id", str(header).encode())],
    )
    assert hashlib.sha256(records[2].value[5:]).hexdigest() == digest  # the digest still holds
    written = await trail.write(records)
    (checkpoint,) = await write_records(
        trail.bootstrap,
        trail.checkpoints,
        [checkpoint_record(checkpoint_v2(key, writer, {5: f"{lost};schema-id=7"}))],
    )
    return written[2], checkpoint


async def test_a_framed_trail_with_a_framed_lost_position_verifies(trail: Trail) -> None:
    await framed_trail(trail, frame=7, header=7)
    code, report = trail.verify("--strict")
    assert (code, report["problems"]) == (0, [])


async def test_a_schema_id_rewritten_with_its_header_breaks_the_signed_tree(trail: Trail) -> None:
    # The digest leaves the frame out, so only the leaf's schema id line can tell.
    _, checkpoint = await framed_trail(trail, frame=9, header=9)
    code, report = trail.verify()
    assert code == 1
    assert found(report) == [("conflict", checkpoint.partition, checkpoint.offset)]
    (problem,) = report["problems"]
    assert "tree" in problem["detail"]


async def test_a_frame_that_contradicts_its_schema_id_header_is_altered(trail: Trail) -> None:
    record, checkpoint = await framed_trail(trail, frame=9, header=7)
    code, report = trail.verify()
    assert code == 1
    assert found(report) == sorted(
        [("altered", record.partition, record.offset), ("conflict", 0, checkpoint.offset)]
    )


async def test_made_up_chain_headers_are_forged(trail: Trail) -> None:
    writer, _ = await signed_trail(trail)
    value = b'{"prompt":"never said"}'
    digest = hashlib.sha256(value).hexdigest()
    made_up = Record(
        value, chain_headers(writer.writer, writer.seq + 1, digest, secrets.token_hex(32))
    )
    (forged,) = await trail.write([made_up])
    code, report = trail.verify()
    assert code == 1
    assert found(report) == [("forged", forged.partition, forged.offset)]


async def test_a_copy_with_one_record_left_out_has_it_missing(trail: Trail) -> None:
    writer = ChainedWriter()
    records = writer.records(9)
    written = await trail.write([*records[:5], *records[6:]])
    code, report = trail.verify()
    assert code == 1
    (problem,) = report["problems"]
    # Found at the record after the gap: the old seq 6, now the sixth record written.
    after = written[5]
    assert (problem["kind"], problem["seq"], problem["writer"]) == ("missing", 5, writer.writer)
    assert (problem["partition"], problem["offset"]) == (after.partition, after.offset)


async def test_a_copy_without_its_last_records_is_truncated(trail: Trail) -> None:
    key = SigningKey.generate()
    trail.keys.append(key.write_public(trail.folder))
    writer = ChainedWriter()
    records = writer.records(10)
    await trail.write(records[:7])
    await trail.sign(key.checkpoint(writer))
    code, report = trail.verify()
    assert code == 1
    (problem,) = report["problems"]
    assert (problem["kind"], problem["seq"], problem["last_seq"]) == ("truncated", 7, 9)
    assert (problem["topic"], problem["partition"], problem["offset"]) == (trail.checkpoints, 0, 0)


async def test_a_doubled_record_is_a_duplicate_and_a_rival_a_conflict(trail: Trail) -> None:
    writer, records = await signed_trail(trail)
    (doubled,) = await trail.write([replace(records[3], partition=None, offset=None)])
    previous = records[5].header("rg-chain").removeprefix("sha256:")
    rival_writer = ChainedWriter(writer=writer.writer, seq=5, link=previous)
    (rival,) = await trail.write([rival_writer.record({"prompt": "another answer"})])
    code, report = trail.verify()
    assert code == 1
    assert found(report) == sorted(
        [
            ("duplicate", doubled.partition, doubled.offset),
            ("conflict", rival.partition, rival.offset),
        ]
    )


async def test_bad_signatures_and_key_rotation(trail: Trail) -> None:
    # A rotation is a restart: a new writer signs with the new key.
    retired, current = SigningKey.generate(), SigningKey.generate("current-key")
    before, after = ChainedWriter(), ChainedWriter()
    await trail.write(before.records(4))
    old = retired.checkpoint(before)
    await trail.write(after.records(4))
    new = current.checkpoint(after)
    await trail.sign(old, new)
    retired_file = retired.write_public(trail.folder)
    # A file named <key_id>.pem gives its key that id.
    current_file = current.write_public(trail.folder, "current-key.pem")
    trail.keys = [retired_file, current_file]
    code, report = trail.verify()
    assert code == 0, report
    assert report["checkpoints_valid"] == 2
    trail.keys = [current_file]
    code, report = trail.verify()
    assert code == 1
    assert found(report) == [("bad_signature", 0, 0)]
    await trail.sign({**new, "seq": 2, "count": 3})
    trail.keys = [retired_file, current_file]
    code, report = trail.verify()
    assert code == 1
    assert found(report) == [("bad_signature", 0, 2)]


async def test_a_retired_key_past_its_end_cannot_void_a_deleted_record(trail: Trail) -> None:
    current, retired = SigningKey.generate(), SigningKey.generate()
    writer = ChainedWriter()
    records = writer.records(6)
    await trail.write([r for i, r in enumerate(records) if i != 2])
    void = {2: records[2].header("rg-chain").removeprefix("sha256:")}
    late = retired.checkpoint(writer, void, at="2099-01-01T00:00:00.000000Z")
    await trail.sign(current.checkpoint(writer), late)
    current_file = current.write_public(trail.folder)
    retired_file = retired.write_public(trail.folder)
    trail.keys = [current_file]
    done = trail.run("--public-key", f"{retired_file}@2026-01-01T00:00:00Z")
    assert done.returncode == 1, done.stderr
    assert f"EXPIRED_KEY   {trail.checkpoints}[0]@1 writer={writer.writer} seq=5:" in done.stdout
    assert "TRUNCATED" in done.stdout
    done = trail.run("--public-key", f"{retired_file}@last-year")
    assert done.returncode == 2
    assert "the time the key was retired" in done.stderr


async def test_with_keys_a_trail_without_checkpoints_is_a_problem(trail: Trail) -> None:
    await trail.write(ChainedWriter().records(3))
    key = SigningKey.generate()
    trail.keys = [key.write_public(trail.folder)]
    trail.checkpoints = f"absent-{secrets.token_hex(4)}"
    done = trail.run()
    assert done.returncode == 1, done.stderr
    assert f"UNSIGNED      {trail.checkpoints}: no topic {trail.checkpoints}" in done.stdout
    trail.keys = []
    assert trail.run().returncode == 0
    assert trail.run("--require-signed").returncode == 1


async def test_kept_receipts_verify_and_an_altered_one_does_not(trail: Trail) -> None:
    _, records = await signed_trail(trail)
    receipts = [receipt_of(r, trail.topic) for r in records[:3]]
    kept = trail.folder / "kept.json"
    kept.write_text(json.dumps(receipts))
    code, report = trail.verify("--receipt", str(kept))
    assert code == 0, report
    altered = trail.folder / "altered.json"
    altered.write_text(json.dumps({**receipts[1], "chain": "sha256:" + "e" * 64}))
    code, report = trail.verify("--receipt", str(kept), "--receipt", str(altered))
    assert code == 1
    assert found(report) == [("receipt", records[1].partition, records[1].offset)]


async def test_since_checks_a_window_without_reporting_the_writers_start(trail: Trail) -> None:
    await signed_trail(trail)
    code, report = trail.verify("--since", "2000-01-01T00:00:00Z")
    assert code == 0, report
    assert report["records_checked"] == 12
    code, report = trail.verify("--since", "2999-01-01T00:00:00+00:00")
    assert code == 0, report
    assert report["records_checked"] == 0


async def test_poison_records_on_either_topic_are_findings_not_a_crash(trail: Trail) -> None:
    _, records = await signed_trail(trail)
    poison = [b"[" * 5000, b"\xff\xfe not utf-8", b"not json", b'{"seq":' + b"9" * 5000 + b"}"]
    bad_checkpoints = await write_records(
        trail.bootstrap, trail.checkpoints, [Record(value, []) for value in poison]
    )
    bad_records = await trail.write([Record(value, []) for value in poison])
    done = trail.run()
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    for record in bad_checkpoints:
        assert f"MALFORMED_CHECKPOINT {trail.checkpoints}[0]@{record.offset}: " in done.stdout
    for record in bad_records:
        assert f"{trail.topic}[{record.partition}]@{record.offset}" in done.stdout
    code, report = trail.verify()
    assert code == 1
    assert report["checkpoints_valid"] == 1
    assert report["problem_counts"]["malformed_checkpoint"] == len(poison)
    assert report["records_checked"] == len(records) + len(poison)
    assert {(p["kind"], p["partition"], p["offset"]) for p in report["problems"]} >= {
        ("forged", r.partition, r.offset) for r in bad_records
    }


async def test_receipts_that_match_are_counted_in_the_summary(trail: Trail) -> None:
    _, records = await signed_trail(trail)
    kept = trail.folder / "kept.json"
    kept.write_text(json.dumps([receipt_of(r, trail.topic) for r in records[:2]]))
    done = trail.run("--receipt", str(kept))
    assert done.returncode == 0, done.stdout
    assert "2 receipt(s) checked, all match" in done.stdout
    altered = trail.folder / "altered.json"
    altered.write_text(json.dumps({**receipt_of(records[3], trail.topic), "seq": 0}))
    done = trail.run("--receipt", str(kept), "--receipt", str(altered))
    assert done.returncode == 1
    assert "3 receipt(s) checked, 1 do(es) not match" in done.stdout
    code, report = trail.verify("--receipt", str(kept))
    assert (code, report["receipts_checked"]) == (0, 2)


async def test_an_unknown_key_id_hints_at_the_public_key_option(trail: Trail) -> None:
    await signed_trail(trail)
    key_file = trail.keys.pop()
    done = trail.run()
    assert done.returncode == 1
    key_id = key_file.name.removesuffix(".pub.pem")
    assert f"unknown key id {key_id!r}" in done.stdout
    assert "--public-key" in done.stdout


def test_kafka_unreachable_exits_2_and_leaves_no_consumer_unclosed(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RG_")}
    env["RG_KAFKA_BOOTSTRAP_SERVERS"] = f"127.0.0.1:{port}"
    done = run_cli(["verify", "--topic", "absent"], cwd=tmp_path, env=env)
    assert done.returncode == 2, done.stderr
    assert "cannot read the trail" in done.stderr
    assert "Unclosed" not in done.stderr
    assert "Traceback" not in done.stderr


async def test_strict_fails_on_records_no_checkpoint_covers(trail: Trail) -> None:
    writer, _ = await signed_trail(trail, 6)
    appended = await trail.write(writer.records(2))  # linked, by anyone who may write the topic
    code, report = trail.verify()
    assert code == 0
    assert [(w["kind"], w["seq"], w["last_seq"]) for w in report["warnings"]] == [
        ("not_covered", 6, 7)
    ]
    code, report = trail.verify("--strict")
    assert code == 1
    assert [(p["kind"], p["seq"], p["offset"]) for p in report["problems"]] == [
        ("not_covered", 6, appended[0].offset)
    ]
    assert report["problem_counts"]["not_covered"] == 1


async def test_strict_fails_on_an_unsigned_trail(trail: Trail) -> None:
    await trail.write(ChainedWriter().records(3))
    code, report = trail.verify("--strict")
    assert code == 1
    assert [p["kind"] for p in report["problems"]] == ["unsigned"]


async def test_a_witness_checkpoint_finds_a_cut_tail_with_the_checkpoints_emptied(
    trail: Trail,
) -> None:
    # The witness kept GET /audit/checkpoint's answer; the checkpoints topic stayed empty (or
    # was deleted) and the audit topic lost its last 3 records.
    key = SigningKey.generate()
    trail.keys.append(key.write_public(trail.folder))
    writer = ChainedWriter()
    records = writer.records(10)
    kept = trail.folder / "witness.json"
    kept.write_text(json.dumps(key.checkpoint(writer), indent=2))
    await trail.write(records[:7])
    for checkpoints in (trail.checkpoints, f"deleted-{secrets.token_hex(4)}"):
        done = trail.run("--json", "--checkpoints-topic", checkpoints, "--checkpoint", str(kept))
        assert done.returncode == 1, done.stderr
        report = json.loads(done.stdout)
        assert [(p["kind"], p["seq"], p["last_seq"], p["topic"]) for p in report["problems"]] == [
            ("truncated", 7, 9, str(kept))
        ]
        assert (report["checkpoints_checked"], report["checkpoints_valid"]) == (1, 1)
    # Without the witness's checkpoint: only the unsigned problem, the cut tail unseen.
    code, report = trail.verify()
    assert [p["kind"] for p in report["problems"]] == ["unsigned"]
    # The whole trail with the witness's checkpoint: clean.
    await trail.write(records[7:])
    code, report = trail.verify("--checkpoint", str(kept), "--strict")
    assert code == 0, report
    assert report["signed"]


async def test_a_witness_checkpoint_that_is_not_one_is_a_finding(trail: Trail) -> None:
    await signed_trail(trail, 3)
    bad = trail.folder / "bad.json"
    bad.write_text("not json")
    code, report = trail.verify("--checkpoint", str(bad))
    assert code == 1
    assert [(p["kind"], p["topic"]) for p in report["problems"]] == [
        ("malformed_checkpoint", str(bad))
    ]


async def test_a_checkpoint_keyed_by_another_writer_is_not_trusted(trail: Trail) -> None:
    key = SigningKey.generate()
    trail.keys.append(key.write_public(trail.folder))
    writer = ChainedWriter()
    await trail.write(writer.records(4))
    checkpoint = key.checkpoint(writer)
    await write_records(
        trail.bootstrap,
        trail.checkpoints,
        [replace(checkpoint_record(checkpoint), key=secrets.token_hex(16).encode())],
    )
    code, report = trail.verify()
    assert code == 1
    assert [(p["kind"], p["topic"], p["offset"]) for p in report["problems"]] == [
        ("malformed_checkpoint", trail.checkpoints, 0),
        ("unsigned", trail.checkpoints, None),
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "yesterday"], "not an RFC 3339 time"),
        (["--since", "2026-01-01T00:00:00"], "offset"),
        (["--public-key", "nowhere.pem"], "not a readable PEM public key"),
        (["--receipt", "nowhere.json"], "not a readable JSON file"),
        (["--checkpoint", "nowhere.json"], "not a readable file"),
        (["--from-beginning", "--since", "2026-01-01T00:00:00Z"], "not allowed with"),
        (["--topic", f"absent-{secrets.token_hex(4)}"], "does not exist"),
    ],
)
async def test_usage_errors_exit_2(trail: Trail, args: list[str], message: str) -> None:
    done = trail.run(*args)
    assert done.returncode == 2, done.stdout
    assert message in done.stderr


def test_unit_verify_is_listed_with_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["verify", "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    for option in (
        "--topic",
        "--checkpoints-topic",
        "--since",
        "--public-key",
        "--receipt",
        "--strict",
        "--checkpoint",
    ):
        assert option in text
    assert "verify" in build_parser().format_help()


def test_a_kept_proof_is_checked_offline_reading_no_topic(tmp_path: Path) -> None:
    key, name, writer = Ed25519PrivateKey.generate(), "rg.test/audit", "ab" * 16
    digests = [hashlib.sha256(bytes([i])).hexdigest() for i in range(9)]
    tree = MerkleTree()
    for seq, digest in enumerate(digests):
        tree.append(leaf_entry(writer, seq, digest))
    note = sign_note(TreeHead(writer_log(name, writer), 9, tree.root()).text(), name, key)
    proof = TlogProof(5, tuple(tree.inclusion(5)), note.encode(), leaf_entry(writer, 5, digests[5]))
    good, bad = tmp_path / "good.tlog-proof", tmp_path / "bad.tlog-proof"
    good.write_bytes(proof.encode())
    bad.write_bytes(proof.encode().replace(b"index 5", b"index 4"))
    public = tmp_path / "log.pub.pem"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    # No broker at all: a proof is checked with the key alone.
    env = {**os.environ, "RG_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    checked = run_cli(
        ["verify", "--proof", str(good), "--public-key", str(public)], cwd=tmp_path, env=env
    )
    assert checked.returncode == 0, checked.stderr
    assert f"sha256:{digests[5]} is position 5 of writer {writer}" in checked.stdout
    assert f"in its tree of 9 signed under {name}" in checked.stdout
    refused = run_cli(
        [
            "verify",
            "--proof",
            str(good),
            "--proof",
            str(bad),
            "--public-key",
            str(public),
            "--json",
        ],
        cwd=tmp_path,
        env=env,
    )
    assert refused.returncode == 1, refused.stderr
    results = json.loads(refused.stdout)["proofs"]
    assert [r["valid"] for r in results] == [True, False]
    assert "another position" in results[1]["problem"]
    keyless = run_cli(["verify", "--proof", str(good)], cwd=tmp_path, env=env)
    assert keyless.returncode == 2
    assert "--proof needs --public-key" in keyless.stderr


async def log_of_writers(trail: Trail, create_topic: CreateTopic, records: list[Record]) -> None:
    """A writers topic (one partition) for `trail` holding `records`."""
    trail.writers = await create_topic(1)
    await write_records(trail.bootstrap, trail.writers, records)


async def test_a_writer_the_log_knows_whose_records_are_gone_is_writer_missing(
    trail: Trail, create_topic: CreateTopic
) -> None:
    key = SigningKey.generate()
    trail.keys.append(key.write_public(trail.folder))
    a, b = ChainedWriter(), ChainedWriter()
    a_records, b_records = a.records(8), b.records(6)
    entries = [
        writers_entry("start", a),
        writers_entry("start", b),
        writers_entry("head", a),
        writers_entry("head", b),
        writers_entry("stop", b),
    ]
    await log_of_writers(trail, create_topic, entries)
    # The whole trail verifies clean with its log of writers.
    await trail.write(a_records + b_records)
    await trail.sign(checkpoint_v2(key, a), checkpoint_v2(key, b))
    code, report = trail.verify("--strict")
    assert code == 0, report
    assert report["warnings"] == []
    # A copy without b's records and checkpoints, the log of writers kept: b is missing.
    trail.topic, trail.checkpoints = await create_topic(3), await create_topic(1)
    await trail.write(a_records)
    await trail.sign(checkpoint_v2(key, a))
    code, report = trail.verify()
    assert code == 1
    assert [(p["kind"], p["writer"], p["seq"], p["last_seq"]) for p in report["problems"]] == [
        ("writer_missing", b.writer, 0, 5)
    ]
    assert report["problems"][0]["topic"] == trail.writers
    assert report["problems"][0]["offset"] == 4  # b's stop says size 6
    assert report["problem_counts"]["writer_missing"] == 1


async def test_an_audit_topic_cut_back_below_the_logged_head_is_a_rollback(
    trail: Trail, create_topic: CreateTopic
) -> None:
    key = SigningKey.generate()
    trail.keys.append(key.write_public(trail.folder))
    a = ChainedWriter()
    records = a.records(12)
    await log_of_writers(trail, create_topic, [writers_entry("start", a), writers_entry("head", a)])
    # Only a prefix is left, and only a checkpoint below the cut: nothing else tells.
    await trail.write(records[:8])
    await trail.sign(checkpoint_v2(key, a, seq=5))
    code, report = trail.verify()
    assert code == 1
    assert [(p["kind"], p["writer"], p["seq"], p["last_seq"]) for p in report["problems"]] == [
        ("rollback", a.writer, 8, 11)
    ]


async def test_two_signed_trees_of_one_size_with_different_roots_are_a_fork(
    trail: Trail,
) -> None:
    key = SigningKey.generate()
    trail.keys.append(key.write_public(trail.folder))
    a = ChainedWriter()
    records = await trail.write(a.records(8))
    honest = checkpoint_v2(key, a, seq=5)
    # The key holder rewrites record 3 and signs the tree of size 6 again over it.
    rewritten = ChainedWriter(writer=a.writer)
    for n in range(8):
        if n == 3:
            rewritten.record({"prompt": "rewritten"})
        else:
            rewritten.record(json.loads(records[n].value))
    await trail.sign(honest, checkpoint_v2(key, rewritten, seq=5))
    code, report = trail.verify()
    assert code == 1
    forks = [p for p in report["problems"] if p["kind"] == "fork"]
    assert [(p["writer"], p["seq"], p["offset"]) for p in forks] == [(a.writer, 5, 1)]


async def test_a_writer_the_log_does_not_know_is_unknown_a_problem_under_strict(
    trail: Trail, create_topic: CreateTopic
) -> None:
    key = SigningKey.generate()
    trail.keys.append(key.write_public(trail.folder))
    a, b = ChainedWriter(), ChainedWriter()
    await trail.write(a.records(4) + b.records(3))
    await trail.sign(checkpoint_v2(key, a), checkpoint_v2(key, b))
    await log_of_writers(trail, create_topic, [writers_entry("start", a), writers_entry("head", a)])
    code, report = trail.verify()
    assert code == 0
    assert [(w["kind"], w["writer"]) for w in report["warnings"]] == [("unknown_writer", b.writer)]
    code, report = trail.verify("--strict")
    assert code == 1
    assert [(p["kind"], p["writer"]) for p in report["problems"]] == [("unknown_writer", b.writer)]


def writers_note(key: SigningKey, values: list[bytes], *, size: int | None = None) -> Record:
    """A signed note of the log of writers over `values` (its first `size`), in its envelope,
    keyed `writers`, as docs/integrity.md spells it."""
    count = len(values) if size is None else size
    root = spec_root(values[:count])
    text = f"{ORIGIN}/writers\n{count}\n{base64.b64encode(root).decode()}\n"
    body = {
        "version": 2,
        "log": "writers",
        "size": count,
        "root": f"sha256:{root.hex()}",
        "time": "2026-12-07T09:00:00.000000Z",
        "key_id": key.key_id,
        "note": spec_note(text, ORIGIN, key.private),
    }
    value = json.dumps(sign_json(key.private, body), separators=(",", ":")).encode()
    return Record(value, [], key=b"writers")


async def test_notes_of_the_log_of_writers_fork_roll_back_or_verify(
    trail: Trail, create_topic: CreateTopic
) -> None:
    key = SigningKey.generate()
    trail.keys.append(key.write_public(trail.folder))
    a = ChainedWriter()
    await trail.write(a.records(4))
    entries = [writers_entry("start", a), writers_entry("head", a, 2), writers_entry("head", a)]
    await log_of_writers(trail, create_topic, entries)
    values = [entry.value for entry in entries]
    await trail.sign(checkpoint_v2(key, a))
    await write_records(
        trail.bootstrap,
        trail.checkpoints,
        [writers_note(key, values, size=2), writers_note(key, values)],
    )
    code, report = trail.verify("--strict")
    assert code == 0, report
    assert (report["checkpoints_checked"], report["checkpoints_valid"]) == (3, 3)
    # Another history of the log signed at size 2, a note beyond the topic, a stranger's note.
    other = [values[0], writers_entry("head", a, 1).value]
    stranger = SigningKey.generate()
    written = await write_records(
        trail.bootstrap,
        trail.checkpoints,
        [
            writers_note(key, other),
            writers_note(key, [*values, values[0]]),
            writers_note(stranger, values),
            Record(b'{"log":"writers"}', [], key=b"writers"),
        ],
    )
    code, report = trail.verify()
    assert code == 1
    offsets = [record.offset for record in written]
    assert found(report) == sorted(
        [
            ("fork", 0, offsets[0]),  # two notes of size 2
            ("fork", 0, offsets[0]),  # and not the topic's first 2 entries
            ("rollback", 0, offsets[1]),
            ("bad_signature", 0, offsets[2]),
            ("malformed_checkpoint", 0, offsets[3]),
        ]
    ), report


async def test_a_kept_note_of_the_log_of_writers_finds_its_topic_cut_back(
    trail: Trail, create_topic: CreateTopic
) -> None:
    key = SigningKey.generate()
    trail.keys.append(key.write_public(trail.folder))
    a = ChainedWriter()
    await trail.write(a.records(3))
    await trail.sign(checkpoint_v2(key, a))
    entries = [writers_entry("start", a), writers_entry("head", a, 2), writers_entry("stop", a)]
    values = [entry.value for entry in entries]
    # A witness kept the note of size 3 (the text GET /audit/checkpoint?log=writers serves);
    # the writers topic now holds only its first two entries.
    await log_of_writers(trail, create_topic, entries[:2])
    kept = trail.folder / "writers.note"
    kept.write_text(json.loads(writers_note(key, values).value)["note"])
    code, report = trail.verify("--checkpoint", str(kept))
    assert code == 1
    assert [(p["kind"], p["topic"]) for p in report["problems"]] == [("rollback", str(kept))]
    # The same note against the whole topic: clean; a stranger's note: bad_signature.
    await write_records(trail.bootstrap, str(trail.writers), entries[2:])
    code, report = trail.verify("--checkpoint", str(kept))
    assert code == 0, report
    assert report["checkpoints_valid"] == 2
    stranger = trail.folder / "stranger.note"
    stranger.write_text(json.loads(writers_note(SigningKey.generate(), values).value)["note"])
    code, report = trail.verify("--checkpoint", str(stranger))
    assert [(p["kind"], p["topic"]) for p in report["problems"]] == [
        ("bad_signature", str(stranger))
    ]
