#!/usr/bin/env bash
# Stop the local broker started by start.sh (SIGTERM, up to 30 s, then SIGKILL). Idempotent.
# Never touches an external Kafka named by CALLWATCH_KAFKA_BOOTSTRAP.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[[ -d "$KAFKA_STATE_DIR" ]] || { echo "kafka not running"; exit 0; }
lock_state
stop_broker
