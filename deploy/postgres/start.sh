#!/usr/bin/env bash
# Start a throw-away PostgreSQL on 127.0.0.1:POSTGRES_PORT (Debian's `postgresql`, installed first
# when missing and root) with a fresh data directory under CALLWATCH_STATE/postgres-PORT, a
# `callwatch` user (password CALLWATCH_DB_PASSWORD, scram-sha-256) owning a `callwatch` database;
# wait until it answers; stop it by itself after CALLWATCH_DB_MAX_LIFETIME_S. For the test suite
# and trials, not for production. Stop it with deploy/postgres/stop.sh (same POSTGRES_PORT).
set -euo pipefail
SERVICE_NAME=postgres
source "$(dirname "${BASH_SOURCE[0]}")/../local/database.sh"

port="$(db_port POSTGRES_PORT)"
bin_dir() { find /usr/lib/postgresql -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1; }
if [[ -z "$(bin_dir)" ]]; then install_packages postgresql; fi
bin="$(bin_dir)"
[[ -x "$bin/postgres" ]] || die "no PostgreSQL server under /usr/lib/postgresql after installing"

state="$CALLWATCH_STATE/postgres-$port"
pid_file="$state.pid"
exit_if_running "$pid_file" "postgresql://callwatch@127.0.0.1:$port/callwatch"
fresh_state "$state" postgres
log="$state/postgres.log"
as_user postgres touch "$log"
password_file="$state/password"
as_user postgres bash -c 'umask 077; printf "%s\n" "$1" >"$2"' _ "$CALLWATCH_DB_PASSWORD" "$password_file"
as_user postgres "$bin/initdb" -D "$state/data" -U callwatch --pwfile="$password_file" -E UTF8 \
    --auth-local=trust --auth-host=scram-sha-256 >>"$log" 2>&1 || { tail -n 20 "$log" >&2; die "initdb failed"; }
rm -f "$password_file"
run=()
if [[ "$(id -u)" -eq 0 ]]; then run=(runuser -u postgres --); fi  # postgres refuses to run as root
cd /
# fsync off: a test database, thrown away after the run.
setsid nohup "${run[@]}" "$bin/postgres" -D "$state/data" -h 127.0.0.1 -p "$port" -k "$state" \
    -c fsync=off -c full_page_writes=off >>"$log" 2>&1 </dev/null &
launcher=$!
wait_ready "$launcher" "$log" postgres "$bin/pg_isready" -q -h 127.0.0.1 -p "$port"
pid="$(head -n 1 "$state/data/postmaster.pid")"
echo "$pid" >"$pid_file"
"$bin/psql" -q -h "$state" -p "$port" -U callwatch -d postgres -c "CREATE DATABASE callwatch" >>"$log" 2>&1 \
    || { tail -n 20 "$log" >&2; die "cannot create the callwatch database"; }
watch_lifetime "$pid_file" "$pid" "$db_lifetime" "$log"
echo "postgres ready at postgresql://callwatch@127.0.0.1:$port/callwatch (pid $pid, data $state; stops by itself after $db_lifetime s)"
