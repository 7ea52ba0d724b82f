"""Molecule scenarios on local podman hosts: marker and preconditions."""

import functools
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def pytest_configure(config):
    config.addinivalue_line("markers", "molecule: Molecule scenarios on local container hosts (slow)")


@functools.lru_cache(maxsize=None)
def scenario_env():
    """The environment of scripts/env.sh (venv, collections path, CONTAINERS_CONF)."""
    out = subprocess.run(
        ["bash", "-c", '. "$1/scripts/env.sh" && env -0', "_", ROOT],
        check=True, capture_output=True,
    ).stdout
    env = dict(item.split("=", 1) for item in out.decode().split("\0") if "=" in item)
    # Plain logs: no colours, no pager, no interactive prompts.
    env.update(NO_COLOR="1", PY_COLORS="0", ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1", PAGER="cat")
    return env


@functools.lru_cache(maxsize=None)
def unusable_reason():
    """Why the scenarios cannot run on this machine, or None."""
    if os.geteuid() != 0:
        return "Molecule scenarios need root (rootful podman with runc and cgroupfs)"
    env = scenario_env()
    if not shutil.which("podman", path=env["PATH"]):
        return "podman is not installed: run scripts/testbed"
    if not os.path.isfile(env["CONTAINERS_CONF"]):
        return f"{env['CONTAINERS_CONF']} is missing: run scripts/testbed"
    if not shutil.which("molecule", path=env["PATH"]):
        return "molecule is not in the venv: run scripts/bootstrap"
    try:
        info = subprocess.run(["podman", "info", "--format", "{{.Host.OCIRuntime.Name}}"],
                              env=env, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"podman is unusable: {exc}"
    if info.returncode != 0:
        return "podman is unusable: " + (info.stderr.strip().splitlines() or ["podman info failed"])[-1]
    return None


@pytest.fixture
def molecule_ready():
    """Skips (or, under CI, fails) when podman hosts cannot run here."""
    reason = unusable_reason()
    if reason:
        if os.environ.get("CI"):
            pytest.fail("Molecule scenarios cannot run in CI: " + reason)
        pytest.skip(reason)
    return scenario_env()
