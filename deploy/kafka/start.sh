#!/usr/bin/env bash
# Start a single-node Kafka (KRaft, broker+controller) on 127.0.0.1 in the background and wait until it
# serves requests. Prints one line "kafka ready at HOST:PORT ...". Does nothing if it is already running.
# With CALLWATCH_KAFKA_BOOTSTRAP set, starts nothing: only checks that the existing Kafka answers.
# Installs Debian's Java and Maven first when missing (as root).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
source "$CALLWATCH_REPO/deploy/local/lifetime.sh"
source "$CALLWATCH_REPO/deploy/local/packages.sh"

[[ "$CALLWATCH_KAFKA_WAIT_S" =~ ^[0-9]+$ ]] || die "CALLWATCH_KAFKA_WAIT_S must be a whole number of seconds, not '$CALLWATCH_KAFKA_WAIT_S'"

# ---- an existing Kafka elsewhere -------------------------------------------------------------------
if [[ -n "${CALLWATCH_KAFKA_BOOTSTRAP:-}" ]]; then
    deadline=$((SECONDS + CALLWATCH_KAFKA_WAIT_S))
    while :; do
        IFS=',' read -ra servers <<<"$CALLWATCH_KAFKA_BOOTSTRAP"
        for server in "${servers[@]}"; do
            server="${server// /}"
            server="${server#*://}"                  # PLAINTEXT://host:port -> host:port
            host="${server%:*}"; port="${server##*:}"
            host="${host#[}"; host="${host%]}"       # [::1]:9092
            [[ -n "$host" && "$port" =~ ^[0-9]+$ ]] || die "CALLWATCH_KAFKA_BOOTSTRAP: '$server' is not host:port"
            if port_open "$host" "$port"; then
                echo "kafka ready at $CALLWATCH_KAFKA_BOOTSTRAP (external, not started here)"
                exit 0
            fi
        done
        (( SECONDS < deadline )) || die "external Kafka at $CALLWATCH_KAFKA_BOOTSTRAP (CALLWATCH_KAFKA_BOOTSTRAP) did not answer within ${CALLWATCH_KAFKA_WAIT_S} s"
        sleep 1
    done
fi

# ---- the local broker -------------------------------------------------------------------------------
for v in KAFKA_PORT KAFKA_CONTROLLER_PORT; do
    [[ "${!v}" =~ ^[0-9]+$ ]] || die "$v must be a port number, not '${!v}'"
done
lifetime="${CALLWATCH_KAFKA_MAX_LIFETIME_S:-}"
[[ -z "$lifetime" || "$lifetime" =~ ^[0-9]+$ ]] || die "CALLWATCH_KAFKA_MAX_LIFETIME_S must be a whole number of seconds, not '$lifetime'"

BOOTSTRAP="127.0.0.1:$KAFKA_PORT"
# A fresh Debian machine lacks Java (the broker) and Maven (assembling its jars once): its packages.
missing=()
[[ -n "${JAVA_HOME:-}" ]] || command -v java >/dev/null 2>&1 || missing+=(default-jre-headless)
[[ -n "${KAFKA_HOME:-}" || -f "$KAFKA_LIBS/.complete" ]] || command -v mvn >/dev/null 2>&1 || missing+=(maven)
if (( ${#missing[@]} > 0 )); then SERVICE_NAME=kafka install_packages "${missing[@]}"; fi
find_java
lock_state
mkdir -p "$KAFKA_DATA_DIR" "$KAFKA_LOG_DIR"

# Wait until the broker with this pid serves requests; 0 ready, 1 timeout, 2 the process died.
wait_ready() {
    local pid="$1" log_from="$2" deadline=$((SECONDS + CALLWATCH_KAFKA_WAIT_S)) rc=0
    if command -v "$PYTHON" >/dev/null 2>&1; then
        "$PYTHON" "$KAFKA_DEPLOY_DIR/ready.py" "$BOOTSTRAP" "$CALLWATCH_KAFKA_WAIT_S" "$pid" || rc=$?
        (( rc == 3 )) || return "$rc"   # 3: kafka-python missing -> fall back below
    fi
    # Without kafka-python: the port answers and the broker logged that it started.
    while :; do
        kill -0 "$pid" 2>/dev/null || return 2
        if port_open 127.0.0.1 "$KAFKA_PORT" &&
                tail -n "+$log_from" "$KAFKA_SERVER_LOG" 2>/dev/null | grep -q "Kafka Server started"; then
            return 0
        fi
        (( SECONDS < deadline )) || return 1
        sleep 0.25
    done
}

pid="$(broker_pid)"
if [[ -n "$pid" ]]; then
    rc=0; wait_ready "$pid" 1 || rc=$?
    (( rc == 0 )) || { log_tail; die "kafka (pid $pid) is running but did not answer on $BOOTSTRAP within ${CALLWATCH_KAFKA_WAIT_S} s; see $KAFKA_SERVER_LOG"; }
    echo "kafka ready at $BOOTSTRAP (already running, pid $pid)"
    exit 0
fi
rm -f "$KAFKA_PID_FILE"

for port in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
    if port_open 127.0.0.1 "$port"; then
        die "port $port on 127.0.0.1 is already in use by another process (set KAFKA_PORT/KAFKA_CONTROLLER_PORT, or CALLWATCH_KAFKA_BOOTSTRAP to use an existing Kafka)"
    fi
done

"$KAFKA_DEPLOY_DIR/fetch.sh"

cat >"$KAFKA_CONFIG" <<PROPS
# Written by deploy/kafka/start.sh on every start; edit that script, not this file.
# Single-node KRaft: this process is both broker and the (only) controller.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$KAFKA_DATA_DIR

# One broker: every internal topic with one replica.
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0

# Topics are created explicitly (deploy/kafka/topics.py, or the tests' admin client) with their
# partitions and retention; a typo in a topic name must fail, not create a new 1-partition topic.
auto.create.topics.enable=false
num.partitions=1

# Small footprint for a development broker.
log.cleaner.dedupe.buffer.size=33554432
num.network.threads=2
num.io.threads=4
PROPS

if [[ ! -f "$KAFKA_DATA_DIR/meta.properties" ]]; then
    cluster_id="$(kafka_tool kafka.tools.StorageTool random-uuid 2>>"$KAFKA_LOG_DIR/format.out")" ||
        { cat "$KAFKA_LOG_DIR/format.out" >&2; die "kafka-storage random-uuid failed (see $KAFKA_LOG_DIR/format.out)"; }
    if ! kafka_tool kafka.tools.StorageTool format --cluster-id "$cluster_id" --config "$KAFKA_CONFIG" \
            >>"$KAFKA_LOG_DIR/format.out" 2>&1; then
        tail -n 20 "$KAFKA_LOG_DIR/format.out" >&2
        die "formatting $KAFKA_DATA_DIR failed (see $KAFKA_LOG_DIR/format.out)"
    fi
fi

log_from="$(next_line "$KAFKA_SERVER_LOG")"
console_from="$(next_line "$KAFKA_CONSOLE_LOG")"
started=$SECONDS
# Own session (setsid): not hit by Ctrl-C or the end of the caller's terminal or process group;
# 9>&- keeps the state lock out of the long-lived processes.
# shellcheck disable=SC2086  # KAFKA_HEAP_OPTS and KAFKA_OPTS are word lists
setsid nohup "$JAVA" $KAFKA_HEAP_OPTS -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError \
    -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$KAFKA_DEPLOY_DIR/log4j2.properties" \
    -Dkafka.logs.dir="$KAFKA_LOG_DIR" \
    ${KAFKA_OPTS:-} \
    -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_CONFIG" \
    >>"$KAFKA_CONSOLE_LOG" 2>&1 </dev/null 9>&- &
pid=$!
echo "$pid" >"$KAFKA_PID_FILE"

rc=0; wait_ready "$pid" "$log_from" || rc=$?
if (( rc != 0 )); then
    log_tail 30 "$console_from" "$log_from"
    if (( rc == 2 )); then
        rm -f "$KAFKA_PID_FILE"
        die "kafka exited during startup; see $KAFKA_CONSOLE_LOG and $KAFKA_SERVER_LOG"
    fi
    stop_broker >/dev/null
    die "broker did not answer on $BOOTSTRAP within ${CALLWATCH_KAFKA_WAIT_S} s (stopped it); see $KAFKA_SERVER_LOG"
fi

# A forgotten broker stops by itself after CALLWATCH_KAFKA_MAX_LIFETIME_S seconds (30 s to stop, as
# stop.sh gives it; status.sh knows the watchdog by its name). 9>&-: the watchdog does not hold the
# state lock.
watch_lifetime "$KAFKA_PID_FILE" "$pid" "${lifetime:-0}" "$KAFKA_CONSOLE_LOG" "$KAFKA_WATCHDOG_PID_FILE" 30 \
    callwatch-kafka-watchdog 9>&-

echo "kafka ready at $BOOTSTRAP (pid $pid, started in $((SECONDS - started)) s${lifetime:+, stops by itself after $lifetime s})"
