"""Driving the HTTP lines with wrk: a generated Lua script sends the request (a POST of a JSON
body, or a GET) and, when the run is over, prints its summary as one JSON line that we parse."""

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from bench.stats import FAILED_ITEMS, US_PER_MS, Measurement

THREADS = 2
# Far above the service's own produce timeout (10 s): a slow acknowledgement is measured as a
# latency, not dropped by wrk as a timeout.
REQUEST_TIMEOUT_S = 30

# Each wrk thread runs its own copy of the script; done() reads what they counted through the
# thread objects setup() kept.
_DONE = """
local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

function done(summary, latency, requests)
  local e = summary.errors
  local items = 0
  for _, thread in ipairs(threads) do
    items = items + (thread:get("failed_items") or 0)
  end
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
      .. '"failed_items":%d,'
      .. '"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}\\n',
    summary.requests, summary.duration,
    e.connect, e.read, e.write, e.status, e.timeout, items,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
"""

# A batch answers 200 even when some of its events failed: its body says how many ("failed": n).
# Reading bodies costs wrk time, so only scripts that ask for it do.
_COUNT_FAILED_ITEMS = """
failed_items = 0
function response(status, headers, body)
  local failed = body:match('"failed":(%d+)')
  if failed then
    failed_items = failed_items + tonumber(failed)
  end
end
"""


class WrkError(RuntimeError):
    """wrk is missing, failed, or printed no summary."""


def find_wrk() -> str:
    """The `wrk` on PATH; `make bench` installs it when it is missing."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise WrkError("wrk not found on PATH: run `make bench`, or install the Debian package wrk")
    return wrk


def _lua_long_string(text: str) -> str:
    """`text` as a Lua long-bracket literal whose closing bracket cannot occur inside it."""
    level = 0
    while f"]{'=' * level}]" in text:
        level += 1
    equals = "=" * level
    return f"[{equals}[{text}]{equals}]"


def write_script(
    directory: Path, body: str | None, *, name: str = "audit", count_failed_items: bool = False
) -> Path:
    """The Lua script `<name>.lua`: POST `body` as JSON on every request (a plain GET when
    `body` is None), print the summary at the end; with `count_failed_items`, add up the
    `"failed"` count of every answer (a batch's failed events)."""
    script = directory / f"{name}.lua"
    request = (
        'wrk.method = "GET"\n'
        if body is None
        else 'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = {_lua_long_string(body)}\n"
    )
    counting = _COUNT_FAILED_ITEMS if count_failed_items else ""
    script.write_text(request + counting + _DONE, encoding="utf-8")
    return script


def _summary_line(stdout: str) -> dict[str, Any]:
    # wrk's own report comes first; ours is the only line that is a JSON object.
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            parsed: dict[str, Any] = json.loads(line)
            return parsed
    raise WrkError(f"wrk printed no summary line:\n{stdout}")


def run(
    *, url: str, script: Path, connections: int, duration_s: int, name: str, label: str
) -> Measurement:
    """One wrk run of `duration_s` seconds with `connections` keep-alive connections."""
    command = [
        find_wrk(),
        f"-t{min(THREADS, connections)}",  # wrk wants a connection per thread at least
        f"-c{connections}",
        f"-d{duration_s}s",
        f"--timeout={REQUEST_TIMEOUT_S}s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        check=False,
        timeout=duration_s + REQUEST_TIMEOUT_S + 30,
    )
    if result.returncode != 0:
        raise WrkError(f"wrk exited with {result.returncode}: {result.stderr or result.stdout}")
    summary = _summary_line(result.stdout)
    errors: dict[str, int] = summary["errors"]
    return Measurement(
        name=name,
        label=label,
        requests=summary["requests"],
        duration_s=summary["duration_us"] / 1_000_000,
        p50_ms=summary["p50"] / US_PER_MS,
        p90_ms=summary["p90"] / US_PER_MS,
        p99_ms=summary["p99"] / US_PER_MS,
        max_ms=summary["max"] / US_PER_MS,
        mean_ms=summary["mean"] / US_PER_MS,
        # wrk counts every answer with a status >= 400 under errors.status.
        non_2xx=errors["status"],
        errors={
            **{kind: count for kind, count in errors.items() if kind != "status"},
            # Events a batch answered as failed: each one a failure, though its request got 200.
            **({FAILED_ITEMS: summary["failed_items"]} if summary["failed_items"] else {}),
        },
        connections=connections,
    )
