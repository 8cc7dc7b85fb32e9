#!/usr/bin/env bash
# Stop the MariaDB deploy/mariadb/start.sh started on MARIADB_PORT and delete its data.
set -euo pipefail
SERVICE_NAME=mariadb
CALLWATCH_DB_PASSWORD=unused source "$(dirname "${BASH_SOURCE[0]}")/../local/database.sh"
stop_database mariadb "$(db_port MARIADB_PORT)"
