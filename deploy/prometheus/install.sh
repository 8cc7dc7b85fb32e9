#!/usr/bin/env bash
# Install Debian's Prometheus (with promtool) and Alertmanager (with amtool) when missing, for the
# test suite and local stacks. Idempotent: does nothing when both are already there. The packages'
# system services are never left running: callwatch starts its own instances on 127.0.0.1
# (deploy/prometheus/start.sh), and a packaged daemon listening on 0.0.0.0:9090 is not wanted.
set -euo pipefail

need=()
command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 && command -v amtool >/dev/null 2>&1 || need+=(prometheus-alertmanager)
if (( ${#need[@]} == 0 )); then
    echo "prometheus and alertmanager already installed ($(command -v prometheus), $(command -v prometheus-alertmanager))"
    exit 0
fi

if [[ "$(id -u)" -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        exec sudo -n -E "$0" "$@"
    fi
fi
SERVICE_NAME="prometheus install"
source "$(dirname "${BASH_SOURCE[0]}")/../local/packages.sh"
install_packages "${need[@]}"

# Whatever policy was in force: make sure no packaged service keeps running.
for service in prometheus prometheus-alertmanager prometheus-node-exporter; do
    if [[ -x "/etc/init.d/$service" ]]; then
        service "$service" stop >/dev/null 2>&1 || true
    fi
    if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
        systemctl disable --now "$service" >/dev/null 2>&1 || true
    fi
done

command -v promtool >/dev/null && command -v prometheus-alertmanager >/dev/null && command -v amtool >/dev/null || {
    echo "prometheus install: error: installed, but promtool/prometheus-alertmanager/amtool still not on PATH" >&2
    exit 1
}
echo "installed $(prometheus --version 2>&1 | head -n 1); $(prometheus-alertmanager --version 2>&1 | head -n 1)"
