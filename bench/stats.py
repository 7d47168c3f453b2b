"""One scenario's outcome, in the same units whichever tool measured it."""

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

NS_PER_MS = 1_000_000
US_PER_MS = 1_000
US_PER_S = 1_000_000
# The `errors` key of the events a batch answered as failed (its request got a 2xx).
FAILED_ITEMS = "failed_items"


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


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
    p90_ms: float | None  # None where the tool reports no p90 (ProducerPerformance)
    p99_ms: float
    max_ms: float
    mean_ms: float
    non_2xx: int | None = None
    errors: dict[str, int] = field(default_factory=dict)
    # Percent of one core over the measured window, per process ("producer" holds the
    # Kafka producer: the service, or the bench itself for the raw baseline).
    cpu_percent: dict[str, float] = field(default_factory=dict)
    # CPU seconds per process over the same window (/proc utime + stime).
    cpu_s: dict[str, float] = field(default_factory=dict)
    # Connections (HTTP) or tasks (raw producers) in flight; None where the tool decides.
    connections: int | None = None
    # Audit events one request carries: 100 for a batch, 1 otherwise.
    events_per_request: int = 1
    # Peak resident memory of the producer process, sampled while the line ran.
    peak_rss_kib: int | None = None

    @property
    def requests_per_s(self) -> float:
        """Completed requests per second of the measured window."""
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def events_per_s(self) -> float:
        """Events written per second (requests per second times the events each carries)."""
        return self.requests_per_s * self.events_per_request

    @property
    def _unanswered(self) -> int:
        """Requests that got no answer (socket errors, timeouts, producer exceptions)."""
        return sum(count for kind, count in self.errors.items() if kind != FAILED_ITEMS)

    @property
    def failed(self) -> int:
        """Events that did not succeed: those of non-2xx answers and of requests without an
        answer, plus the events a 2xx batch answered as failed."""
        failed_requests = (self.non_2xx or 0) + self._unanswered
        return failed_requests * self.events_per_request + self.errors.get(FAILED_ITEMS, 0)

    @property
    def failure_rate(self) -> float:
        """`failed` over every event attempted (a request without an answer still counts)."""
        attempts = (self.requests + self._unanswered) * self.events_per_request
        return self.failed / attempts if attempts else 1.0

    @property
    def producer_cpu_us_per_request(self) -> float | None:
        """CPU time of the producer process per completed request, in microseconds."""
        used = self.cpu_s.get("producer")
        if used is None or not self.requests:
            return None
        return used * US_PER_S / self.requests

    @property
    def cpu_us_per_event(self) -> float | None:
        """CPU time of the producer process per event written, in microseconds."""
        per_request = self.producer_cpu_us_per_request
        return None if per_request is None else per_request / self.events_per_request

    def to_json(self) -> dict[str, Any]:
        """The scenario as results.json stores it."""
        return {
            "name": self.name,
            "label": self.label,
            "requests": self.requests,
            "duration_s": round(self.duration_s, 3),
            "requests_per_s": round(self.requests_per_s, 1),
            "connections": self.connections,
            "events_per_request": self.events_per_request,
            "events_per_s": round(self.events_per_s, 1),
            "latency_ms": {
                "p50": round(self.p50_ms, 3),
                "p90": None if self.p90_ms is None else round(self.p90_ms, 3),
                "p99": round(self.p99_ms, 3),
                "max": round(self.max_ms, 3),
                "mean": round(self.mean_ms, 3),
            },
            "non_2xx": self.non_2xx,
            "errors": self.errors,
            "failure_rate": round(self.failure_rate, 6),
            "cpu_percent": self.cpu_percent,
            "cpu_s": {name: round(used, 3) for name, used in self.cpu_s.items()},
            "producer_cpu_us_per_request": _rounded(self.producer_cpu_us_per_request),
            "cpu_us_per_event": _rounded(self.cpu_us_per_event),
            "peak_rss_kib": self.peak_rss_kib,
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


def combined(name: str, label: str, rounds: Sequence[Measurement]) -> Measurement:
    """Rounds of one scenario as one: counts, durations and CPU seconds add up (so req/s and
    CPU per request are exact); wrk gives percentiles, not latencies, so each percentile is
    the mean of the rounds' (the max is the max)."""
    if not rounds:
        raise ValueError("no rounds to combine")

    def mean(values: Sequence[float]) -> float:
        return sum(values) / len(values)

    duration_s = sum(m.duration_s for m in rounds)
    cpu_s: dict[str, float] = {}
    errors: dict[str, int] = {}
    for m in rounds:
        for process, used in m.cpu_s.items():
            cpu_s[process] = cpu_s.get(process, 0.0) + used
        for kind, count in m.errors.items():
            errors[kind] = errors.get(kind, 0) + count
    non_2xx = [m.non_2xx for m in rounds if m.non_2xx is not None]
    return Measurement(
        name=name,
        label=label,
        requests=sum(m.requests for m in rounds),
        duration_s=duration_s,
        p50_ms=mean([m.p50_ms for m in rounds]),
        p90_ms=mean([m.p90_ms for m in rounds if m.p90_ms is not None] or [0.0]),
        p99_ms=mean([m.p99_ms for m in rounds]),
        max_ms=max(m.max_ms for m in rounds),
        mean_ms=mean([m.mean_ms for m in rounds]),
        non_2xx=sum(non_2xx) if non_2xx else None,
        errors=errors,
        # The probe's window is wrk's run, a little longer than `duration_s`: near enough.
        cpu_percent={process: round(100 * used / duration_s, 1) for process, used in cpu_s.items()},
        cpu_s=cpu_s,
    )


def from_json(data: dict[str, Any]) -> Measurement:
    """A measurement back from `Measurement.to_json()` (a raw line measured in a child process
    hands its result over this way)."""
    latency = data["latency_ms"]
    return Measurement(
        name=data["name"],
        label=data["label"],
        requests=data["requests"],
        duration_s=data["duration_s"],
        p50_ms=latency["p50"],
        p90_ms=latency["p90"],
        p99_ms=latency["p99"],
        max_ms=latency["max"],
        mean_ms=latency["mean"],
        non_2xx=data["non_2xx"],
        errors=data["errors"],
        cpu_percent=data["cpu_percent"],
        cpu_s=data["cpu_s"],
        connections=data.get("connections"),
        events_per_request=data.get("events_per_request", 1),
        peak_rss_kib=data.get("peak_rss_kib"),
    )
