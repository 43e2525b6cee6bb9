"""Fixtures for the deployment tests (infra/provision.sh, deploy.sh)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.deploy.helpers import PROVISION, TARGET, FakeCloud, Run


@pytest.fixture
def cloud(tmp_path: Path) -> FakeCloud:
    """An empty fake project."""
    return FakeCloud(tmp_path / "cloud")


@pytest.fixture(scope="session")
def provisioned_template(tmp_path_factory) -> tuple[FakeCloud, Run]:
    """One fake project after infra/provision.sh, provisioned once per session."""
    template = FakeCloud(tmp_path_factory.mktemp("provisioned"))
    run = template.run(PROVISION, *TARGET)
    assert run.returncode == 0, run.stderr
    return template, run


@pytest.fixture
def provisioned(tmp_path: Path, provisioned_template) -> FakeCloud:
    """A fake project, provisioned, with the operator's secret values set;
    a copy of its own, so a test may change it."""
    template, _ = provisioned_template
    cloud = FakeCloud(tmp_path / "cloud")
    shutil.copy(template.state_path, cloud.state_path)
    cloud.set_operator_secrets()
    return cloud
