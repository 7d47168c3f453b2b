"""The `ractogateway-kafka` console script: one module per group of commands.

`probe` takes a fast path: the container health check runs it every few seconds, and the other
commands' modules pull in the web stack and the Kafka client (~0.8 s), so `main` sends it to
`app.cli.probe` before importing any of them.
"""

import argparse
import sys
from collections.abc import Sequence

from app import __version__
from app.cli.common import EPILOG, logger


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    from app.cli import (  # noqa: PLC0415
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
    from pydantic import ValidationError  # noqa: PLC0415 - see the module docstring
    from pydantic_settings import SettingsError  # noqa: PLC0415

    from app.cli.common import settings_problem  # noqa: PLC0415
    from app.cli.handler import HandlerSpecError  # noqa: PLC0415
    from app.embedded import EmbeddedKafkaError  # noqa: PLC0415
    from app.kafka import KafkaClientError  # noqa: PLC0415
    from app.services import StartupError  # noqa: PLC0415

    args = build_parser().parse_args(arguments)
    try:
        code: int = args.func(args)
    except (EmbeddedKafkaError, HandlerSpecError, KafkaClientError) as exc:
        # One line the user can act on, not a traceback.
        logger.error("%s", exc)
        return 2
    except (ValidationError, SettingsError) as exc:
        logger.error("%s", settings_problem(exc))
        return 2
    except StartupError as exc:
        logger.error("cannot start: %s", exc)
        return 3
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
