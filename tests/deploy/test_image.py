"""The container image, built from the Dockerfile by `make image` (podman here) and run the way
a platform team runs it: read-only root filesystem, all capabilities dropped, no privilege gain,
only /var/lib/ractogateway-kafka writable. Against the session's real broker it serves, writes to
Kafka, passes its HEALTHCHECK and stops cleanly on SIGTERM; with its defaults alone it serves on
0.0.0.0:8080 in its own network.

The first test uses `--network host`: the session's broker advertises 127.0.0.1, which inside a
container's own network is the container itself, so Kafka clients there could bootstrap (through
slirp4netns' host-loopback address) but never reach the leader. The service is told to listen on
127.0.0.1 and a free port, so nothing leaves loopback. The second test keeps the image's own
network and port (8080, published on 127.0.0.1), and needs no broker.

Figures printed (`pytest -s`): build time (cold: podman and the base images made first; warm:
all cached), image size, time to /readyz, time to stop."""

import time
import uuid

import httpx
import pytest

from app import __version__
from app.embedded import free_port
from tests.helpers import ROOT
from tests.helpers.container import STATE, BuiltImage, build_image, podman, running_container
from tests.helpers.kafka import read_all
from tests.helpers.processes import wait_http

# Longer than RG_SHUTDOWN_DRAIN_S (1 s) + RG_SHUTDOWN_TIMEOUT_S (set to 5 below): an exit code
# of 0 then shows the service ended by itself, not by podman's SIGKILL after this.
STOP_TIMEOUT_S = 10
# On a fresh machine the first test installs podman and builds the base image (~90 s here).
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def image() -> BuiltImage:
    built = build_image()
    print(
        f"\nimage: {built.name} built by make image in {built.build_s:.1f}s, "
        f"{built.size_bytes / 1e6:.0f} MB"
    )
    return built


async def test_the_image_serves_locked_down_as_non_root_and_writes_to_kafka(
    image: BuiltImage, kafka_bootstrap: str
) -> None:
    port = free_port()
    topic = f"test-{uuid.uuid4().hex}"
    env = {
        "RG_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "RG_HOST": "127.0.0.1",
        "RG_PORT": str(port),
        "RG_AUDIT_TOPIC": topic,
        "RG_SHUTDOWN_TIMEOUT_S": "5",
    }
    url = f"http://127.0.0.1:{port}"
    with running_container(image.name, "--network=host", env=env) as container:
        started = time.monotonic()
        wait_http(f"{url}/readyz", timeout_s=90, context=container.logs)
        print(f"image: /readyz 200 {time.monotonic() - started:.1f}s after podman run")
        event = {"user_id": "u-1", "model": "m", "prompt": "p", "response": "r"}
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            assert (await client.get("/healthz")).status_code == 200
            # The /ui page's files are package data: installed (not editable) in the image.
            for path in ("/ui", "/ui/ui.js", "/ui/ui.css"):
                assert (await client.get(path)).status_code == 200, path
            answer = await client.post("/audit", json=event)
        assert answer.status_code == 201, answer.text
        receipt = answer.json()
        [record] = [
            record
            for record in await read_all(kafka_bootstrap, topic, 1)
            if record.header("rg-event-id") == receipt["event_id"]
        ]
        assert record.header("rg-digest") == receipt["digest"]
        assert record.value["prompt"] == "p"

        # Not root: the numeric user of the image, also for the service's process itself.
        assert container.exec("id", "-u").stdout.strip() == "10001"
        status = container.exec("cat", "/proc/1/status").stdout
        assert any(line.split()[:2] == ["Uid:", "10001"] for line in status.splitlines())
        # Nothing writable but the volume: not /, not /tmp (no tmpfs), not the app itself.
        for path in ("/x", "/tmp/x", "/app/.venv/x"):  # noqa: S108 - inside the container
            touched = container.exec("touch", path)
            assert touched.returncode != 0, path
            assert "Read-only file system" in touched.stderr, touched.stderr
        # Temporary files (Python's tempfile; SQLite's through SQLITE_TMPDIR) go to the volume.
        temporary = "import tempfile; tempfile.TemporaryFile().write(b'x')"
        made = container.exec("python3", "-c", temporary)
        assert made.returncode == 0, made.stderr
        # The spool the image turns on lives on the volume.
        assert container.exec("test", "-f", f"{STATE}/spool/spool.sqlite3").returncode == 0

        # The image's HEALTHCHECK (`ractogateway-kafka probe live`), run by podman.
        podman("healthcheck", "run", container.name)
        assert container.inspect("{{.State.Health.Status}}") == "healthy"

        code, stop_s = container.stop(STOP_TIMEOUT_S)
        print(f"image: stopped by SIGTERM in {stop_s:.1f}s (exit {code})")
        log = container.logs()
        assert code == 0, log[-3000:]
        assert "shutting down: draining for 1.0s" in log
        assert "Application shutdown complete." in log
        assert "Traceback" not in log


# No broker here, but building the image takes up to ~90 s: kept out of `pytest -m "not broker"`.
@pytest.mark.broker
def test_the_image_defaults_serve_on_8080_in_its_own_network(image: BuiltImage) -> None:
    # The image's own RG_HOST=0.0.0.0 and RG_PORT=8080, no broker: live, healthy, not ready.
    # `RG_SPOOL_DIR=` turns the image's spool off (without the fix the service took "." for the
    # spool folder, /app, read-only: it did not start). Every interface with authentication
    # off is refused: the image needs RG_API_KEYS (or RG_ALLOW_UNAUTHENTICATED=true).
    port = free_port()
    options = ("--network=slirp4netns", f"--publish=127.0.0.1:{port}:8080")
    with running_container(image.name, *options, env={"RG_SPOOL_DIR": ""}) as refused:
        assert podman("wait", refused.name).stdout.strip() == "3"
        assert "RG_ALLOW_UNAUTHENTICATED=true" in refused.logs()
        assert "Traceback" not in refused.logs()
    env = {"RG_SPOOL_DIR": "", "RG_API_KEYS": '{"k": ["audit:write"]}'}
    with running_container(image.name, *options, env=env) as container:
        wait_http(f"http://127.0.0.1:{port}/healthz", timeout_s=90, context=container.logs)
        podman("healthcheck", "run", container.name)
        assert container.inspect("{{.State.Health.Status}}") == "healthy"
        ready = container.exec("ractogateway-kafka", "probe", "ready")
        assert ready.returncode == 1
        assert ready.stderr.startswith("probe ready: GET http://127.0.0.1:8080/readyz: 503 ")
        assert container.exec("test", "-e", f"{STATE}/spool").returncode == 1
        code, _ = container.stop(STOP_TIMEOUT_S)
        assert code == 0, container.logs()[-3000:]


def test_unit_the_dockerfile_pins_what_the_project_pins() -> None:
    # The uv the Makefile installs is the one copied into the builder; the version label's
    # default (a plain `docker build`) is the package's version.
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    [uv_version] = [
        line.split(":=")[1].strip()
        for line in makefile.splitlines()
        if line.startswith("UV_VERSION")
    ]
    assert f"COPY --from=ghcr.io/astral-sh/uv:{uv_version} /uv /uvx /bin/" in dockerfile
    assert f"ARG VERSION={__version__}\n" in dockerfile
