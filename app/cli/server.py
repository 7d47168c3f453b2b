"""The HTTP server behind `serve` and `run`: the checks before anything starts, and uvicorn with
a drain period. Imported when one of them runs, not when the parser is built
(app/cli/__init__.py)."""

import socket
from types import FrameType

import uvicorn

from app.cli.common import logger
from app.integrity.keys import SigningKeyError, load_signing_key, public_keys
from app.runtime import tune_for_serving
from app.services import StartupError, check_unauthenticated
from app.settings import Settings
from app.shutdown import Shutdown

# The standard library's event loop, not uvloop (uvicorn's choice where it is installed, as
# uvicorn[standard] installs it). With more requests ready than the one thread serves, uvloop
# left about 1% of them unserved for 1-2 s (`POST /audit?wait=false` at 128 connections: p99
# 1.5-1.7 s; a bare uvicorn app doing 200 µs of work per request the same, 1.1 s), where the
# standard loop serves connections in turn (p99 54-68 ms), at the same CPU per request
# (bench/README.md, "The event loop").
EVENT_LOOP = "asyncio"


class DrainingServer(uvicorn.Server):
    """uvicorn, with a drain period: on the first SIGTERM (or Ctrl-C) the app starts shutting
    down (`/readyz` 503, writes refused) while the listener stays open for `drain_s`, so load
    balancers see it; then uvicorn's own graceful shutdown (in-flight requests finish, within
    `timeout_graceful_shutdown`) and the app's (producer flushed, spool kept). A second
    signal skips the drain."""

    def __init__(self, config: uvicorn.Config, *, shutdown: Shutdown, drain_s: float) -> None:
        super().__init__(config)
        self._shutdown = shutdown
        self._drain_s = drain_s
        self._signal: int | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """First signal: begin draining; uvicorn stops once `drain_s` has passed."""
        if self._signal is None and self._drain_s > 0:
            self._signal = sig
            self._shutdown.begin()
            logger.info("shutting down: draining for %ss", self._drain_s)
            return
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        """uvicorn's tick (every 0.1 s), ending the drain when its time is up."""
        if (
            self._signal is not None
            and not self.should_exit
            and self._shutdown.elapsed_s() >= self._drain_s
        ):
            super().handle_exit(self._signal, None)
        return await super().on_tick(counter)


def check_port(host: str, port: int) -> None:
    """`StartupError` naming RG_PORT when the API could not listen on `host:port` (taken by
    another process): said before anything starts, not as uvicorn's bare errno later."""
    if port == 0:
        return
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as probe:
            # As uvicorn binds: a port left in TIME_WAIT by an earlier run is free.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:
        raise StartupError(
            f"RG_PORT={port}: the API cannot listen on {host}:{port} "
            f"({exc.strerror or exc}): choose another RG_PORT (or RG_HOST)"
        ) from None


def check_startup(settings: Settings) -> None:
    """What must hold before anything starts (an embedded broker included), each failure a
    `StartupError` naming its setting: authentication beyond loopback, the signing key, the
    API's port. (The redaction key is read when the app is built.)"""
    check_unauthenticated(settings)
    try:
        if settings.audit_signing_key_file is not None:
            signing = load_signing_key(settings.audit_signing_key_file, settings.audit_key_id)
            public_keys(signing, settings.audit_retired_keys_dir)
    except SigningKeyError as exc:
        raise StartupError(str(exc)) from None
    check_port(settings.host, settings.port)


def serve(settings: Settings) -> None:
    """Run the API with uvicorn until SIGTERM or Ctrl-C: drain for RG_SHUTDOWN_DRAIN_S, let
    in-flight requests finish (at most RG_SHUTDOWN_TIMEOUT_S), flush, exit. A setting it cannot
    start with raises `StartupError` first."""
    check_startup(settings)
    # The web stack once the checks pass: a refused start does not pay for it.
    from app.api.http_limits import limited_protocol  # noqa: PLC0415 - see above
    from app.main import create_app  # noqa: PLC0415

    app = create_app(settings)
    tune_for_serving()
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        # Logging is configured already (one format for every logger); the service writes its
        # own line per request, with the route and the request id.
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=max(1, round(settings.shutdown_timeout_s)),
        # Longer than the idle expiry of client pools (5 s in httpx and many others): a server
        # closing an idle connection first races the client reusing it, and a request is lost.
        timeout_keep_alive=max(1, round(settings.keep_alive_s)),
        # The bounds on request heads, on the time to read a request and on connections
        # (RG_MAX_CONNECTIONS, so uvicorn's own limit_concurrency stays off).
        http=limited_protocol(settings, app.state.services.metrics),
        loop=EVENT_LOOP,
    )
    server = DrainingServer(
        config, shutdown=app.state.services.shutdown, drain_s=settings.shutdown_drain_s
    )
    # When the app cannot start all the same (a spool folder in use) uvicorn logs why and
    # exits with status 3.
    server.run()
