#!/usr/bin/env bash
# Start Prometheus on 127.0.0.1 in the background with callwatch's configuration (scrapes
# `callwatch run` on :9108 and the workers, evaluates rules/callwatch.yml, alerts to :9093) and
# wait until it is ready. Installs Debian's Prometheus first when missing (install.sh).
#   PROMETHEUS_PORT (9090), PROMETHEUS_CONFIG (deploy/prometheus/prometheus.yml),
#   CALLWATCH_STATE (var/: data, log and pid file under prometheus/), PROMETHEUS_OPTS (extra flags),
#   CALLWATCH_PROMETHEUS_WAIT_S (60), CALLWATCH_PROMETHEUS_MAX_LIFETIME_S (stop by itself after that).
set -euo pipefail
SERVICE_NAME=prometheus
source "$(dirname "${BASH_SOURCE[0]}")/service.sh"

service_settings PROMETHEUS 9090 "$CALLWATCH_REPO/deploy/prometheus/prometheus.yml"
command -v prometheus >/dev/null 2>&1 || "$CALLWATCH_REPO/deploy/prometheus/install.sh" >&2
# shellcheck disable=SC2086  # PROMETHEUS_OPTS is a word list
start_service prometheus --config.file="$config" --web.listen-address="127.0.0.1:$port" \
    --storage.tsdb.path="$state/data" --web.enable-lifecycle ${PROMETHEUS_OPTS:-}
