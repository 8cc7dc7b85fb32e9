# The one lifetime watchdog of the services callwatch starts for development and tests (Kafka,
# Prometheus, Alertmanager, PostgreSQL, MariaDB), sourced by deploy/kafka/start.sh and
# deploy/prometheus/service.sh: a forgotten service stops by itself after its maximum lifetime.
# shellcheck shell=bash

# watch_lifetime PID_FILE PID LIFETIME_S LOG_FILE [WATCHDOG_PID_FILE [STOP_WAIT_S [NAME]]]
# Starts, in a session of its own (so that a stop script ends it and its sleep together by killing
# its process group), a watchdog that after LIFETIME_S seconds (0: no watchdog) stops PID if
# PID_FILE still names it: SIGTERM, SIGKILL after STOP_WAIT_S (10), a line in LOG_FILE. Its own pid
# goes to WATCHDOG_PID_FILE (PID_FILE.watchdog), removed when it ends; NAME (callwatch-watchdog) is
# its $0, so a status script can tell it from another process that took its pid.
watch_lifetime() {
    local pid_file="$1" pid="$2" lifetime="$3" log="$4"
    local own_pid_file="${5:-$1.watchdog}" stop_wait_s="${6:-10}" name="${7:-callwatch-watchdog}"
    (( lifetime > 0 )) || return 0
    setsid nohup bash -c '
        pid_file=$1 pid=$2 lifetime=$3 log=$4 own_pid_file=$5 stop_wait_s=$6
        trap '\''rm -f "$own_pid_file"'\'' EXIT
        sleep "$lifetime"
        [[ "$(cat "$pid_file" 2>/dev/null)" == "$pid" ]] || exit 0
        echo "[$(date "+%F %T")] callwatch watchdog: maximum lifetime of $lifetime s reached, stopping pid $pid" >>"$log"
        kill -TERM "$pid" 2>/dev/null || exit 0
        for ((i = 0; i < stop_wait_s * 10; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        [[ "$(cat "$pid_file" 2>/dev/null)" == "$pid" ]] && rm -f "$pid_file"
    ' "$name" "$pid_file" "$pid" "$lifetime" "$log" "$own_pid_file" "$stop_wait_s" >/dev/null 2>&1 </dev/null &
    echo "$!" >"$own_pid_file"
    disown -a
}
