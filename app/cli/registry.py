"""`registry`: the embedded Schema Registry (Apicurio, Confluent-compatible API) in the
foreground, for local use; `make run` stays Kafka-only (docs/schemas.md says how to add it)."""

import argparse
from pathlib import Path

from app.cli.common import logger, stop_requested
from app.embedded.registry import EmbeddedRegistry, RegistryDistribution
from app.logs import configure_logging


def cmd_registry(args: argparse.Namespace) -> int:
    """Run the embedded registry until SIGTERM or Ctrl-C; print `url=...` once it answers."""
    configure_logging(args.log_level, "text")
    distribution = RegistryDistribution(args.cache_dir)
    if args.download_only:
        logger.info("Apicurio Registry %s ready in %s", distribution.version, distribution.ensure())
        return 0
    stop = stop_requested()
    registry = EmbeddedRegistry(
        port=args.port, distribution=distribution, heap=args.heap, log_file=args.log_file
    )
    try:
        registry.start()
        print(f"url={registry.url}", flush=True)
        logger.info("registry log: %s; SIGTERM or Ctrl-C stops it", registry.log_file)
        while not stop.wait(0.5):
            if not registry.is_running():
                logger.error("the Schema Registry exited on its own; see %s", registry.log_file)
                return 1
    finally:
        registry.stop()
    logger.info("Schema Registry stopped")
    return 0


def register(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add `registry`."""
    registry = commands.add_parser(
        "registry",
        help="run an embedded Schema Registry (Confluent-compatible API) in the foreground",
        description="Run Apicurio Registry on 127.0.0.1 with BACKWARD compatibility and in-memory "
        "storage (every start begins empty). Fetches it through Maven on first use (needs mvn "
        "and a Java 21+). Prints 'url=http://127.0.0.1:PORT/apis/ccompat/v7' once it answers "
        "(the value for RG_SCHEMA_REGISTRY_URL); SIGTERM or Ctrl-C stops it.",
    )
    registry.add_argument(
        "--port", type=int, default=0, help="HTTP port on 127.0.0.1 (default: a free one)"
    )
    registry.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="where the registry is downloaded to (default $RG_REGISTRY_CACHE_DIR or "
        "~/.cache/ractogateway-kafka/registry)",
    )
    registry.add_argument("--heap", default="256m", help="JVM maximum heap (default 256m)")
    registry.add_argument(
        "--log-file", type=Path, default=None, help="the server's log (default: a temporary file)"
    )
    registry.add_argument(
        "--log-level", default="INFO", help="log level of this command (default INFO)"
    )
    registry.add_argument(
        "--download-only", action="store_true", help="download the registry if missing, then exit"
    )
    registry.set_defaults(func=cmd_registry)
