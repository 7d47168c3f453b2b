"""`topics check` and `topics create`: the audit topic's settings, as the service sees them."""

import argparse
import asyncio

from aiokafka.errors import KafkaError

from app.cli.common import EPILOG, logger
from app.ingest.audit_topic import AuditTopic, AuditTopicError, Compliance
from app.logs import configure_logging
from app.settings import get_settings

EXIT_STATUS = """\
exit status: 0 the topic keeps audit records; 1 it does not (each finding is printed),
or it does not exist (check); 2 usage, Kafka unreachable, or a permission missing.
"""


def _report(compliance: Compliance) -> int:
    if compliance.partitions:
        verb = "created" if compliance.created else "found"
        print(
            f"audit topic {compliance.topic!r} {verb}: {compliance.partitions} partitions, "
            f"replication factor {compliance.replication}"
        )
    for finding in compliance.findings:
        print(f"noncompliant: {finding}")
    if compliance.compliant:
        print("compliant: retention, cleanup policy and replication keep audit records")
        return 0
    return 1


def _run(args: argparse.Namespace, *, create: bool) -> int:
    settings = get_settings()
    configure_logging("WARNING", "text")
    if args.topic:
        settings = settings.model_copy(update={"audit_topic": args.topic})
    timeout_s = settings.kafka_request_timeout_ms / 1000
    try:
        compliance = asyncio.run(
            asyncio.wait_for(AuditTopic(settings).ensure(create=create), timeout_s)
        )
    except AuditTopicError as exc:
        logger.error("%s", exc)
        return 2
    except (KafkaError, OSError, TimeoutError) as exc:
        servers = ",".join(settings.kafka_bootstrap_servers)
        logger.error("Kafka at %s does not answer: %s", servers, str(exc) or type(exc).__name__)
        return 2
    return _report(compliance)


def cmd_check(args: argparse.Namespace) -> int:
    """Describe the audit topic and print what would lose its records."""
    return _run(args, create=False)


def cmd_create(args: argparse.Namespace) -> int:
    """Create the audit topic as the service does at start (when missing), then check it."""
    return _run(args, create=True)


def register(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add `topics check` and `topics create`."""
    topics = commands.add_parser(
        "topics",
        help="check (or create) the audit topic's retention, cleanup policy and replication",
        description="The audit topic must keep its records: retention at least "
        "RG_AUDIT_MIN_RETENTION_DAYS (or -1), cleanup.policy=delete (never compact), "
        "min.insync.replicas 2 or more with 3 or more replicas.",
        epilog=EPILOG,
    )
    actions = topics.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, func, text in (
        ("check", cmd_check, "check the audit topic; print each finding"),
        (
            "create",
            cmd_create,
            "create the audit topic when missing (RG_AUDIT_TOPIC_PARTITIONS, "
            "RG_AUDIT_TOPIC_REPLICATION, RG_AUDIT_RETENTION_DAYS), then check it",
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
