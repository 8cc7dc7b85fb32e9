#!/usr/bin/env bash
# Start a throw-away MariaDB on 127.0.0.1:MARIADB_PORT (Debian's `mariadb-server`, installed first
# when missing and root) with a fresh data directory under CALLWATCH_STATE/mariadb-PORT, a
# `callwatch` user (password CALLWATCH_DB_PASSWORD) with all rights on a `callwatch` database;
# wait until it answers; stop it by itself after CALLWATCH_DB_MAX_LIFETIME_S. For the test suite
# and trials, not for production. Stop it with deploy/mariadb/stop.sh (same MARIADB_PORT).
set -euo pipefail
SERVICE_NAME=mariadb
source "$(dirname "${BASH_SOURCE[0]}")/../local/database.sh"

port="$(db_port MARIADB_PORT)"
command -v mariadbd >/dev/null 2>&1 || [[ -x /usr/sbin/mariadbd ]] || install_packages mariadb-server mariadb-client
server="$(command -v mariadbd || echo /usr/sbin/mariadbd)"
[[ -x "$server" ]] || die "no mariadbd after installing mariadb-server"

state="$CALLWATCH_STATE/mariadb-$port"
pid_file="$state.pid"
exit_if_running "$pid_file" "mysql://callwatch@127.0.0.1:$port/callwatch"
user="$(id -un)"
if [[ "$(id -u)" -eq 0 ]]; then user=mysql; fi  # mariadbd refuses to run as root
fresh_state "$state" "$user"
log="$state/mariadb.log"
socket="$state/mysqld.sock"
mariadb-install-db --no-defaults --datadir="$state/data" --user="$user" --auth-root-authentication-method=socket \
    --skip-test-db >>"$log" 2>&1 || { tail -n 20 "$log" >&2; die "mariadb-install-db failed"; }
cd /
setsid nohup "$server" --no-defaults --datadir="$state/data" --socket="$socket" --port="$port" \
    --bind-address=127.0.0.1 --user="$user" --pid-file="$state/mariadbd.pid" --skip-name-resolve \
    --innodb-buffer-pool-size=16M --innodb-log-file-size=8M --log-error="$log" </dev/null >/dev/null 2>&1 &
pid=$!
wait_ready "$pid" "$log" mariadbd mariadb-admin --no-defaults --socket="$socket" -u root ping
echo "$pid" >"$pid_file"
mariadb --no-defaults --socket="$socket" -u root <<SQL >>"$log" 2>&1 || { tail -n 20 "$log" >&2; die "cannot create the callwatch user and database"; }
CREATE DATABASE callwatch;
CREATE USER 'callwatch'@'127.0.0.1' IDENTIFIED BY '${CALLWATCH_DB_PASSWORD//\'/\'\'}';
GRANT ALL ON callwatch.* TO 'callwatch'@'127.0.0.1';
SQL
watch_lifetime "$pid_file" "$pid" "$db_lifetime" "$log"
echo "mariadb ready at mysql://callwatch@127.0.0.1:$port/callwatch (pid $pid, data $state; stops by itself after $db_lifetime s)"
