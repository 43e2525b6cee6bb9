#!/usr/bin/env bash
# Runs the whole test suite. Starts (and stops) its own PostgreSQL and emulators.
# Extra arguments go to pytest, e.g. scripts/test.sh tests/unit -q
source "$(dirname "$0")/venv.sh"
exec python -m pytest "$@"
