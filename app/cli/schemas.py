"""`schemas check` and `schemas register`: the audit event's JSON Schema against the Schema
Registry, as the service checks and registers it at start (app/ingest/contracts.py), for CI and
for a release that registers before it serves."""

import argparse
import asyncio
import json
from typing import TYPE_CHECKING

from app.cli.common import EPILOG, logger
from app.logs import configure_logging

if TYPE_CHECKING:
    from app.ingest.contracts import Verdict

EXIT_STATUS = """\
exit status: 0 compatible (check) or registered (register); 1 a breaking change (each field is
printed); 2 usage, no RG_SCHEMA_REGISTRY_URL, or the registry does not answer.
"""


def _run(args: argparse.Namespace, *, register: bool) -> int:
    from app.ingest.contracts import check_audit_schema, registry_client  # noqa: PLC0415
    from app.kafka.registry import SchemaRegistryError  # noqa: PLC0415
    from app.settings import get_settings  # noqa: PLC0415 - a cheap parser

    settings = get_settings()
    configure_logging("WARNING", "text")
    if args.topic:
        settings = settings.model_copy(update={"audit_topic": args.topic})
    if settings.schema_registry_url is None:
        logger.error("RG_SCHEMA_REGISTRY_URL is not set: no Schema Registry to check against")
        return 2

    async def run() -> "Verdict":
        client = registry_client(settings)
        try:
            return await check_audit_schema(client, settings.audit_topic, register=register)
        finally:
            await client.aclose()

    try:
        verdict = asyncio.run(run())
    except SchemaRegistryError as exc:
        logger.error("%s", exc)
        return 2
    if not verdict.compatible:
        print(f"incompatible: {verdict.message()}")
        for change in verdict.changes:
            print(f"breaking: {change}")
        return 1
    if register:
        print(f"registered: {verdict.subject!r} schema id {verdict.schema_id}")
    elif verdict.schema_id is not None:
        print(f"registered already: {verdict.subject!r} schema id {verdict.schema_id}")
    else:
        after = f"version {verdict.latest_version}" if verdict.latest_version else "no version"
        print(f"compatible: the audit schema may follow {after} of {verdict.subject!r}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Compare the audit schema with the latest registered version; register nothing."""
    return _run(args, register=False)


def cmd_register(args: argparse.Namespace) -> int:
    """Register the audit schema (when compatible) without serving."""
    return _run(args, register=True)


def cmd_show(args: argparse.Namespace) -> int:
    """Print the audit schema the service registers."""
    from app.ingest.contracts import audit_json_schema  # noqa: PLC0415 - a cheap parser

    print(json.dumps(audit_json_schema(), indent=2))
    return 0


def register(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add `schemas check`, `schemas register` and `schemas show`."""
    schemas = commands.add_parser(
        "schemas",
        help="check or register the audit event's JSON Schema in the Schema Registry",
        description="The audit event's JSON Schema (from KafkaAuditEvent, draft 7) under the "
        "subject '<RG_AUDIT_TOPIC>-value' of RG_SCHEMA_REGISTRY_URL, compatibility BACKWARD.",
        epilog=EPILOG,
    )
    actions = schemas.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, func, text in (
        ("check", cmd_check, "check the audit schema against the latest registered version"),
        ("register", cmd_register, "register the audit schema when it is compatible"),
        ("show", cmd_show, "print the audit schema"),
    ):
        action = actions.add_parser(
            name,
            help=text,
            description=f"{text[0].upper()}{text[1:]}.",
            epilog=EXIT_STATUS + EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        action.add_argument(
            "--topic", metavar="TOPIC", help="the audit topic (default RG_AUDIT_TOPIC)"
        )
        action.set_defaults(func=func)
