"""Runs every Molecule scenario (molecule/<name>/molecule.yml) as one test.

Each runs `molecule -c molecule/_shared/config.yml test -s <name>` from the
repository root with the environment of scripts/env.sh; the output goes to
tests/output/molecule-<name>.log; on failure the test shows the log's failed
and unreachable task results (CI keeps only the test's output) and its tail. The
scenario's containers are removed before and after, whatever happens.
"""

import glob
import os
import signal
import subprocess
import time

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

BASE_CONFIG = "molecule/_shared/config.yml"
TIMEOUT = int(os.environ.get("KUMA_MESH_MOLECULE_TIMEOUT", "2700"))
TAIL = 80
# The longest scenarios first, so that pytest-xdist starts them first and the
# suite ends sooner (measured with three workers on two CPUs); then the rest
# in name order.
LONGEST_FIRST = ["fleet", "dataplane-install", "dataplane-airgap", "tproxy-firewalld", "dataplane-uninstall"]


def scenarios():
    found = []
    for path in sorted(glob.glob(os.path.join(ROOT, "molecule", "*", "molecule.yml"))):
        name = os.path.basename(os.path.dirname(path))
        if not name.startswith("_"):
            found.append(name)
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    return sorted(found, key=lambda name: (rank.get(name, len(rank)), name))


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
    return (f"failed or unreachable tasks:\n{failures(path)}\n"
            f"last {TAIL} lines of {path}:\n{tail(path)}")


@pytest.mark.molecule
@pytest.mark.parametrize("scenario", scenarios())
def test_scenario(scenario, molecule_ready):
    env = molecule_ready
    out_dir = os.path.join(ROOT, "tests", "output")
    os.makedirs(out_dir, exist_ok=True)
    log_path = os.path.join(out_dir, f"molecule-{scenario}.log")
    cmd = ["molecule", "-c", BASE_CONFIG, "test", "-s", scenario]
    remove_containers(scenario, env)
    start = time.monotonic()
    try:
        with open(log_path, "w") as log:
            log.write("$ " + " ".join(cmd) + "\n")
            log.flush()
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                rc = proc.wait(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                pytest.fail(f"molecule test -s {scenario} timed out after {TIMEOUT} s; "
                            + explain(log_path), pytrace=False)
            except BaseException:  # KeyboardInterrupt: stop molecule too
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise
    finally:
        left = remove_containers(scenario, env)
    took = time.monotonic() - start
    if rc != 0:
        pytest.fail(f"molecule test -s {scenario} failed (exit {rc}, {took:.0f} s); "
                    + explain(log_path), pytrace=False)
    print(f"molecule test -s {scenario}: {took:.0f} s (removed afterwards: {left or 'nothing'})")
