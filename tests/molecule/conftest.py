"""Molecule scenarios on local podman hosts: marker and preconditions."""

import functools
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def pytest_configure(config):
    config.addinivalue_line("markers", "molecule: Molecule scenarios on local container hosts (slow)")
    config.addinivalue_line("markers", "matrix: an older ansible-core line of the controller matrix (slow)")


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


def slots():
    """How many slow jobs run at once (KUMA_MESH_TEST_WORKERS, default 3:
    measured on 2 cores, docs/testing.md)."""
    return int(os.environ.get("KUMA_MESH_TEST_WORKERS", "3"))


def pytest_collection_finish(session):
    """Starts the selected Molecule scenarios and the demo in the background
    (jobs.py), the longest first, before the first test runs."""
    import jobs

    config = session.config
    if (config.option.collectonly or hasattr(config, "workerinput")  # a pytest-xdist worker
            or slots() <= 0 or unusable_reason() is not None):
        return
    env = scenario_env()
    found = []
    for item in session.items:
        make = getattr(item.module, "background_job", None)
        job = make(item, env) if item.get_closest_marker("molecule") is not None and make is not None else None
        if job is not None:  # None: the test skips (e.g. a matrix line not selected)
            found.append((getattr(item.module, "expected", lambda name: 600), job))
    if not found:
        return
    found.sort(key=lambda entry: -entry[0](entry[1].name))
    jobs.POOL = jobs.Pool(slots(), gate=images_built)
    jobs.POOL.start([job for _expected, job in found])
    jobs.ANNOUNCE = functools.partial(announce, config)
    reporter = config.pluginmanager.getplugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(
            f"kuma.mesh: {len(found)} slow tests started in the background, {jobs.POOL.slots} at a time "
            f"(logs in tests/output/); the other tests run meanwhile")


def images_built():
    """None once the test-host images are there, or why they are not.
    scripts/run-tests builds them in the background while the fast tests run
    and names the file that receives the build's exit status in
    KUMA_MESH_IMAGES_RC (its output is beside it, .log for .rc)."""
    import time

    rc_file = os.environ.get("KUMA_MESH_IMAGES_RC")
    if not rc_file:
        return None
    deadline = time.monotonic() + int(os.environ.get("KUMA_MESH_MOLECULE_TIMEOUT", "2700"))
    while not os.path.exists(rc_file):
        if time.monotonic() > deadline:
            return f"the test-host images were not built in time: see {os.path.relpath(rc_file[:-3] + '.log', ROOT)}"
        time.sleep(2)
    with open(rc_file) as f:
        rc = f.read().strip()
    if rc == "0":
        return None
    return (f"building the test-host images failed (exit {rc}): see "
            f"{os.path.relpath(rc_file[:-3] + '.log', ROOT)}")


def announce(config):
    """Prints the background jobs that finished since the last call (from
    pytest's thread only)."""
    import jobs

    reporter = config.pluginmanager.getplugin("terminalreporter")
    capture = config.pluginmanager.getplugin("capturemanager")
    while True:
        try:
            job = jobs.POOL.finished.get_nowait()
        except Exception:  # queue.Empty
            return
        if reporter is None:
            continue
        ok = job.error is None and (job.result or {}).get("ok")
        line = (f"kuma.mesh: {job.name} {'done' if ok else 'FAILED'} after {job.seconds:.0f} s "
                f"(log {jobs.relative(job.log_path)})")
        if capture is not None:
            with capture.global_and_fixture_disabled():
                reporter.ensure_newline()
                reporter.write_line(line)
        else:
            reporter.ensure_newline()
            reporter.write_line(line)


def pytest_runtest_logfinish(nodeid, location):
    import jobs

    if jobs.POOL is not None and jobs.ANNOUNCE is not None:
        jobs.ANNOUNCE()


def pytest_sessionfinish(session, exitstatus):
    """Stops the background jobs that are still running (an interrupted or
    -x run): their processes are killed and their containers removed."""
    import jobs

    if jobs.POOL is not None:
        jobs.POOL.stop()
        jobs.POOL = None
