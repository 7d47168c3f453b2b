"""One scenario's outcome, in the same units whichever tool measured it."""

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

NS_PER_MS = 1_000_000
US_PER_MS = 1_000


@dataclass(frozen=True)
class Measurement:
    """Completed requests over the measured window, and their latency in milliseconds.

    `non_2xx` is None where HTTP does not apply (the raw producer); `errors` counts requests
    that got no answer at all (socket errors and timeouts, or exceptions of the producer).
    """

    name: str
    label: str
    requests: int
    duration_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    non_2xx: int | None = None
    errors: dict[str, int] = field(default_factory=dict)
    # Percent of one core over the measured window, per process ("producer" holds the
    # Kafka producer: the service, or the bench itself for the raw baseline).
    cpu_percent: dict[str, float] = field(default_factory=dict)

    @property
    def requests_per_s(self) -> float:
        """Completed requests per second of the measured window."""
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def failed(self) -> int:
        """Requests that did not succeed: non-2xx answers plus errors."""
        return (self.non_2xx or 0) + sum(self.errors.values())

    @property
    def failure_rate(self) -> float:
        """`failed` over every attempt (a request without an answer still counts as one)."""
        attempts = self.requests + sum(self.errors.values())
        return self.failed / attempts if attempts else 1.0

    def to_json(self) -> dict[str, Any]:
        """The scenario as results.json stores it."""
        return {
            "name": self.name,
            "label": self.label,
            "requests": self.requests,
            "duration_s": round(self.duration_s, 3),
            "requests_per_s": round(self.requests_per_s, 1),
            "latency_ms": {
                "p50": round(self.p50_ms, 3),
                "p90": round(self.p90_ms, 3),
                "p99": round(self.p99_ms, 3),
                "max": round(self.max_ms, 3),
                "mean": round(self.mean_ms, 3),
            },
            "non_2xx": self.non_2xx,
            "errors": self.errors,
            "failure_rate": round(self.failure_rate, 6),
            "cpu_percent": self.cpu_percent,
        }


def percentile(ordered: Sequence[int], percent: float) -> int:
    """Nearest-rank percentile of an ascending sequence (the value `percent`% stay under)."""
    if not ordered:
        return 0
    rank = max(1, math.ceil(percent / 100 * len(ordered)))
    return ordered[rank - 1]


def from_latencies(
    name: str, label: str, latencies_ns: list[int], duration_s: float, errors: dict[str, int]
) -> Measurement:
    """Summarise per-request latencies recorded in nanoseconds."""
    ordered = sorted(latencies_ns)
    mean_ns = sum(ordered) / len(ordered) if ordered else 0.0
    return Measurement(
        name=name,
        label=label,
        requests=len(ordered),
        duration_s=duration_s,
        p50_ms=percentile(ordered, 50) / NS_PER_MS,
        p90_ms=percentile(ordered, 90) / NS_PER_MS,
        p99_ms=percentile(ordered, 99) / NS_PER_MS,
        max_ms=(ordered[-1] if ordered else 0) / NS_PER_MS,
        mean_ms=mean_ns / NS_PER_MS,
        errors=errors,
    )
