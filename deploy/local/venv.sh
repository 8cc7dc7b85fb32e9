#!/usr/bin/env bash
# Creates .venv (if missing or stale) and installs callwatch into it. Sourced by run.sh and test.sh.
# Usage: deploy/local/venv.sh [extra]   e.g. "test" installs the test tools too.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
extra=${1:-}
venv="$repo/.venv"
python=${PYTHON:-python3}
if ! command -v "$python" >/dev/null; then
  echo "callwatch: $python not found; install Python 3.11 or newer" >&2; exit 2
fi
"$python" - <<'PY' || { echo "callwatch: Python 3.11 or newer is needed (found $($python --version 2>&1))" >&2; exit 2; }
import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)
PY
stamp="$venv/.installed${extra:+-$extra}"
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
# Reinstall only when the project's requirements changed since the last install.
if [ ! -f "$stamp" ] || [ "$repo/pyproject.toml" -nt "$stamp" ] || [ "$repo/deploy/local/constraints.txt" -nt "$stamp" ]; then
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q -c "$repo/deploy/local/constraints.txt" -e "$repo${extra:+[$extra]}"
  touch "$stamp"
fi
