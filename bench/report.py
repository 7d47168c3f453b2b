"""results.json, results.md and the two plots, all from the same list of measurements."""

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on a build machine

# pyplot after the backend is chosen: importing it earlier would pick one itself.
import matplotlib.pyplot as plt

from bench.stats import Measurement

_COLOURS = ["#4C72B0", "#55A868", "#C44E52"]


def _count(value: int | None) -> str:
    return "n/a" if value is None else str(value)


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def _times(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def markdown_table(measurements: list[Measurement]) -> str:
    """One row per scenario; latencies in milliseconds."""
    lines = [
        "| Scenario | req/s | p50 ms | p90 ms | p99 ms | max ms | requests | non-2xx | errors "
        "| producer CPU % | producer CPU µs/req | broker CPU % |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in measurements:
        lines.append(
            f"| {m.label} | {m.requests_per_s:,.0f} | {m.p50_ms:.2f} | {m.p90_ms:.2f} "
            f"| {m.p99_ms:.2f} | {m.max_ms:.2f} | {m.requests:,} | {_count(m.non_2xx)} "
            f"| {sum(m.errors.values())} | {_percent(m.cpu_percent.get('producer'))} "
            f"| {_percent(m.producer_cpu_us_per_request)} "
            f"| {_percent(m.cpu_percent.get('broker'))} |"
        )
    return "\n".join(lines)


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


def markdown(
    results: dict[str, Any], measurements: list[Measurement], pair: list[Measurement]
) -> str:
    """The whole results.md: the tables, then the conditions they were measured under."""
    machine = results["machine"]
    service = results["service"]
    pair_plan = results["integrity"]
    load = results["load_average"]
    return "\n".join(
        [
            "# ractogateway-kafka benchmark",
            "",
            markdown_table(measurements),
            "",
            integrity_table(pair, pair_plan["ratio_on_over_off"]),
            "",
            f"- {results['concurrency']} concurrent requests, {results['duration_s']} s measured "
            f"after a {results['warmup_s']} s warm-up, one scenario at a time",
            f"- record: {results['record_bytes']} bytes of canonical JSON "
            f"(HTTP body {results['http_body_bytes']} bytes)",
            f"- broker: {results['broker']['kind']} Apache Kafka {results['broker']['version']}",
            f"- machine: {machine['cpu_count']} CPUs, {machine['platform']}, "
            f"Python {machine['python']}",
            f"- service RSS: {service['rss_kib_before'] / 1024:.1f} MiB before load, "
            f"{service['rss_kib_after'] / 1024:.1f} MiB after",
            "- CPU % is of one core over the measured window; the producer process is the "
            "service for the HTTP rows and the bench itself for the raw row (wrk not counted); "
            "CPU µs/req is its utime + stime over the window per completed request",
            f"- integrity pair: both services serve side by side, measured in "
            f"{pair_plan['rounds']} alternating rounds of {pair_plan['round_s']} s each; "
            "p50/p99 are the means of the rounds'",
            f"- load average (1, 5, 15 min): {load['before']} before, {load['after']} after",
            "",
        ]
    )


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
    """Requests per second, one bar per scenario."""
    figure, axes = plt.subplots(figsize=(7, 4.5))
    labels = [m.label for m in measurements]
    bars = axes.bar(labels, [m.requests_per_s for m in measurements], color=_COLOURS)
    _label_bars(axes, bars, ",.0f")
    axes.set_ylabel("requests / s")
    axes.set_title("Throughput (32 concurrent requests, acks=all producer)")
    axes.tick_params(axis="x", labelsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def latency_plot(measurements: list[Measurement], path: Path) -> None:
    """p50, p90 and p99 side by side for each scenario."""
    figure, axes = plt.subplots(figsize=(8, 4.5))
    percentiles = [("p50", "p50_ms"), ("p90", "p90_ms"), ("p99", "p99_ms")]
    width = 0.8 / len(measurements)
    for index, m in enumerate(measurements):
        offsets = [slot + (index - (len(measurements) - 1) / 2) * width for slot in range(3)]
        values = [getattr(m, attribute) for _, attribute in percentiles]
        bars = axes.bar(offsets, values, width, label=m.label, color=_COLOURS[index])
        _label_bars(axes, bars, ".1f")
    axes.set_xticks(range(len(percentiles)), [name for name, _ in percentiles])
    axes.set_ylabel("latency (ms)")
    axes.set_title("Latency percentiles (lower is better)")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_all(
    results: dict[str, Any],
    measurements: list[Measurement],
    pair: list[Measurement],
    directory: Path,
) -> str:
    """Write every output file; returns the Markdown for the terminal."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "results.json").write_text(json.dumps(results, indent=2) + "\n", "utf-8")
    text = markdown(results, measurements, pair)
    (directory / "results.md").write_text(text, encoding="utf-8")
    throughput_plot(measurements, directory / "throughput.png")
    latency_plot(measurements, directory / "latency.png")
    return text
