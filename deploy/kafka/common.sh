# Shared settings and helpers for deploy/kafka/*.sh (sourced, not run).
# shellcheck shell=bash

KAFKA_DEPLOY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CALLWATCH_REPO="$(cd "$KAFKA_DEPLOY_DIR/../.." && pwd)"

KAFKA_VERSION="${KAFKA_VERSION:-4.1.2}"
KAFKA_PORT="${KAFKA_PORT:-19092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-19093}"
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xmx512m -Xms256m}"
CALLWATCH_CACHE="${CALLWATCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/callwatch}"
CALLWATCH_KAFKA_WAIT_S="${CALLWATCH_KAFKA_WAIT_S:-60}"

KAFKA_STATE_DIR="${CALLWATCH_STATE:-$CALLWATCH_REPO/var}/kafka"
KAFKA_DATA_DIR="$KAFKA_STATE_DIR/data"
KAFKA_LOG_DIR="$KAFKA_STATE_DIR/logs"
KAFKA_CONFIG="$KAFKA_STATE_DIR/server.properties"
KAFKA_PID_FILE="$KAFKA_STATE_DIR/kafka.pid"
KAFKA_WATCHDOG_PID_FILE="$KAFKA_STATE_DIR/watchdog.pid"
KAFKA_SERVER_LOG="$KAFKA_LOG_DIR/server.log"
KAFKA_CONSOLE_LOG="$KAFKA_LOG_DIR/console.out"

# Where the broker's jars live: an existing distribution (KAFKA_HOME/libs) or the Maven-assembled cache.
if [[ -n "${KAFKA_HOME:-}" ]]; then
    KAFKA_LIBS="$KAFKA_HOME/libs"
else
    KAFKA_LIBS="$CALLWATCH_CACHE/kafka-$KAFKA_VERSION/libs"
fi

# Python for the readiness check and topics.py: $PYTHON, else the repo's virtualenv, else python3.
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$CALLWATCH_REPO/.venv/bin/python" ]]; then
        PYTHON="$CALLWATCH_REPO/.venv/bin/python"
    else
        PYTHON=python3
    fi
fi

die() {
    echo "kafka: error: $*" >&2
    exit 1
}

log_tail() {
    # Show the end of the broker's logs on stderr (after a failure); optionally only the lines from
    # line CONSOLE_FROM / SERVER_FROM on (this start's output).
    local lines="${1:-30}" console_from="${2:-1}" server_from="${3:-1}" file from text
    for file in "$KAFKA_CONSOLE_LOG" "$KAFKA_SERVER_LOG"; do
        from=$server_from; [[ "$file" == "$KAFKA_CONSOLE_LOG" ]] && from=$console_from
        text="$(tail -n "+$from" "$file" 2>/dev/null | tail -n "$lines")"
        if [[ -n "$text" ]]; then
            echo "----- last lines of $file -----" >&2
            echo "$text" >&2
        fi
    done
}

# Number of the line after the current end of a file (1 when absent).
next_line() {
    if [[ -f "$1" ]]; then echo $(( $(wc -l <"$1") + 1 )); else echo 1; fi
}

find_java() {
    if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
        JAVA="$JAVA_HOME/bin/java"
    elif command -v java >/dev/null 2>&1; then
        JAVA="$(command -v java)"
    else
        die "java not found (install Java 17 or newer, or set JAVA_HOME)"
    fi
}

# Run one of Kafka's command-line classes (StorageTool ...) with the broker's classpath and logging.
kafka_tool() {
    "$JAVA" -Xmx256m -cp "$KAFKA_LIBS/*" \
        -Dlog4j2.configurationFile="$KAFKA_DEPLOY_DIR/log4j2.properties" \
        -Dkafka.logs.dir="$KAFKA_LOG_DIR" \
        "$@"
}

process_args() {
    # The command line of a live process, or nothing.
    local pid="$1"
    if [[ -r "/proc/$pid/cmdline" ]]; then
        tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true
    else
        ps -p "$pid" -o args= 2>/dev/null || true
    fi
}

# live_pid PID_FILE TEXT...: the pid in PID_FILE when that process lives and its command line
# holds the TEXTs in this order (a pid reused by another program is not ours), or nothing.
live_pid() {
    local pid_file="$1" pid args part
    shift
    [[ -f "$pid_file" ]] || return 0
    pid="$(cat "$pid_file" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    args="$(process_args "$pid")"
    for part in "$@"; do
        [[ "$args" == *"$part"* ]] || return 0
        args="${args#*"$part"}"
    done
    echo "$pid"
}

# The pid of our running broker (kafka.Kafka on our config), or nothing.
broker_pid() { live_pid "$KAFKA_PID_FILE" kafka.Kafka "$KAFKA_CONFIG"; }

# The pid of its lifetime watchdog (deploy/local/lifetime.sh, named by start.sh), or nothing.
watchdog_pid() { live_pid "$KAFKA_WATCHDOG_PID_FILE" callwatch-kafka-watchdog "$KAFKA_PID_FILE"; }

# True when something accepts TCP connections on host:port (within about a second).
port_open() {
    local host="$1" port="$2"
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$host" "$port" 2>/dev/null
}

# Take the state directory's lock (serialises start/stop/reset of the same broker).
lock_state() {
    mkdir -p "$KAFKA_STATE_DIR"
    if command -v flock >/dev/null 2>&1; then
        exec 9>"$KAFKA_STATE_DIR/.lock"
        flock -w 120 9 || die "another start/stop of this broker is still running (lock $KAFKA_STATE_DIR/.lock)"
    fi
}

# Stop our broker: SIGTERM, wait up to CALLWATCH_KAFKA_STOP_WAIT_S (30 s), then SIGKILL. Idempotent.
stop_broker() {
    local pid wpid waited=0 limit="${CALLWATCH_KAFKA_STOP_WAIT_S:-30}"
    wpid="$(watchdog_pid)"
    if [[ -n "$wpid" ]]; then
        # The watchdog runs in its own session: end it and its sleep together.
        kill -TERM -- "-$wpid" 2>/dev/null || kill -TERM "$wpid" 2>/dev/null || true
    fi
    rm -f "$KAFKA_WATCHDOG_PID_FILE"
    pid="$(broker_pid)"
    if [[ -z "$pid" ]]; then
        rm -f "$KAFKA_PID_FILE"
        echo "kafka not running"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do
        if (( waited >= limit * 10 )); then
            echo "kafka: broker (pid $pid) still running after ${limit} s; sending SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.5
            break
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    rm -f "$KAFKA_PID_FILE"
    echo "kafka stopped (pid $pid)"
}
