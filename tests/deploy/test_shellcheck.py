"""shellcheck on every deployment script."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.deploy.helpers import REPO

SCRIPTS = ["deploy.sh", "infra/lib.sh", "infra/config.sh", "infra/provision.sh"]
# The build side: CI, the venv the test command makes, the lock.
BUILD_SCRIPTS = [".ci/run", "scripts/lock.sh", "scripts/test.sh", "scripts/venv.sh"]


@pytest.mark.skipif(shutil.which("shellcheck") is None,
                    reason="shellcheck is not installed (Debian: apt-get install -y shellcheck)")
def test_shellcheck_passes_on_every_script():
    found = sorted(str(p.relative_to(REPO)) for p in [*REPO.glob("infra/**/*.sh"), REPO / "deploy.sh"])
    assert found == sorted(SCRIPTS), "a new script: add it to SCRIPTS"

    # -x follows `source`, so the helpers are checked where they are used too.
    result = subprocess.run(["shellcheck", "-x", *SCRIPTS, *BUILD_SCRIPTS], cwd=REPO,
                            capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stdout + result.stderr


def test_scripts_are_strict_bash():
    for script in ("deploy.sh", "infra/provision.sh", ".ci/run", "scripts/lock.sh"):
        text = (REPO / script).read_text()
        assert text.startswith("#!/usr/bin/env bash\n"), script
        assert "\nset -euo pipefail\n" in text, script
        assert (REPO / script).stat().st_mode & 0o111, f"{script} is not executable"
