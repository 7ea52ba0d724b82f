# Test-bed only (not part of the collection): containers.podman.podman with
# pipelining, as a fleet would use SSH with pipelining. The upstream plugin
# runs `podman exec` without -i, so it cannot take a module on stdin, and it
# mounts the container on every connection; a module task then costs six
# podman calls (mount, echo ~, mkdir, chmod, the run, rm). Here it is one
# command per module, and files are streamed through a command too.
#
# The command enters the container with nsenter, not `podman exec`: a podman
# exec costs about 0.3 s of CPU (the podman client, conmon and runc), which
# was most of a scenario's CPU on these 2-core machines; nsenter costs 0.01 s,
# like a command over an SSH connection that is kept open. It enters every
# namespace of the container's init, its root and working directory, with the
# environment podman exec gives and the container's capability bounding set
# (setpriv), as root. See docs/testing.md.
"""containers.podman.podman, with modules piped to a command in the container.

The command runs through ``nsenter`` into the container's namespaces (the
default), or through ``podman exec -i`` with KUMA_MESH_PODMAN_EXEC=podman (as
bench/bench_fleet.py measures, for comparison with its earlier results), and
always through ``podman exec`` for a remote user other than root, a stopped
container or a controller that is not root.

With KUMA_MESH_COUNT_CALLS set to a file, every command run on a host (a
pipelined module, another command, a file copied in or out) appends the host's name
to it, one line each: bench/bench_fleet.py counts the remote calls per host so.
"""

import importlib.util
import os
import shlex
import subprocess
import tempfile

from ansible.errors import AnsibleError
from ansible.module_utils.common.text.converters import to_bytes, to_native
from ansible_collections.containers.podman.plugins.connection import podman


def _load_container_exec():
    """tests/tools/container_exec.py: how a command enters a container (shared with the tests)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "tests", "tools",
                        "container_exec.py")
    spec = importlib.util.spec_from_file_location("kuma_mesh_container_exec", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


container_exec = _load_container_exec()

# The options are those of containers.podman.podman (ansible_podman_executable...).
DOCUMENTATION = podman.DOCUMENTATION
PID_CACHE = os.path.join(tempfile.gettempdir(), "kuma-mesh-podman-init")


class Connection(podman.Connection):
    """Pipes in_data (a pipelined module) to the command's stdin; enters the
    container with nsenter."""

    transport = "podman_pipelined"
    has_pipelining = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_pid = None

    def _connect(self):
        # No `podman mount`: files go through a command.
        self._connected = True
        return self

    def _cache_path(self):
        return os.path.join(PID_CACHE, self._container_id.replace("/", "_"))

    def _container_init(self):
        """The pid of the container's init (on the controller), or None where
        nsenter cannot be used; remembered across tasks in a small cache file."""
        if os.environ.get("KUMA_MESH_PODMAN_EXEC", "nsenter") != "nsenter" or self.user or not container_exec.usable():
            return None
        if self._init_pid:
            return self._init_pid
        try:
            with open(self._cache_path()) as f:
                init = container_exec.find_init(f.read())
        except OSError:
            init = None
        if init is None:
            rc, out, dummy = self._podman("inspect", ["--format", container_exec.INSPECT_FORMAT])
            init = container_exec.find_init(to_native(out)) if rc == 0 else None
            if init is None:  # stopped, or not a podman container of this kind: podman exec says why
                return None
            os.makedirs(PID_CACHE, exist_ok=True)
            tmp = "%s.%d" % (self._cache_path(), os.getpid())
            with open(tmp, "w") as f:
                f.write("%d %s\n" % init)
            os.replace(tmp, self._cache_path())
        self._init_pid = init.pid
        return init.pid

    def _run(self, args, in_data=None):
        """Runs args (a list) in the container as root, in_data on its stdin."""
        pid = self._container_init()
        if pid is None:
            exec_args = ["exec", "-i"] + (["--user", self.user] if self.user else [])
            return self._podman(exec_args, args, in_data)
        local_cmd = container_exec.argv(pid, args)
        proc = subprocess.Popen([to_bytes(a, errors="surrogate_or_strict") for a in local_cmd], shell=False,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        stdout, stderr = proc.communicate(input=in_data)
        return proc.returncode, stdout, stderr

    def exec_command(self, cmd, in_data=None, sudoable=False):
        if not self._connected:
            self._connect()
        self._count()
        return self._run(shlex.split(to_native(cmd, errors="surrogate_or_strict")), in_data)

    def _count(self):
        count_file = os.environ.get("KUMA_MESH_COUNT_CALLS")
        if count_file:
            # one short O_APPEND write per call: atomic across the forks
            fd = os.open(count_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, ("%s\n" % self._container_id).encode())
            finally:
                os.close(fd)

    def put_file(self, in_path, out_path):
        self._count()
        with open(to_bytes(in_path, errors="surrogate_or_strict"), "rb") as f:
            data = f.read()
        rc, dummy, stderr = self._run(["/bin/sh", "-c", 'cat > "$1"', "sh", out_path], data)
        if rc != 0:
            raise AnsibleError("Failed to copy %s to %s in container %s: %s"
                               % (in_path, out_path, self._container_id, to_native(stderr)))

    def fetch_file(self, in_path, out_path):
        self._count()
        rc, stdout, stderr = self._run(["/bin/cat", in_path])
        if rc != 0:
            raise AnsibleError("Failed to fetch %s from container %s: %s"
                               % (in_path, self._container_id, to_native(stderr)))
        with open(to_bytes(out_path, errors="surrogate_or_strict"), "wb") as f:
            f.write(stdout)
