"""`make bench-goverifier`: records/s of the two verifiers of evidence bundles on one core.

    .venv/bin/python -m bench.goverifier [--records N] [--value-bytes N]

A bundle of N records (default 200,000; ~1 KB values, one writer, six partitions) is made with
the project's own code: each record chained, its leaf in the writer's tree, a signed version 2
checkpoint over all of them, an inclusion proof per record, a log of writers with its signed
note, a signed manifest. Then both verifiers check the same file, pinned to one core
(`taskset -c 0`): the Go one (`make verifier`, .cache/tools/bin/rg-verify) and
`ractogateway-kafka verify --bundle`. Both must find it clean; the figure is N divided by the
process's CPU time, user and system (it includes starting, reading and inflating the ZIP; the
wall time is printed too: on a busy machine it is longer). Results: printed, and
bench/results/goverifier.json. No broker."""

import argparse
import hashlib
import json
import resource
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.integrity.bundle import (
    CHECKPOINTS,
    KEYS,
    PROOFS,
    RECORDS,
    WRITERS,
    BundleWriter,
    KafkaLine,
    keys_document,
    proof_line,
)
from app.integrity.chain import GENESIS, link_of
from app.integrity.checkpoint import Checkpoint, rfc3339
from app.integrity.keys import derived_key_id
from app.integrity.merkle import MerkleTree, leaf_entry
from app.integrity.note import TlogProof
from app.integrity.writers import WRITERS_KEY, WriterEntry, WritersNote

ROOT = Path(__file__).resolve().parents[1]
GO_VERIFIER = ROOT / ".cache" / "tools" / "bin" / "rg-verify"
PYTHON_CLI = ROOT / ".venv" / "bin" / "ractogateway-kafka"
RESULTS = Path(__file__).parent / "results" / "goverifier.json"
ORIGIN = "ractogateway-kafka/bench"
TOPIC = "bench.audit"
PARTITIONS = 6


def make_bundle(
    count: int,
    out: Path,
    key: Ed25519PrivateKey,
    value_bytes: int = 1000,
    values: Sequence[bytes] = (),
) -> None:
    """A clean bundle of `count` records of one writer at `out`, signed with `key`, each value
    about `value_bytes` long (or, when `values` are given, one record of each)."""
    count = len(values) or count
    writer, key_id, now = (
        secrets.token_hex(16),
        derived_key_id(key.public_key()),
        rfc3339(datetime.now(UTC)),
    )
    filler = "x" * max(value_bytes - 100, 1)
    tree, prev = MerkleTree(), GENESIS
    lines: list[KafkaLine] = []
    for seq in range(count):
        value = (
            values[seq]
            if values
            else json.dumps(
                {"user_id": f"user-{seq % 200}", "model": "m", "prompt": filler, "seq": seq},
                separators=(",", ":"),
            ).encode()
        )
        digest = hashlib.sha256(value).hexdigest()
        prev = link_of(writer, seq, prev, digest)
        tree.append(leaf_entry(writer, seq, digest))
        headers = (
            ("rg-digest", f"sha256:{digest}".encode()),
            ("rg-writer", writer.encode()),
            ("rg-seq", str(seq).encode()),
            ("rg-chain", f"sha256:{prev}".encode()),
        )
        partition = seq % PARTITIONS
        lines.append(
            KafkaLine(TOPIC, partition, seq // PARTITIONS, 0, writer.encode(), value, headers)
        )
    checkpoint = Checkpoint(
        writer=writer,
        seq=count - 1,
        chain=prev,
        time=now,
        key_id=key_id,
        version=2,
        tree=tree.root().hex(),
    ).sign(key, name=ORIGIN)
    start = WriterEntry("start", writer, now, origin=f"{ORIGIN}/writer/{writer}").to_bytes()
    stop = WriterEntry("stop", writer, now, size=count, root=tree.root().hex()).to_bytes()
    log = MerkleTree()
    for entry in (start, stop):
        log.append(entry)
    note = WritersNote.sign(ORIGIN, 2, log.root(), time=now, key_id=key_id, key=key)
    with tempfile.TemporaryDirectory() as work:
        bundle = BundleWriter(Path(work))
        public_pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        bundle.add(
            KEYS,
            keys_document(
                [
                    {
                        "key_id": key_id,
                        "current": True,
                        "public_key_pem": public_pem.decode(),
                        "verifier_key": "",
                        "until": None,
                    }
                ]
            ),
        )
        checkpoints = f"{TOPIC}.checkpoints"
        for offset, (record_key, value) in enumerate(
            ((writer.encode(), checkpoint.to_bytes()), (WRITERS_KEY.encode(), note.to_bytes()))
        ):
            bundle.add(
                CHECKPOINTS, KafkaLine(checkpoints, 0, offset, 0, record_key, value, ()).encode()
            )
        for offset, entry in enumerate((start, stop)):
            line = KafkaLine(f"{TOPIC}.writers", 0, offset, 0, writer.encode(), entry, ())
            bundle.add(WRITERS, line.encode())
        for line in sorted(lines, key=lambda line: (line.partition, line.offset)):
            bundle.add(RECORDS, line.encode())
        signed_note = checkpoint.note.encode()
        for seq in range(count):
            entry = leaf_entry(writer, seq, lines[seq].headers[0][1].decode()[7:])
            proof = TlogProof(seq, tuple(tree.inclusion(seq, count)), signed_note, entry)
            bundle.add(PROOFS, proof_line(writer, seq, proof.encode()))
        bundle.close(
            out,
            key=key,
            key_id=key_id,
            created=now,
            query={"since": None, "until": None, "user": None},
            topics={"audit": TOPIC, "checkpoints": checkpoints, "writers": f"{TOPIC}.writers"},
        )


def timed(command: list[str]) -> tuple[float, float, dict[str, Any]]:
    """Wall and CPU (user + system) seconds of `command` on core 0, and its JSON report."""
    pinned = ["taskset", "-c", "0", *command] if shutil.which("taskset") else command
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(pinned, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    if done.returncode != 0:
        raise SystemExit(f"{command[0]}: exit {done.returncode}: {done.stderr[-2000:]}")
    report: dict[str, Any] = json.loads(done.stdout)
    return elapsed, cpu, report


def main() -> None:
    """Make the bundle, check it with both verifiers, print and keep the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--value-bytes", type=int, default=1000)
    args = parser.parse_args()
    key = Ed25519PrivateKey.generate()
    with tempfile.TemporaryDirectory() as folder:
        bundle, public = Path(folder) / "bench.zip", Path(folder) / "bench.pub.pem"
        public.write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        started = time.perf_counter()
        make_bundle(args.records, bundle, key, args.value_bytes)
        made = time.perf_counter() - started
        size = bundle.stat().st_size
        check = ["--bundle", str(bundle), "--public-key", str(public), "--json"]
        go_s, go_cpu, go_report = timed([str(GO_VERIFIER), *check])
        py_s, py_cpu, py_report = timed([str(PYTHON_CLI), "verify", *check])
    for report in (go_report, py_report):
        if not report["clean"] or report["records_valid"] != args.records:
            raise SystemExit(f"the bundle is not found clean: {report}")
    results = {
        "records": args.records,
        "value_bytes": args.value_bytes,
        "bundle_bytes": size,
        "made_s": round(made, 1),
        "go_wall_s": round(go_s, 3),
        "go_cpu_s": round(go_cpu, 3),
        "go_records_per_cpu_s": round(args.records / go_cpu),
        "python_wall_s": round(py_s, 3),
        "python_cpu_s": round(py_cpu, 3),
        "python_records_per_cpu_s": round(args.records / py_cpu),
    }
    print(json.dumps(results, indent=2))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
