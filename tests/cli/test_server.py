"""The HTTP server `serve` runs (app/cli/server.py), as a real process."""

from pathlib import Path

from app.embedded import free_port
from tests.helpers.service import launch_service


def test_the_served_process_runs_on_the_standard_event_loop(tmp_path: Path) -> None:
    # uvloop, uvicorn's pick where it is installed, left ~1% of requests unserved for 1-2 s
    # once more were ready than the one thread serves (app/cli/server.py, EVENT_LOOP): the
    # process must not even load it. No broker is needed to be live (nor waited for long).
    service = launch_service(
        f"127.0.0.1:{free_port()}", tmp_path / "service", ready_timeout_s="0.2"
    )
    try:
        service.wait_live()
        maps = Path(f"/proc/{service.process.pid}/maps").read_text(encoding="utf-8")
    finally:
        service.stop(timeout_s=30)
    assert "uvloop" not in maps, "the service loaded uvloop"
