"""Which topics POST /publish may write (unit, no broker)."""

import pytest

from app.errors import TopicNotAllowedError
from app.ingest.topic_policy import TopicPolicy


@pytest.mark.parametrize("topic", ["audit", "__consumer_offsets", "__transaction_state", "__x"])
def test_the_audit_topic_and_internal_topics_are_never_allowed(topic: str) -> None:
    for allow in ([], ["*"], [topic]):
        with pytest.raises(TopicNotAllowedError):
            TopicPolicy(allow=allow, audit_topic="audit").check(topic)


def test_without_an_allow_list_any_other_topic_is_allowed() -> None:
    TopicPolicy(allow=[], audit_topic="audit").check("events.orders")


def test_the_allow_list_takes_names_and_glob_patterns() -> None:
    policy = TopicPolicy(allow=["events.*", "exact"], audit_topic="audit")
    policy.check("events.orders")
    policy.check("exact")
    for topic in ("exactly", "other", "EVENTS.orders"):
        with pytest.raises(TopicNotAllowedError, match="RG_PUBLISH_TOPICS"):
            policy.check(topic)
