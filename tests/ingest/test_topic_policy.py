"""Which topics POST /publish may write (unit, no broker)."""

import pytest

from app.errors import TopicNotAllowedError
from app.ingest.topic_policy import TopicPolicy

OWN = ["audit", "audit.checkpoints"]
INFRASTRUCTURE = [
    "__consumer_offsets",
    "__transaction_state",
    "__x",
    "_schemas",
    "_confluent-metrics",
    "_anything",
    "connect-configs",
    "connect-offsets",
    "connect-status",
    "mm2-offset-syncs.a.internal",
    "mm2-configs.a.internal",
]


@pytest.mark.parametrize("topic", [*OWN, *INFRASTRUCTURE])
def test_own_and_infrastructure_topics_are_never_allowed(topic: str) -> None:
    for allow in ([], ["*"], [topic], ["_*", "connect-*", "mm2-*", "audit*"]):
        with pytest.raises(TopicNotAllowedError):
            TopicPolicy(allow=allow, own=OWN).check(topic)


def test_the_service_s_own_topics_are_named_as_such() -> None:
    with pytest.raises(TopicNotAllowedError, match="POST /audit"):
        TopicPolicy(allow=["*"], own=OWN).check("audit")
    with pytest.raises(TopicNotAllowedError, match="the service's own"):
        TopicPolicy(allow=["*"], own=OWN).check("audit.checkpoints")


def test_without_an_allow_list_no_topic_is_allowed_and_the_error_names_the_setting() -> None:
    # Fail closed: a deny-list of infrastructure names is never complete (Kafka Streams'
    # changelogs, connectors' own topics), and any name sent would be auto-created.
    with pytest.raises(TopicNotAllowedError, match="RG_PUBLISH_TOPICS is not set"):
        TopicPolicy(allow=[], own=OWN).check("events.orders")


def test_the_allow_list_takes_names_and_glob_patterns() -> None:
    policy = TopicPolicy(allow=["events.*", "exact"], own=OWN)
    policy.check("events.orders")
    policy.check("exact")
    for topic in ("exactly", "other", "EVENTS.orders"):
        with pytest.raises(TopicNotAllowedError, match="RG_PUBLISH_TOPICS"):
            policy.check(topic)
