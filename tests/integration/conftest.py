"""Shared fixtures of the integration tests: ONE Kafka broker per session (deploy/kafka/start.sh,
or an existing Kafka named by CALLWATCH_KAFKA_BOOTSTRAP), topics under a unique prefix per test, and
one private broker for the tests that stop a broker."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from typing import Iterator

import pytest

from .kafka_helpers import KAFKA_DIR, PrivateBroker, create_topics, delete_topics, unique_prefix

# kafka-python 3 loads its protocol schemas with a deprecated importlib.resources API.
warnings.filterwarnings("ignore", "read_text is deprecated", DeprecationWarning)
warnings.filterwarnings("ignore", "open_text is deprecated", DeprecationWarning)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap servers of a running Kafka: an external one (CALLWATCH_KAFKA_BOOTSTRAP) or the local
    broker of deploy/kafka/start.sh. A broker started here is stopped at the end of the session unless
    CALLWATCH_KAFKA_KEEP=1; its watchdog stops it anyway after CALLWATCH_KAFKA_MAX_LIFETIME_S."""
    env = dict(os.environ)
    env.setdefault("CALLWATCH_KAFKA_MAX_LIFETIME_S", "1800")
    env.setdefault("PYTHON", sys.executable)
    start = subprocess.run([str(KAFKA_DIR / "start.sh")], env=env, capture_output=True, text=True, timeout=900)
    if start.returncode != 0:
        pytest.fail(f"deploy/kafka/start.sh failed (exit {start.returncode}):\n{start.stdout}{start.stderr}")
    ready = start.stdout.strip().splitlines()[-1]
    assert ready.startswith("kafka ready at "), ready
    external = env.get("CALLWATCH_KAFKA_BOOTSTRAP")
    started_here = not external and "already running" not in ready
    yield external or f"127.0.0.1:{env.get('KAFKA_PORT', '19092')}"
    if started_here and env.get("CALLWATCH_KAFKA_KEEP") != "1":
        subprocess.run([str(KAFKA_DIR / "stop.sh")], env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def kafka_prefix(kafka_bootstrap: str) -> Iterator[str]:
    """callwatch's topics (deploy/kafka/topics.py) under a prefix of this test's own; deleted after."""
    prefix = unique_prefix()
    create_topics(kafka_bootstrap, prefix)
    yield prefix
    delete_topics(kafka_bootstrap, prefix)


@pytest.fixture(scope="session")
def _private_broker_of_the_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateBroker]:
    # No skip without Java: deploy/kafka/start.sh installs it, or fails saying why (as kafka_bootstrap).
    broker = PrivateBroker(tmp_path_factory.mktemp("kafka-private"))
    yield broker
    broker.remove()


@pytest.fixture
def private_broker(_private_broker_of_the_session: PrivateBroker) -> PrivateBroker:
    """A broker of our own (other ports, other state) that a test may stop and start; the session's
    shared broker is left alone. Started once for every test that needs one (start.sh does nothing
    when it runs): a test may leave it stopped, the next one starts it again."""
    _private_broker_of_the_session.start()
    return _private_broker_of_the_session
