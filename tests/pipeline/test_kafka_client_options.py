"""Kafka connection options from the settings (streams/kafka/clients.py): TLS and SASL reach the
kafka-python clients, and settings that cannot work are one-line errors before any connection."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.kafka import KafkaConfigError
from streams.kafka.clients import client_options, key_partition
from streams.settings import KafkaSettings


def test_plaintext_by_default_and_never_creating_topics() -> None:
    options = client_options(KafkaSettings(bootstrap_servers="a:9092, b:9092"), "callwatch-test")
    assert options == {"bootstrap_servers": ["a:9092", "b:9092"], "client_id": "callwatch-test",
                       "security_protocol": "PLAINTEXT", "allow_auto_create_topics": False}


def test_sasl_ssl_with_scram_and_a_private_ca() -> None:
    kafka = KafkaSettings(security_protocol="sasl_ssl", sasl_mechanism="scram-sha-512", sasl_username="callwatch",
                          sasl_password="s3cret", ssl_cafile="/etc/ssl/ca.pem", ssl_certfile="/etc/ssl/me.pem",
                          ssl_keyfile="/etc/ssl/me.key")
    options = client_options(kafka, "x")
    assert options["security_protocol"] == "SASL_SSL" and options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "callwatch" and options["sasl_plain_password"] == "s3cret"
    assert (options["ssl_cafile"], options["ssl_certfile"], options["ssl_keyfile"]) == \
        ("/etc/ssl/ca.pem", "/etc/ssl/me.pem", "/etc/ssl/me.key")


def test_tls_files_are_ignored_without_tls() -> None:
    assert "ssl_cafile" not in client_options(KafkaSettings(ssl_cafile="/etc/ssl/ca.pem"), "x")


@pytest.mark.parametrize("kafka, message", [
    (KafkaSettings(security_protocol="TLS"), "kafka.security_protocol must be one of PLAINTEXT, SSL"),
    (KafkaSettings(security_protocol="SASL_SSL", sasl_mechanism="PLAIN", sasl_username="u"),
     "kafka SASL PLAIN needs sasl_username and a password"),
    (KafkaSettings(security_protocol="SASL_SSL", sasl_mechanism="OAUTHBEARER"), "kafka.sasl_mechanism must be one of"),
    (KafkaSettings(sasl_mechanism="PLAIN"), "security_protocol is PLAINTEXT: use SASL_SSL"),
    (KafkaSettings(bootstrap_servers=" , "), "kafka.bootstrap_servers is empty"),
])
def test_settings_that_cannot_work_are_one_line_errors(kafka: KafkaSettings, message: str) -> None:
    with pytest.raises(KafkaConfigError, match=message.replace(".", r"\.")) as raised:
        client_options(kafka, "x")
    assert "\n" not in str(raised.value)


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=80), st.integers(1, 64))
def test_a_key_goes_where_the_clients_default_partitioner_puts_it(key: bytes, partitions: int) -> None:
    from aiokafka.partitioner import DefaultPartitioner

    assert key_partition(key, partitions) == DefaultPartitioner()(key, list(range(partitions)), [])
