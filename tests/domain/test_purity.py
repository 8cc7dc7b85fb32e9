"""The domain is pure (STYLE.md): importing it loads no Faust, Kafka, asyncio, HTTP, metrics or
socket module, and it is mypy --strict clean."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN_PREFIXES = ("faust", "kafka", "aiokafka", "asyncio", "aiohttp", "prometheus_client", "mode",
                      "yaml", "grafana_client", "socket", "ssl", "http", "urllib3", "requests")


def test_importing_the_domain_loads_no_io_or_framework_module() -> None:
    probe = ("import json, sys; import streams.domain; "
             "print(json.dumps(sorted(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True,
                          check=True)
    loaded = json.loads(done.stdout)
    offending = [name for name in loaded
                 if any(name == prefix or name.startswith(prefix + ".") for prefix in FORBIDDEN_PREFIXES)]
    assert offending == []
    assert "streams.domain.flow" in loaded  # the probe did import the whole package


def test_the_domain_is_mypy_strict_clean() -> None:
    pytest.importorskip("mypy", reason="mypy is a test dependency (pip install -e '.[test]')")
    done = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-error-summary",
                           "streams/domain"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
