"""Runs `ansible-test sanity` or `ansible-test units` with the ansible-core of
the Python running this script, on a copy of the checkout laid out as
ansible_collections/kuma/mesh (an installed collection path), for this Python
only (scripts/test-matrix, tests/sanity/test_sanity.py).

    python tests/matrix/run_ansible_test.py sanity compile import validate-modules yamllint
    python tests/matrix/run_ansible_test.py units tests/unit/plugins

ansible-test bootstraps pip in its sanity venvs with a get-pip.py it downloads
from a host these machines cannot reach: a stand-in gives them the pip that
ensurepip bundles (the packages themselves still come from the package index),
for this script and for tests/sanity/test_sanity.py (the full run).
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)

GET_PIP_STANDIN = '''# Stand-in for get-pip.py, written by kuma.mesh's tests/matrix/run_ansible_test.py.
import ensurepip, subprocess, sys
ensurepip.bootstrap(upgrade=True)
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel") and not a.startswith("pip==")]
if [a for a in args if not a.startswith("-")]:
    sys.exit(subprocess.call([sys.executable, "-m", "pip", "install"] + args))
'''


def write_get_pip_standin():
    import ansible_test  # pylint: disable=import-outside-toplevel

    path = os.path.join(os.path.dirname(ansible_test.__file__), "_internal", "python_requirements.py")
    with open(path) as f:
        version = re.search(r"pip='([0-9.]+)'", f.read()).group(1)
    cache = os.path.expanduser("~/.ansible/test/cache")
    os.makedirs(cache, exist_ok=True)
    standin = os.path.join(cache, "get_pip_%s.py" % version.replace(".", "_"))
    if not os.path.exists(standin):
        with open(standin, "w") as f:
            f.write(GET_PIP_STANDIN)


def tracked_files():
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout
    return [f for f in out.splitlines() if os.path.isfile(os.path.join(ROOT, f))]


def run(tests, python=None, **kwargs):
    """ansible-test sanity for this Python (or the target Python given, found on
    PATH as pythonX.Y): the tests given, or every test when none is; kwargs go to
    subprocess.run (the CompletedProcess is returned). tests/sanity/test_sanity.py
    runs all."""
    args = ["sanity", "--requirements"]
    for test in tests:
        args += ["--test", test]
    return run_ansible_test(args, python=python, **kwargs)


def units(paths, **kwargs):
    """ansible-test units for this Python on the test files or folders given
    (relative to the collection), from the installed collection path."""
    return run_ansible_test(["units"] + list(paths), **kwargs)


def run_ansible_test(args, python=None, **kwargs):
    """ansible-test <args> --local for this Python, in a copy of the checkout
    at <tmp>/ansible_collections/kuma/mesh; Kuma's golden rule sets are linked
    beside it as ../shared is beside the checkout (tests/unit/paths.py)."""
    write_get_pip_standin()
    work = tempfile.mkdtemp(prefix="kuma-mesh-ansible-test-")
    try:
        dest = os.path.join(work, "ansible_collections", "kuma", "mesh")
        for rel in tracked_files():
            target = os.path.join(dest, rel)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copy2(os.path.join(ROOT, rel), target)
        shared = os.path.join(os.path.dirname(ROOT), "shared")
        if os.path.isdir(shared):
            os.symlink(shared, os.path.join(os.path.dirname(dest), "shared"))
        subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
        subprocess.run(["git", "add", "-A"], cwd=dest, check=True)
        cmd = [os.path.join(BIN, "ansible-test"), args[0], "--local",
               "--python", python or "%d.%d" % sys.version_info[:2], "--color", "no"] + args[1:]
        print("$ " + " ".join(cmd), flush=True)
        return subprocess.run(cmd, cwd=dest, check=False, **kwargs)
    finally:
        shutil.rmtree(work, ignore_errors=True)


USAGE = "usage: run_ansible_test.py sanity [--python X.Y] [TEST...] | units [PATH...]"

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in ("sanity", "units"):
        sys.exit(USAGE)
    if sys.argv[1] == "sanity":
        target = None
        tests = sys.argv[2:]
        if tests[:1] == ["--python"]:
            if len(tests) < 2:
                sys.exit(USAGE)
            target, tests = tests[1], tests[2:]
        sys.exit(run(tests or ["compile", "import", "validate-modules", "yamllint"], python=target).returncode)
    sys.exit(units(sys.argv[2:] or ["tests/unit/plugins"]).returncode)
