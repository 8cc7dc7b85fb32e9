#!/usr/bin/env bash
# Debian's chromium for the wallboard's browser tests (driven by Playwright through its executable
# path; no browser is ever downloaded). Installs it with apt-get when missing and run as root.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "callwatch: installing Debian's chromium for the wallboard tests" >&2
  apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >&2
else
  echo "callwatch: /usr/bin/chromium is missing; install Debian's chromium package (as root: apt-get install chromium)" >&2
  exit 1
fi
