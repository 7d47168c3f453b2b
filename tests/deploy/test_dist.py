"""The packages of `make dist`, taken as a user takes them: the wheel installed with plain pip in
a fresh `python -m venv` (no uv, no dev dependencies), its console script run from a folder
outside the repository, serving against the session's real broker and verifying what it wrote.

The wheel holds `app/` (with the /ui page's files) and the license, nothing of tests/, bench/ or
.cache/; the sdist builds the same wheel, byte for byte. The build and the install happen once for
the module; `pytest -s` prints their times."""

import json
import subprocess
import tomllib
import uuid
from pathlib import Path

import httpx
import pytest
from packaging.requirements import Requirement

from app import __version__
from app.embedded import free_port
from tests.helpers import ROOT
from tests.helpers.dist import (
    Installed,
    Packages,
    clean_env,
    install_wheel,
    make_dist,
    wheel_files,
    wheel_from_tree,
    wheel_metadata,
)
from tests.helpers.processes import wait_http

# Slow as the image is (a build and a pip install): kept out of the broker-free set.
pytestmark = [pytest.mark.broker, pytest.mark.timeout(600)]

DIST_INFO = f"ractogateway_kafka-{__version__}.dist-info/"
LICENSE_SHA256 = "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> Packages:
    built = make_dist(tmp_path_factory.mktemp("dist"))
    print(f"\nmake dist: {built.build_s:.1f}s")
    return built


@pytest.fixture(scope="module")
def installed(packages: Packages, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    done = install_wheel(packages.wheel, tmp_path_factory.mktemp("installed"))
    print(f"\npython -m venv + pip install of the wheel: {done.install_s:.1f}s")
    return done


def run(
    installed: Installed, *args: str, cwd: Path, env: dict[str, str] | None = None
) -> "subprocess.CompletedProcess[str]":
    """The installed console script, run to completion from `cwd` (in `env`, else a clean one)."""
    return subprocess.run(
        [str(installed.script), *args],
        cwd=cwd,
        env=clean_env() if env is None else env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_wheel_holds_the_app_its_ui_and_the_license_alone(packages: Packages) -> None:
    files = set(wheel_files(packages.wheel))
    tracked = subprocess.run(
        ["git", "ls-files", "app"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert {f for f in files if not f.startswith(DIST_INFO)} == set(tracked)
    assert {"app/api/static/ui.html", "app/api/static/ui.js", "app/api/static/ui.css"} <= files
    assert [f for f in files if f.split("/")[0] in {"tests", "bench", ".cache"}] == []
    assert f"{DIST_INFO}licenses/LICENSE" in files
    assert wheel_files(packages.wheel)[f"{DIST_INFO}licenses/LICENSE"] == LICENSE_SHA256


def test_the_wheel_asks_for_the_runtime_dependencies_alone(packages: Packages) -> None:
    metadata = wheel_metadata(packages.wheel)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    required = {
        str(Requirement(line.removeprefix("Requires-Dist: ")))
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist: ")
    }
    assert required == {str(Requirement(line)) for line in project["dependencies"]}
    assert f"Version: {__version__}" in metadata.splitlines()
    assert "License-Expression: Apache-2.0" in metadata.splitlines()


def test_the_sdist_builds_the_same_wheel(packages: Packages, tmp_path: Path) -> None:
    # make dist builds its wheel from the sdist: one built from the tree must be the same.
    assert wheel_files(packages.wheel) == wheel_files(wheel_from_tree(tmp_path))


def test_the_installed_script_prints_its_help_and_version(
    installed: Installed, tmp_path: Path
) -> None:
    helped = run(installed, "--help", cwd=tmp_path)
    assert helped.returncode == 0, helped.stderr
    for command in ("serve", "verify", "export", "broker"):
        assert command in helped.stdout
    version = run(installed, "--version", cwd=tmp_path)
    assert (version.returncode, version.stdout) == (0, f"ractogateway-kafka {__version__}\n")
    # The package the script runs is the installed one, not this repository's.
    where = subprocess.run(
        [str(installed.python), "-c", "import app; print(app.__file__)"],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert Path(where).is_relative_to(installed.venv)


def test_the_installed_service_records_an_event_and_verify_finds_the_trail_clean(
    installed: Installed, kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic = f"test-{uuid.uuid4().hex}"
    port = free_port()
    env = {
        **clean_env(),
        "RG_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "RG_PORT": str(port),
        "RG_AUDIT_TOPIC": topic,
    }
    url = f"http://127.0.0.1:{port}"
    log_file = tmp_path / f"service-{port}.log"
    with log_file.open("wb") as log:
        service = subprocess.Popen(
            [str(installed.script), "serve"],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_http(f"{url}/readyz", timeout_s=60, process=service, context=log_file.read_text)
        event = {"user_id": "user-42", "model": "gpt-4o", "prompt": "Hi?", "response": "Hello."}
        answer = httpx.post(f"{url}/audit", json=event, timeout=30)
        assert answer.status_code == 201, answer.text
        assert (answer.json()["topic"], answer.json()["status"]) == (topic, "acked")
        # The /ui page's files came with the wheel.
        for path in ("/ui", "/ui/ui.js", "/ui/ui.css"):
            assert httpx.get(f"{url}{path}", timeout=10).status_code == 200, path
    finally:
        service.terminate()
        assert service.wait(timeout=60) == 0, log_file.read_text()
    verified = run(installed, "verify", "--topic", topic, "--json", cwd=tmp_path, env=env)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    report = json.loads(verified.stdout)
    assert report["problems"] == []
    print(f"\nverify: {json.dumps(report)[:300]}")
