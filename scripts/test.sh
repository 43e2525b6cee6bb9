#!/usr/bin/env bash
# Runs the whole test suite. Starts (and stops) its own PostgreSQL, the Pub/Sub and
# Cloud Tasks emulators and local HTTP/SMTP servers, all on 127.0.0.1.
# Extra arguments go to pytest, e.g. scripts/test.sh tests/unit -q
# shellcheck source=scripts/venv.sh
source "$(dirname "$0")/venv.sh"
if ! command -v shellcheck >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing shellcheck (for the deploy script tests) ..." >&2
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck; } >/dev/null 2>&1 \
    || echo "could not install shellcheck; its tests will say so" >&2
fi
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing chromium (for the console's browser tests) ..." >&2
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null 2>&1 \
    || echo "could not install chromium; the browser tests will say so" >&2
fi
exec python -m pytest "$@"
