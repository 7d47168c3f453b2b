"""The cost of proofs, in this process (no service, no broker): CPU per record of a writer's
tree (the frontier the checkpointer signs), of the proof index (every writer's tree in files and
the event ids in SQLite: what a rebuild from the topics costs beyond reading them), and the
latency and size of an inclusion proof, warm, at the index's size. Then a cold rebuild end to
end with the Kafka read (bench/rebuild.py): a fresh audit topic on the embedded broker (or
RG_KAFKA_BOOTSTRAP_SERVERS) filled with `--rebuild` records, the service's proof index reader
timed from an empty RG_PROOF_DIR until it serves a proof of the last record.

    python -m bench.proofs [--records N] [--proofs N] [--dir DIR] [--rebuild N]
"""

import argparse
import asyncio
import hashlib
import random
import statistics
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.integrity.checkpoint import writer_log
from app.integrity.merkle import Frontier, leaf_entry, leaf_hash
from app.integrity.note import TreeHead, sign_note
from app.integrity.proofs import KnownCheckpoint, ProofIndex
from bench import rebuild
from bench.run import kafka_broker

WRITER = "0123456789abcdef0123456789abcdef"
NAME = "ractogateway-kafka/bench"


def digests(count: int) -> list[str]:
    return [hashlib.sha256(i.to_bytes(8, "big")).hexdigest() for i in range(count)]


def frontier_cost(values: list[str]) -> float:
    """CPU seconds per record of the writer's frontier: leaf entry, leaf hash, append."""
    frontier = Frontier()
    start = time.process_time()
    for seq, digest in enumerate(values):
        frontier.append_hash(leaf_hash(leaf_entry(WRITER, seq, digest)))
    frontier.root()
    return (time.process_time() - start) / len(values)


def index_cost(values: list[str], directory: Path) -> tuple[float, float, ProofIndex]:
    """CPU and wall seconds per record of the proof index, flushed every 10,000 records."""
    index = ProofIndex(directory)
    start, wall = time.process_time(), time.perf_counter()
    for seq, digest in enumerate(values):
        index.add_record(WRITER, seq, digest, f"evt-{seq}")
        if seq % 10_000 == 9_999:
            index.flush()
    index.flush()
    cpu = (time.process_time() - start) / len(values)
    return cpu, (time.perf_counter() - wall) / len(values), index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--proofs", type=int, default=2_000)
    parser.add_argument("--dir", type=Path, default=None, help="where the index goes (a temp dir)")
    parser.add_argument(
        "--rebuild",
        type=int,
        default=1_000_000,
        metavar="N",
        help="records of the cold rebuild read from Kafka (0: skip it)",
    )
    parser.add_argument(
        "--in-process",
        type=int,
        default=1,
        choices=(0, 1),
        help="0: only the cold rebuild (skip the in-process figures)",
    )
    args = parser.parse_args()
    if args.in_process:
        in_process(args)
    if args.rebuild:
        cold_rebuild(args.rebuild, args.dir)


def cold_rebuild(records: int, directory: Path | None) -> None:
    """Fill a fresh topic and time the proof index's cold rebuild from it; print the figures."""
    with kafka_broker() as broker:
        print(f"cold rebuild: filling {records:,} records ({broker.kind} broker)", flush=True)
        filled, rebuilt = asyncio.run(
            rebuild.measure(
                broker.bootstrap_servers, records, directory=directory, broker_pid=broker.pid
            )
        )
    for line in rebuild.report(filled, rebuilt):
        print(line)


def in_process(args: argparse.Namespace) -> None:
    """The frontier, the index, proofs and lookups in this process (no broker)."""
    values = digests(args.records)
    print(f"records: {args.records:,}")
    print(f"writer's tree (frontier): {frontier_cost(values) * 1e6:.2f} us CPU per record")
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        cpu, wall, index = index_cost(values, Path(folder))
        print(
            f"proof index: {cpu * 1e6:.2f} us CPU, {wall * 1e6:.2f} us wall per record "
            f"(10 million: {wall * 10_000_000:.0f} s beyond reading the topics)"
        )
        key = Ed25519PrivateKey.generate()
        root = index.root(WRITER)
        note = sign_note(TreeHead(writer_log(NAME, WRITER), args.records, root).text(), NAME, key)
        index.add_checkpoint(WRITER, KnownCheckpoint(args.records, root, note.encode()))
        rng = random.Random(1)  # noqa: S311 - positions to prove, not secrets
        times, sizes = [], []
        for _ in range(args.proofs):
            seq = rng.randrange(args.records)
            start = time.perf_counter()
            proof = index.proof(WRITER, seq).encode()
            times.append(time.perf_counter() - start)
            sizes.append(len(proof))
        times.sort()
        p50 = statistics.median(times) * 1e3
        p99 = times[int(len(times) * 0.99)] * 1e3
        print(
            f"inclusion proof at {args.records:,}: p50 {p50:.3f} ms, p99 {p99:.3f} ms warm; "
            f"{statistics.mean(sizes):.0f} bytes"
        )
        located = time.perf_counter()
        for seq in range(0, args.records, max(1, args.records // 1000)):
            index.locate(f"evt-{seq}")
        per_lookup = (time.perf_counter() - located) / 1000 * 1e3
        print(f"event id lookup: {per_lookup:.3f} ms")
        index.close()
        on_disk = sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())
        print(f"index on disk: {on_disk / 1e6:.0f} MB ({on_disk / args.records:.0f} bytes/record)")


if __name__ == "__main__":
    main()
