#!/usr/bin/env bash
# Stop the PostgreSQL deploy/postgres/start.sh started on POSTGRES_PORT and delete its data.
set -euo pipefail
SERVICE_NAME=postgres
CALLWATCH_DB_PASSWORD=unused source "$(dirname "${BASH_SOURCE[0]}")/../local/database.sh"
stop_database postgres "$(db_port POSTGRES_PORT)"
