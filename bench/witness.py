"""Witnesses (docs/integrity.md, "Outside witnesses") against real litewitnesses
(filippo.io/torchwood, built as the tests build them): fork trials at scale, the time from a
checkpoint of the log of writers to its quorum of cosignatures at one checkpoint a second, and
the `POST /audit` rate of a signed service with two witnesses against the same without.

    python -m bench.witness [--trials N] [--seconds S] [--rounds N]

1. Fork trials, no service: a log of 1,000 entries whose checkpoint of 500 a witness cosigned,
   then N histories rewritten from it (tests/helpers/witness.py `rewritten`) and re-signed with
   the real key, each sent with the proof from the size the witness holds: how many it cosigned
   (the goal is none), and the genuine extension cosigned at the end.
2. A service with RG_AUDIT_WRITERS_S=1 and two witnesses (k=2), under wrk at 32 connections for
   S seconds, alternating with the same service without witnesses, `--rounds` times each: the
   rate and p99 of each; meanwhile GET /audit/checkpoint?log=writers polled every 10 ms, from a
   note's first sight to its second cosignature (p50/p99; a note replaced before the poll saw
   it cosigned is not counted), and the service's own rg_audit_witness_quorum_seconds (every
   checkpoint; its buckets bound p50/p99 from above).
"""

import argparse
import json
import random
import re
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from app.embedded import free_port
from app.integrity.merkle import MerkleTree
from app.integrity.note import TreeHead, sign_note, verifier_key
from app.integrity.witness import Cosigned, Refused, SizeConflict, WitnessKey
from app.integrity.writers import writers_log
from bench import wrk
from bench.integrity import signing_key
from bench.run import kafka_broker
from bench.service import Service
from bench.workload import http_body
from tests.helpers import witness

NAME = "ractogateway-kafka/bench-witness"
ORIGIN = writers_log(NAME)


def fork_trials(folder: Path, trials: int) -> dict[str, float]:
    """Rewritten histories sent to a real witness after a genuine checkpoint: refused, cosigned."""
    key = Ed25519PrivateKey.generate()
    vkey = verifier_key(NAME, key.public_key())
    entries = [f"entry {i}".encode() for i in range(1_000)]
    tree = MerkleTree()
    for entry in entries:
        tree.append(entry)

    def note(size: int, of: MerkleTree) -> tuple[str, str]:
        text = TreeHead(ORIGIN, size, of.root(size)).text()
        return text, sign_note(text, NAME, key)

    one = witness.Litewitness.create(
        folder / "forks", name="bench.witness/forks", log_origin=ORIGIN, log_key=vkey
    )
    try:
        wkey = WitnessKey.parse(one.vkey)
        text, signed = note(500, tree)
        first = witness.submit(one.url, 0, [], signed, key=wkey, text=text)
        if not isinstance(first, Cosigned):
            raise RuntimeError(f"the witness did not cosign the genuine checkpoint: {first}")
        rng = random.Random(27)  # noqa: S311 - histories to try, not secrets
        cosigned = refused = 0
        start = time.perf_counter()
        for _ in range(trials):
            fork = witness.rewritten(entries, 500, rng)
            text, signed = note(len(fork), fork)
            old = rng.choice([500, 500, 0, 250])
            proof = fork.consistency(old, len(fork))
            answer = witness.submit(one.url, old, proof, signed, key=wkey, text=text)
            if isinstance(answer, SizeConflict):
                old = answer.size
                proof = fork.consistency(old, len(fork))
                answer = witness.submit(one.url, old, proof, signed, key=wkey, text=text)
            cosigned += isinstance(answer, Cosigned)
            refused += isinstance(answer, Refused)
        elapsed = time.perf_counter() - start
        text, signed = note(1_000, tree)
        genuine = witness.submit(
            one.url, 500, tree.consistency(500, 1_000), signed, key=wkey, text=text
        )
        return {
            "trials": trials,
            "cosigned": cosigned,
            "refused": refused,
            "ms_per_trial": elapsed / trials * 1000,
            "genuine_extension_cosigned": float(isinstance(genuine, Cosigned)),
        }
    finally:
        one.close()


class _QuorumWatch:
    """Polls the service's note of the log of writers: first sight and second cosignature."""

    def __init__(self, url: str) -> None:
        self._url = url
        self.first: dict[int, float] = {}
        self.quorum: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> "_QuorumWatch":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _poll(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self._stop.is_set():
                answer = client.get(f"{self._url}/audit/checkpoint", params={"log": "writers"})
                if answer.status_code == 200:
                    text, _, lines = answer.text.partition("\n\n")
                    size = TreeHead.parse(text + "\n").size
                    now = time.monotonic()
                    self.first.setdefault(size, now)
                    if len(lines.splitlines()) >= 3:
                        self.quorum.setdefault(size, now)
                time.sleep(0.01)

    def waits_ms(self) -> list[float]:
        return sorted((self.quorum[s] - self.first[s]) * 1000 for s in self.quorum)


def _histogram(url: str, name: str) -> list[tuple[float, float]]:
    """The cumulative buckets (upper bound, count) of histogram `name` in the service's metrics."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    found = re.findall(rf'^{name}_bucket{{le="([^"]+)"}} (\S+)$', text, re.MULTILINE)
    return [(float(le), float(count)) for le, count in found]


def _bucket_quantile(buckets: list[tuple[float, float]], share: float) -> float:
    """The upper bound of the bucket the `share` quantile falls in (seconds)."""
    total = buckets[-1][1] if buckets else 0.0
    return next((le for le, count in buckets if total and count >= share * total), float("nan"))


def _percentile(values: list[float], share: float) -> float:
    return values[min(len(values) - 1, int(share * len(values)))] if values else float("nan")


def service_pair(folder: Path, seconds: int, rounds: int) -> dict[str, object]:
    """The rate with two witnesses against without, and the time to quorum."""
    key_file = signing_key(folder)
    private = load_pem_private_key(key_file.read_bytes(), password=None)
    vkey = verifier_key(NAME, private.public_key())  # type: ignore[arg-type]
    witnesses = [
        witness.Litewitness.create(
            folder / f"w{i}", name=f"bench.witness/w{i}", log_origin=ORIGIN, log_key=vkey
        )
        for i in range(2)
    ]
    policy = {"k": 2, "witnesses": [{"url": w.url, "key": w.vkey} for w in witnesses]}
    script = wrk.write_script(folder, http_body(), name="audit")
    results: dict[str, list[float]] = {"on_rate": [], "off_rate": [], "on_p99": [], "off_p99": []}
    waits: list[float] = []
    # The service's own histogram of note to quorum, summed over the "on" runs.
    quorum_buckets: dict[float, float] = {}
    try:
        with kafka_broker() as broker:
            for round_ in range(rounds):
                for variant in ("off", "on"):
                    settings = {
                        "RG_AUDIT_SIGNING_KEY_FILE": str(key_file),
                        "RG_AUDIT_CHECKPOINT_S": "1",
                        "RG_AUDIT_WRITERS_S": "1",
                        "RG_AUDIT_LOG_ORIGIN": NAME,
                    }
                    if variant == "on":
                        settings["RG_AUDIT_WITNESSES"] = json.dumps(policy)
                    service = Service(
                        bootstrap_servers=broker.bootstrap_servers,
                        port=free_port(),
                        topic=f"bench-witness-{variant}-{round_}-{int(time.time())}",
                        log_path=folder / f"service-{variant}-{round_}.log",
                        settings=settings,
                    )
                    service.start()
                    try:
                        with _QuorumWatch(service.url) as watch:
                            measured = wrk.run(
                                url=f"{service.url}/audit",
                                script=script,
                                connections=32,
                                duration_s=seconds,
                                name=f"audit_32_{variant}",
                                label=variant,
                            )
                            time.sleep(2.5)  # the last notes cosigned
                        if variant == "on":
                            name = "rg_audit_witness_quorum_seconds"
                            for le, count in _histogram(service.url, name):
                                quorum_buckets[le] = quorum_buckets.get(le, 0.0) + count
                        results[f"{variant}_rate"].append(measured.requests_per_s)
                        results[f"{variant}_p99"].append(measured.p99_ms)
                        if variant == "on":
                            waits += watch.waits_ms()
                    finally:
                        service.stop()
    finally:
        for one in witnesses:
            one.close()
    waits.sort()
    buckets = sorted(quorum_buckets.items())
    on, off = statistics.mean(results["on_rate"]), statistics.mean(results["off_rate"])
    return {
        "audit_32_rate_off": off,
        "audit_32_rate_on": on,
        "rate_ratio": on / off,
        "p99_ms_off": statistics.mean(results["off_p99"]),
        "p99_ms_on": statistics.mean(results["on_p99"]),
        "quorum_checkpoints": len(waits),
        "quorum_p50_ms": _percentile(waits, 0.5),
        "quorum_p99_ms": _percentile(waits, 0.99),
        # From the service's histogram: every checkpoint, not only those the poll saw.
        "service_quorum_count": buckets[-1][1] if buckets else 0,
        "service_quorum_p50_ms_at_most": _bucket_quantile(buckets, 0.5) * 1000,
        "service_quorum_p99_ms_at_most": _bucket_quantile(buckets, 0.99) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=1_000)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-service", action="store_true", help="the fork trials only")
    args = parser.parse_args()
    witness.build()
    with tempfile.TemporaryDirectory(prefix="rg-bench-witness-") as scratch:
        forks = fork_trials(Path(scratch), args.trials)
        print(json.dumps({"fork_trials": forks}), flush=True)
        if not args.no_service:
            pair = service_pair(Path(scratch), args.seconds, args.rounds)
            print(json.dumps({"witnesses": pair}), flush=True)


if __name__ == "__main__":
    main()
