"""podman for the image test: the image built by .ci/image.sh (the script behind `make image`,
which installs podman and makes its base images when they are missing), and containers run with
the project's CONTAINERS_CONF, always removed with their volume afterwards."""

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from tests.helpers import ROOT

IMAGE_SCRIPT = ROOT / ".ci" / "image.sh"
CONTAINERS_CONF = ROOT / ".ci" / "containers.conf"
STATE = "/var/lib/ractogateway-kafka"


def podman(
    *args: str, check: bool = True, timeout_s: float = 120
) -> "subprocess.CompletedProcess[str]":
    """Run `podman args...` with the project's settings (runc, rlimits the VM allows)."""
    done = subprocess.run(
        ["podman", *args],
        env={**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)},
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: exit {done.returncode}\n{done.stderr}")
    return done


@dataclass
class BuiltImage:
    """The image `make image` built, and what building it took."""

    name: str
    build_s: float
    size_bytes: int


def build_image() -> BuiltImage:
    """Build (or find up to date) the image exactly as `make image` does."""
    started = time.monotonic()
    done = subprocess.run(
        [str(IMAGE_SCRIPT)], cwd=ROOT, capture_output=True, text=True, timeout=900, check=False
    )
    build_s = time.monotonic() - started
    if done.returncode != 0:
        raise AssertionError(
            f"`make image` ({IMAGE_SCRIPT.relative_to(ROOT)}) failed with exit "
            f"{done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    name = subprocess.run(
        [str(IMAGE_SCRIPT), "--print"], capture_output=True, text=True, check=True
    ).stdout.strip()
    size = int(podman("image", "inspect", "--format", "{{.Size}}", name).stdout)
    return BuiltImage(name=name, build_s=build_s, size_bytes=size)


@dataclass
class Container:
    """A running container of the image, with its state volume."""

    name: str

    def exec(self, *command: str) -> "subprocess.CompletedProcess[str]":
        """Run `command` in the container (its user, its environment); never raises."""
        return podman("exec", self.name, *command, check=False)

    def logs(self) -> str:
        done = podman("logs", self.name, check=False)
        return done.stdout + done.stderr

    def inspect(self, template: str) -> str:
        return podman("inspect", "--format", template, self.name).stdout.strip()

    def stop(self, timeout_s: int) -> tuple[int, float]:
        """`podman stop -t timeout_s` (SIGTERM, SIGKILL after timeout_s): the exit code and
        how long stopping took."""
        started = time.monotonic()
        podman("stop", "-t", str(timeout_s), self.name, timeout_s=timeout_s + 60)
        return int(self.inspect("{{.State.ExitCode}}")), time.monotonic() - started


# What Kubernetes' restricted profile and readOnlyRootFilesystem give a pod: no capabilities,
# no privilege gain, a read-only root with no writable /tmp or /run; the state volume only.
LOCKED_DOWN = (
    "--read-only",
    "--read-only-tmpfs=false",
    "--cap-drop=ALL",
    "--security-opt",
    "no-new-privileges",
)


@contextmanager
def running_container(image: str, *options: str, env: dict[str, str]) -> Iterator[Container]:
    """`podman run -d` the image locked down, `env` as settings and a fresh volume on /var/lib/
    ractogateway-kafka; removed (with the volume) afterwards, also when the test failed."""
    name = f"rg-test-{uuid.uuid4().hex[:12]}"
    volume = f"{name}-state"
    settings = [f"--env={key}={value}" for key, value in env.items()]
    try:
        podman(
            "run",
            "--detach",
            f"--name={name}",
            *LOCKED_DOWN,
            f"--volume={volume}:{STATE}",
            *settings,
            *options,
            image,
        )
        yield Container(name)
    finally:
        podman("rm", "--force", "--volumes", name, check=False)
        podman("volume", "rm", "--force", volume, check=False)
