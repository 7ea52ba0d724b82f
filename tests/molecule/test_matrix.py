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
import subprocess

import pytest

import jobs

ROOT = jobs.ROOT
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


def matrix_job(line, env):
    log_path = os.path.join(jobs.OUTPUT, "matrix-%s.log" % line)

    def work(log):
        try:
            rc = jobs.run_logged([os.path.join(ROOT, "scripts", "test-matrix"), line], log, env, TIMEOUT)
        except jobs.TimedOut as exc:
            return {"ok": False, "why": str(exc)}
        finally:
            remove_hosts("matrix-" + line.replace(".", "-"))
        return {"ok": rc == 0, "why": "exit %d" % rc}

    return jobs.Job("matrix-" + line, log_path, work)


def background_job(item, env):
    """The job tests/molecule/conftest.py starts in the background for this
    test (None: the line is not selected, the test skips)."""
    line = item.callspec.params["line"]
    return None if unusable_reason(line) else matrix_job(line, env)


def expected(name):
    """Seconds a line takes beside the scenarios (its own venv, unit tests,
    sanity and one scenario; 194 s in the run of docs/performance.md)."""
    return 195


@pytest.mark.matrix
@pytest.mark.molecule
@pytest.mark.parametrize("line", LINES)
def test_ansible_core_line(line, molecule_ready):
    reason = unusable_reason(line)
    if reason:
        if os.environ.get("CI") and "KUMA_MESH_MATRIX_LINES" not in reason:
            pytest.fail("the controller matrix cannot run in CI: " + reason)
        pytest.skip(reason)
    job = jobs.wait(matrix_job(line, molecule_ready))
    assert job.result["ok"], "scripts/test-matrix %s failed (%s, %.0f s); %s" % (
        line, job.result["why"], job.seconds, summary(job.log_path))
    print("scripts/test-matrix %s: %.0f s (log %s)" % (line, job.seconds, jobs.relative(job.log_path)))


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
