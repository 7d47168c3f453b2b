"""Erasure's cost on the write path (RG_ERASURE=on), in this process (no service, no broker):
the CPU time per event of what sealing adds to making a record — the subject hash, prompt and
response sealed (AES-256-GCM, a cached data key), the canonical JSON and digest of the sealed
event — against the canonical JSON and digest of the event as sent. The goal is at most 20 us
more per event; the run exits 1 when the median of the rounds misses it. The key's first write
to the keys topic (once per subject) is not in it: that is a produce, measured with the service.

    python -m bench.erasure [--events N] [--rounds R]
"""

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable

from app.kafka import KafkaAuditEvent
from app.privacy.erasure import Erasure
from app.privacy.sealing import Kek

GOAL_US = 20.0
EVENT = KafkaAuditEvent(
    user_id="user-42",
    model="gpt-4o",
    prompt="Summarise our refund policy in one sentence, for a customer who asked twice. " * 3,
    response="Refunds are issued within 14 days of purchase, to the card that paid. " * 3,
)


def cpu_us(work: Callable[[], object], events: int) -> float:
    """CPU microseconds per call of `work`, over `events` calls (after a warm-up)."""
    for _ in range(min(events, 2_000)):
        work()
    started = time.process_time()
    for _ in range(events):
        work()
    return (time.process_time() - started) / events * 1e6


def main() -> int:
    """Print the figures; exit 1 when the added median misses the goal."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    kek = Kek(os.urandom(32))
    key = kek.new_key(kek.subject_hash(EVENT.user_id))
    erasure = Erasure(store=None, kek=kek)  # type: ignore[arg-type] # only sealing is timed

    def plain() -> object:
        return EVENT.model_copy().digest()

    def sealed() -> object:
        kek.subject_hash(EVENT.user_id)
        return erasure.seal_event(EVENT, key).digest()

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
