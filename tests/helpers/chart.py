"""The Helm chart's tools for the tests: the project's own helm (built by `make helm`), rendering
the chart, walking the rendered manifests, and validating them offline with kubernetes-validate.

A missing tool fails the test with the make target that installs it; nothing is skipped."""

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]  # PyYAML (kubernetes-validate's) ships no types

from tests.helpers import ROOT

CHART = ROOT / "helm" / "ractogateway-kafka"
VALUES = ROOT / "tests" / "deploy" / "values"
HELM = ROOT / ".cache" / "tools" / "bin" / "helm"
KUBERNETES_VALIDATE = ROOT / ".venv" / "bin" / "kubernetes-validate"
# Native sidecars need 1.29; validated against a release that has them on by default.
KUBE_VERSION = "1.33.0"
RELEASE = "audit"
NAMESPACE = "apps"

Manifest = dict[str, Any]


def helm() -> Path:
    """The project's helm; the test fails, naming the target that builds it, when it is missing."""
    assert HELM.exists(), f"{HELM} is missing: run `make helm` (make test and make lint do it)"
    return HELM


def kubernetes_validate() -> Path:
    assert KUBERNETES_VALIDATE.exists(), (
        f"{KUBERNETES_VALIDATE} is missing: run `make install` (it is a dev dependency)"
    )
    return KUBERNETES_VALIDATE


@dataclass(frozen=True)
class Helm:
    """One helm run: its exit status and what it printed."""

    returncode: int
    stdout: str
    stderr: str


def run_helm(*args: str | Path) -> Helm:
    result = subprocess.run(
        [str(helm()), *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )
    return Helm(result.returncode, result.stdout, result.stderr)


def template_args(*values: str | Path, sets: dict[str, str] | None = None) -> list[str]:
    """`-f FILE` for each values file (a bare name is one of tests/deploy/values/), `--set` each."""
    args: list[str] = []
    for item in values:
        path = item if isinstance(item, Path) else VALUES / f"{item}.yaml"
        args += ["-f", str(path)]
    for key, value in (sets or {}).items():
        args += ["--set", f"{key}={value}"]
    return args


# Mode standalone without API keys is refused unless allowed; the variants and most tests look
# at other things, so this chart (not a parent chart) renders with the allow; tests of the
# refusal pass `allowed=False`.
ALLOW_UNAUTHENTICATED = ["--set", "auth.allowUnauthenticated=true"]


def template(
    *values: str | Path,
    sets: dict[str, str] | None = None,
    chart: Path = CHART,
    allowed: bool = True,
) -> Helm:
    """`helm template` of the chart for the release `audit` in namespace `apps` (with
    `auth.allowUnauthenticated` unless not `allowed`)."""
    return run_helm(
        "template",
        RELEASE,
        chart,
        "--namespace",
        NAMESPACE,
        "--kube-version",
        KUBE_VERSION,
        *(ALLOW_UNAUTHENTICATED if allowed and chart.name == CHART.name else []),
        *template_args(*values, sets=sets),
    )


def render(
    *values: str | Path,
    sets: dict[str, str] | None = None,
    chart: Path = CHART,
    allowed: bool = True,
) -> str:
    """The rendered manifests; the test fails with helm's message when rendering fails."""
    result = template(*values, sets=sets, chart=chart, allowed=allowed)
    assert result.returncode == 0, f"helm template {values} {sets}:\n{result.stderr}"
    return result.stdout


def manifests(text: str) -> list[Manifest]:
    """The objects of a multi-document YAML text, empty documents left out."""
    return [doc for doc in yaml.safe_load_all(text) if doc]


def of_kind(objects: list[Manifest], kind: str) -> list[Manifest]:
    return [obj for obj in objects if obj["kind"] == kind]


def one(objects: list[Manifest], kind: str) -> Manifest:
    found = of_kind(objects, kind)
    assert len(found) == 1, f"{len(found)} objects of kind {kind}: {[o['kind'] for o in objects]}"
    return found[0]


def pod_spec(obj: Manifest) -> Manifest:
    """The pod spec of a workload (Deployment, StatefulSet)."""
    spec: Manifest = obj["spec"]["template"]["spec"]
    return spec


def workload(objects: list[Manifest]) -> Manifest:
    workloads = [obj for obj in objects if obj["kind"] in ("Deployment", "StatefulSet")]
    assert len(workloads) == 1, [obj["kind"] for obj in objects]
    return workloads[0]


def containers(spec: Manifest) -> Iterator[Manifest]:
    """Every container of a pod spec, init containers (native sidecars) included."""
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def recorder(spec: Manifest) -> Manifest:
    """The recorder's container in a pod spec."""
    found = [c for c in containers(spec) if c["name"] == "ractogateway-kafka"]
    assert len(found) == 1, [c["name"] for c in containers(spec)]
    return found[0]


def env_of(container: Manifest) -> dict[str, Manifest]:
    """A container's env entries by name."""
    return {entry["name"]: entry for entry in container.get("env", [])}


def validate(files: list[Path], version: str = KUBE_VERSION) -> dict[Path, list[str]]:
    """Run `kubernetes-validate --strict` once over `files` (its start-up is the slow part); the
    lines it printed per file. The caller decides what a WARN line (a kind without a bundled
    schema) means."""
    result = subprocess.run(
        [str(kubernetes_validate()), "--strict", "-k", version, *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines: dict[Path, list[str]] = {path: [] for path in files}
    for line in result.stdout.splitlines():
        for path in files:
            if f" {path} " in f" {line} ":
                lines[path].append(line)
    unmatched = [
        line for line in result.stdout.splitlines() if not any(line in v for v in lines.values())
    ]
    assert not unmatched, f"kubernetes-validate printed lines for no file: {unmatched}"
    assert result.returncode == 0 or any(
        line.startswith(("ERROR", "FATAL")) for v in lines.values() for line in v
    ), f"kubernetes-validate exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return lines
