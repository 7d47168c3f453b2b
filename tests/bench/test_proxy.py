"""The proxy bench's parts without the service (no timing is asserted: speed is what the bench
measures; its wrk lines need wrk, which only `make bench-proxy` installs): its upstream process
starts and streams (directly and through the bare TCP forwarder), and wrk's scripts carry the
app's key and a random wait."""

from pathlib import Path

import httpx

from bench import proxy


def test_unit_the_benchs_upstream_starts_and_a_stream_is_timed_to_its_first_and_last_byte(
    tmp_path: Path,
) -> None:
    upstream, url = proxy.start_upstream(tmp_path / "upstream.log")
    try:
        with httpx.Client(timeout=30) as client:
            first, last = proxy.one_stream(client, f"{url}/chat/completions")
    finally:
        proxy.stop_upstream(upstream)
    assert 0 < first <= last
    assert upstream.returncode is not None


def test_unit_the_paced_stream_comes_from_an_upstream_that_spaces_its_events(
    tmp_path: Path,
) -> None:
    upstream, url = proxy.start_upstream(tmp_path / "upstream.log")
    try:
        with httpx.Client(timeout=30) as client:
            events = 0
            with client.stream("POST", f"{url}/chat/completions", json=proxy.PACED_STREAM) as s:
                events = sum(1 for line in s.iter_lines() if line.startswith("data: "))
            first, last = proxy.one_stream(client, f"{url}/chat/completions", proxy.PACED_STREAM)
    finally:
        proxy.stop_upstream(upstream)
    assert events > 10
    # Each event after the first waits its pause: the stream lasts at least their sum.
    assert last - first >= (events - 2) * proxy.PACED_MS / 1000


def test_unit_the_wrk_script_sends_the_chat_request_with_the_apps_key(tmp_path: Path) -> None:
    script = proxy.chat_script(tmp_path).read_text(encoding="utf-8")
    assert f'wrk.headers["Authorization"] = "Bearer {proxy.APP_KEY}"' in script
    assert '"messages": [{"role": "system"' in script


def test_unit_the_paced_script_waits_between_calls_for_the_rate_asked(tmp_path: Path) -> None:
    script = proxy.paced_script(tmp_path, 32, 200).read_text(encoding="utf-8")
    assert f'wrk.headers["Authorization"] = "Bearer {proxy.APP_KEY}"' in script
    # A random wait of 160 ms on average (32 connections at 200 calls/s in all), drawn from a
    # generator seeded per wrk thread: a fixed one kept the connections in step.
    assert "function delay()\n  return math.random(0, 2 * 160)\nend\n" in script
    assert "math.randomseed(" in script


def test_unit_a_stream_through_the_bare_forwarder_reaches_the_upstream(tmp_path: Path) -> None:
    upstream, url = proxy.start_upstream(tmp_path / "upstream.log")
    try:
        forwarder, forwarded = proxy.start_forwarder(url)
        try:
            assert forwarded != url
            with httpx.Client(timeout=30) as client:
                first, last = proxy.one_stream(client, f"{forwarded}/chat/completions")
        finally:
            proxy.stop_upstream(forwarder)
    finally:
        proxy.stop_upstream(upstream)
    assert 0 < first <= last
    assert forwarder.returncode is not None
