"""ansible-test sanity and ansible-lint (production profile), run as tests so CI counts them."""

import os
import re
import shutil
import subprocess
import sys
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
OUTPUT = os.path.join(ROOT, "tests", "output")

# ansible-test bootstraps pip in its venvs with a get-pip.py it downloads from
# a host these machines cannot reach; this stand-in gives them the pip that
# ensurepip bundles instead (the packages themselves still come from PyPI).
GET_PIP_STANDIN = '''# Stand-in for get-pip.py, written by kuma.mesh's tests/sanity/test_sanity.py.
import ensurepip, subprocess, sys
ensurepip.bootstrap(upgrade=True)
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel") and not a.startswith("pip==")]
if [a for a in args if not a.startswith("-")]:
    sys.exit(subprocess.call([sys.executable, "-m", "pip", "install"] + args))
'''

pytestmark = pytest.mark.sanity


def tracked_files():
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout
    return [f for f in out.splitlines() if os.path.isfile(os.path.join(ROOT, f))]


def pip_bootstrap_version():
    """The pip version ansible-test bootstraps (no public API says it)."""
    import ansible_test  # pylint: disable=import-outside-toplevel

    path = os.path.join(os.path.dirname(ansible_test.__file__), "_internal", "python_requirements.py")
    with open(path) as f:
        return re.search(r"pip='([0-9.]+)'", f.read()).group(1)


def report(name, proc):
    os.makedirs(OUTPUT, exist_ok=True)
    path = os.path.join(OUTPUT, name + ".log")
    with open(path, "w") as f:
        f.write(proc.stdout)
    tail = "\n".join(proc.stdout.splitlines()[-60:])
    return "%s failed (full log: %s):\n%s" % (name, path, tail)


def test_ansible_test_sanity():
    cache = os.path.expanduser("~/.ansible/test/cache")
    os.makedirs(cache, exist_ok=True)
    standin = os.path.join(cache, "get_pip_%s.py" % pip_bootstrap_version().replace(".", "_"))
    if not os.path.exists(standin):
        with open(standin, "w") as f:
            f.write(GET_PIP_STANDIN)
    work = tempfile.mkdtemp(prefix="kuma-mesh-sanity-")
    try:
        dest = os.path.join(work, "ansible_collections", "kuma", "mesh")
        for rel in tracked_files():
            target = os.path.join(dest, rel)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copy2(os.path.join(ROOT, rel), target)
        subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
        subprocess.run(["git", "add", "-A"], cwd=dest, check=True)
        proc = subprocess.run(
            [os.path.join(BIN, "ansible-test"), "sanity", "--local", "--python", "%d.%d" % sys.version_info[:2],
             "--requirements", "--color", "no"],
            cwd=dest, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, check=False,
        )
        assert proc.returncode == 0, report("ansible-test-sanity", proc)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_ansible_lint_production_profile():
    proc = subprocess.run(
        [os.path.join(BIN, "ansible-lint"), "--profile", "production", "--nocolor"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, check=False,
        env=dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.environ.get(
            "ANSIBLE_COLLECTIONS_PATH", os.path.join(ROOT, ".cache", "collections"))),
    )
    assert proc.returncode == 0, report("ansible-lint", proc)
