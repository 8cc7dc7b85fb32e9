# Shared helpers for deploy/prometheus/*.sh, deploy/alertmanager/*.sh and deploy/local/database.sh (sourced): start a
# daemon on 127.0.0.1 in the background with a pid file, wait until it is ready, give it an optional
# watchdog that stops it after a maximum lifetime, and stop it again.
# shellcheck shell=bash

CALLWATCH_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CALLWATCH_STATE="${CALLWATCH_STATE:-$CALLWATCH_REPO/var}"
# watch_lifetime: the watchdog every service shares (its pid in PID_FILE.watchdog).
source "$CALLWATCH_REPO/deploy/local/lifetime.sh"

die() {
    echo "${SERVICE_NAME:-service}: error: $*" >&2
    exit 1
}

whole_number() {  # NAME VALUE: die unless VALUE is a whole number
    [[ "$2" =~ ^[0-9]+$ ]] || die "$1 must be a whole number, not '$2'"
}

port_open() {
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

# HTTP status of GET http://127.0.0.1:PORT/PATH (000 when nothing answers), without curl.
http_status() {
    local port="$1" path="$2" line=""
    {
        exec 3<>"/dev/tcp/127.0.0.1/$port" || return 1
        printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$path" >&3
        IFS= read -r -t 5 line <&3 || true
        exec 3>&-
    } 2>/dev/null
    line="${line#HTTP/* }"
    echo "${line%% *}"
}

running_pid() {  # PID_FILE: the pid in it when that process is alive
    local pid
    pid="$(cat "$1" 2>/dev/null || true)"
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then echo "$pid"; fi
}

# start_daemon PID_FILE LOG_FILE PORT READY_PATH WAIT_S LIFETIME_S COMMAND...
# Starts COMMAND in its own session, waits until GET READY_PATH answers 200, then (LIFETIME_S > 0)
# starts a watchdog that stops it after LIFETIME_S seconds. Prints the pid.
start_daemon() {
    local pid_file="$1" log="$2" port="$3" ready_path="$4" wait_s="$5" lifetime="$6"
    shift 6
    local pid deadline
    if port_open 127.0.0.1 "$port"; then
        die "port $port on 127.0.0.1 is already in use by another process"
    fi
    setsid nohup "$@" >>"$log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$pid_file"
    deadline=$((SECONDS + wait_s))
    until [[ "$(http_status "$port" "$ready_path")" == "200" ]]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$pid_file"
            tail -n 20 "$log" >&2
            die "exited during start-up; see $log"
        fi
        if (( SECONDS >= deadline )); then
            stop_daemon "$pid_file" >/dev/null
            tail -n 20 "$log" >&2
            die "did not answer on 127.0.0.1:$port within $wait_s s (stopped it); see $log"
        fi
        sleep 0.2
    done
    watch_lifetime "$pid_file" "$pid" "$lifetime" "$log"
    echo "$pid"
}

# service_settings VAR DEFAULT_PORT DEFAULT_CONFIG: the settings of the daemon named SERVICE_NAME
# from VAR_PORT, VAR_CONFIG, CALLWATCH_VAR_WAIT_S (60) and CALLWATCH_VAR_MAX_LIFETIME_S (0: none),
# checked, into port, config, wait_s, lifetime; its data, log and pid file under state. Exits (0)
# saying so when it is already running.
service_settings() {
    local var="$1" running
    local port_var="${var}_PORT" config_var="${var}_CONFIG" wait_var="CALLWATCH_${var}_WAIT_S"
    local lifetime_var="CALLWATCH_${var}_MAX_LIFETIME_S"
    port="${!port_var:-$2}"
    config="${!config_var:-$3}"
    wait_s="${!wait_var:-60}"
    lifetime="${!lifetime_var:-0}"
    whole_number "${var}_PORT" "$port"
    whole_number "CALLWATCH_${var}_WAIT_S" "$wait_s"
    whole_number "CALLWATCH_${var}_MAX_LIFETIME_S" "$lifetime"
    [[ -f "$config" ]] || die "no configuration file at $config (${var}_CONFIG)"
    state="$CALLWATCH_STATE/$SERVICE_NAME"
    mkdir -p "$state/data"
    running="$(running_pid "$state/$SERVICE_NAME.pid")"
    if [[ -n "$running" ]]; then
        echo "$SERVICE_NAME ready at http://127.0.0.1:$port (already running, pid $running)"
        exit 0
    fi
}

# start_service COMMAND...: start_daemon with service_settings' values (ready at GET /-/ready), then
# the one line saying where it listens.
start_service() {
    local pid note=""
    pid="$(start_daemon "$state/$SERVICE_NAME.pid" "$state/$SERVICE_NAME.log" "$port" /-/ready "$wait_s" \
        "$lifetime" "$@")"
    if (( lifetime > 0 )); then note=", stops by itself after $lifetime s"; fi
    echo "$SERVICE_NAME ready at http://127.0.0.1:$port (pid $pid, config $config$note)"
}

# stop_daemon PID_FILE: SIGTERM, then SIGKILL after 10 s; stops its watchdog too.
stop_daemon() {
    local pid_file="$1" pid watchdog
    watchdog="$(cat "$pid_file.watchdog" 2>/dev/null || true)"
    if [[ -n "$watchdog" ]]; then
        kill -TERM -- "-$watchdog" 2>/dev/null || kill -TERM "$watchdog" 2>/dev/null || true
        rm -f "$pid_file.watchdog"
    fi
    pid="$(running_pid "$pid_file")"
    if [[ -z "$pid" ]]; then
        rm -f "$pid_file"
        echo "not running"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$pid_file"
    echo "stopped pid $pid"
}
