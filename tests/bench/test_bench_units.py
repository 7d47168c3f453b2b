"""The bench's own logic, without a broker: which lines run, how they are judged against their
raw lines, the producer settings the raw lines copy from the service, and the report files."""

import dataclasses
import json
import os
from pathlib import Path

import pytest

from app.connection import producer_config
from app.settings import Settings
from bench import jvm, lines, profile, report, wrk
from bench.procfs import RssSampler
from bench.producers import aiokafka_options, kafka_properties
from bench.stats import Measurement, from_json


def _line(
    name: str,
    *,
    events_per_s: float,
    p50: float = 5.0,
    p99: float = 10.0,
    cpu_us: float = 100.0,
    events: int = 1,
) -> Measurement:
    requests = int(events_per_s * 10 / events)
    return Measurement(
        name=name,
        label=name,
        requests=requests,
        duration_s=10.0,
        p50_ms=p50,
        p90_ms=p50 * 1.5,
        p99_ms=p99,
        max_ms=p99 * 2,
        mean_ms=p50,
        cpu_s={"producer": cpu_us * requests * events / 1_000_000},
        connections=32,
        events_per_request=events,
        peak_rss_kib=50_000,
    )


def test_unit_quick_runs_fewer_lines_and_names_pick_lines() -> None:
    full = lines.selected(quick=False, names=None)
    quick = lines.selected(quick=True, names=None)
    assert {line.name for line in quick} < {line.name for line in full}
    assert "audit_128" not in {line.name for line in quick}
    assert {"audit_32", "raw_single_32", "batch_8", "raw_batched_8"} <= {
        line.name for line in quick
    }
    picked = lines.selected(quick=False, names=["raw_single_32", "audit_32"])
    assert [line.name for line in picked] == ["raw_single_32", "audit_32"]  # table order
    with pytest.raises(SystemExit, match="unknown line"):
        lines.selected(quick=False, names=["audit_7"])


def test_unit_every_reference_is_a_raw_line() -> None:
    kinds = {line.name: line.kind for line in lines.LINES}
    for line in lines.LINES:
        if line.reference is not None:
            assert kinds[line.reference] == "raw", line.name


def test_unit_ratios_and_targets_on_figures() -> None:
    measured = {
        "raw_single_32": _line("raw_single_32", events_per_s=5000, p99=10.0, cpu_us=150),
        "audit_32": _line("audit_32", events_per_s=2500, p99=40.0, cpu_us=400),
        "nowait_32": _line("nowait_32", events_per_s=3000),
        "raw_batched_8": _line("raw_batched_8", events_per_s=8000, events=100),
        "batch_8": _line("batch_8", events_per_s=4000, p99=900.0, events=100),
    }
    ratios = lines.ratios(measured["audit_32"], measured["raw_single_32"])
    assert ratios["events_per_s"] == 0.5
    assert ratios["p99_ms"] == 4.0
    found = {t.name: t for t in lines.targets(measured, service_peak_rss_kib=160_000)}
    verdicts = {name: t.passed for name, t in found.items()}
    assert verdicts["POST /audit at 32 connections: events/s >= 0.40x raw send_and_wait"]
    assert not verdicts["POST /audit at 32 connections: p99 <= 3x raw p99"]  # 40 > 30
    assert verdicts["POST /audit at 32 connections: CPU <= 500 us per event"]
    assert not verdicts["POST /audit/batch (100) at 8: events/s >= 0.70x raw batched"]
    assert verdicts["POST /audit/batch (100) at 8: p99 <= 1 s"]
    assert verdicts["?wait=false faster than waiting at 32 connection(s)"]
    # Lines that did not run leave their targets undecided, not failed.
    assert verdicts["POST /audit at 1 connection: p50 <= raw p50 + 1.5 ms"] is None
    assert not verdicts["service RSS <= 150 MB throughout the bench"]  # 163.8 MB


def test_unit_batch_events_count_per_event() -> None:
    batch = _line("batch_8", events_per_s=4000, cpu_us=120, events=100)
    assert batch.events_per_s == pytest.approx(4000)
    assert batch.cpu_us_per_event == pytest.approx(120)
    assert from_json(batch.to_json()) == batch


def test_unit_raw_lines_copy_the_service_producer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RG_KAFKA_COMPRESSION_TYPE", "gzip")
    service = producer_config(Settings(kafka_bootstrap_servers=["127.0.0.1:9"]))
    options = aiokafka_options("127.0.0.1:9")
    properties = kafka_properties("127.0.0.1:9")
    assert options["compression_type"] == "gzip" == properties["compression.type"]
    assert options["linger_ms"] == service.linger_ms == int(properties["linger.ms"])
    assert options["acks"] == "all" == properties["acks"]
    assert options["enable_idempotence"] is True
    assert properties["enable.idempotence"] == "true"
    assert properties["bootstrap.servers"] == "127.0.0.1:9"


def test_unit_producer_performance_summary() -> None:
    stdout = (
        "5447 records sent, 1080.8 records/sec (2.39 MB/sec), 1941.9 ms avg latency, "
        "3387.0 ms max latency.\n"
        "50000 records sent, 4854.840276 records/sec (10.74 MB/sec), 2114.44 ms avg latency, "
        "4708.00 ms max latency, 1563 ms 50th, 4597 ms 95th, 4650 ms 99th, 4670 ms 99.9th.\n"
    )
    figures = jvm.summary(stdout)
    assert figures is not None
    assert figures["records"] == 50000
    assert figures["p50"] == 1563
    assert figures["p99"] == 4650
    assert jvm.summary(stdout.splitlines()[0]) is None  # a progress line is no summary


def test_unit_wrk_scripts(tmp_path: Path) -> None:
    get = wrk.write_script(tmp_path, None, name="get").read_text(encoding="utf-8")
    post = wrk.write_script(tmp_path, '{"a":"]]"}', name="post").read_text(encoding="utf-8")
    assert 'wrk.method = "GET"' in get
    assert "wrk.body" not in get
    assert 'wrk.body = [=[{"a":"]]"}]=]' in post
    assert "function response" not in post  # reading bodies slows wrk: only when asked
    batch = wrk.write_script(tmp_path, "{}", name="batch", count_failed_items=True)
    assert "function response" in batch.read_text(encoding="utf-8")


def test_unit_rss_sampler_sees_this_process() -> None:
    sampler = RssSampler(os.getpid(), interval_s=0.01).start()
    assert sampler.stop() > 0


def test_unit_report_writes_every_file(tmp_path: Path) -> None:
    measured = [
        _line("raw_single_32", events_per_s=5000),
        _line("audit_32", events_per_s=2500),
    ]
    found = lines.targets({m.name: m for m in measured}, service_peak_rss_kib=100_000)
    results = {
        "quick": True,
        "duration_s": 5,
        "warmup_s": 2,
        "jvm_records": 1,
        "record_bytes": 2320,
        "http_body_bytes": 2205,
        "batch_events": 100,
        "machine": {"cpu_count": 2, "platform": "linux", "python": "3.11"},
        "broker": {"kind": "embedded", "version": "3.9.1"},
        "service": {"rss_kib_before": 1, "rss_kib_after": 2, "rss_kib_peak": 100_000},
        "producers": {"kafka_properties": kafka_properties("127.0.0.1:9")},
        "load_average": {"before": [1.0], "after": [1.0]},
        "lines": [
            {**m.to_json(), "reference": "raw_single_32", "ratios": lines.ratios(m, measured[0])}
            for m in measured
        ],
    }
    text = report.write_all(results, measured, found, [], tmp_path)
    assert "| pass |" in text  # the targets table
    assert "audit_32 | 32 | 2,500" in text
    assert json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))["quick"]
    for name in ("results.md", "throughput.png", "latency.png"):
        assert (tmp_path / name).stat().st_size > 0


def test_unit_profile_shares_by_package_and_function() -> None:
    root = "<module> (ractogateway-kafka:10);Runner.run (asyncio/runners.py:118)"
    stacks = "\n".join(
        [
            f"{root};AuditTrail.record (app/ingest/audit_trail.py:90);"
            "MessageAccumulator.add_message (aiokafka/producer/message_accumulator.py:426) 3",
            f"{root};AuditTrail.record (app/ingest/audit_trail.py:90) 1",
        ]
    )
    shares = profile.summarise(stacks)
    assert shares["samples"] == 4
    assert shares["self_by_package"] == {"aiokafka": 0.75, "app.ingest": 0.25}
    assert shares["inclusive_by_function"]["AuditTrail.record (app.ingest)"] == 1.0
    assert "Runner.run (python)" not in shares["inclusive_by_function"]  # an entry frame
    assert profile.package_of("/usr/lib/python3.11/asyncio/tasks.py") == "python"
    assert profile.package_of("/x/.venv/lib/python3.11/site-packages/pydantic/main.py") == (
        "pydantic"
    )
    assert profile.package_of("<frozen os>") == "python"


def test_unit_failed_batch_events_are_failures_in_events() -> None:
    batch = dataclasses.replace(
        _line("batch_8", events_per_s=100, events=100), non_2xx=1, errors={"failed_items": 30}
    )
    assert batch.requests == 10
    assert batch.failed == 130  # one failed request of 100 events, 30 events of 2xx answers
    assert batch.failure_rate == pytest.approx(130 / 1000)
