"""The packages `make dist` builds, and the wheel installed as a user installs it: a fresh venv
made by `python -m venv`, plain pip, the runtime dependencies only."""

import hashlib
import os
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tests.helpers import ROOT

UV = ROOT / ".cache" / "tools" / "bin" / "uv"


@dataclass(frozen=True)
class Packages:
    """The sdist and the wheel `make dist` wrote (the wheel built from the sdist)."""

    wheel: Path
    sdist: Path
    build_s: float


@dataclass(frozen=True)
class Installed:
    """The wheel installed in a venv of its own."""

    venv: Path
    install_s: float

    @property
    def script(self) -> Path:
        return self.venv / "bin" / "ractogateway-kafka"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


def _run(args: list[str | Path], *, cwd: Path, timeout_s: float = 300) -> str:
    """Run a command to completion; its output, or an AssertionError with its output."""
    done = subprocess.run(
        [str(arg) for arg in args],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, args))} exited {done.returncode}:\n"
            f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return done.stdout


def clean_env() -> dict[str, str]:
    """This environment without the project's venv, Python paths or RG_* settings: a shell a
    user opens on a machine where only the package is installed."""
    dropped = {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP"}
    return {
        name: value
        for name, value in os.environ.items()
        if name not in dropped and not name.startswith("RG_")
    }


def make_dist(out: Path) -> Packages:
    """`make dist DIST=out`: the sdist, then the wheel built from it."""
    started = time.monotonic()
    _run(["make", "--no-print-directory", "dist", f"DIST={out}"], cwd=ROOT)
    [wheel] = out.glob("ractogateway_kafka-*.whl")
    [sdist] = out.glob("ractogateway_kafka-*.tar.gz")
    return Packages(wheel=wheel, sdist=sdist, build_s=time.monotonic() - started)


def wheel_from_tree(out: Path) -> Path:
    """A wheel built straight from the working tree (`uv build --wheel`), not from the sdist."""
    _run([UV, "build", "--wheel", "--out-dir", out, ROOT], cwd=ROOT)
    [wheel] = out.glob("ractogateway_kafka-*.whl")
    return wheel


def wheel_files(wheel: Path) -> dict[str, str]:
    """Each file of a wheel with the SHA-256 of its bytes."""
    with zipfile.ZipFile(wheel) as archive:
        return {
            name: hashlib.sha256(archive.read(name)).hexdigest()
            for name in archive.namelist()
            if not name.endswith("/")
        }


def wheel_metadata(wheel: Path) -> str:
    """The METADATA file of a wheel."""
    with zipfile.ZipFile(wheel) as archive:
        [name] = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return archive.read(name).decode("utf-8")


def install_wheel(wheel: Path, folder: Path) -> Installed:
    """`python -m venv` and `pip install WHEEL` in `folder`, as a user would; the dependencies
    come from the package index, held to the versions of uv.lock by a pip constraints file
    (`uv export`) so that the test installs what the lock tested."""
    folder.mkdir(parents=True, exist_ok=True)
    constraints = folder / "constraints.txt"
    _run(
        [
            UV,
            "export",
            "--frozen",
            "--no-dev",
            "--no-emit-project",
            "--no-hashes",
            "--format",
            "requirements-txt",
            "--output-file",
            constraints,
        ],
        cwd=ROOT,
    )
    venv = folder / "venv"
    started = time.monotonic()
    _run([sys.executable, "-m", "venv", venv], cwd=folder)
    # --no-compile: byte-compiling every dependency at install took three quarters of the
    # install's ~40 s; Python compiles what it imports on first use all the same.
    pip: list[str | Path] = [venv / "bin" / "python", "-m", "pip", "install", "--no-compile"]
    _run([*pip, "--quiet", "--disable-pip-version-check", "-c", constraints, wheel], cwd=folder)
    return Installed(venv=venv, install_s=time.monotonic() - started)
