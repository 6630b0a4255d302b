#!/usr/bin/env bash
# Installs what the browser test needs: Debian's Chromium, and Playwright's Python package
# (pinned in requirements-dev.txt) to drive it. Playwright never downloads a browser of its own
# here: the test hands it Debian's binary through executable_path.
#
# Run as root on Debian or Ubuntu. It never fails the caller: without apt, root or network the
# browser test is skipped and says why.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/apt-install.sh

if [ ! -x .venv/bin/python ]; then
  source scripts/venv.sh || echo "install-browser: could not prepare .venv" >&2
fi
if ! .venv/bin/python -c "import playwright" 2>/dev/null; then
  pin=$(grep -E '^playwright==' requirements-dev.txt || echo playwright)
  .venv/bin/python -m pip install --quiet "$pin" || echo "install-browser: could not install $pin" >&2
fi

if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
  echo "install-browser: Chromium is already installed: $(command -v chromium || command -v chromium-browser)"
  exit 0
fi
if apt_install install-browser chromium; then
  echo "install-browser: installed $(chromium --version 2>/dev/null || echo chromium)"
else
  echo "install-browser: the browser test will be skipped (or set CHROMIUM_PATH)" >&2
fi
exit 0
