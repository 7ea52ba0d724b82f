"""The controller matrix: every older ansible-core line the collection claims
(meta/runtime.yml's requires_ansible, README's "Supported") runs
`scripts/test-matrix <line>` in a venv of its own: the unit tests, the tarball
test, ansible-test sanity (compile, import, validate-modules, yamllint) and
one Molecule scenario under a name of its own. The newest line, 2.21, is the
dev venv that runs the whole suite.

KUMA_MESH_MATRIX_LINES selects lines (default all: "2.18 2.19 2.20"; ""
runs none), KUMA_MESH_MATRIX_STEPS steps (scripts/test-matrix). Marked
`molecule` as well (its scenario needs root and podman, and under
pytest-xdist it runs beside the other scenarios); output in
tests/output/matrix-<line>.log.
"""

import os
import shutil
import signal
import subprocess
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LINES = ["2.18", "2.19", "2.20"]
TIMEOUT = int(os.environ.get("KUMA_MESH_MATRIX_TIMEOUT", "2700"))
MARKERS = ("FAILED", "fatal: [", "failed: [", "UNREACHABLE!", "ERROR", "Error:", "error:")


def unusable_reason(line):
    if line not in os.environ.get("KUMA_MESH_MATRIX_LINES", " ".join(LINES)).split():
        return "ansible-core %s is not in KUMA_MESH_MATRIX_LINES" % line
    steps = os.environ.get("KUMA_MESH_MATRIX_STEPS", "unit sanity molecule").split()
    if "molecule" in steps:
        if os.geteuid() != 0:
            return "the matrix's Molecule scenario needs root (rootful podman)"
        if not shutil.which("podman"):
            return "podman is not installed: run scripts/testbed"
    return None


def summary(path, lines=80):
    with open(path, errors="replace") as f:
        text = f.readlines()
    steps = [line for line in text if " test-matrix " in line]
    hits = [line for line in text if any(m in line for m in MARKERS)][:20]
    return "steps:\n%s\nfailures:\n%s\nlast %d lines of %s:\n%s" % (
        "".join(steps), "".join(hits), lines, path, "".join(text[-lines:]))


@pytest.mark.matrix
@pytest.mark.molecule
@pytest.mark.parametrize("line", LINES)
def test_ansible_core_line(line):
    reason = unusable_reason(line)
    if reason:
        if os.environ.get("CI") and "KUMA_MESH_MATRIX_LINES" not in reason:
            pytest.fail("the controller matrix cannot run in CI: " + reason)
        pytest.skip(reason)
    out_dir = os.path.join(ROOT, "tests", "output")
    os.makedirs(out_dir, exist_ok=True)
    log_path = os.path.join(out_dir, "matrix-%s.log" % line)
    start = time.monotonic()
    try:
        rc = run(line, log_path)
    finally:
        remove_hosts("matrix-" + line.replace(".", "-"))
    took = time.monotonic() - start
    assert rc == 0, "scripts/test-matrix %s failed (exit %d, %.0f s); %s" % (line, rc, took, summary(log_path))
    print("scripts/test-matrix %s: %.0f s" % (line, took))


def remove_hosts(scenario):
    """The scenario's containers, whatever happened (scripts/test-matrix
    removes them too, unless it was killed)."""
    if not shutil.which("podman"):
        return
    env = dict(os.environ)
    conf = os.path.join(ROOT, ".cache", "containers", "containers.conf")
    if os.path.isfile(conf):
        env.setdefault("CONTAINERS_CONF", conf)
    names = subprocess.run(["podman", "ps", "-a", "--format", "{{.Names}}", "--filter",
                            "label=kuma.mesh.scenario=" + scenario],
                           env=env, capture_output=True, text=True, check=False).stdout.split()
    if names:
        subprocess.run(["podman", "rm", "-f", "-t", "5", "--ignore"] + names, env=env, capture_output=True,
                       check=False)


def run(line, log_path):
    with open(log_path, "w") as log:
        proc = subprocess.Popen([os.path.join(ROOT, "scripts", "test-matrix"), line], cwd=ROOT,
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            rc = proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
            pytest.fail("scripts/test-matrix %s timed out after %d s; %s" % (line, TIMEOUT, summary(log_path)),
                        pytrace=False)
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    return rc
