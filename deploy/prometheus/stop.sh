#!/usr/bin/env bash
# Stop the Prometheus started by deploy/prometheus/start.sh (same CALLWATCH_STATE).
set -euo pipefail
SERVICE_NAME=prometheus
source "$(dirname "${BASH_SOURCE[0]}")/service.sh"
echo "prometheus: $(stop_daemon "$CALLWATCH_STATE/prometheus/prometheus.pid")"
