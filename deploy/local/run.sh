#!/usr/bin/env bash
# The main job on a fresh machine: set up .venv and run the embedded pipeline fed by the simulator.
# Its first line is the wallboard's address (http://127.0.0.1:9108/; metrics at /metrics there);
# Ctrl-C stops it. Extra arguments go to `callwatch run`.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
"$repo/deploy/local/venv.sh"
exec "$repo/.venv/bin/callwatch" run "$@"
