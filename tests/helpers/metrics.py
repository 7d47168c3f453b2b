"""Reading the service's Prometheus metrics and its process's memory, from a test."""

from pathlib import Path

import httpx


def metric(text: str, name: str, *, default: float | None = None) -> float:
    """The value of the metric line `name` (labels as written) in a Prometheus exposition;
    `default` when there is none (else the test fails naming it)."""
    for line in text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.rsplit(" ", 1)[1])
    if default is None:
        raise AssertionError(f"no {name} in the metrics")
    return default


def metrics_named(text: str, prefix: str) -> dict[str, float]:
    """Every unlabelled metric whose name starts with `prefix`, by name."""
    return {
        line.split()[0]: float(line.split()[1])
        for line in text.splitlines()
        if line.startswith(prefix)
    }


async def spool_metrics(client: httpx.AsyncClient) -> dict[str, float]:
    """The service's `rg_spool_*` metrics, scraped now."""
    return metrics_named((await client.get("/metrics")).text, "rg_spool_")


def memory_mib(pid: int) -> dict[str, int]:
    """VmHWM (peak) and VmRSS of a process, in MiB."""
    figures = {}
    for line in Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines():
        name, _, value = line.partition(":")
        if name in ("VmHWM", "VmRSS"):
            figures[name] = int(value.split()[0]) // 1024
    return figures
