"""The background job pool the Molecule scenarios run in (jobs.py), with real
subprocesses: slots are reused by whichever job is next, a closed gate fails
every job with its reason, a timeout or a stop kills the job's whole process
group. Fast; not marked molecule."""

import os
import sys
import threading
import time

import pytest

import jobs


def sleeper(seconds, starts, lock):
    def work(log):
        with lock:
            starts.append(time.monotonic())
        rc = jobs.run_logged([sys.executable, "-c", f"import time; time.sleep({seconds})"], log, dict(os.environ), 30)
        return {"ok": rc == 0}
    return work


def test_a_free_slot_takes_the_next_job_and_no_more_than_slots_run(tmp_path):
    lock = threading.Lock()
    starts = {}
    made = []
    for name, seconds in (("long", 1.5), ("a", 0.3), ("b", 0.3), ("c", 0.3)):
        starts[name] = []
        made.append(jobs.Job(name, str(tmp_path / f"{name}.log"), sleeper(seconds, starts[name], lock)))
    pool = jobs.Pool(2)
    begin = time.monotonic()
    pool.start(made)
    done = [jobs.wait(job, pool) for job in made]
    pool.stop()
    assert all(job.result == {"ok": True} for job in done)
    # "long" holds one slot the whole time; a, b and c pass through the other
    # one after another instead of waiting behind "long"
    assert starts["c"][0] - begin < 1.4
    spans = sorted((job.started, job.ended) for job in done)
    for start, _end in spans:
        assert sum(1 for s, e in spans if s <= start < e) <= 2, spans
    assert pool.finished.qsize() == 4


def test_a_closed_gate_fails_every_job_with_its_reason(tmp_path):
    pool = jobs.Pool(2, gate=lambda: "building the test-host images failed (exit 1)")
    made = [jobs.Job(n, str(tmp_path / n), lambda log: {"ok": True}) for n in ("x", "y")]
    pool.start(made)
    for job in made:
        with pytest.raises(RuntimeError, match="images failed"):
            jobs.wait(job, pool)
    pool.stop()


def test_a_timeout_kills_the_whole_process_group(tmp_path):
    pid_file = tmp_path / "child.pid"
    script = f"sh -c 'sleep 60 & echo $! > {pid_file}; wait'"
    with open(tmp_path / "log", "w") as log:
        with pytest.raises(jobs.TimedOut, match="timed out after 1 s"):
            jobs.run_logged(["sh", "-c", script], log, dict(os.environ), 1)
    child = int(pid_file.read_text())
    for _attempt in range(50):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the grandchild survived the timeout")


def test_without_a_pool_wait_runs_the_job_there(tmp_path):
    assert jobs.POOL is None or "solo" not in jobs.POOL.jobs
    job = jobs.wait(jobs.Job("solo", str(tmp_path / "solo.log"), lambda log: {"ok": True, "n": 1}))
    assert job.result == {"ok": True, "n": 1}
    assert job.seconds >= 0


def test_stopping_a_pool_leaves_another_pools_processes_alone(tmp_path):
    """A pool tried by a test while the session's pool runs the scenarios must
    not kill the scenarios (it did: stop() killed every job's process)."""
    def long_job(log):
        return {"rc": jobs.run_logged(["sleep", "3"], log, dict(os.environ), 30)}

    def short_job(log):
        return {"rc": jobs.run_logged(["sleep", "0.2"], log, dict(os.environ), 30)}

    outer = jobs.Pool(1)
    inner = jobs.Pool(1)
    kept = jobs.Job("kept", str(tmp_path / "kept.log"), long_job)
    outer.start([kept])
    time.sleep(0.5)  # the outer job's sleep is running
    quick = jobs.Job("quick", str(tmp_path / "quick.log"), short_job)
    inner.start([quick])
    jobs.wait(quick, inner)
    inner.stop()
    jobs.wait(kept, outer)
    outer.stop()
    assert kept.error is None and kept.result == {"rc": 0}, (kept.error, kept.result)
