"""Runs every Molecule scenario (molecule/<name>/molecule.yml) as one test.

Each runs `molecule test -s <name>` from the repository root with the
environment of scripts/env.sh (Molecule reads the shared base configuration,
.config/molecule/config.yml, by itself); the output goes to
tests/output/molecule-<name>.log. The scenario's containers are removed
before and after, whatever happens. On failure the test names the log and
shows its failed and unreachable task results (CI keeps only the test's
output) and its tail.

The scenarios run in the background while the other tests run (jobs.py,
started by conftest.py): the longest first, so the run ends sooner; their
tests are reported shortest first, about the order they finish in.
"""

import glob
import os
import subprocess

import pytest
import yaml

import jobs

ROOT = jobs.ROOT
TIMEOUT = int(os.environ.get("KUMA_MESH_MOLECULE_TIMEOUT", "2700"))
TAIL = 80
# Seconds each scenario took in a whole run (scripts/run-tests, 2 cores, three
# at a time; docs/testing.md): the order the background jobs start in, longest
# first, and the order their tests report in, shortest first. A scenario not
# listed counts as 600 s.
EXPECTED = {
    "fleet": 330,
    "fleet-upgrade": 280,
    "dataplane-install": 230,
    "dataplane-upgrade": 215,
    "fleet-upgrade-stop": 155,
    "dataplane-config": 135,
    "dataplane-airgap": 130,
    "dataplane-uninstall": 115,
    "tproxy-firewalld": 95,
    "tproxy-lifecycle": 90,
    "tproxy-default": 70,
    "testbed": 45,
}


def expected(name):
    return EXPECTED.get(name, 600)


def scenarios():
    found = []
    for path in sorted(glob.glob(os.path.join(ROOT, "molecule", "*", "molecule.yml"))):
        name = os.path.basename(os.path.dirname(path))
        if not name.startswith("_"):
            found.append(name)
    return sorted(found, key=lambda name: (expected(name), name))


def platform_names(name):
    with open(os.path.join(ROOT, "molecule", name, "molecule.yml")) as f:
        data = yaml.safe_load(f) or {}
    return [p["name"] for p in data.get("platforms") or [] if isinstance(p, dict) and "name" in p]


def remove_containers(name, env):
    """Removes the scenario's containers: by its label and by its platform names."""
    labelled = subprocess.run(
        ["podman", "ps", "-a", "--format", "{{.Names}}", "--filter", f"label=kuma.mesh.scenario={name}"],
        env=env, capture_output=True, text=True, check=False,
    ).stdout.split()
    names = sorted(set(labelled) | set(platform_names(name)))
    if names:
        subprocess.run(["podman", "rm", "-f", "-t", "5", "--ignore", *names],
                       env=env, capture_output=True, text=True, check=False)
    return names


def tail(path, lines=TAIL):
    with open(path, errors="replace") as f:
        return "".join(f.readlines()[-lines:])


FAILURE_MARKERS = ("fatal: [", "failed: [", "UNREACHABLE!", "FAILED!", "ERROR!", "CRITICAL ")


def failures(path, context=12, limit=6):
    """The task results that failed, each with the lines that follow it
    (the message), at most `limit` of them: the tail alone often shows only
    Molecule's cleanup."""
    with open(path, errors="replace") as f:
        lines = f.readlines()
    found = []
    for i, line in enumerate(lines):
        if not any(marker in line for marker in FAILURE_MARKERS):
            continue
        end = i + 1
        while end < min(i + context, len(lines)) and not any(m in lines[end] for m in ("TASK [", "PLAY [", "fatal: [")):
            end += 1
        result = "".join(lines[i:end])
        if "...ignoring" not in result:  # an expected failure
            found.append(result)
            if len(found) == limit:
                break
    return "\n[...]\n".join(found) or "(no failed task in the log)\n"


def explain(path):
    log = jobs.relative(path)
    return (f"the whole log: {log}\n"
            f"failed or unreachable tasks:\n{failures(path)}\n"
            f"last {TAIL} lines of {log}:\n{tail(path)}\n"
            f"(the whole log: {log})")


def scenario_job(scenario, env):
    log_path = os.path.join(jobs.OUTPUT, f"molecule-{scenario}.log")

    def work(log):
        remove_containers(scenario, env)
        try:
            rc = jobs.run_logged(["molecule", "test", "-s", scenario], log, env, TIMEOUT)
        except jobs.TimedOut as exc:
            return {"ok": False, "why": str(exc)}
        finally:
            left = remove_containers(scenario, env)
        return {"ok": rc == 0, "why": f"exit {rc}", "left": left}

    return jobs.Job(scenario, log_path, work)


def background_job(item, env):
    """The job conftest.py starts in the background for this test."""
    return scenario_job(item.callspec.params["scenario"], env)


@pytest.mark.molecule
@pytest.mark.parametrize("scenario", scenarios())
def test_scenario(scenario, molecule_ready):
    job = jobs.wait(scenario_job(scenario, molecule_ready))
    result = job.result
    if not result["ok"]:
        pytest.fail(f"molecule test -s {scenario} failed ({result['why']}, {job.seconds:.0f} s); "
                    + explain(job.log_path), pytrace=False)
    print(f"molecule test -s {scenario}: {job.seconds:.0f} s "
          f"(removed afterwards: {result['left'] or 'nothing'}; log {jobs.relative(job.log_path)})")
