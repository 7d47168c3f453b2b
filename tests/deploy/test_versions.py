"""One version everywhere (.ci/versions.py, run by `make lint`): the package, the lock, the
OpenAPI document, the image label, the chart's version and appVersion, the examples, the manual and
the changelog's newest release state app.__version__; a copy of the tree with one place changed
fails, naming that place."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app import __version__
from tests.helpers import ROOT

SCRIPT = ROOT / ".ci" / "versions.py"
# What the script reads: copied for the trees a test changes.
READ = [
    "app/__init__.py",
    "pyproject.toml",
    "uv.lock",
    "openapi.json",
    "Dockerfile",
    "CHANGELOG.md",
    "helm/ractogateway-kafka/Chart.yaml",
    "examples",
    "docs",
]


def check(root: Path) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(root)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_every_place_states_the_apps_version() -> None:
    done = check(ROOT)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.startswith(f"versions: {__version__} in ")


@pytest.mark.parametrize(
    ("path", "old", "new", "named"),
    [
        ("helm/ractogateway-kafka/Chart.yaml", 'appVersion: "', 'appVersion: "9', "appVersion"),
        ("helm/ractogateway-kafka/Chart.yaml", "\nversion: ", "\nversion: 9", "Chart.yaml version"),
        ("Dockerfile", "ARG VERSION=", "ARG VERSION=9", "Dockerfile ARG VERSION"),
        ("openapi.json", '"version": "', '"version": "9', "openapi.json info.version"),
        # The first release section (an `## [Unreleased]` one may come before it).
        ("CHANGELOG.md", "\n## [0", "\n## [90", "CHANGELOG.md newest release"),
        ("examples/kubernetes/two-containers.yaml", "kafka:0", "kafka:90", "examples/ image"),
        ("uv.lock", f'kafka"\nversion = "{__version__}"', 'kafka"\nversion = "9"', "uv.lock"),
    ],
)
def test_a_place_that_states_another_version_is_named(
    tmp_path: Path, path: str, old: str, new: str, named: str
) -> None:
    for name in READ:
        source, copy = ROOT / name, tmp_path / name
        copy.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, copy)
        else:
            shutil.copy(source, copy)
    changed = tmp_path / path
    text = changed.read_text(encoding="utf-8")
    assert old in text
    changed.write_text(text.replace(old, new, 1), encoding="utf-8")
    done = check(tmp_path)
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert line.startswith("versions: ")
    assert named in line
    assert f"app/__init__.py says {__version__}" in line
