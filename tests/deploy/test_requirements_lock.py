"""The dependency locks (requirements.txt, requirements-dev.txt) against the
intent they are compiled from (requirements.in, requirements-dev.in).

Re-resolving needs the package index, so this checks what can be checked
offline: the lock was compiled from the .in files as they are now (their
sha256 is in its header), names every top-level requirement at a version the
.in allows, pins and hashes every line, and is closed under the dependencies
of what is installed here. Re-lock with scripts/lock.sh.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import metadata

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.helpers import REPO

LOCKS = {
    # lock: the .in files it is compiled from, its own first
    "requirements.txt": ("requirements.in",),
    "requirements-dev.txt": ("requirements-dev.in", "requirements.in"),
}
HEADER_HASH = re.compile(r"^# (\S+\.in) sha256: ([0-9a-f]{64})$")


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    marker: str
    hashes: frozenset[str]


def parse_lock(text: str) -> dict[str, Pin]:
    """Every requirement of a hashed lock, by canonical name."""
    pins: dict[str, Pin] = {}
    # Join continuation lines: "name==1.0 \\\n    --hash=sha256:..."
    for entry in re.sub(r"\\\n\s*", " ", text).splitlines():
        entry = entry.split(" #", 1)[0].strip()
        if not entry or entry.startswith("#"):
            continue
        words = entry.split(" --hash=")
        requirement, hashes = words[0].strip(), frozenset(h.strip() for h in words[1:])
        spec, _, marker = requirement.partition(";")
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s,;]+)", spec.strip())
        assert match, f"not pinned with ==: {requirement!r}"
        name = canonicalize_name(match.group(1))
        assert name not in pins, f"{name} pinned twice"
        pins[name] = Pin(name, match.group(2), marker.strip(), hashes)
    return pins


def top_level(in_file: str) -> list[Requirement]:
    """The requirements an .in file names, following -r includes."""
    found: list[Requirement] = []
    for line in (REPO / in_file).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-r "):
            found += top_level(line[3:].strip())
            continue
        assert not line.startswith("-"), f"{in_file}: option {line!r} (scripts/lock.sh passes options)"
        found.append(Requirement(line))
    return found


def recorded_hashes(lock: str) -> dict[str, str]:
    return {
        m.group(1): m.group(2)
        for line in (REPO / lock).read_text().splitlines()
        if (m := HEADER_HASH.match(line))
    }


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_the_lock_was_compiled_from_the_in_files_as_they_are(lock):
    recorded = recorded_hashes(lock)

    assert sorted(recorded) == sorted(LOCKS[lock])
    for in_file, digest in recorded.items():
        actual = hashlib.sha256((REPO / in_file).read_bytes()).hexdigest()
        assert digest == actual, f"{in_file} changed after {lock} was compiled: run scripts/lock.sh"


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_every_line_is_pinned_and_hashed_and_every_top_level_requirement_is_in_it(lock):
    pins = parse_lock((REPO / lock).read_text())

    assert len(pins) > 20
    for pin in pins.values():
        assert pin.hashes and all(re.fullmatch(r"sha256:[0-9a-f]{64}", h) for h in pin.hashes), pin.name
    for requirement in top_level(LOCKS[lock][0]):
        pin = pins.get(canonicalize_name(requirement.name))
        assert pin is not None, f"{requirement.name} is not in {lock}: run scripts/lock.sh"
        assert requirement.specifier.contains(pin.version, prereleases=True), (
            f"{lock} pins {pin.name}=={pin.version}, {LOCKS[lock][0]} asks {requirement}")
        for extra in requirement.extras:
            for needed in metadata.requires(requirement.name) or []:
                dependency = Requirement(needed)
                if dependency.marker and dependency.marker.evaluate({"extra": extra}) \
                        and not dependency.marker.evaluate({"extra": ""}):
                    assert canonicalize_name(dependency.name) in pins, f"{requirement}: {dependency.name}"


def test_the_dev_lock_holds_the_runtime_lock_exactly():
    runtime = parse_lock((REPO / "requirements.txt").read_text())
    dev = parse_lock((REPO / "requirements-dev.txt").read_text())

    for name, pin in runtime.items():
        assert name in dev, name
        assert (dev[name].version, dev[name].hashes) == (pin.version, pin.hashes), name


def test_the_lock_is_closed_under_the_dependencies_installed_here():
    # What pip's --require-hashes mode insists on at install time, checked
    # from the installed metadata of this Python: nothing the lock installs
    # needs a package the lock lacks.
    dev = parse_lock((REPO / "requirements-dev.txt").read_text())
    environment = {**default_environment(), "extra": ""}
    missing = []
    for pin in dev.values():
        if pin.marker and not Requirement(f"x; {pin.marker}").marker.evaluate(environment):
            continue
        for needed in metadata.requires(pin.name) or []:
            dependency = Requirement(needed)
            if dependency.marker is None or dependency.marker.evaluate(environment):
                if canonicalize_name(dependency.name) not in dev:
                    missing.append(f"{pin.name} needs {dependency.name}")

    assert missing == []


def test_installed_versions_are_the_locked_ones():
    dev = parse_lock((REPO / "requirements-dev.txt").read_text())
    environment = default_environment()

    wrong = {}
    for pin in dev.values():
        if pin.marker and not Requirement(f"x; {pin.marker}").marker.evaluate(environment):
            continue
        installed = metadata.version(pin.name)
        if installed != pin.version:
            wrong[pin.name] = (installed, pin.version)

    assert wrong == {}, "the environment differs from the lock: re-run scripts/venv.sh"


def test_parse_lock_refuses_an_unpinned_line():
    with pytest.raises(AssertionError, match="not pinned"):
        parse_lock("requests>=2 \\\n    --hash=sha256:" + "0" * 64 + "\n")
