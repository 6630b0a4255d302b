#!/usr/bin/env bash
# Installs wrk, the C HTTP load generator bench/wrk_sends.py drives (Debian's package). Run as root
# on Debian or Ubuntu; it never fails the caller: without apt, root or network the benchmark
# says wrk is missing.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/apt-install.sh

if command -v wrk >/dev/null 2>&1; then
  echo "install-wrk: wrk is already installed: $(command -v wrk)"
elif apt_install install-wrk wrk; then
  echo "install-wrk: installed $(command -v wrk)"
fi
exit 0
