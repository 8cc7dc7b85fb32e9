#!/usr/bin/env bash
# Stop the local broker and delete its state (data, logs, config): the next start.sh formats afresh.
# The fetched jars (the cache) are kept.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[[ -d "$KAFKA_STATE_DIR" ]] || { echo "kafka state already absent"; exit 0; }
lock_state
stop_broker
find "$KAFKA_STATE_DIR" -mindepth 1 -maxdepth 1 ! -name .lock -exec rm -rf {} +
echo "kafka state deleted ($KAFKA_STATE_DIR)"
