"""The `ractogateway-kafka` console script: one module per group of commands.

Building the parser imports only argparse-level code: each group's module registers its
subcommands with the standard library and what it names, and a command's function imports what
it needs (the settings, the Kafka client, the web stack: ~1 s of imports) when it runs, often
from a module of its own (`verify`: app/cli/verification.py). So `--help`, `--version`, a usage
error and the commands that need little stay cheap; `ruff` asks for a `noqa: PLC0415` on each
such import. A test in tests/cli/test_cli.py holds this. `probe` goes further: the container
health check runs it every few seconds, so `main` sends it to `app.cli.probe` before even
building the parser.
"""

import argparse
import sys
from collections.abc import Sequence

from app import __version__
from app.cli.common import EPILOG, logger, settings_problem


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    from app.cli import (  # noqa: PLC0415 - the package's own modules
        broker,
        erase,
        export,
        integrity,
        keys,
        probe,
        records,
        registry,
        schemas,
        service,
        topics,
    )

    parser = argparse.ArgumentParser(
        prog="ractogateway-kafka",
        description="Audit-trail sidecar for AI applications: records prompts and responses "
        "durably in Apache Kafka.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (
        service,
        broker,
        registry,
        records,
        topics,
        schemas,
        keys,
        integrity,
        erase,
        export,
        probe,
    ):
        group.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["probe"]:
        from app.cli.probe import run  # noqa: PLC0415 - the cheap path, see the docstring

        return run(arguments[1:])
    return run_command(arguments)


def run_command(arguments: Sequence[str]) -> int:
    """Any command through the full parser; known failures become one line: status 2 for a
    bad setting or usage, 3 for a setting the service cannot start with."""
    args = build_parser().parse_args(arguments)
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        status = failure_status(exc)
        if status is None:
            raise
        return status
    return code


def failure_status(exc: Exception) -> int | None:
    """The exit status of a known failure, logged as one line the user can act on rather than a
    traceback; None for any other. An error class of the Kafka client, pydantic or the service
    is looked up only once its module is loaded: nothing can have raised it before, and a
    command that needed none of them does not pay for their imports here."""
    from app.cli.handler import HandlerSpecError  # noqa: PLC0415 - not for `probe`
    from app.embedded import EmbeddedKafkaError  # noqa: PLC0415

    loaded = sys.modules
    if isinstance(exc, EmbeddedKafkaError | HandlerSpecError):
        logger.error("%s", exc)
        return 2
    if "app.kafka.errors" in loaded:
        from app.kafka import KafkaClientError  # noqa: PLC0415 - loaded: see the docstring

        if isinstance(exc, KafkaClientError):
            logger.error("%s", exc)
            return 2
    if "pydantic" in loaded:
        from pydantic import ValidationError  # noqa: PLC0415

        if isinstance(exc, ValidationError):
            logger.error("%s", settings_problem(exc))
            return 2
    if "pydantic_settings" in loaded:
        from pydantic_settings import SettingsError  # noqa: PLC0415

        if isinstance(exc, SettingsError):
            logger.error("%s", settings_problem(exc))
            return 2
    if "app.services" in loaded:
        from app.services import StartupError  # noqa: PLC0415

        if isinstance(exc, StartupError):
            logger.error("cannot start: %s", exc)
            return 3
    return None


if __name__ == "__main__":
    sys.exit(main())
