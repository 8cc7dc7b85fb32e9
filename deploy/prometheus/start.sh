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

port="${PROMETHEUS_PORT:-9090}"
config="${PROMETHEUS_CONFIG:-$CALLWATCH_REPO/deploy/prometheus/prometheus.yml}"
wait_s="${CALLWATCH_PROMETHEUS_WAIT_S:-60}"
lifetime="${CALLWATCH_PROMETHEUS_MAX_LIFETIME_S:-0}"
whole_number PROMETHEUS_PORT "$port"
whole_number CALLWATCH_PROMETHEUS_WAIT_S "$wait_s"
whole_number CALLWATCH_PROMETHEUS_MAX_LIFETIME_S "$lifetime"
[[ -f "$config" ]] || die "no configuration file at $config (PROMETHEUS_CONFIG)"

state="$CALLWATCH_STATE/prometheus"
mkdir -p "$state/data"
pid_file="$state/prometheus.pid"
pid="$(running_pid "$pid_file")"
if [[ -n "$pid" ]]; then
    echo "prometheus ready at http://127.0.0.1:$port (already running, pid $pid)"
    exit 0
fi
command -v prometheus >/dev/null 2>&1 || "$CALLWATCH_REPO/deploy/prometheus/install.sh" >&2

# shellcheck disable=SC2086  # PROMETHEUS_OPTS is a word list
pid="$(start_daemon "$pid_file" "$state/prometheus.log" "$port" /-/ready "$wait_s" "$lifetime" \
    prometheus --config.file="$config" --web.listen-address="127.0.0.1:$port" \
    --storage.tsdb.path="$state/data" --web.enable-lifecycle ${PROMETHEUS_OPTS:-})"
note=""
if (( lifetime > 0 )); then note=", stops by itself after $lifetime s"; fi
echo "prometheus ready at http://127.0.0.1:$port (pid $pid, config $config$note)"
