# The one way callwatch's set-up scripts install what a fresh Debian machine lacks (Kafka's Java and
# Maven, Prometheus and Alertmanager, PostgreSQL, MariaDB): Debian's packages, as root.
# shellcheck shell=bash

# install_packages PACKAGE...: apt-get install them, root only, without starting their services (a
# policy-rc.d answering 101 for the duration; an existing one is left alone). On failure one line on
# stderr, "$SERVICE_NAME: error: ...", and a non-zero status (under set -e the script ends there).
install_packages() {
    local who="${SERVICE_NAME:-callwatch}" policy=/usr/sbin/policy-rc.d own="" status=0
    if [[ "$(id -u)" -ne 0 ]]; then
        echo "$who: error: $* missing and not root (run: sudo apt-get install $*)" >&2
        return 1
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "$who: error: $* missing and no apt-get here" >&2
        return 1
    fi
    if [[ ! -e "$policy" ]]; then
        printf '#!/bin/sh\n# written by callwatch deploy/local/packages.sh for the duration of an install\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        own=1
    fi
    echo "$who: apt-get install $*" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null || status=$?
    if [[ -n "$own" ]]; then rm -f "$policy"; fi
    if (( status != 0 )); then
        echo "$who: error: apt-get install $* failed" >&2
        return "$status"
    fi
}
