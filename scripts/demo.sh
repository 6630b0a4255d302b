#!/usr/bin/env bash
# Runs Giftstream with demo data on SQLite and the in-memory channel layer at http://127.0.0.1:8000
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
bash scripts/install-lottie.sh
export DEBUG=${DEBUG:-true}
.venv/bin/python manage.py migrate --no-input
.venv/bin/python manage.py seed_demo
exec .venv/bin/python manage.py runserver "${PORT:-127.0.0.1:8000}"
