"""Which topics `POST /publish` may write: an allow-list, never the audit topic or Kafka's own."""

import fnmatch

from app.errors import TopicNotAllowedError


class TopicPolicy:
    """`allow` holds topic names or glob patterns (`events.*`); empty allows any topic except
    the audit topic (audit records only enter through `/audit`, so they keep their digest and
    headers) and internal topics (`__consumer_offsets` and the like)."""

    def __init__(self, *, allow: list[str], audit_topic: str) -> None:
        self._allow = list(allow)
        self._audit_topic = audit_topic

    def check(self, topic: str) -> None:
        """Raise `TopicNotAllowedError` (403 `topic_not_allowed`) unless `/publish` may
        write `topic`."""
        if topic == self._audit_topic:
            raise TopicNotAllowedError(
                f"{topic!r} is the audit topic: audit records are written through POST /audit"
            )
        if topic.startswith("__"):
            raise TopicNotAllowedError(f"{topic!r} is an internal topic")
        if self._allow and not any(fnmatch.fnmatchcase(topic, p) for p in self._allow):
            raise TopicNotAllowedError(f"{topic!r} is not in RG_PUBLISH_TOPICS")
