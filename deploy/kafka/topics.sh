#!/usr/bin/env bash
# Create callwatch's topics (idempotent); see topics.py --help. Runs topics.py with $PYTHON
# (default: the repo's .venv/bin/python if present, else python3).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
command -v "$PYTHON" >/dev/null 2>&1 || die "python not found ($PYTHON); set PYTHON"
exec "$PYTHON" "$KAFKA_DEPLOY_DIR/topics.py" "$@"
