"""The second verifier of evidence bundles (`verifier/`, Go, docs/auditors.md): built once with
the machine's Go into one static binary (`make verifier` builds the same), then run as a process
like `ractogateway-kafka verify --bundle`, and the two reports compared as the doc says."""

import argparse
import functools
import io
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from app.cli import build_parser
from app.cli.trail import VerifyInputError
from app.cli.verification import verify_bundle
from tests.helpers.tlog import go

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "verifier"
BINARY = ROOT / ".cache" / "tools" / "bin" / "rg-verify"


def build() -> Path:
    """Build the verifier (go build is a no-op when nothing changed) and return its path."""
    BINARY.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [go(), "build", "-trimpath", "-o", str(BINARY), "."],
        cwd=SOURCE,
        check=True,
        timeout=600,
        env={**os.environ, "CGO_ENABLED": "0"},
    )
    return BINARY


def _sort_key(finding: dict[str, Any]) -> tuple[tuple[int, Any], ...]:
    # null before any value, as docs/auditors.md says.
    fields = ("kind", "topic", "partition", "offset", "writer", "seq", "last_seq")
    return tuple((0, "") if finding[f] is None else (1, finding[f]) for f in fields)


def normalised(report: dict[str, Any]) -> dict[str, Any]:
    """The report as two verifiers' reports are compared (docs/auditors.md, the report):
    without `bundle` and every finding's `detail`, problems and warnings sorted."""
    document = {k: v for k, v in report.items() if k != "bundle"}
    for name in ("problems", "warnings"):
        findings = [{k: v for k, v in f.items() if k != "detail"} for f in report[name]]
        document[name] = sorted(findings, key=_sort_key)
    return document


def run(
    binary: Path, bundle: Path, args: list[str], cwd: Path | None = None
) -> tuple[int, dict[str, Any] | None, str]:
    """Exit code, JSON report (None unless the exit code is 0 or 1) and stderr of the Go
    verifier on `bundle` (run in `cwd`: paths in `args` may be relative to it)."""
    done = subprocess.run(
        [str(binary), "--bundle", str(bundle), "--json", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
    )
    report = json.loads(done.stdout) if done.returncode in {0, 1} else None
    return done.returncode, report, done.stderr


@functools.cache
def _parser() -> argparse.ArgumentParser:
    return build_parser()


def python_run(bundle: Path, args: list[str]) -> tuple[int, str]:
    """Exit code and standard output of `ractogateway-kafka verify --bundle BUNDLE --json
    ARGS`, in this process: the console script's parser and the function its `verify --bundle`
    runs (paths in `args` must not be relative). Exit 2 (unusable input) prints nothing."""
    parsed = _parser().parse_args(["verify", "--bundle", str(bundle), "--json", *args])
    out = io.StringIO()
    try:
        code = verify_bundle(parsed, out)
    except VerifyInputError:
        return 2, ""
    return code, out.getvalue()
