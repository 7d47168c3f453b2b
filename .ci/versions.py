"""One version everywhere: every place that states the release's version must state the same one.

`make lint` runs it (`python .ci/versions.py [ROOT]`); tests/deploy/test_versions.py runs it on the
repository and on copies with one place changed. It prints one line per disagreeing place and exits
1, or prints the version and exits 0. Standard library only: it reads the files as text and never
imports the project, so it checks any copy of the tree.

To release a version, change every place listed in `PLACES` (the chart's own `version` moves with
the app's, so the parent chart example asks for it too) and add its section to CHANGELOG.md.
"""

import json
import re
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

NAME = "ractogateway-kafka"


def _pyproject(root: Path) -> list[str]:
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return [project["version"]]


def _lock(root: Path) -> list[str]:
    lock = tomllib.loads((root / "uv.lock").read_text(encoding="utf-8"))
    return [package["version"] for package in lock["package"] if package["name"] == NAME]


def _openapi(root: Path) -> list[str]:
    return [json.loads((root / "openapi.json").read_text(encoding="utf-8"))["info"]["version"]]


def _matches(path: str, pattern: str) -> Callable[[Path], list[str]]:
    """The first group of every match of `pattern` (multi-line) in the file at `path`; none when
    the file is missing."""

    def read(root: Path) -> list[str]:
        if not (root / path).is_file():
            return []
        return re.findall(pattern, (root / path).read_text(encoding="utf-8"), re.MULTILINE)

    return read


def _images(folder: str) -> Callable[[Path], list[str]]:
    """The tag of every `ractogateway-kafka:<x.y.z>` image named in the folder's files."""

    def read(root: Path) -> list[str]:
        found: list[str] = []
        for path in sorted((root / folder).rglob("*")):
            if path.is_file() and path.suffix in {".md", ".yaml", ".yml"}:
                text = path.read_text(encoding="utf-8")
                found += re.findall(rf"{NAME}:(\d+\.\d+\.\d+)\b", text)
        return found

    return read


def _newest_release(root: Path) -> list[str]:
    """The version of CHANGELOG.md's first release section (`## [x.y.z] - date`)."""
    return _matches("CHANGELOG.md", r"^## \[(\d+\.\d+\.\d+)\]")(root)[:1]


# Each place: a name printed when it disagrees, and how to read the version(s) it states. Every
# place must state at least one.
PLACES: dict[str, Callable[[Path], list[str]]] = {
    "app/__init__.py __version__": _matches("app/__init__.py", r'^__version__ = "([^"]+)"$'),
    "pyproject.toml [project] version": _pyproject,
    f"uv.lock {NAME} version": _lock,
    "openapi.json info.version": _openapi,
    "Dockerfile ARG VERSION (the image label)": _matches("Dockerfile", r"^ARG VERSION=(\S+)$"),
    "helm Chart.yaml version": _matches("helm/ractogateway-kafka/Chart.yaml", r"^version: (\S+)$"),
    "helm Chart.yaml appVersion": _matches(
        "helm/ractogateway-kafka/Chart.yaml", r'^appVersion: "([^"]+)"$'
    ),
    "examples/kubernetes/parent-chart dependency version": _matches(
        "examples/kubernetes/parent-chart/Chart.yaml", r'^    version: "([^"]+)"$'
    ),
    "CHANGELOG.md newest release": _newest_release,
    "examples/ image tags": _images("examples"),
    "docs/ image tags": _images("docs"),
}


def disagreements(root: Path) -> tuple[str, list[str]]:
    """The version app/__init__.py states, and a line for every place that states another (or
    none)."""
    stated = {place: read(root) for place, read in PLACES.items()}
    [version] = stated["app/__init__.py __version__"] or ["(none)"]
    wrong = []
    for place, versions in stated.items():
        if not versions:
            wrong.append(f"{place}: states no version")
        for found in versions:
            if found != version:
                wrong.append(f"{place}: {found} (app/__init__.py says {version})")
    return version, wrong


def main(argv: list[str]) -> int:
    """Check the tree at argv[0] (the repository by default); the exit status."""
    root = Path(argv[0]) if argv else Path(__file__).resolve().parent.parent
    version, wrong = disagreements(root)
    for line in wrong:
        print(f"versions: {line}", file=sys.stderr)
    if wrong:
        return 1
    print(f"versions: {version} in {len(PLACES)} places")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
