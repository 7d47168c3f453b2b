"""results.json, results.md and the two plots, all from the same list of measurements."""

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on a build machine

# pyplot after the backend is chosen: importing it earlier would pick one itself.
import matplotlib.pyplot as plt

from bench.lines import MB, Target
from bench.stats import Measurement

_PERCENTILES = (
    ("p50", "p50_ms", "#4C72B0"),
    ("p90", "p90_ms", "#55A868"),
    ("p99", "p99_ms", "#C44E52"),
)


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def _times(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def _mb(kib: int | None) -> str:
    return "n/a" if kib is None else f"{kib * 1024 / MB:.0f}"


def _verdict(passed: bool | None) -> str:
    return {True: "pass", False: "**miss**", None: "n/a"}[passed]


def _connections(m: Measurement) -> str:
    return "-" if m.connections is None else str(m.connections)


def markdown_table(measurements: list[Measurement], found: list[Target]) -> str:
    """One row per line, absolute figures; its targets' verdicts in the last cell."""
    lines = [
        "| line | conns | events/s | p50 ms | p90 ms | p99 ms | CPU µs/event | CPU % "
        "| peak RSS MB | failed events | targets |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for m in measurements:
        verdicts = ", ".join(f"{t.short} {_verdict(t.passed)}" for t in found if t.line == m.name)
        lines.append(
            f"| {m.label} | {_connections(m)} | {m.events_per_s:,.0f} | {_ms(m.p50_ms)} "
            f"| {_ms(m.p90_ms)} | {_ms(m.p99_ms)} | {_percent(m.cpu_us_per_event)} "
            f"| {_percent(m.cpu_percent.get('producer'))} | {_mb(m.peak_rss_kib)} "
            f"| {m.failed} | {verdicts} |"
        )
    return "\n".join(lines)


def ratio_table(results: dict[str, Any]) -> str:
    """Each line's figures over its raw line's (events/s above 1: faster than raw)."""
    labels = {line["name"]: line for line in results["lines"]}
    rows = [
        "| line | conns | judged against | events/s | p50 | p90 | p99 | CPU/event | peak RSS |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for line in results["lines"]:
        ratios = line["ratios"]
        reference = labels.get(line["reference"] or "")
        if ratios is None or reference is None or line["name"] == line["reference"]:
            continue
        against = f"{reference['label']} @{reference['connections']}"
        rows.append(
            f"| {line['label']} | {line['connections'] or '-'} | {against} "
            f"| {_times(ratios['events_per_s'])} | {_times(ratios['p50_ms'])} "
            f"| {_times(ratios['p90_ms'])} | {_times(ratios['p99_ms'])} "
            f"| {_times(ratios['cpu_us_per_event'])} | {_times(ratios['peak_rss'])} |"
        )
    return "\n".join(rows)


def targets_table(found: list[Target]) -> str:
    """The issue's targets: the figure, its limit, pass or miss."""
    rows = ["| target | value | limit | |", "|---|---:|---:|---|"]
    for t in found:
        value = "n/a" if t.value is None else f"{t.value:,.2f} {t.unit}"
        limit = "n/a" if t.limit is None else f"{t.limit:,.2f} {t.unit}"
        rows.append(f"| {t.name} | {value} | {limit} | {_verdict(t.passed)} |")
    return "\n".join(rows)


def integrity_table(pair: list[Measurement], ratios: dict[str, float | None]) -> str:
    """The integrity pair, off then on, and the ratio of on over off."""
    lines = [
        "| POST /audit, service with | req/s | p50 ms | p99 ms | service CPU µs/req "
        "| service CPU % | requests | failed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in pair:
        lines.append(
            f"| {m.label} | {m.requests_per_s:,.0f} | {m.p50_ms:.2f} | {m.p99_ms:.2f} "
            f"| {_percent(m.producer_cpu_us_per_request)} "
            f"| {_percent(m.cpu_percent.get('producer'))} | {m.requests:,} | {m.failed} |"
        )
    lines.append(
        f"| ratio on / off | {_times(ratios['requests_per_s'])} | {_times(ratios['p50_ms'])} "
        f"| {_times(ratios['p99_ms'])} | {_times(ratios['service_cpu_us_per_request'])} "
        "| | | |"
    )
    return "\n".join(lines)


def _shares(shares: dict[str, float], below: float = 1.0) -> str:
    return ", ".join(f"{name} {share:.0%}" for name, share in shares.items() if share < below)


def profiles_section(profiles: dict[str, Any]) -> str:
    """Where the service's CPU went in each profiled line (py-spy, active threads only)."""
    rows = [
        "Where the service's CPU went (py-spy samples of its busy threads; self time by "
        "package of the innermost frame, then the functions most often on the stack):",
        "",
    ]
    for name, found in profiles.items():
        if not found or not found["samples"]:
            rows.append(f"- {name}: no samples")
            continue
        functions = dict(list(found["inclusive_by_function"].items())[:10])
        rows.append(
            f"- {name} ({found['samples']:,} samples): {_shares(found['self_by_package'])}; "
            f"on the stack: {_shares(functions)}"
        )
    return "\n".join(rows)


def markdown(
    results: dict[str, Any],
    measurements: list[Measurement],
    found: list[Target],
    pair: list[Measurement],
) -> str:
    """The whole results.md: the tables, then the conditions they were measured under."""
    machine = results["machine"]
    service = results["service"]
    load = results["load_average"]
    producers = results["producers"]["kafka_properties"]
    settings = ", ".join(
        f"{key}={producers[key]}"
        for key in ("acks", "enable.idempotence", "linger.ms", "batch.size", "compression.type")
    )
    parts = [
        "# ractogateway-kafka benchmark" + (" (quick)" if results["quick"] else ""),
        "",
        markdown_table(measurements, found),
        "",
        "Ratios to each line's raw line:",
        "",
        ratio_table(results),
        "",
        "The issue's targets:",
        "",
        targets_table(found),
        "",
    ]
    unacknowledged = [
        f"{name} {counts['kafka_records_failed']} failed, {counts['spool_appended']} spooled"
        for name, counts in results.get("service_records", {}).items()
        if counts["kafka_records_failed"] or counts["spool_appended"]
    ]
    if unacknowledged:
        parts += [
            "Records the service counted failed or spooled in a line (its window and the "
            "settling after it, so the requests wrk left in flight too, whose clients were "
            "gone): " + "; ".join(unacknowledged),
            "",
        ]
    if results.get("profiles"):
        parts += [profiles_section(results["profiles"]), ""]
    if pair:
        pair_plan = results["integrity"]
        parts += [integrity_table(pair, pair_plan["ratio_on_over_off"]), ""]
    parts += [
        f"- {results['duration_s']} s measured per line after a {results['warmup_s']} s "
        "warm-up, one line at a time; ProducerPerformance sends "
        f"{results['jvm_records']:,} records",
        f"- record: {results['record_bytes']} bytes of canonical JSON (HTTP body "
        f"{results['http_body_bytes']} bytes; a batch carries {results['batch_events']})",
        f"- every producer: {settings} (the service's, from app.connection.producer_config)",
        f"- broker: {results['broker']['kind']} Apache Kafka {results['broker']['version']}",
        f"- machine: {machine['cpu_count']} CPUs, {machine['platform']}, "
        f"Python {machine['python']}",
        f"- service RSS: {_mb(service['rss_kib_before'])} MB before load, "
        f"{_mb(service['rss_kib_after'])} MB after, {_mb(service['rss_kib_peak'])} MB at most "
        "(sampled every 0.25 s throughout)",
        "- CPU µs/event and CPU % (of one core) are of the process doing the work: the service "
        "for the HTTP lines, the raw client's own process for the raw lines, the JVM for "
        "ProducerPerformance (its whole run, start-up included); wrk is not counted",
        "- a batched line's latency is the batch's; ProducerPerformance's is each record's, "
        "and it reports no p90",
        f"- load average (1, 5, 15 min): {load['before']} before, {load['after']} after; "
        "the machine may be shared, so compare within one run",
        "",
    ]
    return "\n".join(parts)


def _label_bars(axes: Any, bars: Any, fmt: str) -> None:
    for bar in bars:
        height = bar.get_height()
        axes.annotate(
            format(height, fmt),
            (bar.get_x() + bar.get_width() / 2, height),
            ha="center",
            va="bottom",
            fontsize=8,
        )


def throughput_plot(measurements: list[Measurement], path: Path) -> None:
    """Events per second against connections (or tasks), one series per kind of line; the
    JVM line, which has no such knob, as a horizontal line. GET /messages writes nothing and
    is left out."""
    figure, axes = plt.subplots(figsize=(8, 5))
    series: dict[str, list[Measurement]] = {}
    for m in measurements:
        if m.name.startswith("messages"):
            continue
        series.setdefault(m.label, []).append(m)
    for label, points in series.items():
        if points[0].connections is None:
            for m in points:
                axes.axhline(m.events_per_s, linestyle="--", color="grey", label=label)
            continue
        points.sort(key=lambda m: m.connections or 0)
        xs = [m.connections or 0 for m in points]
        ys = [m.events_per_s for m in points]
        axes.plot(xs, ys, marker="o", label=label)
        for x, y in zip(xs, ys, strict=True):
            axes.annotate(
                f"{y:,.0f}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7
            )
    axes.set_xscale("log", base=2)
    axes.set_yscale("log")
    axes.set_xticks([1, 8, 32, 128], ["1", "8", "32", "128"])
    axes.set_xlabel("connections (HTTP) or tasks (raw clients)")
    axes.set_ylabel("events / s (log)")
    axes.set_title("Throughput against connections (acks=all, idempotent)")
    axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def latency_plot(measurements: list[Measurement], path: Path) -> None:
    """p50, p90 and p99 of every line, side by side, on a log scale."""
    figure, axes = plt.subplots(figsize=(9, 0.45 * len(measurements) + 1.5))
    height = 0.8 / len(_PERCENTILES)
    names = [f"{m.label} @{_connections(m)}" for m in measurements]
    for index, (percentile, attribute, colour) in enumerate(_PERCENTILES):
        offsets = [row + (index - 1) * height for row in range(len(measurements))]
        values = [getattr(m, attribute) or 0.0 for m in measurements]
        axes.barh(offsets, values, height, label=percentile, color=colour)
    axes.set_yticks(range(len(measurements)), names, fontsize=8)
    axes.invert_yaxis()
    axes.set_xscale("log")
    axes.set_xlabel("latency (ms, log; a batch's is the batch's)")
    axes.set_title("Latency percentiles (lower is better)")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_all(
    results: dict[str, Any],
    measurements: list[Measurement],
    found: list[Target],
    pair: list[Measurement],
    directory: Path,
) -> str:
    """Write every output file; returns the Markdown for the terminal."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "results.json").write_text(json.dumps(results, indent=2) + "\n", "utf-8")
    text = markdown(results, measurements, found, pair)
    (directory / "results.md").write_text(text, encoding="utf-8")
    throughput_plot(measurements, directory / "throughput.png")
    latency_plot(measurements, directory / "latency.png")
    return text
