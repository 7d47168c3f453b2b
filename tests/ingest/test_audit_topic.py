"""The audit topic's rules (without a broker: what is created, what an existing topic must
have), and creating the audit and checkpoints topics together on the session broker."""

import asyncio
import logging
import uuid
from typing import Any

import pytest
from pydantic import ValidationError

from app.ingest.audit_topic import (
    DAY_MS,
    AuditTopic,
    AuditTopicError,
    AuditTopics,
    default_replication,
    desired_configs,
    findings_of,
    refusal_of,
)
from app.kafka import KafkaProducerClient, KafkaProducerConfig, KafkaRecordTooLargeError
from app.settings import Settings
from tests.helpers.kafka import AUDIT_TOPIC_CONFIGS, describe_topic

COMPLIANT = {"retention.ms": str(400 * DAY_MS), "cleanup.policy": "delete"}


def settings_of(**fields: object) -> Settings:
    return Settings(_env_file=None, **fields)  # type: ignore[arg-type]


def settings_at(bootstrap: str, topic: str) -> Settings:
    return settings_of(kafka_bootstrap_servers=[bootstrap], audit_topic=topic)


def test_unit_a_compliant_topic_has_no_findings() -> None:
    assert findings_of(COMPLIANT, replication=1, min_retention_days=180) == []


def test_unit_infinite_retention_passes() -> None:
    configs = {**COMPLIANT, "retention.ms": "-1"}
    assert findings_of(configs, replication=1, min_retention_days=180) == []


def test_unit_retention_one_day_short_of_the_minimum_fails_naming_value_and_minimum() -> None:
    configs = {**COMPLIANT, "retention.ms": str(179 * DAY_MS)}
    (finding,) = findings_of(configs, replication=1, min_retention_days=180)
    assert finding.setting == "retention.ms"
    assert finding.value == str(179 * DAY_MS)
    assert str(180 * DAY_MS) in finding.required
    assert "179 days" in str(finding)


def test_unit_retention_exactly_the_minimum_passes() -> None:
    configs = {**COMPLIANT, "retention.ms": str(180 * DAY_MS)}
    assert findings_of(configs, replication=1, min_retention_days=180) == []


def test_unit_the_broker_default_of_seven_days_fails() -> None:
    configs = {**COMPLIANT, "retention.ms": "604800000"}
    (finding,) = findings_of(configs, replication=1, min_retention_days=180)
    assert "7 days" in finding.why


@pytest.mark.parametrize("policy", ["compact", "compact,delete", "delete,compact"])
def test_unit_compaction_fails(policy: str) -> None:
    configs = {**COMPLIANT, "cleanup.policy": policy}
    (finding,) = findings_of(configs, replication=1, min_retention_days=180)
    assert (finding.setting, finding.value) == ("cleanup.policy", policy)
    assert finding.required == "delete"


def test_unit_replication_three_with_min_insync_one_fails() -> None:
    configs = {**COMPLIANT, "min.insync.replicas": "1"}
    (finding,) = findings_of(configs, replication=3, min_retention_days=180)
    assert (finding.setting, finding.value) == ("min.insync.replicas", "1")
    assert finding.required.startswith(">= 2")


def test_unit_replication_three_with_min_insync_two_passes() -> None:
    configs = {**COMPLIANT, "min.insync.replicas": "2"}
    assert findings_of(configs, replication=3, min_retention_days=180) == []


def test_unit_replication_one_with_min_insync_one_passes() -> None:
    configs = {**COMPLIANT, "min.insync.replicas": "1"}
    assert findings_of(configs, replication=1, min_retention_days=180) == []


def test_unit_every_finding_is_reported_at_once() -> None:
    configs = {"retention.ms": "604800000", "cleanup.policy": "compact", "min.insync.replicas": "1"}
    findings = findings_of(configs, replication=3, min_retention_days=180)
    assert [f.setting for f in findings] == [
        "retention.ms",
        "cleanup.policy",
        "min.insync.replicas",
    ]


@pytest.mark.parametrize(("brokers", "replication"), [(1, 1), (2, 2), (3, 3), (5, 3)])
def test_unit_replication_defaults_to_three_or_the_brokers_there_are(
    brokers: int, replication: int
) -> None:
    assert default_replication(brokers) == replication


def test_unit_created_configs_delete_and_keep_400_days_by_default() -> None:
    settings = settings_of()
    configs = desired_configs(
        replication=1,
        retention_days=settings.audit_retention_days,
        batch_bytes=settings.kafka_max_batch_size,
    )
    assert configs == {
        "retention.ms": str(400 * DAY_MS),
        "cleanup.policy": "delete",
        # Kafka's own default, which takes the default 1 MiB batch, whatever the brokers say.
        "max.message.bytes": "1048588",
    }


def test_unit_a_size_cap_fails_whatever_the_retention_time() -> None:
    configs = {**COMPLIANT, "retention.ms": "-1", "retention.bytes": str(1 << 30)}
    (finding,) = findings_of(configs, replication=1, min_retention_days=180)
    assert (finding.setting, finding.value, finding.required) == (
        "retention.bytes",
        str(1 << 30),
        "-1",
    )
    assert (
        findings_of({**configs, "retention.bytes": "-1"}, replication=1, min_retention_days=180)
        == []
    )


def test_unit_unclean_leader_election_fails() -> None:
    configs = {**COMPLIANT, "unclean.leader.election.enable": "true"}
    (finding,) = findings_of(configs, replication=1, min_retention_days=180)
    assert (finding.setting, finding.required) == ("unclean.leader.election.enable", "false")
    configs["unclean.leader.election.enable"] = "false"
    assert findings_of(configs, replication=1, min_retention_days=180) == []


def test_unit_a_topic_that_refuses_the_producers_batches_fails_naming_both() -> None:
    configs = {**COMPLIANT, "max.message.bytes": "524288"}
    (finding,) = findings_of(configs, replication=1, min_retention_days=180, batch_bytes=1 << 20)
    assert (finding.setting, finding.value) == ("max.message.bytes", "524288")
    assert "1048576" in finding.required
    assert "RG_KAFKA_MAX_BATCH_SIZE" in finding.required
    assert findings_of(configs, replication=1, min_retention_days=180, batch_bytes=1 << 19) == []
    held = findings_of(
        {**configs, "retention.bytes": "-1", "retention.ms": "-1"},
        replication=1,
        min_retention_days=180,
        legal_hold=True,
        batch_bytes=1 << 20,
    )
    assert [f.setting for f in held] == ["max.message.bytes"]


async def test_a_topic_below_the_batch_size_refuses_whole_batches_of_small_records(
    kafka_bootstrap: str, create_topic: Any
) -> None:
    # Why the rule: 100 records of 2 KB each, one batch of 200 KB, against a 64 KiB limit.
    topic = await create_topic(1, {**AUDIT_TOPIC_CONFIGS, "max.message.bytes": "65536"})
    config = KafkaProducerConfig(
        bootstrap_servers=kafka_bootstrap, linger_ms=50, compression_type=None
    )
    async with KafkaProducerClient(config=config) as client:
        value = b"x" * 2000
        sent = [await client.send(topic, value, key="k") for _ in range(100)]
        outcomes = await asyncio.gather(*sent, return_exceptions=True)
    assert all(isinstance(o, KafkaRecordTooLargeError) for o in outcomes), outcomes[:1]
    (finding,) = (await AuditTopic(settings_at(kafka_bootstrap, topic)).ensure()).findings
    assert finding.setting == "max.message.bytes"


async def test_the_topic_the_service_creates_takes_its_batches(kafka_bootstrap: str) -> None:
    settings = settings_at(kafka_bootstrap, f"test-{uuid.uuid4().hex}")
    compliance = await AuditTopic(settings).ensure()
    assert compliance.created
    assert compliance.findings == []
    described = await describe_topic(kafka_bootstrap, settings.audit_topic)
    assert int(described.configs["max.message.bytes"]) >= settings.kafka_max_batch_size


def test_unit_created_configs_with_three_replicas_need_two_in_sync() -> None:
    configs = desired_configs(replication=3, retention_days=400)
    assert configs["min.insync.replicas"] == "2"


def test_unit_retention_minus_one_creates_a_topic_that_keeps_records_forever() -> None:
    assert desired_configs(replication=1, retention_days=-1)["retention.ms"] == "-1"


def test_unit_settings_defaults() -> None:
    settings = settings_of()
    assert settings.audit_topic_partitions == 6
    assert settings.audit_topic_replication is None
    assert settings.audit_retention_days == 400
    assert settings.audit_min_retention_days == 184
    assert settings.audit_topic_check == "enforce"


def test_unit_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "RG_AUDIT_TOPIC_PARTITIONS": "12",
        "RG_AUDIT_TOPIC_REPLICATION": "3",
        "RG_AUDIT_RETENTION_DAYS": "2190",
        "RG_AUDIT_MIN_RETENTION_DAYS": "365",
        "RG_AUDIT_TOPIC_CHECK": "warn",
    }.items():
        monkeypatch.setenv(name, value)
    settings = Settings(_env_file=None)
    assert (
        settings.audit_topic_partitions,
        settings.audit_topic_replication,
        settings.audit_retention_days,
        settings.audit_min_retention_days,
        settings.audit_topic_check,
    ) == (12, 3, 2190, 365, "warn")


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"audit_retention_days": 30}, "RG_AUDIT_RETENTION_DAYS=30"),
        ({"audit_retention_days": 0}, "RG_AUDIT_RETENTION_DAYS=0"),
        ({"audit_topic_partitions": 0}, "audit_topic_partitions"),
        ({"audit_topic_check": "sometimes"}, "audit_topic_check"),
    ],
)
def test_unit_settings_refuse_a_retention_their_own_check_would_refuse(
    fields: dict[str, object], named: str
) -> None:
    with pytest.raises(ValidationError, match=named):
        settings_of(**fields)


@pytest.mark.parametrize(
    ("code", "doing", "named"),
    [
        (29, "DESCRIBE", "TopicAuthorizationFailedError"),
        (29, "CREATE", "grant it CREATE on the topic (or on the cluster)"),
        (31, "CREATE", "ClusterAuthorizationFailedError"),
        (29, "DESCRIBE_CONFIGS", "may not DESCRIBE_CONFIGS topic 'audit'"),
    ],
)
def test_unit_refusals_name_the_missing_permission(code: int, doing: str, named: str) -> None:
    error = refusal_of(code, "audit", doing)
    assert isinstance(error, AuditTopicError)
    assert named in str(error)
    assert doing in str(error)


async def test_only_the_checkpoints_topic_created_is_not_reported_as_the_audit_topic(
    kafka_bootstrap: str, create_topic: Any, caplog: pytest.LogCaptureFixture
) -> None:
    audit = await create_topic(partitions=2, configs=AUDIT_TOPIC_CONFIGS)
    settings = settings_of(kafka_bootstrap_servers=[kafka_bootstrap], audit_topic=audit)
    both = AuditTopics(
        [AuditTopic(settings), AuditTopic(settings, name=f"{audit}.checkpoints", partitions=1)]
    )
    with caplog.at_level(logging.INFO, logger="app.ingest.audit_topic"):
        compliance = await both.ensure()
    assert (compliance.topic, compliance.created, compliance.compliant) == (audit, False, True)
    assert f"created topic '{audit}.checkpoints'" in caplog.text


def test_unit_under_a_legal_hold_only_keeping_everything_complies() -> None:
    # 400 days is compliant without a hold; under one, any deletion by age or size is not.
    kept = {**COMPLIANT, "retention.ms": str(400 * DAY_MS)}
    assert findings_of(kept, replication=1, min_retention_days=184) == []
    (finding,) = findings_of(kept, replication=1, min_retention_days=184, legal_hold=True)
    assert (finding.setting, finding.required) == ("retention.ms", "-1 (RG_AUDIT_LEGAL_HOLD)")
    forever = {**COMPLIANT, "retention.ms": "-1", "retention.bytes": "-1"}
    assert findings_of(forever, replication=1, min_retention_days=184, legal_hold=True) == []
    by_size = {**forever, "retention.bytes": "1073741824"}
    (finding,) = findings_of(by_size, replication=1, min_retention_days=184, legal_hold=True)
    assert finding.setting == "retention.bytes"
    # The other rules still apply.
    compacted = {**forever, "cleanup.policy": "compact"}
    (finding,) = findings_of(compacted, replication=1, min_retention_days=184, legal_hold=True)
    assert finding.setting == "cleanup.policy"
    assert (
        desired_configs(replication=1, retention_days=400, legal_hold=True)["retention.ms"] == "-1"
    )
