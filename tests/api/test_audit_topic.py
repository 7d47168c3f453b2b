"""The audit topic against the session broker: created so it keeps its records, refused (or
accepted with RG_AUDIT_TOPIC_CHECK=warn) when an existing one would delete them."""

import logging
from typing import Any

import pytest

from tests.api.test_metrics import scrape
from tests.helpers.app import ServiceFactory, assert_contract_error, client_for
from tests.helpers.kafka import describe_topic, records_in
from tests.helpers.metrics import metric
from tests.helpers.polling import eventually

DAY_MS = 24 * 3600 * 1000
EVENT = {"user_id": "u", "model": "m", "prompt": "p", "response": "r"}
SEVEN_DAYS_MS = "604800000"  # the broker's default retention


async def test_a_missing_audit_topic_is_created_to_keep_its_records(
    service: ServiceFactory, kafka_bootstrap: str, topic: str
) -> None:
    async with service() as client:
        ready = await client.get("/readyz")
        written = await client.post("/audit", json=EVENT)
        metrics = await scrape(client)
    assert ready.status_code == 200, ready.text
    assert written.status_code == 201, written.text
    assert metric(metrics, "rg_audit_topic_compliant") == 1
    described = await describe_topic(kafka_bootstrap, topic)
    print(f"created: {described.partitions} partitions, replication {described.replication}")
    assert described.partitions == 6
    assert described.replication == 1  # the one-node test broker
    assert described.configs["retention.ms"] == str(400 * DAY_MS)
    assert described.configs["cleanup.policy"] == "delete"
    # Not forced to 2 on one replica: no write could ever be acknowledged.
    assert described.configs["min.insync.replicas"] == "1"


async def test_a_seven_day_audit_topic_keeps_the_service_unready_and_refuses_writes(
    create_topic: Any, kafka_bootstrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    topic = await create_topic(partitions=3, configs={"retention.ms": SEVEN_DAYS_MS})
    with caplog.at_level(logging.ERROR, logger="app.ingest.audit_topic_guard"):
        async with client_for(kafka_bootstrap, audit_topic=topic) as client:
            ready = await client.get("/readyz")
            written = await client.post("/audit", json=EVENT)
            batch = await client.post("/audit/batch", json={"events": [EVENT]})
            metrics = await scrape(client)
    # /readyz says what, generically (it is open to anyone); a write is told the details.
    assert_contract_error(ready, 503, "audit_topic_noncompliant")
    assert topic not in ready.text
    assert int(ready.headers["retry-after"]) > 0
    error = assert_contract_error(written, 503, "audit_topic_noncompliant")
    for named in (topic, "retention.ms", SEVEN_DAYS_MS, str(184 * DAY_MS)):
        assert named in error["message"]
    assert error["details"] == [
        {
            "setting": "retention.ms",
            "value": SEVEN_DAYS_MS,
            "required": f">= {184 * DAY_MS} (184 days, RG_AUDIT_MIN_RETENTION_DAYS) or -1",
            "message": "records are deleted after 7 days",
        }
    ]
    # An audit record written where it is deleted in a week is a record lost: refused.
    assert_contract_error(batch, 503, "audit_topic_noncompliant")
    assert int(written.headers["retry-after"]) > 0
    assert await records_in(kafka_bootstrap, topic) == 0
    assert metric(metrics, "rg_audit_topic_compliant") == 0
    assert any(
        "noncompliant" in r.getMessage() and "retention.ms=604800000" in r.getMessage()
        for r in caplog.records
    ), caplog.text


async def test_a_compacted_audit_topic_is_refused_naming_the_cleanup_policy(
    create_topic: Any, kafka_bootstrap: str
) -> None:
    topic = await create_topic(
        partitions=1, configs={"cleanup.policy": "compact", "retention.ms": "-1"}
    )
    async with client_for(kafka_bootstrap, audit_topic=topic) as client:
        ready = await client.get("/readyz")
        written = await client.post("/audit", json=EVENT)
    assert_contract_error(ready, 503, "audit_topic_noncompliant")
    error = assert_contract_error(written, 503, "audit_topic_noncompliant")
    assert "cleanup.policy=compact" in error["message"]
    assert [(d["setting"], d["value"], d["required"]) for d in error["details"]] == [
        ("cleanup.policy", "compact", "delete")
    ]


async def test_with_check_warn_a_seven_day_topic_is_accepted_with_a_warning_and_the_metric(
    create_topic: Any, kafka_bootstrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    topic = await create_topic(partitions=3, configs={"retention.ms": SEVEN_DAYS_MS})
    with caplog.at_level(logging.WARNING, logger="app.ingest.audit_topic_guard"):
        async with client_for(
            kafka_bootstrap, audit_topic=topic, audit_topic_check="warn"
        ) as client:
            ready = await client.get("/readyz")
            written = await client.post("/audit", json=EVENT)
            metrics = await scrape(client)
    assert ready.status_code == 200, ready.text
    assert written.status_code == 201, written.text
    assert await records_in(kafka_bootstrap, topic) == 1
    assert metric(metrics, "rg_audit_topic_compliant") == 0
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "RG_AUDIT_TOPIC_CHECK=warn" in warning.getMessage()
    assert "retention.ms=604800000" in warning.getMessage()


async def test_an_existing_compliant_topic_is_used_as_it_is(
    create_topic: Any, kafka_bootstrap: str
) -> None:
    topic = await create_topic(partitions=2, configs={"retention.ms": "-1"})
    async with client_for(kafka_bootstrap, audit_topic=topic) as client:
        ready = await client.get("/readyz")
        written = await client.post("/audit", json=EVENT)
    assert ready.status_code == 200, ready.text
    assert written.status_code == 201, written.text
    assert (await describe_topic(kafka_bootstrap, topic)).partitions == 2


async def test_fixing_a_noncompliant_topic_makes_the_service_ready_without_a_restart(
    create_topic: Any, kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aiokafka.admin import AIOKafkaAdminClient  # noqa: PLC0415
    from aiokafka.admin.config_resource import (  # noqa: PLC0415
        ConfigResource,
        ConfigResourceType,
    )

    monkeypatch.setattr("app.ingest.audit_topic_guard.RECHECK_S", 0.5)  # 30 s in production
    topic = await create_topic(partitions=1, configs={"retention.ms": SEVEN_DAYS_MS})
    async with client_for(kafka_bootstrap, audit_topic=topic) as client:
        assert_contract_error(await client.get("/readyz"), 503, "audit_topic_noncompliant")
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            await admin.alter_configs(
                [ConfigResource(ConfigResourceType.TOPIC, topic, {"retention.ms": "-1"})]
            )
        finally:
            await admin.close()

        async def ready() -> bool:
            return (await client.get("/readyz")).status_code == 200

        await eventually(ready, timeout_s=30)
        written = await client.post("/audit", json=EVENT)
        metrics = await scrape(client)
    assert written.status_code == 201, written.text
    assert metric(metrics, "rg_audit_topic_compliant") == 1


async def test_under_a_legal_hold_a_new_topic_keeps_everything_and_a_400_day_one_is_refused(
    create_topic: Any, kafka_bootstrap: str, topic: str
) -> None:
    async with client_for(kafka_bootstrap, audit_topic=topic, audit_legal_hold=True) as client:
        assert (await client.get("/readyz")).status_code == 200
    assert (await describe_topic(kafka_bootstrap, topic)).configs["retention.ms"] == "-1"
    dated = await create_topic(partitions=1, configs={"retention.ms": str(400 * DAY_MS)})
    async with client_for(kafka_bootstrap, audit_topic=dated, audit_legal_hold=True) as client:
        written = await client.post("/audit", json=EVENT)
    error = assert_contract_error(written, 503, "audit_topic_noncompliant")
    assert [(d["setting"], d["required"]) for d in error["details"]] == [
        ("retention.ms", "-1 (RG_AUDIT_LEGAL_HOLD)")
    ]
    assert await records_in(kafka_bootstrap, dated) == 0
