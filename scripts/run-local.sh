#!/usr/bin/env bash
# Runs the whole system on 127.0.0.1: its own PostgreSQL (data in .local/), every function,
# the local task dispatcher and the sweep timer. Set VERIFICATION_WINDOW=60s REMINDER_OFFSETS=20s
# to watch a whole lifecycle in a minute. DATABASE_URL overrides the local database.
source "$(dirname "$0")/venv.sh"
exec python -m devstack.run "$@"
