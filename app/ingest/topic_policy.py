"""Which topics `POST /publish` may write: an allow-list, never the service's own topics or
the cluster's infrastructure topics.

Unset RG_PUBLISH_TOPICS means no topic: a deny-list of infrastructure names is never
complete (Kafka Streams changelogs, connectors' own topics, each tool's), and a broker that
auto-creates topics would create any name a client sends. The operator names what /publish
is for, which also bounds the topics a client can make the broker create."""

import fnmatch

from app.errors import TopicNotAllowedError

# Topics that other Kafka components rebuild their state from: one record there can poison a
# Schema Registry (`_schemas`), configure a Kafka Connect worker (`connect-configs`) or move
# MirrorMaker's offsets. Refused even when a pattern of the allow-list matches them.
_INFRASTRUCTURE_PREFIXES = ("_", "mm2-")
_INFRASTRUCTURE_NAMES = frozenset({"connect-configs", "connect-offsets", "connect-status"})


class TopicPolicy:
    """`allow` holds topic names or glob patterns (`events.*`); empty allows no topic.
    `own` are the service's topics (the audit topic first, then its checkpoints): records
    there only come from the service itself, so they keep their digest, chain and signature."""

    def __init__(self, *, allow: list[str], own: list[str]) -> None:
        self._allow = list(allow)
        self._own = list(own)

    def check(self, topic: str) -> None:
        """Raise `TopicNotAllowedError` (403 `topic_not_allowed`) unless `/publish` may
        write `topic`."""
        if self._own and topic == self._own[0]:
            raise TopicNotAllowedError(
                f"{topic!r} is the audit topic: audit records are written through POST /audit"
            )
        if topic in self._own:
            raise TopicNotAllowedError(f"{topic!r} is one of the service's own topics")
        if topic.startswith(_INFRASTRUCTURE_PREFIXES) or topic in _INFRASTRUCTURE_NAMES:
            raise TopicNotAllowedError(f"{topic!r} is an internal or infrastructure topic")
        if not self._allow:
            raise TopicNotAllowedError(
                f"{topic!r} is not allowed: RG_PUBLISH_TOPICS is not set, so POST /publish "
                "writes no topic"
            )
        if not any(fnmatch.fnmatchcase(topic, p) for p in self._allow):
            raise TopicNotAllowedError(f"{topic!r} is not in RG_PUBLISH_TOPICS")
