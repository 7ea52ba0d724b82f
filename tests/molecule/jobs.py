"""The slow tests (Molecule scenarios, the demo) as background jobs.

pytest runs its tests one at a time. The slow ones are each one long
subprocess on their own containers, so tests/molecule/conftest.py starts
them all here, before the first test runs, at most `slots` at a time and the
longest first; the unit, integration and sanity tests then run in pytest's
process while the jobs work, and each slow test only waits for its job's
result. One pytest run, one summary line, the fast tests reported first, and
a free slot always takes the next job (pytest-xdist binds a queued scenario to
a worker before the one ahead of it ends).

A job is a name, a log file and a function that does the work, writing its
output to the log; whatever the function returns (or raises) is the job's
result. A test asks for it with `wait(name)`; with no pool (pytest-xdist, a
test run on its own) `wait` runs the job right there.
"""

import os
import queue
import signal
import subprocess
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUTPUT = os.path.join(ROOT, "tests", "output")


class Job:
    """One slow test's work: `work(log)` returns its result."""

    def __init__(self, name, log_path, work):
        self.name = name
        self.log_path = log_path
        self.work = work
        self.result = None
        self.error = None
        self.started = None
        self.ended = None
        self.done = threading.Event()

    @property
    def seconds(self):
        if self.started is None:
            return 0.0
        return (self.ended or time.monotonic()) - self.started

    def run(self):
        self.started = time.monotonic()
        try:
            os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
            with open(self.log_path, "w") as log:
                self.result = self.work(log)
        except BaseException as exc:  # noqa: BLE001  (the test reports it)
            self.error = exc
        finally:
            self.ended = time.monotonic()
            self.done.set()


class Pool:
    """Runs jobs in order, `slots` at a time, on threads (each job is one
    subprocess at a time, so the threads only wait)."""

    def __init__(self, slots, gate=None):
        self.slots = max(1, slots)
        # called before the first job starts: None, or why no job can run
        self._gate = gate
        self._gate_lock = threading.Lock()
        self._gate_result = ()
        self.jobs = {}
        self.finished = queue.Queue()
        self._todo = queue.Queue()
        self._threads = []
        self._stopping = threading.Event()

    def start(self, jobs):
        for job in jobs:
            self.jobs[job.name] = job
            self._todo.put(job)
        for i in range(min(self.slots, len(self.jobs))):
            thread = threading.Thread(target=self._worker, name=f"kuma-mesh-job-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _open(self):
        with self._gate_lock:
            if self._gate_result == ():
                self._gate_result = self._gate() if self._gate else None
            return self._gate_result

    def _worker(self):
        _CURRENT.pool = self  # run_logged files this job's processes under this pool
        while not self._stopping.is_set():
            try:
                job = self._todo.get_nowait()
            except queue.Empty:
                return
            closed = self._open()
            if closed:
                job.error = RuntimeError(closed)
                job.done.set()
            else:
                job.run()
            self.finished.put(job)

    def stop(self):
        """No new jobs; the running ones are killed by their processes' owners
        (run_logged) when `stopping` is set."""
        self._stopping.set()
        for proc, pool in list(RUNNING.items()):
            if pool is self:  # another pool's jobs (the session's, while a test tries a pool) go on
                kill_group(proc)
        for thread in self._threads:
            thread.join(timeout=60)

    @property
    def stopping(self):
        return self._stopping.is_set()


POOL = None  # set by tests/molecule/conftest.py when the slow tests run in the background
ANNOUNCE = None  # conftest.py's printer of finished jobs, called from pytest's thread
RUNNING = {}  # the subprocesses jobs are running now -> the pool whose job started it (or None)
_CURRENT = threading.local()  # .pool: the pool a worker thread runs jobs for


def wait(job, pool=None):
    """The job's result: from the pool (the session's by default), or by
    running it now."""
    pool = pool or POOL
    if pool is not None and job.name in pool.jobs:
        job = pool.jobs[job.name]
    else:
        job.run()
    while not job.done.wait(5):
        if ANNOUNCE is not None:
            ANNOUNCE()
    if ANNOUNCE is not None:
        ANNOUNCE()
    if job.error is not None:
        raise job.error
    return job


def kill_group(proc, grace=30):
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


class TimedOut(Exception):
    pass


def run_logged(cmd, log, env, timeout, cwd=ROOT):
    """Runs cmd in its own process group with stdout and stderr appended to
    log; returns its exit status. Raises TimedOut after `timeout` seconds (the
    group is killed), and kills the group when the pool stops."""
    log.write("$ " + " ".join(cmd) + "\n")
    log.flush()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    pool = getattr(_CURRENT, "pool", None) or POOL
    RUNNING[proc] = pool
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                return proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                if pool is not None and pool.stopping:
                    kill_group(proc, grace=5)
                    raise TimedOut(f"stopped with the test session: {' '.join(cmd)}")
                if time.monotonic() > deadline:
                    kill_group(proc)
                    raise TimedOut(f"{' '.join(cmd)} timed out after {timeout} s")
    except BaseException:
        if proc.poll() is None:
            kill_group(proc, grace=5)
        raise
    finally:
        RUNNING.pop(proc, None)


def relative(path):
    return os.path.relpath(path, ROOT)
