"""Erasure's cost on the write path (RG_ERASURE=on), in this process (no service, no broker):
the CPU time per event of what sealing adds to making a record — `Erasure.seal_events` as the
write path calls it (the subject hash, the cached data key, prompt and response sealed with
AES-256-GCM), the canonical JSON and digest of the sealed event — against the canonical JSON
and digest of the event as sent. The goal is at most 20 us
more per event; the run exits 1 when the median of the rounds misses it. The key's first write
to the keys topic (once per subject) is not in it: that is a produce, measured with the service
(`BENCH_PAIR=erasure`, bench/integrity.py).

`--latency` measures instead how long an erasure takes to be complete: a service with erasure
on and a throwaway embedded broker with its default settings (log.cleaner.backoff.ms 15 s),
one record of each of N subjects, then each subject erased in turn: the time from POST
/audit/erase to its 202, and to GET /audit/erase/{id} saying `gone_from_segments` (polled every
0.2 s).

    python -m bench.erasure [--events N] [--rounds R]
    python -m bench.erasure --latency [--erasures N]
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import cast

import httpx

from app.embedded import free_port
from app.kafka import KafkaAuditEvent
from app.privacy.erasure import Erasure
from app.privacy.keystore import KeyStore
from app.privacy.sealing import DataKey, Kek

GOAL_US = 20.0
EVENT = KafkaAuditEvent(
    user_id="user-42",
    model="gpt-4o",
    prompt="Summarise our refund policy in one sentence, for a customer who asked twice. " * 3,
    response="Refunds are issued within 14 days of purchase, to the card that paid. " * 3,
)


class _CachedKey:
    """The one call of a `KeyStore` sealing makes, with the subject's key cached (as it is for
    every record but a subject's first)."""

    def __init__(self, kek: Kek) -> None:
        self._key = kek.new_key(kek.subject_hash(EVENT.user_id))

    async def key_for(self, subject_hash: str) -> DataKey:
        """The cached key."""
        return self._key


def cpu_us(work: Callable[[], object], events: int) -> float:
    """CPU microseconds per call of `work`, over `events` calls (after a warm-up)."""
    for _ in range(min(events, 2_000)):
        work()
    started = time.process_time()
    for _ in range(events):
        work()
    return (time.process_time() - started) / events * 1e6


def erase_latency(erasures: int) -> tuple[list[float], list[float]]:
    """Seconds from each POST /audit/erase to its 202, and to `gone_from_segments`."""
    from bench.integrity import kek_file  # noqa: PLC0415 - the latency run only
    from bench.run import kafka_broker  # noqa: PLC0415
    from bench.service import Service, ServiceError  # noqa: PLC0415

    answered: list[float] = []
    gone: list[float] = []
    with tempfile.TemporaryDirectory(prefix="rg-bench-") as scratch, kafka_broker() as broker:
        service = Service(
            bootstrap_servers=broker.bootstrap_servers,
            port=free_port(),
            topic=f"bench-erasure-{uuid.uuid4().hex}",
            log_path=Path(scratch) / "service.log",
            settings={"RG_ERASURE": "on", "RG_ERASURE_KEK_FILE": str(kek_file(Path(scratch)))},
        )
        service.start()
        try:
            with httpx.Client(base_url=service.url, timeout=30.0) as client:
                for n in range(erasures):
                    event = {**EVENT.model_dump(mode="json"), "user_id": f"subject-{n}"}
                    del event["event_id"], event["timestamp_utc"]
                    if (written := client.post("/audit", json=event)).status_code != 201:
                        raise ServiceError(f"POST /audit: {written.status_code} {written.text}")
                for n in range(erasures):
                    started = time.monotonic()
                    body = {"subject": f"subject-{n}", "reason": "bench"}
                    erased = client.post("/audit/erase", json=body)
                    if erased.status_code != 202:
                        raise ServiceError(f"POST /audit/erase: {erased.status_code} {erased.text}")
                    answered.append(time.monotonic() - started)
                    status = f"/audit/erase/{erased.json()['event_id']}"
                    while not client.get(status).json()["gone_from_segments"]:
                        time.sleep(0.2)
                    gone.append(time.monotonic() - started)
                    print(
                        f"erasure {n + 1}: 202 after {answered[-1] * 1000:.0f} ms, key gone from "
                        f"the segments after {gone[-1]:.1f} s",
                        flush=True,
                    )
        finally:
            service.stop()
    return answered, gone


def main() -> int:
    """Print the figures; exit 1 when the added median misses the goal."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--latency", action="store_true", help="time erasures instead")
    parser.add_argument("--erasures", type=int, default=5)
    args = parser.parse_args()
    if args.latency:
        answered, gone = erase_latency(args.erasures)
        print(
            f"erase: 202 after {statistics.median(answered) * 1000:.0f} ms (median), key gone "
            f"from the segments after {statistics.median(gone):.1f} s (median; max "
            f"{max(gone):.1f} s) of {args.erasures}"
        )
        return 0
    kek = Kek(os.urandom(32))
    erasure = Erasure(cast("KeyStore", _CachedKey(kek)), kek)

    def plain() -> object:
        return EVENT.model_copy().digest()

    def sealed() -> object:
        # The write path's call, driven by hand: with the key cached it never suspends.
        call = erasure.seal_events([EVENT])
        try:
            call.send(None)
        except StopIteration as done:
            return done.value[0].digest()
        raise RuntimeError("seal_events waited for something with its key cached")

    added = []
    for index in range(args.rounds):
        off, on = cpu_us(plain, args.events), cpu_us(sealed, args.events)
        added.append(on - off)
        print(f"round {index + 1}: off {off:.1f} us, on {on:.1f} us, +{on - off:.1f} us/event")
    median = statistics.median(added)
    rounds = args.rounds
    print(f"erasure adds {median:.1f} us of CPU per event (median of {rounds}; goal {GOAL_US})")
    return 0 if median <= GOAL_US else 1


if __name__ == "__main__":
    sys.exit(main())
