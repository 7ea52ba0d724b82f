"""The lock files pin every tool the dev venv and the matrix venvs install,
so that two CI runs test the same versions, and they agree with the range the
collection claims (meta/runtime.yml, README "Supported")."""

import glob
import os
import re

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from collection_build import ROOT

LINES = ["2.18", "2.19", "2.20"]  # tests/molecule/test_matrix.py
NEWEST = "2.21"


def requirements(path):
    with open(os.path.join(ROOT, path)) as f:
        lines = [line.split("#", 1)[0].strip() for line in f]
    return [Requirement(line) for line in lines if line]


def pins(path):
    found = {}
    with open(os.path.join(ROOT, path)) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            assert re.match(r"^[A-Za-z0-9_.\-]+==[A-Za-z0-9_.+!\-]+$", line), "%s: not a pin: %r" % (path, line)
            name, version = line.split("==")
            found[canonicalize_name(name)] = version
    return found


LOCKS = {"constraints/dev.txt": ("requirements-dev.txt", NEWEST),
         "constraints/dev-python3.11.txt": ("requirements-dev.txt", "2.19")}
LOCKS.update({"constraints/ansible-core-%s.txt" % line: ("tests/matrix/requirements.txt", line) for line in LINES})


def test_every_lock_file_is_known():
    assert sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "constraints", "*"))) == sorted(LOCKS)


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_lock_pins_every_requirement_within_its_range(lock):
    reqs, line = LOCKS[lock]
    pinned = pins(lock)
    for req in requirements(reqs):
        name = canonicalize_name(req.name)
        assert name in pinned, "%s does not pin %s (%s)" % (lock, req.name, reqs)
        assert req.specifier.contains(pinned[name], prereleases=True), (lock, str(req), pinned[name])
    assert SpecifierSet("==%s.*" % line).contains(pinned["ansible-core"]), (lock, pinned["ansible-core"])


def test_claimed_range_is_the_tested_one():
    with open(os.path.join(ROOT, "meta", "runtime.yml")) as f:
        claimed = SpecifierSet(yaml.safe_load(f)["requires_ansible"])
    tested = LINES + [NEWEST]
    assert all(claimed.contains(line + ".0") for line in tested), (str(claimed), tested)
    major, minor = LINES[0].split(".")
    older = "%s.%d" % (major, int(minor) - 1)
    assert not claimed.contains(older + ".99"), "meta/runtime.yml claims %s, which is not tested" % older
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    supported = readme[readme.index("## Supported"):]
    assert "ansible-core %s, %s, %s and %s" % tuple(tested) in supported


def test_lock_files_name_no_index():
    for lock in LOCKS:
        with open(os.path.join(ROOT, lock)) as f:
            text = f.read()
        assert not re.search(r"(?m)^\s*-|://", text), "%s holds options or URLs, pins only" % lock
