# shellcheck shell=bash
# Sourced by the scripts here: make the virtual environment (once per lock
# change) from the locked requirements, and enter it.
#   PYTHON=/root/.pyenv/versions/3.12.1/bin/python scripts/test.sh
# uses .venv-3.12 (any PYTHON other than the default python3 gets its own
# .venv-X.Y); without PYTHON it is .venv with the system's python3.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -n "${PYTHON:-}" ] && [ "$PYTHON" != python3 ]; then
  command -v "$PYTHON" >/dev/null || { echo "PYTHON=$PYTHON not found" >&2; exit 1; }
  VENV="$ROOT/.venv-$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
else
  PYTHON=python3
  VENV="$ROOT/.venv"
fi
STAMP="$VENV/.requirements.sha256"
want="$(cat "$ROOT/requirements.txt" "$ROOT/requirements-dev.txt" | sha256sum | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
  echo "Installing the locked dependencies into $VENV ..." >&2
  "$PYTHON" -m venv "$VENV"
  # requirements-dev.txt is the full lock (runtime included), every file
  # checked against its hash; anything unpinned or altered fails the install.
  if ! "$VENV/bin/pip" install --quiet --disable-pip-version-check --require-hashes --no-deps \
    -r "$ROOT/requirements-dev.txt" 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" >&2 || true; } \
    || ! "$VENV/bin/pip" check >&2 \
    || ! "$VENV/bin/python" -c "import functions_framework, sqlalchemy, pg8000"; then
    echo "dependency install failed" >&2
    exit 1
  fi
  echo "$want" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export NO_GCE_CHECK=true
cd "$ROOT"
