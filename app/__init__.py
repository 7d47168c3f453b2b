"""ractogateway-kafka: an audit-trail sidecar writing AI prompts and responses to Apache Kafka."""

__version__ = "0.2.0"
