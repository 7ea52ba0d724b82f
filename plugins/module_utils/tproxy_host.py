# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kuma.mesh maintainers
# Apache License 2.0 (see LICENSE)
"""Facts about the host the rules depend on, read from files (no processes).

A no-change run of kuma_tproxy must spawn nothing but the iptables-save
reads, so everything here comes from /proc, /etc and the file system.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import pwd

SEARCH_PATH = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")  # Kuma's fallback locations


def resolve_uid(user):
    """Kuma's findUserUID: a uid or a user name that exists on the host, as a uid string."""
    text = str(user).strip()
    if text.isdigit():
        try:
            return str(pwd.getpwuid(int(text)).pw_uid)
        except KeyError:
            pass
    try:
        return str(pwd.getpwnam(text).pw_uid)
    except KeyError:
        return None


def resolv_conf_servers(path):
    """Name servers of a resolv.conf, the way Kuma's DNS library reads them."""
    servers = []
    with open(path) as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 2 and fields[0] == "nameserver":
                servers.append(fields[1])
    return servers


def _if_inet6(path="/proc/net/if_inet6"):
    """[(address hex, interface)] of the host's IPv6 addresses."""
    try:
        with open(path) as f:
            return [(line.split()[0], line.split()[-1]) for line in f if line.strip()]
    except (IOError, OSError):
        return []


LOOPBACK_IPV6 = "0" * 31 + "1"
PASSTHROUGH_IPV6 = "0" * 31 + "6"


def has_local_ipv6(path="/proc/net/if_inet6"):
    """Kuma's HasLocalIPv6: any IPv6 address that is not loopback (::1).

    ::6 does not count either: it is the passthrough source Kuma itself puts
    on the loopback once it has decided for IPv6 (and kuma-dp.service puts
    back at start). Counting it would turn IPv6 on at the second run on a
    host whose only IPv6 is one Kuma added, and kumactl never adds it there.
    """
    return any(addr not in (LOOPBACK_IPV6, PASSTHROUGH_IPV6) for addr, _iface in _if_inet6(path))


def has_inbound_passthrough_ipv6(path="/proc/net/if_inet6"):
    """Whether ::6/128, Kuma's IPv6 passthrough source, sits on the loopback."""
    return any(addr == PASSTHROUGH_IPV6 for addr, _iface in _if_inet6(path))


def loopback_name(path="/sys/class/net"):
    """Kuma takes the first interface flagged loopback; on Linux that is 'lo'."""
    try:
        for name in sorted(os.listdir(path)):
            with open(os.path.join(path, name, "flags")) as f:
                if int(f.read().strip(), 16) & 0x8:  # IFF_LOOPBACK
                    return name
    except (IOError, OSError, ValueError):
        pass
    return "lo"


def find_executable(name, path_env=None):
    """The first executable ``name`` in PATH or Kuma's fallback directories."""
    dirs = [d for d in (path_env if path_env is not None else os.environ.get("PATH", "")).split(os.pathsep) if d]
    for directory in dirs + list(SEARCH_PATH):
        candidate = os.path.join(directory, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def executable_mode(path):
    """'nft' or 'legacy' from what an iptables binary resolves to (xtables-*-multi)."""
    real = os.path.basename(os.path.realpath(path))
    if "nft" in real:
        return "nft"
    if "legacy" in real:
        return "legacy"
    return None


def _parent_pid(pid):
    with open("/proc/%d/stat" % pid) as f:
        data = f.read()
    # the command name may hold spaces and parentheses: fields follow the last ')'
    return int(data[data.rindex(")") + 2:].split()[1])


def _comm(pid):
    with open("/proc/%d/comm" % pid) as f:
        return f.read().strip()


def _socket_inodes(pid):
    inodes = set()
    fd_dir = "/proc/%d/fd" % pid
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def _established_local_ports(inodes):
    ports = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[3] == "01" and fields[9] in inodes:  # ESTABLISHED
                        ports.append(int(fields[1].rsplit(":", 1)[1], 16))
        except (IOError, OSError, StopIteration):
            continue
    return ports


def ssh_session_port(environ=None, start_pid=None):
    """The server port of the SSH session this process runs under, or None.

    SSH_CONNECTION says it directly; sudo drops that variable, so the process
    tree is walked up to sshd and the port read from its established socket.
    """
    environ = os.environ if environ is None else environ
    for variable in ("SSH_CONNECTION",):
        fields = environ.get(variable, "").split()
        if len(fields) == 4 and fields[3].isdigit():
            return int(fields[3])
    pid = start_pid or os.getpid()
    try:
        for _depth in range(32):
            pid = _parent_pid(pid)
            if pid <= 1:
                return None
            if _comm(pid).startswith("sshd"):
                ports = _established_local_ports(_socket_inodes(pid))
                if ports:
                    return ports[0]
    except (IOError, OSError, ValueError):
        return None
    return None
