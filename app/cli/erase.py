"""`erase`: crypto-shred one subject's data from the console, as POST /audit/erase does (the
service's parts built and started in this process: its erasure record is on a chain of its
own writer, checkpointed like any other)."""

import argparse
import asyncio
import sys

from app.cli.common import EPILOG
from app.logs import configure_logging


def cmd_erase(args: argparse.Namespace) -> int:
    """Erase `--subject`: print the erasure record's receipt (JSON); 0 done, 1 refused (an
    unknown subject, the keys topic away), 3 erasure off or unusable settings."""
    from app.errors import ServiceError  # noqa: PLC0415 - a cheap parser
    from app.services import StartupError, build_services  # noqa: PLC0415
    from app.settings import get_settings  # noqa: PLC0415

    settings = get_settings()
    configure_logging(settings.log_level, "text")
    services = build_services(settings)
    if services.erasures is None:
        raise StartupError("erasure is off: set RG_ERASURE=on and RG_ERASURE_KEK_FILE")
    erasures = services.erasures

    async def erase() -> int:
        await services.start()
        try:
            receipt = await erasures.erase(args.subject, args.reason)
        except ServiceError as exc:
            print(f"erase: {exc}", file=sys.stderr)
            return 1
        finally:
            await services.stop()
        print(receipt.model_dump_json())
        return 0

    return asyncio.run(erase())


def register(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add `erase`."""
    erase = commands.add_parser(
        "erase",
        help="crypto-shred one subject's data (as POST /audit/erase)",
        description="Destroy the subject's data keys (RG_ERASURE=on) and append a signed "
        "erasure record to the audit trail; prints its receipt. See docs/privacy.md.",
        epilog=EPILOG,
    )
    erase.add_argument("--subject", required=True, help="whose data: the user_id (or subject)")
    erase.add_argument("--reason", required=True, help="why; stored as given: name no one")
    erase.set_defaults(func=cmd_erase)
