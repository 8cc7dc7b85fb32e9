"""The Kafka edge of the distributed pipeline (kafka-python clients): connection options from the
settings, and reading the call-events topic back for `callwatch replay --from-kafka`.

Importing this package loads no Kafka client; the modules that need one import it themselves."""

from __future__ import annotations

from streams.options import UsageError


class KafkaEdgeError(UsageError):
    """Kafka cannot be used as configured; one line for the user (the CLI exits with status 2)."""


class KafkaConfigError(KafkaEdgeError):
    """The Kafka settings (security, topic names) cannot work."""


class KafkaUnavailable(KafkaEdgeError):
    """No broker answered in time."""


class TopicMissing(KafkaEdgeError):
    """A topic callwatch needs does not exist (topics are created explicitly, never by accident)."""
