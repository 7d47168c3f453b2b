"""`serve` and `openapi`: the HTTP service (the server itself: app/cli/server.py)."""

import argparse
from pathlib import Path

from app.cli.common import EPILOG, exit_on_sigterm, logger
from app.logs import configure_logging


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the API against the brokers of the settings."""
    from app.cli.server import serve  # noqa: PLC0415 - a cheap parser
    from app.settings import get_settings  # noqa: PLC0415 - likewise

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    exit_on_sigterm()
    serve(settings)
    return 0


def cmd_openapi(args: argparse.Namespace) -> int:
    """Write the OpenAPI document, or check that the file matches the app."""
    configure_logging("INFO", "text")
    from app.api.openapi import render  # noqa: PLC0415 - needs the web stack
    from app.main import openapi_document  # noqa: PLC0415 - likewise

    text = render(openapi_document())
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            logger.error("%s is out of date: run `ractogateway-kafka openapi`", args.output)
            return 1
        return 0
    args.output.write_text(text, encoding="utf-8")
    logger.info("wrote %s", args.output)
    return 0


def register(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add `serve` and `openapi`."""
    serve = commands.add_parser(
        "serve",
        help="serve the HTTP API (configured by RG_* settings)",
        description="Serve the HTTP API on RG_HOST:RG_PORT against RG_KAFKA_BOOTSTRAP_SERVERS.",
        epilog=EPILOG,
    )
    serve.set_defaults(func=cmd_serve)

    openapi = commands.add_parser(
        "openapi",
        help="write the OpenAPI document (openapi.json)",
        description="Write the service's OpenAPI document, or with --check exit 1 when the file "
        "differs from what the app serves.",
    )
    openapi.add_argument(
        "--output",
        type=Path,
        default=Path("openapi.json"),
        metavar="FILE",
        help="where to write it (default openapi.json)",
    )
    openapi.add_argument(
        "--check", action="store_true", help="compare instead of writing; exit 1 when stale"
    )
    openapi.set_defaults(func=cmd_openapi)
