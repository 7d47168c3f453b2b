"""What `make bench` measures: its lines, the raw line each is judged against, and the issue's
targets, checked on the figures of one run.

Every HTTP line has a raw line with the same shape of work (bench/raw.py): a waiting single
event against bare `send_and_wait` at the same concurrency (128 connections against 32 tasks:
more tasks do not make the raw client faster, they queue), `?wait=false` (which waits for no
acknowledgement) against the raw client's capacity, `send_and_wait` at 32, at every
concurrency, and a batch against the raw batched line.
The librdkafka and JVM lines are ceilings, judged against the raw aiokafka batched line.
"""

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from bench.stats import Measurement

BATCH_EVENTS = 100
MB = 1_000_000  # RSS in MB of 10^6 bytes, as the table


@dataclass(frozen=True)
class Line:
    """One line of the table. `kind` says who does the work: the service (http), a raw client
    in a process of its own (raw), or Kafka's ProducerPerformance (jvm)."""

    name: str
    label: str
    kind: Literal["http", "raw", "jvm"]
    connections: int | None
    reference: str | None
    quick: bool
    # http: the method and path wrk requests, and which body (bench/run.py writes them)
    path: str = ""
    body: Literal["audit", "batch", "publish", "none"] = "audit"
    # raw: bench/raw.py's kind
    raw_kind: str = ""
    events_per_request: int = 1


def _http(
    name: str,
    label: str,
    connections: int,
    reference: str | None,
    *,
    path: str,
    body: Literal["audit", "batch", "publish", "none"] = "audit",
    quick: bool = True,
    events: int = 1,
) -> Line:
    return Line(
        name,
        label,
        "http",
        connections,
        reference,
        quick,
        path,
        body,
        "",
        events_per_request=events,
    )


def _raw(
    name: str, label: str, raw_kind: str, connections: int, reference: str, *, quick: bool = True
) -> Line:
    events = 1 if raw_kind == "aiokafka-single" else BATCH_EVENTS
    return Line(
        name,
        label,
        "raw",
        connections,
        reference,
        quick,
        raw_kind=raw_kind,
        events_per_request=events,
    )


# In the order they run: each raw line just before the HTTP lines judged against it, so the
# ratios compare figures taken minutes apart at most on a machine whose load drifts.
LINES: tuple[Line, ...] = (
    _raw("raw_single_1", "raw aiokafka send_and_wait", "aiokafka-single", 1, "raw_single_1"),
    _http("audit_1", "POST /audit", 1, "raw_single_1", path="/audit"),
    _http(
        "nowait_1",
        "POST /audit?wait=false",
        1,
        "raw_single_32",
        path="/audit?wait=false",
        quick=False,
    ),
    _raw("raw_single_32", "raw aiokafka send_and_wait", "aiokafka-single", 32, "raw_single_32"),
    _http("audit_32", "POST /audit", 32, "raw_single_32", path="/audit"),
    _http("nowait_32", "POST /audit?wait=false", 32, "raw_single_32", path="/audit?wait=false"),
    _http("publish_32", "POST /publish", 32, "raw_single_32", path="/publish", body="publish"),
    _http("audit_128", "POST /audit", 128, "raw_single_32", path="/audit", quick=False),
    _http(
        "nowait_128",
        "POST /audit?wait=false",
        128,
        "raw_single_32",
        path="/audit?wait=false",
        quick=False,
    ),
    _raw(
        "raw_batched_8",
        f"raw aiokafka send x{BATCH_EVENTS} then await",
        "aiokafka-batched",
        8,
        "raw_batched_8",
    ),
    _raw(
        "raw_send_batch_8",
        f"raw aiokafka create_batch of {BATCH_EVENTS}, send_batch, await",
        "aiokafka-send-batch",
        8,
        "raw_batched_8",
    ),
    _http(
        "batch_8",
        f"POST /audit/batch ({BATCH_EVENTS} events)",
        8,
        "raw_batched_8",
        path="/audit/batch",
        body="batch",
        events=BATCH_EVENTS,
    ),
    _raw(
        "confluent_batched_8",
        f"raw confluent-kafka produce x{BATCH_EVENTS} then wait",
        "confluent-batched",
        8,
        "raw_batched_8",
        quick=False,
    ),
    Line(
        "producer_performance",
        "Kafka ProducerPerformance (JVM)",
        "jvm",
        None,
        "raw_batched_8",
        quick=False,
    ),
    # Last: the audit topic holds every record the lines above wrote, so the buffer is full.
    _http(
        "messages_32", "GET /messages (limit 50)", 32, None, path="/messages?limit=50", body="none"
    ),
)


def selected(*, quick: bool, names: list[str] | None) -> list[Line]:
    """The lines to run: those named (in the table's order), else all, or the quick set."""
    if names:
        unknown = set(names) - {line.name for line in LINES}
        if unknown:
            known = ", ".join(line.name for line in LINES)
            raise SystemExit(f"unknown line(s) {', '.join(sorted(unknown))}; known: {known}")
        return [line for line in LINES if line.name in names]
    return [line for line in LINES if line.quick or not quick]


def _ratio(value: float | None, reference: float | None) -> float | None:
    if value is None or reference is None or reference == 0:
        return None
    return round(value / reference, 3)


def ratios(m: Measurement, reference: Measurement) -> dict[str, float | None]:
    """Each figure of `m` over the same figure of its raw line (above 1: more than raw)."""
    return {
        "events_per_s": _ratio(m.events_per_s, reference.events_per_s),
        "p50_ms": _ratio(m.p50_ms, reference.p50_ms),
        "p90_ms": _ratio(m.p90_ms, reference.p90_ms),
        "p99_ms": _ratio(m.p99_ms, reference.p99_ms),
        "cpu_us_per_event": _ratio(m.cpu_us_per_event, reference.cpu_us_per_event),
        "peak_rss": _ratio(m.peak_rss_kib, reference.peak_rss_kib),
    }


@dataclass(frozen=True)
class Target:
    """One of the issue's targets: a figure of one line, its limit, and whether it holds."""

    name: str
    line: str
    short: str  # its column heading in the table's "targets" cell
    value: float | None
    limit: float | None
    unit: str
    passed: bool | None  # None: a line it needs was not run

    def to_json(self) -> dict[str, Any]:
        """The target as results.json stores it."""
        return {
            "name": self.name,
            "line": self.line,
            "value": None if self.value is None else round(self.value, 3),
            "limit": None if self.limit is None else round(self.limit, 3),
            "unit": self.unit,
            "passed": self.passed,
        }


def _check(
    name: str,
    *,
    line: str,
    short: str,
    unit: str,
    figures: Callable[[], tuple[float | None, float | None]],
    holds: Callable[[float, float], bool],
) -> Target:
    try:
        value, limit = figures()
    except KeyError:  # a line it needs was not run
        return Target(name, line, short, None, None, unit, None)
    if value is None or limit is None:
        return Target(name, line, short, value, limit, unit, None)
    return Target(name, line, short, value, limit, unit, holds(value, limit))


def _rates(
    by_name: dict[str, Measurement], first: str, second: str
) -> Callable[[], tuple[float | None, float | None]]:
    """The events/s of two lines, read when the check runs (KeyError when one is missing)."""
    return lambda: (by_name[first].events_per_s, by_name[second].events_per_s)


def targets(by_name: dict[str, Measurement], service_peak_rss_kib: int | None) -> list[Target]:
    """The issue's targets on this run's figures."""
    m = by_name
    found = [
        _check(
            "POST /audit at 32 connections: events/s >= 0.40x raw send_and_wait",
            line="audit_32",
            short="rate",
            unit="x raw",
            figures=lambda: (m["audit_32"].events_per_s / m["raw_single_32"].events_per_s, 0.40),
            holds=operator.ge,
        ),
        _check(
            "POST /audit at 32 connections: p99 <= 3x raw p99",
            line="audit_32",
            short="p99",
            unit="ms",
            figures=lambda: (m["audit_32"].p99_ms, 3 * m["raw_single_32"].p99_ms),
            holds=operator.le,
        ),
        _check(
            "POST /audit at 32 connections: CPU <= 500 us per event",
            line="audit_32",
            short="CPU",
            unit="us/event",
            figures=lambda: (m["audit_32"].cpu_us_per_event, 500.0),
            holds=operator.le,
        ),
        _check(
            f"POST /audit/batch ({BATCH_EVENTS}) at 8: events/s >= 0.70x raw batched",
            line="batch_8",
            short="rate",
            unit="x raw",
            figures=lambda: (m["batch_8"].events_per_s / m["raw_batched_8"].events_per_s, 0.70),
            holds=operator.ge,
        ),
        _check(
            f"POST /audit/batch ({BATCH_EVENTS}) at 8: p99 <= 1 s",
            line="batch_8",
            short="p99",
            unit="ms",
            figures=lambda: (m["batch_8"].p99_ms, 1000.0),
            holds=operator.le,
        ),
        _check(
            "POST /audit at 1 connection: p50 <= raw p50 + 1.5 ms",
            line="audit_1",
            short="p50",
            unit="ms",
            figures=lambda: (m["audit_1"].p50_ms, m["raw_single_1"].p50_ms + 1.5),
            holds=operator.le,
        ),
    ]
    for connections in (1, 32, 128):
        nowait, wait = f"nowait_{connections}", f"audit_{connections}"
        found.append(
            _check(
                f"?wait=false faster than waiting at {connections} connection(s)",
                line=nowait,
                short="faster",
                unit="events/s",
                figures=_rates(m, nowait, wait),
                holds=operator.gt,
            )
        )
    peak_mb = None if service_peak_rss_kib is None else service_peak_rss_kib * 1024 / MB
    found.append(
        Target(
            "service RSS <= 150 MB throughout the bench",
            "service",
            "RSS",
            peak_mb,
            150.0,
            "MB",
            None if peak_mb is None else peak_mb <= 150.0,
        )
    )
    return found
