#!/usr/bin/env python3
"""Create callwatch's Kafka topics explicitly and idempotently (standalone: needs only kafka-python >= 3).

Missing topics are created with their partitions and configs; existing topics get their declared
configs (retention, cleanup policy) set if they drifted; a partition count that differs is reported
but never changed (adding partitions remaps keys, i.e. calls, to other partitions).

Environment (all optional): CALLWATCH_KAFKA_BOOTSTRAP (default 127.0.0.1:19092),
CALLWATCH_KAFKA_TOPIC_PREFIX or CALLWATCH_TOPIC_PREFIX (default "callwatch."),
CALLWATCH_TOPIC_REPLICATION_FACTOR (default -1: the broker's default.replication.factor),
CALLWATCH_KAFKA_SECURITY_PROTOCOL, CALLWATCH_KAFKA_SASL_MECHANISM, CALLWATCH_KAFKA_SASL_USERNAME,
CALLWATCH_KAFKA_SASL_PASSWORD or CALLWATCH_KAFKA_SASL_PASSWORD_FILE, CALLWATCH_KAFKA_SSL_CAFILE,
CALLWATCH_KAFKA_SSL_CERTFILE, CALLWATCH_KAFKA_SSL_KEYFILE.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import dataclass, field
from typing import Any

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    name: str  # without the prefix
    partitions: int
    configs: dict[str, str] = field(default_factory=dict)
    purpose: str = ""


TOPICS = (
    TopicSpec("events", 6, {"cleanup.policy": "delete", "retention.ms": str(7 * DAY_MS)},
              "canonical call events, key = site"),
    # Compacted: the latest value per figure key is kept. Hourly segments so compaction can run.
    TopicSpec("figures", 6, {"cleanup.policy": "compact", "segment.ms": str(3600 * 1000)},
              "latest figures, compacted, key = figure key"),
    TopicSpec("deadletter", 1, {"cleanup.policy": "delete", "retention.ms": str(30 * DAY_MS)},
              "rejected events with their reason"),
)


def _partitions(count: int) -> str:
    return f"{count} partition{'' if count == 1 else 's'}"


class TopicsError(Exception):
    """A one-line, user-facing failure."""


def _env(*names: str, default: str | None = None) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return default


def client_options(bootstrap: str) -> dict[str, Any]:
    options: dict[str, Any] = {"bootstrap_servers": bootstrap, "client_id": "callwatch-topics",
                               "request_timeout_ms": 30000, "bootstrap_timeout_ms": 15000}
    mapping = {
        "security_protocol": "CALLWATCH_KAFKA_SECURITY_PROTOCOL",
        "sasl_mechanism": "CALLWATCH_KAFKA_SASL_MECHANISM",
        "sasl_plain_username": "CALLWATCH_KAFKA_SASL_USERNAME",
        "ssl_cafile": "CALLWATCH_KAFKA_SSL_CAFILE",
        "ssl_certfile": "CALLWATCH_KAFKA_SSL_CERTFILE",
        "ssl_keyfile": "CALLWATCH_KAFKA_SSL_KEYFILE",
    }
    for option, variable in mapping.items():
        value = _env(variable)
        if value:
            options[option] = value
    password = _env("CALLWATCH_KAFKA_SASL_PASSWORD")
    password_file = _env("CALLWATCH_KAFKA_SASL_PASSWORD_FILE")
    if not password and password_file:
        try:
            with open(password_file, encoding="utf-8") as handle:
                password = handle.read().strip()
        except OSError as error:
            raise TopicsError(f"cannot read CALLWATCH_KAFKA_SASL_PASSWORD_FILE {password_file}: {error.strerror}") from None
    if password:
        options["sasl_plain_password"] = password
    return options


def ensure_topics(admin: Any, prefix: str, replication_factor: int, check_only: bool = False,
                  specs: tuple[TopicSpec, ...] = TOPICS) -> list[str]:
    """Create or align the topics; returns the problems found (with check_only: what would change)."""
    from kafka.admin import ConfigResource, ConfigResourceType
    from kafka.errors import TopicAlreadyExistsError

    problems: list[str] = []
    existing = set(admin.list_topics())
    missing = [spec for spec in specs if prefix + spec.name not in existing]
    present = [spec for spec in specs if prefix + spec.name in existing]

    for spec in missing:
        name = prefix + spec.name
        if check_only:
            problems.append(f"{name}: missing")
            print(f"missing  {name}")
            continue
        try:
            admin.create_topics({name: {"num_partitions": spec.partitions,
                                        "replication_factor": replication_factor,
                                        "configs": spec.configs}}, timeout_ms=30000)
        except TopicAlreadyExistsError:  # created concurrently: align it below like any existing topic
            present.append(spec)
            continue
        settings = ", ".join(f"{k}={v}" for k, v in spec.configs.items())
        print(f"created  {name} ({_partitions(spec.partitions)}, {settings})")

    if not present:
        return problems
    described = {t["topic"] if "topic" in t else t["name"]: t for t in admin.describe_topics([prefix + s.name for s in present])}
    resources = [ConfigResource(ConfigResourceType.TOPIC, prefix + spec.name) for spec in present]
    current = admin.describe_configs(resources, config_filter="all").get("topic", {})
    for spec in present:
        name = prefix + spec.name
        partitions = len(described.get(name, {}).get("partitions") or [])
        if partitions != spec.partitions:
            message = f"{name}: has {partitions} partitions, declared {spec.partitions} (not changed: adding partitions remaps keys)"
            problems.append(message)
            print(f"warning  {message}", file=sys.stderr)
        values = {key: (entry.get("value") if isinstance(entry, dict) else entry)
                  for key, entry in current.get(name, {}).items()}
        drift = {key: value for key, value in spec.configs.items() if values.get(key) != value}
        if not drift:
            print(f"ok       {name}")
            continue
        changes = ", ".join(f"{k}: {values.get(k)} -> {v}" for k, v in drift.items())
        if check_only:
            problems.append(f"{name}: config differs ({changes})")
            print(f"differs  {name} ({changes})")
            continue
        result = admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name, dict(drift))])
        outcome = result.get("topic", {}).get(name, "OK")
        if outcome != "OK":
            raise TopicsError(f"cannot update the config of {name}: {outcome}")
        print(f"updated  {name} ({changes})")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Create callwatch's Kafka topics (idempotent).")
    parser.add_argument("--bootstrap", default=_env("CALLWATCH_KAFKA_BOOTSTRAP", default="127.0.0.1:19092"),
                        help="bootstrap servers (env CALLWATCH_KAFKA_BOOTSTRAP; default %(default)s)")
    parser.add_argument("--prefix", default=_env("CALLWATCH_KAFKA_TOPIC_PREFIX", "CALLWATCH_TOPIC_PREFIX", default="callwatch."),
                        help="topic name prefix (env CALLWATCH_KAFKA_TOPIC_PREFIX or CALLWATCH_TOPIC_PREFIX; default %(default)s)")
    parser.add_argument("--replication-factor", type=int,
                        default=int(_env("CALLWATCH_TOPIC_REPLICATION_FACTOR", default="-1") or -1),
                        help="replicas per partition; -1 = the broker's default.replication.factor "
                             "(env CALLWATCH_TOPIC_REPLICATION_FACTOR; default %(default)s)")
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 if a topic is missing or differs from its declaration")
    parser.add_argument("--list", action="store_true", help="print the declared topics and exit")
    args = parser.parse_args(argv)

    if args.list:
        for spec in TOPICS:
            settings = ", ".join(f"{k}={v}" for k, v in spec.configs.items())
            print(f"{args.prefix}{spec.name}\t{_partitions(spec.partitions)}\t{settings}\t{spec.purpose}")
        return 0
    if args.replication_factor == 0 or args.replication_factor < -1:
        parser.error("--replication-factor must be -1 or a positive number")

    try:
        import kafka
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError
    except ImportError:
        print("topics: error: kafka-python is not installed (pip install 'kafka-python>=3')", file=sys.stderr)
        return 1
    if int(kafka.__version__.split(".")[0]) < 3:
        print(f"topics: error: needs kafka-python >= 3, found {kafka.__version__}", file=sys.stderr)
        return 1
    logging.getLogger("kafka").addHandler(logging.NullHandler())
    logging.getLogger("kafka").propagate = False

    try:
        try:
            admin = KafkaAdminClient(**client_options(args.bootstrap))
        except KafkaError as error:
            raise TopicsError(f"cannot reach Kafka at {args.bootstrap} ({type(error).__name__}); "
                              "is it running (deploy/kafka/start.sh) or is CALLWATCH_KAFKA_BOOTSTRAP right?") from None
        try:
            problems = ensure_topics(admin, args.prefix, args.replication_factor, check_only=args.check)
        except KafkaError as error:
            raise TopicsError(f"{type(error).__name__}: {error}") from None
        finally:
            admin.close()
    except TopicsError as error:
        print(f"topics: error: {error}", file=sys.stderr)
        return 1
    return 1 if args.check and problems else 0


if __name__ == "__main__":
    sys.exit(main())
