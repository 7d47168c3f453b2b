"""`make bench`: POST /audit (acks=all), POST /audit?wait=false and a raw aiokafka producer,
measured one after another against the same broker, written to bench/results/.

    .venv/bin/python -m bench.run

Then the integrity pair (bench/integrity.py): the same POST /audit load against a service with
the chain only and one that also signs checkpoints and masks personal data, in
BENCH_INTEGRITY_ROUNDS (default 2) alternating rounds that share BENCH_DURATION_S per service.

Environment: BENCH_DURATION_S (default 20) seconds measured per scenario after BENCH_WARMUP_S
(default 3) of warm-up; RG_KAFKA_BOOTSTRAP_SERVERS to use a running cluster instead of the
embedded broker; RG_EMBEDDED_CACHE_DIR for the Apache Kafka jars.
"""

import contextlib
import dataclasses
import logging
import os
import platform
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

import app.embedded.distribution as kafka_distribution
from app.embedded import EmbeddedKafka, KafkaDistribution, free_port
from bench import baseline, integrity, report, wrk
from bench.procfs import CpuProbe, rss_kib
from bench.service import Service, ServiceError
from bench.stats import Measurement
from bench.workload import http_body, kafka_record

RESULTS_DIR = Path(__file__).resolve().parent / "results"
CONCURRENCY = 32
MAX_FAILURE_RATE = 0.001
# Lets queued (?wait=false) records drain before the next scenario starts measuring.
SETTLE_S = 2.0


@dataclass(frozen=True)
class Broker:
    """Where the bench writes, and what it is."""

    bootstrap_servers: str
    kind: str
    version: str | None
    pid: int | None  # the embedded JVM, whose CPU use is measured too


@dataclass(frozen=True)
class Plan:
    """How long each scenario runs, in whole seconds (wrk takes no fractions)."""

    duration_s: int
    warmup_s: int


def _seconds(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    value = int(raw) if raw else default
    if value < 1:
        raise SystemExit(f"{name} must be at least 1 second, not {raw!r}")
    return value


def _say(message: str) -> None:
    print(message, flush=True)


@contextlib.contextmanager
def kafka_broker() -> Iterator[Broker]:
    """The cluster of RG_KAFKA_BOOTSTRAP_SERVERS, else a throwaway embedded broker."""
    version: str | None = getattr(kafka_distribution, "KAFKA_VERSION", None)
    if servers := os.environ.get("RG_KAFKA_BOOTSTRAP_SERVERS"):
        yield Broker(servers, "external", None, None)
        return
    cache = Path(os.environ.get("RG_EMBEDDED_CACHE_DIR", ".cache/kafka"))
    distribution = KafkaDistribution(cache)
    distribution.ensure()
    with (
        tempfile.TemporaryDirectory(prefix="rg-bench-kafka-") as data_dir,
        EmbeddedKafka(Path(data_dir), distribution=distribution) as embedded,
    ):
        yield Broker(embedded.bootstrap_servers, "embedded", version, embedded.pid)


def _check_answers(service: Service, body: str) -> None:
    """One request of each kind first: a broken endpoint fails here, with its answer shown,
    rather than as a wall of non-2xx in wrk's counts."""
    headers = {"Content-Type": "application/json"}
    with httpx.Client(base_url=service.url, timeout=30.0) as client:
        for path, expected in (("/audit", 201), ("/audit?wait=false", 202)):
            answer = client.post(path, content=body, headers=headers)
            if answer.status_code != expected:
                raise ServiceError(
                    f"POST {path} answered {answer.status_code}, expected {expected}: "
                    f"{answer.text[:500]}"
                )


def _cpu_probe(producer_pid: int, broker: Broker) -> CpuProbe:
    pids = {"producer": producer_pid}
    if broker.pid is not None:
        pids["broker"] = broker.pid
    return CpuProbe(pids)


def _http_scenario(
    service: Service,
    broker: Broker,
    script: Path,
    plan: Plan,
    *,
    name: str,
    label: str,
    path: str,
) -> Measurement:
    url = f"{service.url}{path}"
    _say(f"== {label}: {plan.warmup_s} s warm-up, {plan.duration_s} s measured")
    wrk.run(
        url=url,
        script=script,
        connections=CONCURRENCY,
        duration_s=plan.warmup_s,
        name=name,
        label=label,
    )
    cpu = _cpu_probe(service.pid, broker)
    cpu.start()
    measured = wrk.run(
        url=url,
        script=script,
        connections=CONCURRENCY,
        duration_s=plan.duration_s,
        name=name,
        label=label,
    )
    cpu_percent = cpu.stop()
    time.sleep(SETTLE_S)
    return dataclasses.replace(measured, cpu_percent=cpu_percent, cpu_s=cpu.used_s)


def _baseline_scenario(broker: Broker, topic: str, plan: Plan) -> Measurement:
    _say(f"== raw aiokafka: {plan.warmup_s} s warm-up, {plan.duration_s} s measured")
    return baseline.run(
        broker.bootstrap_servers,
        topic,
        kafka_record(),
        concurrency=CONCURRENCY,
        warmup_s=plan.warmup_s,
        duration_s=plan.duration_s,
        cpu=_cpu_probe(os.getpid(), broker),
    )


def _conditions(broker: Broker, plan: Plan, body: str) -> dict[str, Any]:
    """What the numbers depend on: machine, broker, load shape and record size."""
    return {
        "generated_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "concurrency": CONCURRENCY,
        "duration_s": plan.duration_s,
        "warmup_s": plan.warmup_s,
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "broker": {
            "kind": broker.kind,
            "bootstrap_servers": broker.bootstrap_servers,
            "version": broker.version,
        },
        "record_bytes": len(kafka_record().value),
        "http_body_bytes": len(body.encode("utf-8")),
        "wrk": {"threads": wrk.THREADS, "timeout_s": wrk.REQUEST_TIMEOUT_S},
        "max_failure_rate": MAX_FAILURE_RATE,
    }


def measure(broker: Broker, plan: Plan, scratch: Path) -> tuple[dict[str, Any], list[Measurement]]:
    """Start the service, run the three scenarios in turn, stop the service."""
    body = http_body()
    script = wrk.write_script(scratch, body)
    run_id = uuid.uuid4().hex
    service = Service(
        bootstrap_servers=broker.bootstrap_servers,
        port=free_port(),
        topic=f"bench-{run_id}",
        log_path=RESULTS_DIR / "service.log",
    )
    # The raw producer writes to a topic of its own, so the service's reader of its audit
    # topic (for GET /messages) stays idle while the baseline runs.
    raw_topic = f"bench-raw-{run_id}"
    exit_code: int | None = None
    try:
        _say(f"starting the service on {service.url} (log: {service.log_path})")
        service.start()
        _check_answers(service, body)
        rss_before = rss_kib(service.pid)
        measurements = [
            _http_scenario(
                service,
                broker,
                script,
                plan,
                name="http_wait",
                label="POST /audit (acks=all)",
                path="/audit",
            ),
            _http_scenario(
                service,
                broker,
                script,
                plan,
                name="http_nowait",
                label="POST /audit?wait=false",
                path="/audit?wait=false",
            ),
        ]
        rss_after = rss_kib(service.pid)
        measurements.append(_baseline_scenario(broker, raw_topic, plan))
    finally:
        exit_code = service.stop()
    results = {
        **_conditions(broker, plan, body),
        "service": {
            "topic": service.topic,
            "rss_kib_before": rss_before,
            "rss_kib_after": rss_after,
            "exit_code": exit_code,
        },
        "baseline": {
            "topic": raw_topic,
            "event_loop": baseline.EVENT_LOOP,
            "producer": {
                key: value
                for key, value in baseline.producer_options(broker.bootstrap_servers).items()
                if key != "bootstrap_servers"
            },
        },
        "scenarios": [m.to_json() for m in measurements],
    }
    return results, measurements


def measure_integrity(
    broker: Broker, plan: Plan, scratch: Path
) -> tuple[dict[str, Any], list[Measurement]]:
    """The integrity pair, each service measured as long as one scenario above in all."""
    rounds = _seconds("BENCH_INTEGRITY_ROUNDS", 2)
    pair_plan = integrity.PairPlan(
        rounds=rounds,
        round_s=max(1, plan.duration_s // rounds),
        warmup_s=plan.warmup_s,
        connections=CONCURRENCY,
    )
    return integrity.measure(
        bootstrap_servers=broker.bootstrap_servers,
        broker_pid=broker.pid,
        script=wrk.write_script(scratch, http_body()),
        plan=pair_plan,
        scratch=scratch,
        log_dir=RESULTS_DIR,
        run_id=uuid.uuid4().hex,
    )


def _load() -> list[float]:
    """The machine's 1, 5 and 15 minute load averages: how shared it was."""
    return [round(value, 2) for value in os.getloadavg()]


def main() -> int:
    """Run the bench; exit status 1 when any scenario failed more than 0.1% of its requests."""
    plan = Plan(duration_s=_seconds("BENCH_DURATION_S", 20), warmup_s=_seconds("BENCH_WARMUP_S", 3))
    wrk.find_wrk()  # fail before a broker is started for nothing
    # aiokafka's warnings with their logger's name: its one "Topic ... not found in cluster
    # metadata" while the broker auto-creates the baseline's topic is expected, not a failure.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    load_before = _load()
    with tempfile.TemporaryDirectory(prefix="rg-bench-") as scratch, kafka_broker() as broker:
        _say(f"Kafka at {broker.bootstrap_servers} ({broker.kind})")
        results, measurements = measure(broker, plan, Path(scratch))
        results["integrity"], pair = measure_integrity(broker, plan, Path(scratch))
    failing = [m for m in measurements + pair if m.failure_rate > MAX_FAILURE_RATE]
    results["passed"] = not failing
    results["wall_time_s"] = round(time.monotonic() - started, 1)
    results["load_average"] = {"before": load_before, "after": _load()}
    text = report.write_all(results, measurements, pair, RESULTS_DIR)
    _say("")
    _say(text)
    _say(f"written to {RESULTS_DIR}")
    for m in failing:
        _say(
            f"FAILED: {m.label}: {m.failed} of its requests failed ({m.failure_rate:.2%}; "
            f"non-2xx {m.non_2xx}, errors {m.errors}); limit {MAX_FAILURE_RATE:.1%}"
        )
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
