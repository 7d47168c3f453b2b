"""The one error the embedded broker raises: every message is a single line a person can act on."""


class EmbeddedKafkaError(RuntimeError):
    """The embedded Apache Kafka could not be installed, started or stopped."""
