"""`make bench`: the service's HTTP lines beside the raw client lines they are judged against,
one after another, in one run, against one broker; written to bench/results/.

    .venv/bin/python -m bench.run [--quick] [--lines audit_32,raw_single_32] [--integrity]

The lines (bench/lines.py): `POST /audit` waiting and `?wait=false` at 1, 32 and 128
connections, `POST /audit/batch` of 100 events at 8, `POST /publish` and `GET /messages` at 32,
all driven by wrk against one `ractogateway-kafka serve`; raw aiokafka `send_and_wait` at 1 and
32 tasks and batched (send x100, then await) at 8, raw confluent-kafka batched at 8 (each in a
process of its own, bench/raw.py), and Kafka's ProducerPerformance on the JVM (bench/jvm.py).
Every producer uses the service's settings (bench/producers.py). Per line: events/s, p50/p90/p99,
CPU microseconds per event of the process doing the work, its peak RSS, the ratios to its raw
line, and the issue's targets (bench/lines.py). Then the integrity pair (bench/integrity.py):
the same POST /audit load against a service with the chain only and one that also signs
checkpoints and masks personal data.

`--quick`: 5 s per line after 2 s of warm-up, without the 128-connection, librdkafka, JVM and
one-connection ?wait=false lines and without the integrity pair (`--integrity` adds it back);
for iterating on a change, not for the figures of record. `--lines` runs only the lines named.
`--profile` samples the service with py-spy during each HTTP line and adds where its CPU goes
(bench/profile.py).

Environment: BENCH_DURATION_S (default 15, quick 5) seconds measured per line after
BENCH_WARMUP_S (default 3, quick 2) of warm-up; BENCH_JVM_RECORDS (default 10,000 per second
of BENCH_DURATION_S) records for ProducerPerformance; RG_KAFKA_BOOTSTRAP_SERVERS to use a
running cluster instead of the embedded broker; RG_EMBEDDED_CACHE_DIR for the Apache Kafka jars.
"""

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import platform
import re
import shutil
import subprocess
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
from bench import integrity, jvm, lines, profile, raw, report, wrk
from bench.lines import BATCH_EVENTS, Line
from bench.procfs import CpuProbe, RssSampler, rss_kib
from bench.producers import aiokafka_options, described, kafka_properties
from bench.service import Service, ServiceError
from bench.stats import Measurement, from_json
from bench.workload import batch_body, http_body, kafka_record, publish_body

RESULTS_DIR = Path(__file__).resolve().parent / "results"
MAX_FAILURE_RATE = 0.001
# After a line, the service finishes what wrk left in flight (queued ?wait=false records, a
# batch whose client hung up) before the next line: until its record counters stand still for
# SETTLE_S, at most SETTLE_MAX_S.
SETTLE_S = 1.0
SETTLE_MAX_S = 60.0
INTEGRITY_CONNECTIONS = 32
_RAW_TIMEOUT_S = 300
# The service's own count of what happened to the records of a line: acknowledged, failed,
# spooled. wrk sees only HTTP statuses, and a batch answers 200 even when items failed.
_RECORD_COUNTERS = (
    "rg_kafka_records_produced_total",
    "rg_kafka_records_failed_total",
    "rg_spool_appended_total",
)
_COUNTER_LINE = re.compile(rf"^({'|'.join(_RECORD_COUNTERS)})(\{{[^}}]*\}})? (\S+)$")


@dataclass(frozen=True)
class Broker:
    """Where the bench writes, and what it is."""

    bootstrap_servers: str
    kind: str
    version: str | None
    pid: int | None  # the embedded JVM, whose CPU use is measured too


@dataclass(frozen=True)
class Plan:
    """How long each line runs, in whole seconds (wrk takes no fractions)."""

    duration_s: int
    warmup_s: int
    jvm_records: int


@dataclass(frozen=True)
class Setup:
    """What the lines share: the broker, the service, the wrk scripts, a scratch folder."""

    broker: Broker
    service: Service
    scripts: dict[str, Path]
    scratch: Path
    run_id: str
    plan: Plan
    # Per HTTP line, the service's record counters over its window (and the settling after).
    records: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    # --profile: the py-spy to sample the service with, and each HTTP line's shares.
    py_spy: str | None = None
    profiles: dict[str, Any] = dataclasses.field(default_factory=dict)


def _seconds(name: str, default: int) -> int:
    raw_value = os.environ.get(name, "").strip()
    value = int(raw_value) if raw_value else default
    if value < 1:
        raise SystemExit(f"{name} must be at least 1, not {raw_value!r}")
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
    distribution = KafkaDistribution(_cache_dir())
    distribution.ensure()
    with (
        tempfile.TemporaryDirectory(prefix="rg-bench-kafka-") as data_dir,
        EmbeddedKafka(Path(data_dir), distribution=distribution) as embedded,
    ):
        yield Broker(embedded.bootstrap_servers, "embedded", version, embedded.pid)


def _cache_dir() -> Path:
    return Path(os.environ.get("RG_EMBEDDED_CACHE_DIR", ".cache/kafka"))


def _publish_topic(run_id: str) -> str:
    return f"bench-publish-{run_id}"


def _scripts(scratch: Path, run_id: str) -> dict[str, Path]:
    """One wrk script per kind of request."""
    return {
        "audit": wrk.write_script(scratch, http_body(), name="audit"),
        "batch": wrk.write_script(
            scratch, batch_body(BATCH_EVENTS), name="batch", count_failed_items=True
        ),
        "publish": wrk.write_script(scratch, publish_body(_publish_topic(run_id)), name="publish"),
        "none": wrk.write_script(scratch, None, name="get"),
    }


def _check_answers(service: Service, run_id: str) -> None:
    """One request of each kind first: a broken endpoint fails here, with its answer shown,
    rather than as a wall of non-2xx in wrk's counts (or, for a batch, as 200s whose items
    failed, which wrk cannot see)."""
    headers = {"Content-Type": "application/json"}
    requests = (
        ("/audit", http_body(), 201),
        ("/audit?wait=false", http_body(), 202),
        ("/audit/batch", batch_body(BATCH_EVENTS), 200),
        ("/publish", publish_body(_publish_topic(run_id)), 201),
    )
    with httpx.Client(base_url=service.url, timeout=30.0) as client:
        for path, body, expected in requests:
            answer = client.post(path, content=body, headers=headers)
            if answer.status_code != expected:
                raise ServiceError(
                    f"POST {path} answered {answer.status_code}, expected {expected}: "
                    f"{answer.text[:500]}"
                )
            if path == "/audit/batch" and answer.json().get("accepted") != BATCH_EVENTS:
                raise ServiceError(f"POST /audit/batch accepted less than all: {answer.text[:500]}")


def _check_messages(service: Service) -> None:
    """GET /messages must have records to return, or the line measures an empty buffer."""
    answer = httpx.get(f"{service.url}/messages?limit=50", timeout=30.0)
    if answer.status_code != 200 or not answer.json().get("count"):
        raise ServiceError(f"GET /messages has nothing to return: {answer.text[:500]}")


def _record_counts(service: Service) -> dict[str, float]:
    """The service's record counters, summed over their labels."""
    counts = dict.fromkeys(_RECORD_COUNTERS, 0.0)
    text = httpx.get(f"{service.url}/metrics", timeout=30.0).text
    for line in text.splitlines():
        if match := _COUNTER_LINE.match(line):
            counts[match.group(1)] += float(match.group(3))
    return counts


def _settled(service: Service) -> dict[str, float]:
    """The record counters once they stop moving (the service is idle again)."""
    deadline = time.monotonic() + SETTLE_MAX_S
    counts = _record_counts(service)
    while time.monotonic() < deadline:
        time.sleep(SETTLE_S)
        latest = _record_counts(service)
        if latest == counts:
            break
        counts = latest
    return counts


def _probe(pid: int, broker: Broker) -> CpuProbe:
    pids = {"producer": pid}
    if broker.pid is not None:
        pids["broker"] = broker.pid
    return CpuProbe(pids)


def _http_line(line: Line, setup: Setup) -> Measurement:
    plan, service = setup.plan, setup.service
    if line.body == "none":
        _check_messages(service)
    url = f"{service.url}{line.path}"
    script = setup.scripts[line.body]
    connections = line.connections or 1
    wrk.run(
        url=url,
        script=script,
        connections=connections,
        duration_s=plan.warmup_s,
        name=line.name,
        label=line.label,
    )
    counted = _record_counts(service)
    cpu = _probe(service.pid, setup.broker)
    rss = RssSampler(service.pid).start()
    cpu.start()
    recording = (
        profile.start(
            setup.py_spy, service.pid, plan.duration_s, RESULTS_DIR / f"profile-{line.name}.txt"
        )
        if setup.py_spy
        else None
    )
    measured = wrk.run(
        url=url,
        script=script,
        connections=connections,
        duration_s=plan.duration_s,
        name=line.name,
        label=line.label,
    )
    cpu_percent = cpu.stop()
    peak = rss.stop()
    if recording is not None:
        setup.profiles[line.name] = profile.finish(recording)
    after = _settled(service)
    setup.records[line.name] = {
        name.removeprefix("rg_").removesuffix("_total"): round(after[name] - counted[name])
        for name in _RECORD_COUNTERS
    }
    return dataclasses.replace(
        measured,
        cpu_percent=cpu_percent,
        cpu_s=cpu.used_s,
        events_per_request=line.events_per_request,
        peak_rss_kib=peak,
    )


def _raw_line(line: Line, setup: Setup) -> Measurement:
    """bench/raw.py in a child process; its peak RSS sampled from here."""
    command = [
        sys.executable,
        "-m",
        "bench.raw",
        line.raw_kind,
        "--bootstrap-servers",
        setup.broker.bootstrap_servers,
        "--topic",
        f"bench-{line.name}-{setup.run_id}",
        "--name",
        line.name,
        "--label",
        line.label,
        "--connections",
        str(line.connections),
        "--batch",
        str(line.events_per_request),
        "--warmup-s",
        str(setup.plan.warmup_s),
        "--duration-s",
        str(setup.plan.duration_s),
    ]
    if setup.broker.pid is not None:
        command += ["--broker-pid", str(setup.broker.pid)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    rss = RssSampler(process.pid).start()
    try:
        stdout, _ = process.communicate(timeout=_RAW_TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        peak = rss.stop()
    if process.returncode != 0:
        raise RuntimeError(f"{line.name}: bench.raw exited with {process.returncode}")
    measured = from_json(json.loads(stdout.strip().splitlines()[-1]))
    return dataclasses.replace(measured, peak_rss_kib=peak)


def _jvm_line(line: Line, setup: Setup) -> Measurement:
    return jvm.run(
        jvm.kafka_tools(_cache_dir()),
        properties=kafka_properties(setup.broker.bootstrap_servers),
        topic=f"bench-{line.name}-{setup.run_id}",
        value=kafka_record().value,
        records=setup.plan.jvm_records,
        scratch=setup.scratch,
        broker_pid=setup.broker.pid,
        name=line.name,
        label=line.label,
    )


def _conditions(broker: Broker, plan: Plan, quick: bool) -> dict[str, Any]:
    """What the numbers depend on: machine, broker, load shape, record size, producers."""
    return {
        "generated_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": quick,
        "duration_s": plan.duration_s,
        "warmup_s": plan.warmup_s,
        "jvm_records": plan.jvm_records,
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
        "http_body_bytes": len(http_body().encode("utf-8")),
        "batch_events": BATCH_EVENTS,
        "wrk": {"threads": wrk.THREADS, "timeout_s": wrk.REQUEST_TIMEOUT_S},
        "producers": {
            "event_loop": raw.EVENT_LOOP,
            "aiokafka": described(aiokafka_options(broker.bootstrap_servers)),
            "kafka_properties": kafka_properties(broker.bootstrap_servers),
            "jvm_heap": jvm.HEAP,
        },
        "max_failure_rate": MAX_FAILURE_RATE,
    }


def measure(
    broker: Broker, plan: Plan, scratch: Path, chosen: list[Line], py_spy: str | None
) -> tuple[dict[str, Any], list[Measurement]]:
    """Start the service, run the chosen lines in turn, stop the service."""
    run_id = uuid.uuid4().hex
    service = Service(
        bootstrap_servers=broker.bootstrap_servers,
        port=free_port(),
        topic=f"bench-{run_id}",
        log_path=RESULTS_DIR / "service.log",
        # Unset, POST /publish writes no topic.
        settings={"RG_PUBLISH_TOPICS": _publish_topic(run_id)},
    )
    setup = Setup(broker, service, _scripts(scratch, run_id), scratch, run_id, plan, py_spy=py_spy)
    runners = {"http": _http_line, "raw": _raw_line, "jvm": _jvm_line}
    measurements: list[Measurement] = []
    exit_code: int | None = None
    lifetime: RssSampler | None = None
    try:
        _say(f"starting the service on {service.url} (log: {service.log_path})")
        service.start()
        lifetime = RssSampler(service.pid, interval_s=0.25).start()
        rss_before = rss_kib(service.pid)
        _check_answers(service, run_id)
        for line in chosen:
            _say(f"== {line.name}: {line.label}, {line.connections or '-'} connections")
            measurements.append(runners[line.kind](line, setup))
        rss_after = rss_kib(service.pid)
    finally:
        service_peak = lifetime.stop() if lifetime is not None else None
        exit_code = service.stop()
    results = {
        "service": {
            "topic": service.topic,
            "rss_kib_before": rss_before,
            "rss_kib_after": rss_after,
            "rss_kib_peak": service_peak,
            "exit_code": exit_code,
        },
        "service_records": setup.records,
        "profiles": setup.profiles,
        "lines": [],
    }
    return results, measurements


def judged(
    results: dict[str, Any], chosen: list[Line], measurements: list[Measurement]
) -> list[lines.Target]:
    """Ratios to each line's raw line, and the targets, into `results`."""
    by_name = {m.name: m for m in measurements}
    specs = {line.name: line for line in chosen}
    for m in measurements:
        reference = specs[m.name].reference
        results["lines"].append(
            {
                **m.to_json(),
                "kind": specs[m.name].kind,
                "reference": reference,
                "ratios": (lines.ratios(m, by_name[reference]) if reference in by_name else None),
            }
        )
    found = lines.targets(by_name, results["service"]["rss_kib_peak"])
    results["targets"] = [t.to_json() for t in found]
    return found


def measure_integrity(
    broker: Broker, plan: Plan, scratch: Path
) -> tuple[dict[str, Any], list[Measurement]]:
    """The integrity pair, each service measured as long as one line above in all."""
    rounds = _seconds("BENCH_INTEGRITY_ROUNDS", 2)
    pair_plan = integrity.PairPlan(
        rounds=rounds,
        round_s=max(1, plan.duration_s // rounds),
        warmup_s=plan.warmup_s,
        connections=INTEGRITY_CONNECTIONS,
    )
    return integrity.measure(
        bootstrap_servers=broker.bootstrap_servers,
        broker_pid=broker.pid,
        script=wrk.write_script(scratch, http_body(), name="integrity"),
        plan=pair_plan,
        scratch=scratch,
        log_dir=RESULTS_DIR,
        run_id=uuid.uuid4().hex,
    )


def _load() -> list[float]:
    """The machine's 1, 5 and 15 minute load averages: how shared it was."""
    return [round(value, 2) for value in os.getloadavg()]


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short lines, fewer of them")
    parser.add_argument(
        "--lines", help="comma-separated line names to run (see bench/lines.py), in table order"
    )
    integrity_group = parser.add_mutually_exclusive_group()
    integrity_group.add_argument(
        "--integrity", dest="integrity", action="store_true", default=None,
        help="run the integrity pair (the default without --quick or --lines)",
    )  # fmt: skip
    integrity_group.add_argument("--no-integrity", dest="integrity", action="store_false")
    parser.add_argument(
        "--profile", action="store_true",
        help="sample the service with py-spy during each HTTP line (see bench/profile.py)",
    )  # fmt: skip
    parser.add_argument(
        "--py-spy", default=os.environ.get("BENCH_PY_SPY") or shutil.which("py-spy"),
        help="the py-spy for --profile (default: BENCH_PY_SPY, else py-spy on PATH)",
    )  # fmt: skip
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the bench; exit status 1 when any line failed more than 0.1% of its requests (a
    batch's failed events count as failures too)."""
    args = _arguments(argv)
    quick = bool(args.quick)
    names = [name.strip() for name in args.lines.split(",")] if args.lines else None
    chosen = lines.selected(quick=quick, names=names)
    with_integrity = args.integrity if args.integrity is not None else not (quick or names)
    duration_s = _seconds("BENCH_DURATION_S", 5 if quick else 15)
    plan = Plan(
        duration_s=duration_s,
        warmup_s=_seconds("BENCH_WARMUP_S", 2 if quick else 3),
        jvm_records=_seconds("BENCH_JVM_RECORDS", 10_000 * duration_s),
    )
    wrk.find_wrk()  # fail before a broker is started for nothing
    if args.profile and not args.py_spy:
        raise SystemExit("--profile needs py-spy: set BENCH_PY_SPY or put py-spy on PATH")
    py_spy = args.py_spy if args.profile else None
    # aiokafka's warnings with their logger's name: its one "Topic ... not found in cluster
    # metadata" while the broker auto-creates a raw line's topic is expected, not a failure.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    load_before = _load()
    pair: list[Measurement] = []
    with tempfile.TemporaryDirectory(prefix="rg-bench-") as scratch, kafka_broker() as broker:
        _say(f"Kafka at {broker.bootstrap_servers} ({broker.kind}); {len(chosen)} lines")
        results, measurements = measure(broker, plan, Path(scratch), chosen, py_spy)
        if with_integrity:
            results["integrity"], pair = measure_integrity(broker, plan, Path(scratch))
    results = {**_conditions(broker, plan, quick), **results}
    found = judged(results, chosen, measurements)
    failing = [m for m in measurements + pair if m.failure_rate > MAX_FAILURE_RATE]
    results["passed"] = not failing
    results["wall_time_s"] = round(time.monotonic() - started, 1)
    results["load_average"] = {"before": load_before, "after": _load()}
    text = report.write_all(results, measurements, found, pair, RESULTS_DIR)
    _say("")
    _say(text)
    _say(f"written to {RESULTS_DIR}")
    for m in failing:
        _say(
            f"FAILED: {m.label}: {m.failed} of its events failed ({m.failure_rate:.2%}; "
            f"non-2xx {m.non_2xx}, errors {m.errors}); limit {MAX_FAILURE_RATE:.1%}"
        )
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
