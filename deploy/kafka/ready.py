"""Wait until a Kafka broker answers metadata requests (used by start.sh).

usage: ready.py BOOTSTRAP TIMEOUT_S [PID]
exit 0 ready, 1 timed out, 2 process PID died, 3 kafka-python is not installed.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time


def alive(pid: int | None) -> bool:
    if pid is None:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def port_open(bootstrap: str) -> bool:
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=1):
            return True
    except OSError:
        return False


def main() -> int:
    bootstrap, timeout_s = sys.argv[1], float(sys.argv[2])
    pid = int(sys.argv[3]) if len(sys.argv) > 3 else None
    try:
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaConfigurationError, KafkaError
    except ImportError:
        return 3
    logging.getLogger("kafka").addHandler(logging.NullHandler())
    logging.getLogger("kafka").propagate = False
    deadline = time.monotonic() + timeout_s
    while True:
        if not alive(pid):
            return 2
        # Cheap TCP probe first: the admin client would otherwise block for its whole bootstrap timeout.
        if port_open(bootstrap):
            remaining_ms = max(1000, int((deadline - time.monotonic()) * 1000))
            options = {"request_timeout_ms": min(5000, remaining_ms), "reconnect_backoff_max_ms": 500}
            if "bootstrap_timeout_ms" in KafkaAdminClient.DEFAULT_CONFIG:  # kafka-python >= 2.1
                options["bootstrap_timeout_ms"] = min(5000, remaining_ms)
            try:
                admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="callwatch-ready", **options)
                try:
                    admin.list_topics()
                    if admin.describe_cluster().get("brokers"):
                        return 0
                finally:
                    admin.close()
            except KafkaConfigurationError:
                raise
            except (KafkaError, OSError, ValueError):
                pass
        if time.monotonic() >= deadline:
            return 1
        time.sleep(0.2)


if __name__ == "__main__":
    sys.exit(main())
