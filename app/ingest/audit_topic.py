"""The audit topic: created with settings that keep its records, and checked when it exists.

Left to itself the broker auto-creates the topic on the first write with its defaults:
seven days of retention and `min.insync.replicas=1`, far shorter than an audit trail must be
kept (six months and more, see docs/operations.md). So the service creates the topic itself,
and checks an existing one:

- `retention.ms` at least `RG_AUDIT_MIN_RETENTION_DAYS` (`-1`, keep forever, passes), and
  `retention.bytes` -1: a size cap deletes the oldest records whatever their age;
- `cleanup.policy` without `compact`: compaction keeps only the newest record of a key, and
  audit records are keyed by `user_id`, so it would delete all but one record of each user;
- `unclean.leader.election.enable` false: an out-of-sync replica made leader drops what it
  missed, acknowledged records included;
- `min.insync.replicas` of 2 or more when the topic has 3 or more replicas: with 1, an
  acks=all write is acknowledged by the leader alone and lost with it;
- `max.message.bytes` at least the producer's batch (`RG_KAFKA_MAX_BATCH_SIZE`): the broker
  refuses a whole record batch above it, so under load a batch of many small records fails
  with every record in it (a record answered 202 then lost), though each alone would pass.

The rules are plain functions (`findings_of`) so they are tested without a broker; `AuditTopic`
does the describing and creating with aiokafka's admin client, on the producer's connection
settings (SASL and TLS included); `AuditTopics` does it for the checkpoints topic too, which
keeps the chain's signed checkpoints under the same rules. Metadata is requested with
auto-creation off: asking about a missing topic must not create it with the broker's defaults.
"""

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import for_code
from aiokafka.protocol.metadata import MetadataRequest

from app.connection import admin_config
from app.settings import Settings

logger = logging.getLogger(__name__)

DAY_MS = 24 * 60 * 60 * 1000
# What a replication factor of 3 or more needs, so one broker down still takes acks=all writes.
SAFE_MIN_INSYNC = 2
PREFERRED_REPLICATION = 3
# Kafka's own default `message.max.bytes` (1 MiB and a record batch's overhead).
KAFKA_MAX_MESSAGE_BYTES = 1_048_588

_NO_ERROR = 0
_UNKNOWN_TOPIC = 3
_TOPIC_AUTHORIZATION_FAILED = 29
_CLUSTER_AUTHORIZATION_FAILED = 31
_TOPIC_ALREADY_EXISTS = 36
_INVALID_REPLICATION_FACTOR = 38

CheckMode = Literal["enforce", "warn", "off"]


@dataclass(frozen=True)
class Finding:
    """One topic setting that does not keep the audit records: its value and what is needed."""

    setting: str
    value: str
    required: str
    why: str

    def __str__(self) -> str:
        return f"{self.setting}={self.value}, required {self.required}: {self.why}"

    def as_detail(self) -> dict[str, str]:
        """The finding as an item of an error body's `details`."""
        return {
            "setting": self.setting,
            "value": self.value,
            "required": self.required,
            "message": self.why,
        }


@dataclass(frozen=True)
class Compliance:
    """What the check found on the audit topic; compliant when there are no findings."""

    topic: str
    partitions: int
    replication: int
    created: bool
    findings: list[Finding] = field(default_factory=list)

    @property
    def compliant(self) -> bool:
        """True when nothing found would lose audit records."""
        return not self.findings


class AuditTopicError(Exception):
    """The topic could not be created or described (a missing permission, a refusal by the
    cluster); the message says which and what to grant."""


def default_replication(brokers: int) -> int:
    """3 replicas, or one per broker on a smaller cluster (one node in development)."""
    return max(1, min(PREFERRED_REPLICATION, brokers))


def days(retention_ms: int) -> str:
    """`retention.ms` for people: "7 days", "forever"."""
    if retention_ms < 0:
        return "forever"
    if retention_ms < DAY_MS:
        return f"{retention_ms / 1000:g} seconds"
    return f"{retention_ms / DAY_MS:.4g} days"


def desired_configs(
    *, replication: int, retention_days: int, legal_hold: bool = False, batch_bytes: int = 0
) -> dict[str, str]:
    """The topic configs the service creates the audit topic with (under a legal hold:
    nothing deleted by age), its batches of `batch_bytes` taken whatever the brokers'
    default."""
    configs = {
        "retention.ms": str(-1 if retention_days < 0 or legal_hold else retention_days * DAY_MS),
        # Never compact: it keeps one record per key (per user) and deletes the others.
        "cleanup.policy": "delete",
        "max.message.bytes": str(max(batch_bytes, KAFKA_MAX_MESSAGE_BYTES)),
    }
    if replication >= PREFERRED_REPLICATION:
        configs["min.insync.replicas"] = str(SAFE_MIN_INSYNC)
    return configs


def findings_of(
    configs: Mapping[str, str],
    *,
    replication: int,
    min_retention_days: int,
    legal_hold: bool = False,
    batch_bytes: int = 0,
) -> list[Finding]:
    """What in a topic's effective configs would lose audit records (empty: compliant). Under
    a legal hold (RG_AUDIT_LEGAL_HOLD) nothing may be deleted: retention.ms and retention.bytes
    must both be -1, whatever the minimum. `batch_bytes`: the producer's batch, which
    `max.message.bytes` must take."""
    batch = _batch_findings(configs, batch_bytes)
    if legal_hold:
        held = [
            Finding(
                name,
                configs.get(name, ""),
                "-1 (RG_AUDIT_LEGAL_HOLD)",
                "a legal hold keeps every record; this retention deletes some",
            )
            for name in ("retention.ms", "retention.bytes")
            if configs.get(name, "-1") != "-1"
        ]
        rest = findings_of(configs, replication=replication, min_retention_days=0)
        return held + [f for f in rest if not f.setting.startswith("retention.")] + batch
    findings: list[Finding] = []
    minimum_ms = min_retention_days * DAY_MS
    retention = configs.get("retention.ms", "")
    retention_ms = int(retention) if retention.lstrip("-").isdigit() else None
    if retention_ms is None or 0 <= retention_ms < minimum_ms:
        findings.append(
            Finding(
                "retention.ms",
                retention,
                f">= {minimum_ms} ({min_retention_days} days, RG_AUDIT_MIN_RETENTION_DAYS) or -1",
                "not a retention in milliseconds"
                if retention_ms is None
                else f"records are deleted after {days(retention_ms)}",
            )
        )
    by_size = configs.get("retention.bytes", "-1")
    if by_size != "-1":
        findings.append(
            Finding(
                "retention.bytes",
                by_size,
                "-1",
                "once a partition holds that much its oldest records are deleted, whatever "
                "their age",
            )
        )
    if configs.get("unclean.leader.election.enable", "false") == "true":
        findings.append(
            Finding(
                "unclean.leader.election.enable",
                "true",
                "false",
                "a replica that missed acknowledged records may become the leader, and those "
                "records are gone",
            )
        )
    policy = configs.get("cleanup.policy", "")
    if "compact" in policy.split(","):
        findings.append(
            Finding(
                "cleanup.policy",
                policy,
                "delete",
                "compaction keeps only the newest record of each key (user_id)",
            )
        )
    min_insync = configs.get("min.insync.replicas", "1")
    if replication >= PREFERRED_REPLICATION and min_insync.isdigit() and int(min_insync) < 2:
        findings.append(
            Finding(
                "min.insync.replicas",
                min_insync,
                f">= {SAFE_MIN_INSYNC} (replication factor {replication})",
                "an acknowledged record may exist on one broker only and be lost with it",
            )
        )
    return findings + batch


def _batch_findings(configs: Mapping[str, str], batch_bytes: int) -> list[Finding]:
    limit = configs.get("max.message.bytes", "")
    if not batch_bytes or not limit.isdigit() or int(limit) >= batch_bytes:
        return []
    return [
        Finding(
            "max.message.bytes",
            limit,
            f">= {batch_bytes} (RG_KAFKA_MAX_BATCH_SIZE; or lower that)",
            "the broker refuses a whole batch above it: under load a batch of many small "
            "records fails with every record in it",
        )
    ]


def refusal_of(code: int, topic: str, doing: str) -> AuditTopicError:
    """The error for Kafka's refusal `code` to do `doing` (CREATE, DESCRIBE...) on `topic`,
    naming the permission to grant."""
    name = for_code(code).__name__
    if code == _TOPIC_AUTHORIZATION_FAILED:
        return AuditTopicError(
            f"the service's Kafka principal may not {doing} topic {topic!r} ({name}): grant it "
            f"{doing} on the topic"
            + (" (or on the cluster)" if doing == "CREATE" else "")
            + ", or set RG_AUDIT_TOPIC_CHECK=off and manage the topic yourself"
        )
    if code == _CLUSTER_AUTHORIZATION_FAILED:
        return AuditTopicError(
            f"the service's Kafka principal may not {doing} topic {topic!r} ({name}): grant it "
            f"{doing} on the cluster or the topic"
        )
    return AuditTopicError(f"Kafka refused to {doing} topic {topic!r}: {name}")


class AuditTopic:
    """The audit topic (or another topic kept like it) as the settings want it: `ensure()`
    creates it when missing and checks it; `ensure(create=False)` only checks (the `topics
    check` command)."""

    def __init__(
        self, settings: Settings, *, name: str | None = None, partitions: int | None = None
    ) -> None:
        self._settings = settings
        # Another topic under the same rules: the checkpoints topic (one partition is enough).
        self.name = name or settings.audit_topic
        self._partitions = partitions or settings.audit_topic_partitions

    async def ensure(self, *, create: bool = True) -> Compliance:
        """Create the topic if it is missing (and `create`), then describe and check it.
        Raises `AuditTopicError` when the cluster refuses, aiokafka's errors when it does not
        answer."""
        admin = AIOKafkaAdminClient(**admin_config(self._settings))
        try:
            await admin.start()
            return await self._ensure(admin, create=create)
        finally:
            await admin.close()

    async def _ensure(self, admin: AIOKafkaAdminClient, *, create: bool) -> Compliance:
        metadata = await self._metadata(admin)
        described = metadata["topics"][0]
        created = False
        if described["error_code"] == _UNKNOWN_TOPIC:
            if not create:
                return Compliance(
                    self.name,
                    0,
                    0,
                    created=False,
                    findings=[
                        Finding(
                            "topic",
                            "missing",
                            "present",
                            "the service creates it at start, or `topics create` does",
                        )
                    ],
                )
            created = await self._create(admin, brokers=len(metadata["brokers"]))
            described = await self._created(admin)
        if described["error_code"] != _NO_ERROR:
            raise refusal_of(described["error_code"], self.name, "DESCRIBE")
        partitions = described["partitions"]
        replication = max((len(p["replicas"]) for p in partitions), default=0)
        configs = await self._configs(admin)
        return Compliance(
            self.name,
            len(partitions),
            replication,
            created=created,
            findings=findings_of(
                configs,
                replication=replication,
                min_retention_days=self._settings.audit_min_retention_days,
                legal_hold=self._settings.audit_legal_hold,
                batch_bytes=self._settings.kafka_max_batch_size,
            ),
        )

    async def _metadata(self, admin: AIOKafkaAdminClient) -> dict[str, Any]:
        # aiokafka's describe_topics lets the broker auto-create the topic; this does not.
        request = MetadataRequest([self.name], allow_auto_topic_creation=False)
        response = await admin._send_request(request)  # no public form without auto-creation
        metadata: dict[str, Any] = response.to_object()
        return metadata

    async def _created(self, admin: AIOKafkaAdminClient) -> dict[str, Any]:
        # A new topic reaches the brokers' metadata a moment after the controller answered.
        deadline = time.monotonic() + self._settings.kafka_request_timeout_ms / 1000
        while True:
            described: dict[str, Any] = (await self._metadata(admin))["topics"][0]
            if described["error_code"] != _UNKNOWN_TOPIC or time.monotonic() > deadline:
                return described
            await asyncio.sleep(0.1)

    async def _create(self, admin: AIOKafkaAdminClient, *, brokers: int) -> bool:
        replication = self._settings.audit_topic_replication
        if replication is None and brokers < PREFERRED_REPLICATION:
            # The metadata lists the brokers that are up, not how many the cluster has: with one
            # of three down at the service's first start, one per listed broker would make a
            # topic of 2 replicas and, below 3, no min.insync.replicas=2, for good. KRaft places
            # a replica on a registered broker that is down, so ask for 3 first; a cluster that
            # really is smaller refuses (INVALID_REPLICATION_FACTOR) and gets one per broker.
            created = await self._create_with(admin, PREFERRED_REPLICATION, may_be_too_many=True)
            if created is not None:
                return created
        return bool(await self._create_with(admin, replication or default_replication(brokers)))

    async def _create_with(
        self, admin: AIOKafkaAdminClient, replication: int, *, may_be_too_many: bool = False
    ) -> bool | None:
        """Create the topic with `replication` replicas: True when created, False when another
        instance was first; None when the cluster has too few brokers and `may_be_too_many`."""
        topic = NewTopic(
            self.name,
            self._partitions,
            replication,
            topic_configs=desired_configs(
                replication=replication,
                retention_days=self._settings.audit_retention_days,
                legal_hold=self._settings.audit_legal_hold,
                batch_bytes=self._settings.kafka_max_batch_size,
            ),
        )
        response = await admin.create_topics(
            [topic], timeout_ms=self._settings.kafka_request_timeout_ms
        )
        (result,) = response.to_object()["topic_errors"]
        if result["error_code"] == _TOPIC_ALREADY_EXISTS:
            return False  # another instance was first; check what it made
        if result["error_code"] == _INVALID_REPLICATION_FACTOR and may_be_too_many:
            return None
        if result["error_code"] != _NO_ERROR:
            if result["error_code"] in (_TOPIC_AUTHORIZATION_FAILED, _CLUSTER_AUTHORIZATION_FAILED):
                raise refusal_of(result["error_code"], self.name, "CREATE")
            raise AuditTopicError(
                f"Kafka refused to create topic {self.name!r}: "
                f"{for_code(result['error_code']).__name__}: {result['error_message']}"
            )
        return True

    async def _configs(self, admin: AIOKafkaAdminClient) -> dict[str, str]:
        (response,) = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, self.name)]
        )
        (resource,) = response.to_object()["resources"]
        if resource["error_code"] != _NO_ERROR:
            raise refusal_of(resource["error_code"], self.name, "DESCRIBE_CONFIGS")
        return {
            entry["config_names"]: entry["config_value"] or ""
            for entry in resource["config_entries"]
        }


class AuditTopics:
    """Several topics kept by the same rules (the audit topic and the checkpoints topic),
    created and checked together: the result is the first noncompliant topic's, or else the
    first topic's; each topic created other than that one is logged here, so a `created`
    result names only the topic it reports."""

    def __init__(self, topics: list[AuditTopic]) -> None:
        self.topics = topics
        self.name = ", ".join(topic.name for topic in topics)

    async def ensure(self, *, create: bool = True) -> Compliance:
        """`AuditTopic.ensure` for each topic, in order."""
        results = [await topic.ensure(create=create) for topic in self.topics]
        chosen = next((result for result in results if not result.compliant), results[0])
        created = [result.topic for result in results if result.created]
        for topic in created:
            if topic != chosen.topic:
                logger.info("created topic %r", topic)
        return chosen
