#!/usr/bin/env bash
# Prints the path of kcat (Debian package kcat), a Kafka client other than callwatch's, which the
# worker's tests use to write events the way other producers do (no key, or a key of their own).
# As root it installs the package when missing; otherwise it fails with one line saying so.
set -euo pipefail
if ! command -v kcat >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "kcat is not installed: apt-get install -y kcat (as root)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q kcat >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q kcat >/dev/null; }
fi
command -v kcat
