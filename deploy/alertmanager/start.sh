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

port="${ALERTMANAGER_PORT:-9093}"
config="${ALERTMANAGER_CONFIG:-$CALLWATCH_REPO/deploy/alertmanager/alertmanager.yml}"
wait_s="${CALLWATCH_ALERTMANAGER_WAIT_S:-60}"
lifetime="${CALLWATCH_ALERTMANAGER_MAX_LIFETIME_S:-0}"
whole_number ALERTMANAGER_PORT "$port"
whole_number CALLWATCH_ALERTMANAGER_WAIT_S "$wait_s"
whole_number CALLWATCH_ALERTMANAGER_MAX_LIFETIME_S "$lifetime"
[[ -f "$config" ]] || die "no configuration file at $config (ALERTMANAGER_CONFIG)"

state="$CALLWATCH_STATE/alertmanager"
mkdir -p "$state/data"
pid_file="$state/alertmanager.pid"
pid="$(running_pid "$pid_file")"
if [[ -n "$pid" ]]; then
    echo "alertmanager ready at http://127.0.0.1:$port (already running, pid $pid)"
    exit 0
fi
command -v prometheus-alertmanager >/dev/null 2>&1 || "$CALLWATCH_REPO/deploy/prometheus/install.sh" >&2

# shellcheck disable=SC2086  # ALERTMANAGER_OPTS is a word list
pid="$(start_daemon "$pid_file" "$state/alertmanager.log" "$port" /-/ready "$wait_s" "$lifetime" \
    prometheus-alertmanager --config.file="$config" --web.listen-address="127.0.0.1:$port" \
    --storage.path="$state/data" --cluster.listen-address= ${ALERTMANAGER_OPTS:-})"
note=""
if (( lifetime > 0 )); then note=", stops by itself after $lifetime s"; fi
echo "alertmanager ready at http://127.0.0.1:$port (pid $pid, config $config$note)"
