#!/usr/bin/env bash
# Stop the Alertmanager started by deploy/alertmanager/start.sh (same CALLWATCH_STATE).
set -euo pipefail
SERVICE_NAME=alertmanager
source "$(dirname "${BASH_SOURCE[0]}")/../prometheus/service.sh"
echo "alertmanager: $(stop_daemon "$CALLWATCH_STATE/alertmanager/alertmanager.pid")"
