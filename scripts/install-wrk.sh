#!/usr/bin/env bash
# Installs wrk, the C HTTP load generator bench/wrk_sends.py drives (Debian's package). Run as root
# on Debian or Ubuntu; it never fails the caller: without apt, root or network the benchmark
# says wrk is missing.
set -uo pipefail

if command -v wrk >/dev/null 2>&1; then
  echo "install-wrk: wrk is already installed: $(command -v wrk)"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-wrk: no apt-get here; install wrk yourself" >&2
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo="sudo -n"
  else
    echo "install-wrk: not root and no sudo; install wrk yourself" >&2
    exit 0
  fi
fi
export DEBIAN_FRONTEND=noninteractive
if $sudo apt-get install -y -q wrk >/dev/null 2>&1 || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q wrk >/dev/null; }; then
  echo "install-wrk: installed $(command -v wrk)"
else
  echo "install-wrk: apt-get could not install wrk" >&2
fi
exit 0
