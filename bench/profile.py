"""`--profile`: py-spy samples the service during each HTTP line's measured window, and the
stacks are summed into shares: where the service's CPU goes, by package and by function.

py-spy is no project dependency: point BENCH_PY_SPY (or `--py-spy`) at one installed anywhere,
e.g. `python3 -m venv /tmp/prof && /tmp/prof/bin/pip install py-spy`. It samples from outside
the process (`--nonblocking`: the service is never paused), 100 times a second, active threads
only, so a share is of the service's busy time. Sampling costs the machine a little CPU of its
own: compare CPU per event with and without it before trusting a small difference.

The raw stacks are kept in bench/results/profile-<line>.txt (one stack per line, root first, and
its count: what flame graph tools read).
"""

import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

RATE_HZ = 100
TOP = 12
# "function (path/to/module.py:123)", or without a location for native frames.
_STDLIB_DIR = re.compile(r"/lib/python3\.\d+/(?!site-packages)")
_ENTRY_PACKAGES = {"app.cli", "native", "ractogateway-kafka"}
_ENTRY_FUNCTIONS = {"Server.run", "Server.serve", "asyncio_run", "Runner.run", "run_until_complete"}
_FRAME = re.compile(r"^(?P<function>.*?) \((?P<path>[^():]+)(?::\d+)?\)$")


@dataclass
class Recording:
    """One py-spy run in the background and where it writes."""

    process: subprocess.Popen[bytes]
    output: Path


def start(py_spy: str, pid: int, duration_s: int, output: Path) -> Recording:
    """Sample `pid` for `duration_s` seconds into `output` (collapsed stacks)."""
    command = [
        py_spy,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(duration_s),
        "--rate",
        str(RATE_HZ),
        "--nonblocking",
        "--format",
        "raw",
        "--output",
        str(output),
    ]
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    return Recording(process, output)


def finish(recording: Recording, timeout_s: float = 60.0) -> dict[str, Any] | None:
    """Wait for py-spy and summarise its stacks; None (with a note why) when it failed."""
    try:
        _, stderr = recording.process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        recording.process.kill()
        recording.process.wait()
        return None
    if recording.process.returncode != 0 or not recording.output.is_file():
        message = stderr.decode("utf-8", errors="replace").strip()[-300:]
        print(f"py-spy failed ({recording.process.returncode}): {message}", flush=True)
        return None
    return summarise(recording.output.read_text(encoding="utf-8"))


def package_of(path: str) -> str:
    """Who a frame belongs to: a third-party package, `app.<part>`, or the standard library
    (`python`). py-spy writes paths relative to their import root when it can
    (`aiokafka/producer/producer.py`, `app/kafka/audit.py`, `asyncio/tasks.py`)."""
    for root in ("site-packages/", "dist-packages/"):
        if root in path:
            path = path.rsplit(root, 1)[1]
    if _STDLIB_DIR.search(path) or path.startswith("<"):  # <frozen os>, <string>
        return "python"
    parts = PurePosixPath(path.lstrip("/")).parts
    if not parts:
        return "native"
    first = PurePosixPath(parts[0]).stem
    if first == "app":
        return "app." + PurePosixPath(parts[1]).stem if len(parts) > 1 else "app"
    if first in sys.stdlib_module_names:
        return "python"
    return first


def summarise(stacks: str) -> dict[str, Any]:
    """Shares of the samples: by package of the innermost frame (self time), and the functions
    most often on the stack at all (inclusive time, each once per sample, without the entry
    frames every stack shares)."""
    total = 0
    by_package: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for line in stacks.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [frame for frame in stack.split(";") if _FRAME.match(frame)]
        if not frames:
            continue
        total += count
        by_package[_package_of_frame(frames[-1])] += count
        for name in {_short(frame) for frame in frames if not _entry(frame)}:
            inclusive[name] += count
    if not total:
        return {"samples": 0, "self_by_package": {}, "inclusive_by_function": {}}
    return {
        "samples": total,
        "self_by_package": {
            name: round(count / total, 3) for name, count in by_package.most_common(TOP)
        },
        "inclusive_by_function": {
            name: round(count / total, 3) for name, count in inclusive.most_common(TOP * 3)
        },
    }


def _entry(frame: str) -> bool:
    """The frames every request shares (the console script, uvicorn's start, the event loop's
    run): on nearly every stack, they would fill the inclusive list and say nothing."""
    match = _FRAME.match(frame)
    if match is None:
        return True
    return package_of(match["path"]) in _ENTRY_PACKAGES or match["function"] in _ENTRY_FUNCTIONS


def _package_of_frame(frame: str) -> str:
    match = _FRAME.match(frame)
    return package_of(match["path"]) if match else "native"


def _short(frame: str) -> str:
    """`function (package)`: short enough for a table, specific enough to find."""
    match = _FRAME.match(frame)
    return f"{match['function']} ({package_of(match['path'])})" if match else frame
