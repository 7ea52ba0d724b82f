"""ansible-test sanity, ansible-test units and ansible-lint (production profile), run as tests so CI counts them."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
OUTPUT = os.path.join(ROOT, "tests", "output")

# The copy of the checkout, the get-pip.py stand-in and the command are the
# matrix's (tests/matrix/run_ansible_test.py): one way to run ansible-test.
sys.path.insert(0, os.path.join(ROOT, "tests", "matrix"))
import run_ansible_test  # noqa: E402  pylint: disable=wrong-import-position

pytestmark = pytest.mark.sanity


def report(name, proc):
    os.makedirs(OUTPUT, exist_ok=True)
    path = os.path.join(OUTPUT, name + ".log")
    with open(path, "w") as f:
        f.write(proc.stdout)
    tail = "\n".join(proc.stdout.splitlines()[-60:])
    return "%s failed (full log: %s):\n%s" % (name, path, tail)


def test_ansible_test_sanity():
    proc = run_ansible_test.run([], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    assert proc.returncode == 0, report("ansible-test-sanity", proc)


def test_ansible_test_units():
    """The plugins' unit tests as a collection's users and Galaxy's tooling run them:
    ansible-test units from an installed collection path (pytest runs them too)."""
    proc = run_ansible_test.units(["tests/unit/plugins/"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  universal_newlines=True)
    assert proc.returncode == 0, report("ansible-test-units", proc)


def test_ansible_lint_production_profile():
    proc = subprocess.run(
        [os.path.join(BIN, "ansible-lint"), "--profile", "production", "--nocolor"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, check=False,
        env=dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.environ.get(
            "ANSIBLE_COLLECTIONS_PATH", os.path.join(ROOT, ".cache", "collections"))),
    )
    assert proc.returncode == 0, report("ansible-lint", proc)
