"""Runs a command in a running podman container the way `podman exec` does,
through nsenter: the test bed's connection (molecule/_shared/connection_plugins/
podman_pipelined.py) and the firewalld integration tests (tests/integration/
fwhost.py) use it.

A `podman exec` costs about 0.3 s of CPU (the podman client, conmon, runc);
nsenter costs 0.01 s. The command enters every namespace of the container's
init (mount, UTS, IPC, network, PID), its root and working directory, as root,
with the environment podman exec gives these containers and the container's
capability bounding set (setpriv, inside the container). Not applied: the
container's seccomp filter and cgroup. See docs/testing.md.
"""

import collections
import os
import shutil

# What `podman exec` gives a command in these containers (their images' Config.Env).
EXEC_ENV = ("TERM=xterm", "container=podman", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME=/root")
# Linux capability numbers (linux/capability.h) -> setpriv's names.
CAPS = ("chown dac_override dac_read_search fowner fsetid kill setgid setuid setpcap linux_immutable "
        "net_bind_service net_broadcast net_admin net_raw ipc_lock ipc_owner sys_module sys_rawio sys_chroot "
        "sys_ptrace sys_pacct sys_admin sys_boot sys_nice sys_resource sys_time sys_tty_config mknod lease "
        "audit_write audit_control setfcap mac_override mac_admin syslog wake_alarm block_suspend audit_read "
        "perfmon bpf checkpoint_restore").split()
INSPECT_FORMAT = "{{.State.Pid}} {{.Id}}"  # podman inspect --format: what find_init needs
# A container's init: its pid on the controller and the container's id, which
# is_init_of checks the pid against before each use.
Init = collections.namedtuple("Init", ["pid", "container_id"])


def usable():
    """nsenter can stand in for podman exec: root, and nsenter on PATH."""
    return os.geteuid() == 0 and shutil.which("nsenter") is not None


def proc_status(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
    except (OSError, ValueError):
        return {}


def is_init_of(pid, container_id):
    """True when pid is the init (pid 1 of its namespace) of that container:
    checked before each use, for containers restart and names are reused."""
    if not pid or not container_id:
        return False
    try:
        with open("/proc/%d/cgroup" % pid) as f:
            in_container = ("libpod-%s" % container_id) in f.read()
    except OSError:
        return False
    return in_container and proc_status(pid).get("NSpid", "").split()[-1:] == ["1"]


def find_init(inspected):
    """The Init from `podman inspect --format INSPECT_FORMAT` output (or from a
    cache of it), or None when the container is not running (pid 0), is not one
    of these, or the text is not that output."""
    try:
        pid, container_id = inspected.split()
        init = Init(int(pid), container_id)
    except ValueError:
        return None
    return init if is_init_of(*init) else None


def bounding_set(pid):
    """setpriv's --bounding-set argument for the capabilities of pid's bounding set."""
    mask = int(proc_status(pid).get("CapBnd", "0"), 16)
    return ",".join(["-all"] + ["+" + name for bit, name in enumerate(CAPS) if mask >> bit & 1])


def argv(pid, command):
    """The command line that runs ``command`` (a list) in the container whose init is pid."""
    return (["nsenter", "--target", str(pid), "--mount", "--uts", "--ipc", "--net", "--pid", "--root", "--wd",
             "--", "/usr/bin/env", "-i"] + list(EXEC_ENV)
            + ["setpriv", "--inh-caps=-all", "--bounding-set=" + bounding_set(pid), "--"] + list(command))
