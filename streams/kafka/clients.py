"""Kafka client options from KafkaSettings (bootstrap, TLS, SASL), for kafka-python, aiokafka and
Faust alike, and the start-up checks every client does: a broker answers, the topics exist."""

from __future__ import annotations

import struct
from typing import Any, Final, Iterable

from streams.settings import KafkaSettings

from . import KafkaConfigError, KafkaUnavailable, TopicMissing

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
# Mechanisms that authenticate with the username and password of the settings.
PASSWORD_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def client_options(kafka: KafkaSettings, client_id: str) -> dict[str, Any]:
    """Options shared by every kafka-python client (producer, consumer, admin)."""
    protocol = kafka.security_protocol.upper()
    if protocol not in SECURITY_PROTOCOLS:
        raise KafkaConfigError(f"kafka.security_protocol must be one of {', '.join(SECURITY_PROTOCOLS)}, "
                               f"not {kafka.security_protocol!r}")
    servers = [server.strip() for server in kafka.bootstrap_servers.split(",") if server.strip()]
    if not servers:
        raise KafkaConfigError("kafka.bootstrap_servers is empty: give host:port[,host:port...]")
    options: dict[str, Any] = {"bootstrap_servers": servers,
                               "client_id": client_id, "security_protocol": protocol,
                               # A misspelt topic must fail, not be created with one partition.
                               "allow_auto_create_topics": False}
    if protocol.startswith("SASL_"):
        mechanism = (kafka.sasl_mechanism or "").upper()
        if mechanism in PASSWORD_MECHANISMS:
            if not kafka.sasl_username or kafka.sasl_password is None:
                raise KafkaConfigError(f"kafka SASL {mechanism} needs sasl_username and a password "
                                       "(CALLWATCH_KAFKA_SASL_PASSWORD or sasl_password_file)")
            options.update(sasl_mechanism=mechanism, sasl_plain_username=kafka.sasl_username,
                           sasl_plain_password=kafka.sasl_password)
        elif mechanism == "GSSAPI":
            options["sasl_mechanism"] = mechanism
        else:
            raise KafkaConfigError(f"kafka.sasl_mechanism must be one of {', '.join((*PASSWORD_MECHANISMS, 'GSSAPI'))} "
                                   f"with security_protocol {protocol}, not {kafka.sasl_mechanism!r}")
    elif kafka.sasl_mechanism:
        raise KafkaConfigError(f"kafka.sasl_mechanism is set but security_protocol is {protocol}: "
                               "use SASL_SSL (or SASL_PLAINTEXT)")
    if protocol in ("SSL", "SASL_SSL"):
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            value = getattr(kafka, name)
            if value:
                options[name] = value
    return options


def await_broker(consumer: Any, bootstrap: str, wait_s: float) -> None:
    """Block until the client has cluster metadata, or raise KafkaUnavailable."""
    from kafka.errors import KafkaError

    try:
        consumer.bootstrap(timeout_ms=int(wait_s * 1000))
    except KafkaError as error:
        raise KafkaUnavailable(f"no Kafka broker answered at {bootstrap} within {wait_s:g} s "
                               f"({type(error).__name__}); is it running (deploy/kafka/start.sh) "
                               "and is CALLWATCH_KAFKA_BOOTSTRAP right?") from None


def require_topics(consumer: Any, names: Iterable[str], bootstrap: str) -> dict[str, set[int]]:
    """The partitions of each topic, fetched afresh; TopicMissing names the first one absent."""
    partitions: dict[str, set[int]] = {}
    for name in names:
        found = consumer.partitions_for_topic(name)
        if not found:
            raise TopicMissing(f"topic {name} does not exist at {bootstrap}: create the topics with "
                               "deploy/kafka/topics.sh (same CALLWATCH_KAFKA_TOPIC_PREFIX)")
        partitions[name] = set(found)
    return partitions


def open_metadata_client(kafka: KafkaSettings, client_id: str, wait_s: float, **consumer_options: Any) -> Any:
    """A group-less KafkaConsumer whose broker answered: for metadata, offsets and manual reads."""
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError

    options = client_options(kafka, client_id)
    try:
        consumer = KafkaConsumer(**options, group_id=None, enable_auto_commit=False,
                                 bootstrap_timeout_ms=int(wait_s * 1000), **consumer_options)
    except KafkaError as error:
        raise KafkaUnavailable(f"no Kafka broker answered at {kafka.bootstrap_servers} within {wait_s:g} s "
                               f"({type(error).__name__}); is it running (deploy/kafka/start.sh) "
                               "and is CALLWATCH_KAFKA_BOOTSTRAP right?") from None
    try:
        await_broker(consumer, kafka.bootstrap_servers, wait_s)
    except BaseException:
        consumer.close()
        raise
    return consumer


def aiokafka_options(kafka: KafkaSettings, client_id: str) -> dict[str, Any]:
    """The same options for aiokafka (the worker's client, as Faust's): TLS as an SSL context."""
    options = client_options(kafka, client_id)
    del options["allow_auto_create_topics"]  # aiokafka consumers never create topics; producers have no such option
    files = {name: options.pop(name, None) for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile")}
    if options["security_protocol"] in ("SSL", "SASL_SSL"):
        from aiokafka.helpers import create_ssl_context

        options["ssl_context"] = create_ssl_context(cafile=files["ssl_cafile"], certfile=files["ssl_certfile"],
                                                    keyfile=files["ssl_keyfile"])
    return options


def faust_broker(kafka: KafkaSettings) -> tuple[list[str], Any]:
    """The same settings for Faust: its broker URLs and credentials."""
    import faust

    options = aiokafka_options(kafka, "callwatch-worker")
    urls = [f"kafka://{server}" for server in options["bootstrap_servers"]]
    protocol = options["security_protocol"]
    credentials: Any = None
    if protocol.startswith("SASL_"):
        credentials = faust.SASLCredentials(username=kafka.sasl_username, password=kafka.sasl_password,
                                            ssl_context=options.get("ssl_context"),
                                            mechanism=options["sasl_mechanism"])
    elif protocol == "SSL":
        credentials = faust.SSLCredentials(options["ssl_context"])
    return urls, credentials


def site_partition(site: str, partitions: int) -> int:
    """The events partition of a site: the partition Kafka's default partitioner gives the key `site`."""
    return key_partition(site.encode("utf-8"), partitions)


_M: Final = 0x5BD1E995


def key_partition(key: bytes, partitions: int) -> int:
    """The partition the Java client's default partitioner (as kafka-python's and aiokafka's) gives
    `key`: murmur2 of its bytes. Their pure-Python murmur2 goes a byte at a time; this, a word at a
    time, costs half as much (it is computed for every interval row the worker sends)."""
    length = len(key)
    h = 0x9747B28C ^ length
    for k in struct.unpack_from(f"<{length >> 2}I", key):
        k = (k * _M) & 0xFFFFFFFF
        h = ((h * _M) & 0xFFFFFFFF) ^ (((k ^ (k >> 24)) * _M) & 0xFFFFFFFF)
    if length & 3:
        h = ((h ^ int.from_bytes(key[length & ~3:], "little")) * _M) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * _M) & 0xFFFFFFFF
    return ((h ^ (h >> 15)) & 0x7FFFFFFF) % partitions
