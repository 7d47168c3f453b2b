"""Headless Chromium for the /ui browser tests: Debian's `chromium`, driven by Playwright
through `executable_path` (Playwright never downloads a browser here), and where the tests'
screenshots go."""

import shutil
from pathlib import Path

import pytest

from tests.helpers import ROOT

# Git-ignored; kept after the run for a person to look at (tmp_path copies go with pytest's).
ARTIFACTS = ROOT / "test-artifacts" / "ui"


def chromium_path() -> str:
    """The `chromium` on PATH; the test FAILS (never skips) when there is none."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail(
            "chromium not found on PATH: the /ui browser tests need it. `make test` installs "
            "Debian's package when missing (`make chromium`, .ci/chromium.sh); elsewhere "
            "install your distribution's chromium package."
        )
    return found


def screenshot_paths(tmp_path: Path, name: str) -> list[Path]:
    """Where a screenshot called `name` is saved: the test's tmp_path and ARTIFACTS."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return [tmp_path / f"{name}.png", ARTIFACTS / f"{name}.png"]
