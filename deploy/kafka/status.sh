#!/usr/bin/env bash
# Say whether the local broker runs; exit 0 if it does, 3 if not.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

pid="$(broker_pid)"
if [[ -z "$pid" ]]; then
    echo "kafka not running (state $KAFKA_STATE_DIR)"
    exit 3
fi
wpid="$(watchdog_pid)"
answers=no
port_open 127.0.0.1 "$KAFKA_PORT" && answers=yes
echo "kafka running: pid $pid, 127.0.0.1:$KAFKA_PORT answers: $answers, lifetime watchdog: ${wpid:-none}, log $KAFKA_SERVER_LOG"
