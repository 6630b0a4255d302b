#!/usr/bin/env bash
# Runs the whole test suite. Needs only Python 3.11+: the virtualenv is made on first use.
# SQLite and the in-memory channel layer by default; set DATABASE_URL / REDIS_URL for PostgreSQL + Redis.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
exec .venv/bin/pytest "$@"
