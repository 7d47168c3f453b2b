"""The official OpenAI SDKs of other languages as programs a test runs: the JavaScript SDK (npm
`openai`, installed by `make openai-js` into .cache/tools/node/openai-js at the versions
tests/tools/openai-js/package-lock.json pins) under the machine's Node.js, and the Go SDK
(`github.com/openai/openai-go/v3`, pinned by tests/tools/openai-go/go.sum) built with the
machine's Go, modules from the Go module proxy."""

import os
import shutil
import subprocess
from pathlib import Path

from tests.helpers import ROOT
from tests.helpers.tlog import go

JS_SOURCE = ROOT / "tests" / "tools" / "openai-js"
JS_INSTALL = ROOT / ".cache" / "tools" / "node" / "openai-js"
GO_SOURCE = ROOT / "tests" / "tools" / "openai-go"


def node() -> str:
    """The machine's Node.js."""
    found = shutil.which("node")
    if found is None:
        raise RuntimeError("Node.js 20+ is needed for the JavaScript SDK's tests: install it")
    return found


def installed_js_sdk() -> Path:
    """The node_modules folder holding the pinned JavaScript SDK; a clear failure when it is
    missing or installed from another lock file (`make openai-js` installs it)."""
    lock = (JS_SOURCE / "package-lock.json").read_bytes()
    installed = JS_INSTALL / "package-lock.json"
    if not (JS_INSTALL / ".installed").exists() or installed.read_bytes() != lock:
        raise RuntimeError(
            f"the OpenAI JavaScript SDK is not installed as {JS_SOURCE} pins it: run make openai-js"
        )
    return JS_INSTALL / "node_modules"


def run_node(program: str, workdir: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run an ES module `program` that imports `openai`, from `workdir` (where a node_modules
    link to the installed SDK lets Node resolve it)."""
    workdir.mkdir(parents=True, exist_ok=True)
    link = workdir / "node_modules"
    if not link.exists():
        link.symlink_to(installed_js_sdk(), target_is_directory=True)
    script = workdir / "program.mjs"
    script.write_text(program, encoding="utf-8")
    return subprocess.run(
        [node(), str(script)],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def build_go_program(program: str, workdir: Path) -> Path:
    """Build a `main` package `program` against the pinned Go SDK in `workdir`; the binary."""
    workdir.mkdir(parents=True, exist_ok=True)
    for name in ("go.mod", "go.sum"):
        shutil.copyfile(GO_SOURCE / name, workdir / name)
    (workdir / "main.go").write_text(program, encoding="utf-8")
    binary = workdir / "program"
    subprocess.run(
        [go(), "build", "-mod=readonly", "-o", str(binary), "."],
        cwd=workdir,
        check=True,
        timeout=600,
        env={**os.environ, "CGO_ENABLED": "0"},
    )
    return binary
