"""The `ractogateway-kafka` console script: one module per group of commands."""

import argparse
import sys
from collections.abc import Sequence

from app import __version__
from app.cli import broker, integrity, keys, records, service, topics
from app.cli.common import EPILOG, logger
from app.cli.handler import HandlerSpecError
from app.embedded import EmbeddedKafkaError
from app.kafka import KafkaClientError


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="ractogateway-kafka",
        description="Audit-trail sidecar for AI applications: records prompts and responses "
        "durably in Apache Kafka.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (service, broker, records, topics, keys, integrity):
        group.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except (EmbeddedKafkaError, HandlerSpecError, KafkaClientError) as exc:
        # One line the user can act on, not a traceback.
        logger.error("%s", exc)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
