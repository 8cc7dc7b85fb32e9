#!/usr/bin/env bash
# The whole test suite on a fresh machine: set up .venv, then pytest. The suite itself starts the
# real services it needs on 127.0.0.1 (Kafka, Prometheus, Alertmanager) through deploy/*/ scripts,
# installing them first when missing. Extra arguments go to pytest.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
"$repo/deploy/local/venv.sh" test
# The wallboard's browser tests need Debian's chromium (the suite fails without it when CI=true).
"$repo/deploy/local/chromium.sh" || [ "${CI:-}" != "true" ]
status=0
"$repo/.venv/bin/python" -m pytest "$@" || status=$?
if [ "$status" -eq 5 ]; then
  echo "callwatch: pytest collected no tests" >&2
fi
exit "$status"
