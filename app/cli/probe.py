"""`probe`: the health check a container runs on its own service (the image's HEALTHCHECK, the
chart's exec probes for a sidecar, which listens on loopback where the kubelet's HTTP probes
cannot reach it).

It runs every few seconds next to the service, so it is kept cheap: the standard library and
python-dotenv only, about 0.1 s and 40 ms of CPU a run. Importing the `Settings` class (pydantic,
aiokafka) would cost ~0.7 s of CPU each time, so RG_HOST and RG_PORT are read here the way
`Settings` reads them: the environment first (names in any case), then a `.env` file in the
working folder, then the same defaults (tests/cli/test_probe.py keeps the two in step).
`app.cli.main` sends `probe` here before importing any other command.
"""

import argparse
import http.client
import os
import sys
from collections.abc import Sequence
from pathlib import Path

# The defaults of Settings.host and Settings.port.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_TIMEOUT_S = 2.0
PATHS = {"live": "/healthz", "ready": "/readyz"}
# A service listening on every address is asked on loopback.
WILDCARDS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1", "[::]": "::1"}  # noqa: S104


class ProbeError(Exception):
    """Why the service does not count as live/ready: the one line `probe` prints."""


def setting(name: str, default: str, *, env_file: Path = Path(".env")) -> str:
    """RG_<NAME> from the environment (any case, as pydantic-settings matches it), else from
    `env_file`, else `default`."""
    key = f"rg_{name}"
    for variable, value in os.environ.items():
        if variable.lower() == key:
            return value
    if env_file.is_file():
        # The parser pydantic-settings itself uses for .env files; imported only when one exists.
        from dotenv import dotenv_values  # noqa: PLC0415

        for variable, file_value in dotenv_values(env_file, encoding="utf-8").items():
            if variable.lower() == key and file_value is not None:
                return file_value
    return default


def target(host: str, port: str) -> tuple[str, int]:
    """Where to send the probe: the service's RG_HOST and RG_PORT, a wildcard address turned
    into loopback."""
    host = host.strip()
    host = WILDCARDS.get(host, host.removeprefix("[").removesuffix("]"))
    try:
        number = int(port)
    except ValueError:
        raise ProbeError(f"RG_PORT={port!r} is not a port number") from None
    if not 0 < number <= 65535:
        raise ProbeError(f"RG_PORT={port!r} is not a port number")
    return host, number


def probe(host: str, port: int, path: str, timeout_s: float) -> None:
    """GET `path`; return on 200, raise `ProbeError` saying why not otherwise."""
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}{path}"
    connection = http.client.HTTPConnection(host, port, timeout=timeout_s)
    try:
        connection.request("GET", path, headers={"User-Agent": "ractogateway-kafka-probe"})
        response = connection.getresponse()
        body = response.read(200).decode("utf-8", errors="replace")
    except TimeoutError:
        raise ProbeError(f"GET {url}: no answer within {timeout_s:g}s") from None
    except (OSError, http.client.HTTPException) as exc:
        raise ProbeError(f"GET {url}: {exc or type(exc).__name__}") from None
    finally:
        connection.close()
    if response.status != 200:
        detail = " ".join(body.split())
        raise ProbeError(f"GET {url}: {response.status} {response.reason} {detail}".rstrip())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of `probe`, in the full parser and in the fast path alike."""
    parser.add_argument(
        "check",
        nargs="?",
        choices=sorted(PATHS),
        default="live",
        help="live: GET /healthz (the process serves); ready: GET /readyz (it can write to "
        "Kafka). Default live.",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        metavar="S",
        help=f"seconds to wait for the answer (default {DEFAULT_TIMEOUT_S:g})",
    )


DESCRIPTION = (
    "Ask the local service (RG_HOST, RG_PORT; 0.0.0.0 means 127.0.0.1) whether it is live or "
    "ready: exit 0 on 200, else 1 with the reason on stderr. For container health checks."
)


def cmd_probe(args: argparse.Namespace) -> int:
    """GET /healthz or /readyz of the local service; 0 when it answers 200."""
    try:
        host, port = target(setting("host", DEFAULT_HOST), setting("port", str(DEFAULT_PORT)))
        probe(host, port, PATHS[args.check], args.timeout)
    except ProbeError as exc:
        print(f"probe {args.check}: {exc}", file=sys.stderr)
        return 1
    return 0


def run(argv: Sequence[str]) -> int:
    """`ractogateway-kafka probe ...` without building the parser of every other command."""
    parser = argparse.ArgumentParser(prog="ractogateway-kafka probe", description=DESCRIPTION)
    add_arguments(parser)
    return cmd_probe(parser.parse_args(argv))


def register(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add `probe` (for --help; `main` runs it through `run`)."""
    parser = commands.add_parser(
        "probe",
        help="health check of the local service (exit 0 when live/ready)",
        description=DESCRIPTION,
    )
    add_arguments(parser)
    parser.set_defaults(func=cmd_probe)
