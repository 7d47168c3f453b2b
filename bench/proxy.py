"""What the recording proxy adds to a model call (`make bench-proxy`): the same chat completion
sent to the scripted OpenAI-compatible upstream directly and through the service's
`/openai/v1`, on loopback, with the real service and broker.

- Added latency of a plain chat completion at 1 and 32 connections: wrk drives both paths
  (direct and proxied runs alternate, `--rounds` of each), and the added p50/p99 is the proxied
  run's percentile minus the direct run's. At 32 connections wrk sends each next request as
  soon as the last is answered, which saturates the path (the upstream, or the service's one
  thread): its latency is then queueing, and the added latency measures the two paths'
  capacities. So 32 connections are also run paced (`--paced`, default 200 calls/s in all:
  each connection waits a random time before each request, wrk's `delay()`, so that the 32
  call independently), below either path's capacity: the added latency of 32 apps calling
  now and then, not of a queue.
- Added time to first byte of a stream, and to its last byte (in fail-closed mode the final
  `data: [DONE]` waits for the record's acknowledgement): one connection, streams alternating
  between the paths, timed from the request to the first and the last body byte. A third path
  goes through a bare TCP forwarder (bench/tcp_forwarder.py): what the hop alone adds on the
  machine, the floor under any proxy's added time. Twice: from an upstream that writes all
  its events at once (`--streams`), and from one that spaces them 2 ms apart as a model's
  tokens come (`--paced-streams`).
- CPU per proxied call: the service process's CPU time (utime + stime) over the proxied runs,
  divided by the calls they made; beside it, the same content as a `POST /audit` on the same
  service (what the record alone costs, without the upstream call around it).

Each mode (`RG_PROXY_MODE` fail-closed, then fail-open) gets a fresh service. The upstream is
tests/helpers/openai_upstream.py as a process (Python's threading HTTP server, so its own
latency is large beside the proxy's and grows with connections: the difference is what counts).

    python -m bench.proxy [--seconds 10] [--rounds 2] [--streams 300] [--paced-streams 100]
        [--out bench/results]
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from app.embedded import free_port
from bench import wrk
from bench.procfs import cpu_seconds
from bench.run import kafka_broker
from bench.service import Service
from bench.stats import Measurement

APP_KEY = "sk-bench-app-key"
PROMPT = "Summarise our refund policy for a customer who bought a kettle last week. " * 6
CHAT = {
    "model": "gpt-4o-mini",
    "messages": [
        {"role": "system", "content": "You are a helpful support assistant."},
        {"role": "user", "content": PROMPT},
    ],
    "user": "bench-user",
}
STREAM = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
# The same stream from an upstream that sends its events 2 ms apart, as a model's tokens come
# (the scripted upstream otherwise writes them all at once).
PACED_MS = 2
PACED_STREAM = {**STREAM, "model": f"scripted-paced-{PACED_MS}"}
CONNECTIONS = (1, 32)
PACED_CONNECTIONS = 32
WARM_UP_STREAMS = 20
# The upstream module is in tests/helpers: run from the project's root.
ROOT = Path(__file__).resolve().parents[1]
# The scripted upstream with TCP_NODELAY on its sockets: it writes a response's head and body in
# two sends, and with Nagle's algorithm the body waits for the client's delayed ACK (40 ms on
# Linux), which would bury the milliseconds measured here.
_UPSTREAM = (
    "import sys, http.server\n"
    "http.server.BaseHTTPRequestHandler.disable_nagle_algorithm = True\n"
    "from tests.helpers.openai_upstream import main\n"
    "main(sys.argv[1:])\n"
)


@dataclass
class LatencyLine:
    """Plain chat completions at one number of connections, both paths."""

    mode: str
    connections: int
    # Calls per second in all when paced (each connection waits between calls), 0 when not.
    paced_per_s: int
    direct_p50_ms: float
    direct_p99_ms: float
    proxied_p50_ms: float
    proxied_p99_ms: float
    added_p50_ms: float
    added_p99_ms: float
    proxied_calls_per_s: float
    service_cpu_us_per_call: float
    failed: int


@dataclass
class AuditLine:
    """The same content as a `POST /audit` on the same service: what recording alone costs."""

    mode: str
    connections: int
    p50_ms: float
    p99_ms: float
    calls_per_s: float
    service_cpu_us_per_call: float
    failed: int


@dataclass
class StreamLine:
    """Streamed chat completions on one connection, both paths."""

    mode: str
    streams: int
    # "burst": the upstream writes every event at once; "paced 2 ms": 2 ms between events.
    upstream: str
    direct_ttfb_p50_ms: float
    proxied_ttfb_p50_ms: float
    added_ttfb_p50_ms: float
    added_ttfb_p99_ms: float
    added_last_byte_p50_ms: float
    added_last_byte_p99_ms: float
    # The same streams through a bare TCP forwarder (bench/tcp_forwarder.py): the machine's
    # cost of one more hop, with no HTTP handled.
    forwarder_added_ttfb_p50_ms: float
    forwarder_added_ttfb_p99_ms: float


def start_upstream(log: Path) -> tuple["subprocess.Popen[str]", str]:
    """The scripted upstream as a process; its base URL (ending in /v1). `stop_upstream` ends it."""
    with log.open("w") as errors:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [sys.executable, "-c", _UPSTREAM, "--port", str(free_port())],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
    line = process.stdout.readline().strip() if process.stdout else ""
    if not line.startswith("url="):
        stop_upstream(process)
        raise RuntimeError(f"the scripted upstream did not start; see {log}")
    return process, line.removeprefix("url=")


def stop_upstream(process: "subprocess.Popen[str]") -> None:
    """SIGTERM the upstream, wait for it, close its pipe."""
    process.terminate()
    process.wait(timeout=30)
    if process.stdout:
        process.stdout.close()


def chat_script(directory: Path) -> Path:
    """wrk's script: POST the chat request with the app's key, as an SDK would."""
    script = wrk.write_script(directory, json.dumps(CHAT), name="proxy-chat")
    headers = f'wrk.headers["Authorization"] = "Bearer {APP_KEY}"\n'
    script.write_text(headers + script.read_text(encoding="utf-8"), encoding="utf-8")
    return script


def paced_script(directory: Path, connections: int, per_s: int) -> Path:
    """`chat_script` with each of `connections` waiting between its calls so that they make
    about `per_s` calls a second in all (less the calls' own time)."""
    script = chat_script(directory)
    paced = directory / f"proxy-chat-paced-{connections}-{per_s}.lua"
    wait_ms = round(1000 * connections / per_s)
    paced.write_text(script.read_text(encoding="utf-8") + _RANDOM_DELAY % wait_ms, encoding="utf-8")
    return paced


# wrk's delay() before each request (the first too), drawn uniformly from 0 to twice the mean
# wait: a fixed wait keeps connections that started together in step (all 32 sent at once,
# then all waiting), so "paced" calls came in bursts of 32, queued behind each other. Each
# wrk thread's Lua state is seeded from its own address, so the threads' draws differ.
_RANDOM_DELAY = """
math.randomseed(tonumber(tostring({}):match("0x(%%x+)") or "0", 16) %% 2147483647)
function delay()
  return math.random(0, 2 * %d)
end
"""


def audit_script(directory: Path) -> Path:
    """wrk's script for the `POST /audit` of the same content."""
    event = {
        "user_id": "bench-user",
        "model": "gpt-4o-mini",
        "prompt": PROMPT,
        "response": f"You said: {PROMPT}",
    }
    return wrk.write_script(directory, json.dumps(event), name="proxy-audit")


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def latency_line(
    mode: str,
    service: Service,
    upstream: str,
    script: Path,
    connections: int,
    *,
    seconds: int,
    rounds: int,
    paced_per_s: int = 0,
) -> LatencyLine:
    """Direct and proxied wrk runs, alternating; the added percentiles from the medians of
    the rounds."""
    direct: list[Measurement] = []
    proxied: list[Measurement] = []
    cpu_s = 0.0
    for _ in range(rounds):
        direct.append(_wrk(f"{upstream}/chat/completions", script, connections, seconds))
        before = cpu_seconds(service.pid)
        proxied.append(
            _wrk(f"{service.url}/openai/v1/chat/completions", script, connections, seconds)
        )
        cpu_s += cpu_seconds(service.pid) - before
    calls = sum(m.requests for m in proxied)
    measured_s = sum(m.duration_s for m in proxied)

    def median(runs: list[Measurement], field: str) -> float:
        return float(statistics.median(getattr(m, field) for m in runs))

    d50, d99 = median(direct, "p50_ms"), median(direct, "p99_ms")
    p50, p99 = median(proxied, "p50_ms"), median(proxied, "p99_ms")
    return LatencyLine(
        mode=mode,
        connections=connections,
        paced_per_s=paced_per_s,
        direct_p50_ms=round(d50, 2),
        direct_p99_ms=round(d99, 2),
        proxied_p50_ms=round(p50, 2),
        proxied_p99_ms=round(p99, 2),
        added_p50_ms=round(p50 - d50, 2),
        added_p99_ms=round(p99 - d99, 2),
        proxied_calls_per_s=round(calls / measured_s, 1),
        service_cpu_us_per_call=round(1e6 * cpu_s / max(calls, 1), 1),
        failed=sum((m.non_2xx or 0) + sum(m.errors.values()) for m in direct + proxied),
    )


def audit_line(
    mode: str, service: Service, script: Path, connections: int, seconds: int
) -> AuditLine:
    """`POST /audit` of the call's content (the prompt and the scripted answer) on the proxy's
    service: the cost of the record without the upstream call around it."""
    before = cpu_seconds(service.pid)
    run = _wrk(f"{service.url}/audit", script, connections, seconds)
    used = cpu_seconds(service.pid) - before
    return AuditLine(
        mode=mode,
        connections=connections,
        p50_ms=round(run.p50_ms, 2),
        p99_ms=round(run.p99_ms, 2),
        calls_per_s=round(run.requests_per_s, 1),
        service_cpu_us_per_call=round(1e6 * used / max(run.requests, 1), 1),
        failed=(run.non_2xx or 0) + sum(run.errors.values()),
    )


def _wrk(url: str, script: Path, connections: int, seconds: int) -> Measurement:
    return wrk.run(
        url=url,
        script=script,
        connections=connections,
        duration_s=seconds,
        name="proxy",
        label=url,
    )


def one_stream(
    client: httpx.Client, url: str, body: dict[str, Any] = STREAM
) -> tuple[float, float]:
    """Seconds to the first and to the last body byte of one streamed chat completion."""
    started = time.perf_counter()
    with client.stream("POST", url, json=body) as answer:
        chunks = answer.iter_raw()
        next(chunks)
        first = time.perf_counter() - started
        for _ in chunks:
            pass
        if answer.status_code != 200:
            raise RuntimeError(f"{url} answered {answer.status_code}")
    return first, time.perf_counter() - started


def _no_delay() -> httpx.HTTPTransport:
    # httpx sends a request's head and body in two writes: without TCP_NODELAY the body can
    # wait for the server's delayed ACK.
    return httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])


def start_forwarder(upstream: str) -> tuple["subprocess.Popen[str]", str]:
    """A bare TCP forwarder to the upstream (`bench.tcp_forwarder`) and the upstream's base URL
    through it; `stop_upstream` ends it."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.tcp_forwarder",
            "--port",
            str(port),
            "--to",
            str(httpx.URL(upstream).port),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    if not process.stdout or process.stdout.readline().strip() != "ready":
        stop_upstream(process)
        raise RuntimeError("the TCP forwarder did not start")
    return process, str(httpx.URL(upstream).copy_with(port=port))


def stream_line(
    mode: str,
    service: Service,
    upstream: str,
    forwarded: str,
    streams: int,
    *,
    paced: bool = False,
) -> StreamLine:
    """`streams` streams per path on one connection each, alternating between the paths
    (direct, through the bare forwarder, through the proxy); `paced`: the upstream's events
    `PACED_MS` apart."""
    body = PACED_STREAM if paced else STREAM
    times: dict[str, list[tuple[float, float]]] = {"direct": [], "forwarded": [], "proxied": []}
    urls = {
        "direct": f"{upstream}/chat/completions",
        "forwarded": f"{forwarded}/chat/completions",
        "proxied": f"{service.url}/openai/v1/chat/completions",
    }
    headers = {"authorization": f"Bearer {APP_KEY}"}
    clients = {
        path: httpx.Client(timeout=30, headers=headers, transport=_no_delay()) for path in urls
    }
    try:
        for path, url in urls.items():  # warm-up: connections open, pools filled
            for _ in range(WARM_UP_STREAMS):
                one_stream(clients[path], url, body)
        for _ in range(streams):
            for path, url in urls.items():
                times[path].append(one_stream(clients[path], url, body))
    finally:
        for client in clients.values():
            client.close()

    def ms(path: str, which: int, share: float) -> float:
        return 1000 * _percentile([t[which] for t in times[path]], share)

    return StreamLine(
        mode=mode,
        streams=streams,
        upstream=f"paced {PACED_MS} ms" if paced else "burst",
        direct_ttfb_p50_ms=round(ms("direct", 0, 0.5), 2),
        proxied_ttfb_p50_ms=round(ms("proxied", 0, 0.5), 2),
        added_ttfb_p50_ms=round(ms("proxied", 0, 0.5) - ms("direct", 0, 0.5), 2),
        added_ttfb_p99_ms=round(ms("proxied", 0, 0.99) - ms("direct", 0, 0.99), 2),
        added_last_byte_p50_ms=round(ms("proxied", 1, 0.5) - ms("direct", 1, 0.5), 2),
        added_last_byte_p99_ms=round(ms("proxied", 1, 0.99) - ms("direct", 1, 0.99), 2),
        forwarder_added_ttfb_p50_ms=round(ms("forwarded", 0, 0.5) - ms("direct", 0, 0.5), 2),
        forwarder_added_ttfb_p99_ms=round(ms("forwarded", 0, 0.99) - ms("direct", 0, 0.99), 2),
    )


def main(argv: list[str] | None = None) -> int:
    """Both modes; Markdown tables on stdout, `proxy.json` under `--out`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--streams", type=int, default=300)
    parser.add_argument(
        "--paced-streams",
        type=int,
        default=100,
        help=f"streams per path from an upstream pacing its events {PACED_MS} ms apart (0: none)",
    )
    parser.add_argument(
        "--paced", type=int, default=200, help="calls/s of the paced 32 connections (0: none)"
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    script = chat_script(args.out)
    audit = audit_script(args.out)
    lines: list[LatencyLine] = []
    audit_lines: list[AuditLine] = []
    stream_lines: list[StreamLine] = []
    upstream_process, upstream = start_upstream(args.out / "proxy-upstream.log")
    forwarder_process, forwarded = start_forwarder(upstream)
    try:
        with kafka_broker() as broker:
            for mode in ("fail-closed", "fail-open"):
                service = Service(
                    bootstrap_servers=broker.bootstrap_servers,
                    port=free_port(),
                    topic=f"bench-proxy-{uuid.uuid4().hex}",
                    log_path=args.out / f"proxy-{mode}-service.log",
                    settings={"RG_OPENAI_UPSTREAM_URL": upstream, "RG_PROXY_MODE": mode},
                )
                service.start()
                try:
                    # Warm-up: the topic's partitions, the producer's and the pool's connections.
                    _wrk(f"{service.url}/openai/v1/chat/completions", script, 4, 2)
                    for connections in CONNECTIONS:
                        line = latency_line(
                            mode,
                            service,
                            upstream,
                            script,
                            connections,
                            seconds=args.seconds,
                            rounds=args.rounds,
                        )
                        lines.append(line)
                        audit_lines.append(
                            audit_line(mode, service, audit, connections, args.seconds)
                        )
                    if args.paced:
                        lines.append(
                            latency_line(
                                mode,
                                service,
                                upstream,
                                paced_script(args.out, PACED_CONNECTIONS, args.paced),
                                PACED_CONNECTIONS,
                                seconds=args.seconds,
                                rounds=args.rounds,
                                paced_per_s=args.paced,
                            )
                        )
                    stream_lines.append(
                        stream_line(mode, service, upstream, forwarded, args.streams)
                    )
                    if args.paced_streams:
                        stream_lines.append(
                            stream_line(
                                mode, service, upstream, forwarded, args.paced_streams, paced=True
                            )
                        )
                finally:
                    service.stop()
    finally:
        stop_upstream(forwarder_process)
        stop_upstream(upstream_process)
    _print(lines, audit_lines, stream_lines)
    (args.out / "proxy.json").write_text(
        json.dumps(
            {
                "seconds": args.seconds,
                "rounds": args.rounds,
                "load_average": os.getloadavg(),
                "plain": [asdict(line) for line in lines],
                "audit": [asdict(line) for line in audit_lines],
                "streams": [asdict(line) for line in stream_lines],
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    return 0


def _print(
    lines: list[LatencyLine], audit_lines: list[AuditLine], stream_lines: list[StreamLine]
) -> None:
    print(
        "| mode | connections | direct p50/p99 ms | proxied p50/p99 ms | added p50 ms | "
        "added p99 ms | proxied calls/s | service CPU µs/call | failed |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in lines:
        paced = f" paced at {r.paced_per_s}/s" if r.paced_per_s else ""
        print(
            f"| {r.mode} | {r.connections}{paced} | {r.direct_p50_ms} / {r.direct_p99_ms} | "
            f"{r.proxied_p50_ms} / {r.proxied_p99_ms} | {r.added_p50_ms} | {r.added_p99_ms} | "
            f"{r.proxied_calls_per_s:,.0f} | {r.service_cpu_us_per_call} | {r.failed} |"
        )
    print()
    print("| mode | conns | POST /audit p50/p99 ms | calls/s | service CPU µs/call | failed |")
    print("|---|---|---|---|---|---|")
    for a in audit_lines:
        print(
            f"| {a.mode} | {a.connections} | {a.p50_ms} / {a.p99_ms} | {a.calls_per_s:,.0f} | "
            f"{a.service_cpu_us_per_call} | {a.failed} |"
        )
    print()
    print(
        "| mode | upstream | streams | direct TTFB p50 ms | proxied TTFB p50 ms | "
        "added TTFB p50/p99 ms | added to last byte p50/p99 ms | "
        "a bare TCP hop's added TTFB p50/p99 ms |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for s in stream_lines:
        print(
            f"| {s.mode} | {s.upstream} | {s.streams} | {s.direct_ttfb_p50_ms} | "
            f"{s.proxied_ttfb_p50_ms} | "
            f"{s.added_ttfb_p50_ms} / {s.added_ttfb_p99_ms} | "
            f"{s.added_last_byte_p50_ms} / {s.added_last_byte_p99_ms} | "
            f"{s.forwarder_added_ttfb_p50_ms} / {s.forwarder_added_ttfb_p99_ms} |"
        )


if __name__ == "__main__":
    raise SystemExit(main())
