# Test-bed only (not part of the collection): containers.podman.podman with
# pipelining, as a fleet would use SSH with pipelining. The upstream plugin
# runs `podman exec` without -i, so it cannot take a module on stdin, and it
# mounts the container on every connection; a module task then costs six
# podman calls (mount, echo ~, mkdir, chmod, the run, rm). Here it is one
# `podman exec -i`, and the container is mounted only when a file is copied
# (template, copy, fetch). See docs/testing.md.
"""containers.podman.podman, with modules piped to ``podman exec -i``.

With KUMA_MESH_COUNT_CALLS set to a file, every command run on a host (a
pipelined module, another command, a file copied in or out) appends the host's name
to it, one line each: bench/bench_fleet.py counts the remote calls per host so.
"""

import os
import shlex

from ansible.module_utils.common.text.converters import to_native
from ansible_collections.containers.podman.plugins.connection import podman

# The options are those of containers.podman.podman (ansible_podman_executable...).
DOCUMENTATION = podman.DOCUMENTATION


class Connection(podman.Connection):
    """Pipes in_data (a pipelined module) to the command's stdin; mounts lazily."""

    transport = "podman_pipelined"
    has_pipelining = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._mounted = False

    def _connect(self):
        # No `podman mount` here: most tasks only run a module.
        self._connected = True
        return self

    def _mount(self):
        if not self._mounted:
            self._mounted = True
            super()._connect()

    def exec_command(self, cmd, in_data=None, sudoable=False):
        if not self._connected:
            self._connect()
        self._count()
        if in_data is None:
            return super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
        exec_args = ["exec", "-i"]
        if self.user:
            exec_args += ["--user", self.user]
        return self._podman(exec_args, shlex.split(to_native(cmd, errors="surrogate_or_strict")), in_data)

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
        self._mount()
        return super().put_file(in_path, out_path)

    def fetch_file(self, in_path, out_path):
        self._count()
        self._mount()
        return super().fetch_file(in_path, out_path)
