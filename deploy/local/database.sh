# Shared by deploy/postgres/*.sh and deploy/mariadb/*.sh (sourced, not run): install the Debian
# package when missing (as root; with CI=true a missing server is an error, never a skip), start
# the server on 127.0.0.1 with a throw-away data directory under CALLWATCH_STATE, wait until it
# answers, create the `callwatch` user and database, and stop it by itself after a maximum lifetime.
#   <NAME>_PORT (required: the caller picks a free one), CALLWATCH_DB_PASSWORD (the callwatch
#   user's password; required), CALLWATCH_DB_WAIT_S (60), CALLWATCH_DB_MAX_LIFETIME_S (3600).
# shellcheck shell=bash
# die, whole_number, running_pid and stop_daemon are the Prometheus scripts' helpers; watch_lifetime is
# deploy/local/lifetime.sh's, which they source.
source "$(dirname "${BASH_SOURCE[0]}")/../prometheus/service.sh"
source "$(dirname "${BASH_SOURCE[0]}")/packages.sh"  # install_packages

db_wait_s="${CALLWATCH_DB_WAIT_S:-60}"
db_lifetime="${CALLWATCH_DB_MAX_LIFETIME_S:-3600}"
whole_number CALLWATCH_DB_WAIT_S "$db_wait_s"
whole_number CALLWATCH_DB_MAX_LIFETIME_S "$db_lifetime"
[[ -n "${CALLWATCH_DB_PASSWORD:-}" ]] || die "CALLWATCH_DB_PASSWORD is not set (the callwatch user's password)"

as_user() {  # USER COMMAND...: run as USER when root (the servers refuse to run as root)
    local user="$1"
    shift
    if [[ "$(id -u)" -eq 0 ]]; then runuser -u "$user" -- "$@"; else "$@"; fi
}

fresh_state() {  # DIR USER: an empty directory owned by USER (root only)
    rm -rf "$1"
    mkdir -p "$1"
    if [[ "$(id -u)" -eq 0 ]]; then chown "$2" "$1"; fi
    chmod 700 "$1"
}

wait_ready() {  # PID LOG DESCRIPTION COMMAND...: until COMMAND succeeds, or die
    local pid="$1" log="$2" what="$3" deadline
    shift 3
    deadline=$((SECONDS + db_wait_s))
    until "$@" >/dev/null 2>&1; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$log" >&2
            die "$what exited during start-up; see $log"
        fi
        if (( SECONDS >= deadline )); then
            kill -TERM "$pid" 2>/dev/null || true
            tail -n 20 "$log" >&2
            die "$what did not answer within $db_wait_s s (stopped it); see $log"
        fi
        sleep 0.2
    done
}

exit_if_running() {  # PID_FILE URL: nothing to do when the server of PID_FILE is up
    if [[ -n "$(running_pid "$1")" ]]; then
        echo "${SERVICE_NAME} ready at $2 (already running)"
        exit 0
    fi
}

db_port() {  # VARIABLE: its value, which must be a whole number
    local value="${!1:-}"
    whole_number "$1" "$value"
    echo "$value"
}

stop_database() {  # NAME PORT: stop the server started on PORT and delete its data
    echo "$1: $(stop_daemon "$CALLWATCH_STATE/$1-$2.pid")"
    rm -rf "$CALLWATCH_STATE/$1-$2"
}
