#!/usr/bin/env bash
# Start Alertmanager on 127.0.0.1 in the background with callwatch's routing (alertmanager.yml) and
# wait until it is ready. Clustering is off (no gossip port). Installs Debian's Alertmanager first
# when missing (deploy/prometheus/install.sh).
#   ALERTMANAGER_PORT (9093), ALERTMANAGER_CONFIG (deploy/alertmanager/alertmanager.yml),
#   CALLWATCH_STATE (var/: data, log and pid file under alertmanager/), ALERTMANAGER_OPTS,
#   CALLWATCH_ALERTMANAGER_WAIT_S (60), CALLWATCH_ALERTMANAGER_MAX_LIFETIME_S (stop by itself after that).
set -euo pipefail
SERVICE_NAME=alertmanager
source "$(dirname "${BASH_SOURCE[0]}")/../prometheus/service.sh"

service_settings ALERTMANAGER 9093 "$CALLWATCH_REPO/deploy/alertmanager/alertmanager.yml"
command -v prometheus-alertmanager >/dev/null 2>&1 || "$CALLWATCH_REPO/deploy/prometheus/install.sh" >&2
# shellcheck disable=SC2086  # ALERTMANAGER_OPTS is a word list
start_service prometheus-alertmanager --config.file="$config" --web.listen-address="127.0.0.1:$port" \
    --storage.path="$state/data" --cluster.listen-address= ${ALERTMANAGER_OPTS:-}
