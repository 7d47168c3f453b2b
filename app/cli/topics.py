"""`topics check` and `topics create`: the settings of the audit topic and of its checkpoints
topic, as the service sees them."""

import argparse
import asyncio
from typing import TYPE_CHECKING

from app.cli.common import EPILOG, logger
from app.logs import configure_logging

if TYPE_CHECKING:
    from app.ingest.audit_topic import Compliance
    from app.settings import Settings

EXIT_STATUS = """\
exit status: 0 the topics keep audit records; 1 one does not (each finding is printed), or
the audit topic does not exist (check), or the checkpoints topic does not while
RG_AUDIT_SIGNING_KEY_FILE is set; 2 usage, Kafka unreachable, or a permission missing.
"""


def _report(compliance: "Compliance", *, kind: str) -> int:
    if compliance.partitions:
        verb = "created" if compliance.created else "found"
        print(
            f"{kind} {compliance.topic!r} {verb}: {compliance.partitions} partitions, "
            f"replication factor {compliance.replication}"
        )
    for finding in compliance.findings:
        print(f"noncompliant: {finding}")
    if compliance.compliant:
        print(f"compliant: {kind}'s retention, cleanup policy and replication keep its records")
        return 0
    return 1


async def _ensure_both(settings: "Settings", *, create: bool) -> int:
    from app.ingest.audit_topic import AuditTopic  # noqa: PLC0415 - a cheap parser

    audit = await AuditTopic(settings).ensure(create=create)
    status = _report(audit, kind="audit topic")
    # The signed checkpoints are evidence too: kept by the same rules. Without a signing key
    # the service writes none, so a missing checkpoints topic is no finding then.
    signed = settings.audit_signing_key_file is not None
    checkpoints = AuditTopic(settings, name=settings.checkpoints_topic, partitions=1)
    found = await checkpoints.ensure(create=create and signed)
    if not found.partitions and not signed:
        print(
            f"checkpoints topic {found.topic!r} not found: none are written without "
            "RG_AUDIT_SIGNING_KEY_FILE"
        )
        return status
    return max(status, _report(found, kind="checkpoints topic"))


def _run(args: argparse.Namespace, *, create: bool) -> int:
    from aiokafka.errors import KafkaError  # noqa: PLC0415 - a cheap parser

    from app.ingest.audit_topic import AuditTopicError  # noqa: PLC0415
    from app.settings import get_settings  # noqa: PLC0415

    settings = get_settings()
    configure_logging("WARNING", "text")
    if args.topic:
        settings = settings.model_copy(update={"audit_topic": args.topic})
    timeout_s = settings.kafka_request_timeout_ms / 1000
    try:
        return asyncio.run(asyncio.wait_for(_ensure_both(settings, create=create), timeout_s))
    except AuditTopicError as exc:
        logger.error("%s", exc)
        return 2
    except (KafkaError, OSError, TimeoutError) as exc:
        servers = ",".join(settings.kafka_bootstrap_servers)
        logger.error("Kafka at %s does not answer: %s", servers, str(exc) or type(exc).__name__)
        return 2


def cmd_check(args: argparse.Namespace) -> int:
    """Describe the audit and checkpoints topics and print what would lose their records."""
    return _run(args, create=False)


def cmd_create(args: argparse.Namespace) -> int:
    """Create the audit topic (and with a signing key the checkpoints topic) as the service
    does at start, when missing, then check them."""
    return _run(args, create=True)


def register(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add `topics check` and `topics create`."""
    topics = commands.add_parser(
        "topics",
        help="check (or create) the retention, cleanup policy and replication of the audit "
        "topic and its checkpoints topic",
        description="The audit topic and its checkpoints topic must keep their records: "
        "retention at least RG_AUDIT_MIN_RETENTION_DAYS (or -1), cleanup.policy=delete "
        "(never compact), min.insync.replicas 2 or more with 3 or more replicas.",
        epilog=EPILOG,
    )
    actions = topics.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, func, text in (
        ("check", cmd_check, "check the audit and checkpoints topics; print each finding"),
        (
            "create",
            cmd_create,
            "create the audit topic when missing (RG_AUDIT_TOPIC_PARTITIONS, "
            "RG_AUDIT_TOPIC_REPLICATION, RG_AUDIT_RETENTION_DAYS) and, with "
            "RG_AUDIT_SIGNING_KEY_FILE, the checkpoints topic, then check them",
        ),
    ):
        action = actions.add_parser(
            name,
            help=text,
            description=f"{text[0].upper()}{text[1:]}.",
            epilog=EXIT_STATUS + EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        action.add_argument(
            "--topic", metavar="TOPIC", help="the topic to look at (default RG_AUDIT_TOPIC)"
        )
        action.set_defaults(func=func)
