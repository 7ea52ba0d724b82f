# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kuma.mesh maintainers
# Apache License 2.0 (see LICENSE)
"""Facts about the host the rules depend on, read from files (no processes).

A no-change run of kuma_tproxy must spawn nothing but the iptables-save
reads, so everything here comes from /proc, /etc and the file system.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import os
import pwd

SEARCH_PATH = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")  # Kuma's fallback locations


KUMA_DP_UID = 5678  # Kuma's default uid for kuma-dp
KUMA_DP_NAME = "kuma-dp"


class UidResult(object):
    """The uid ``kuma_dp_user`` resolves to (a string), or None with the reason."""

    def __init__(self, uid=None, error=None):
        self.uid = uid
        self.error = error


def resolve_uid(user):
    """Kuma's findUserUID: a uid or a user name that exists on the host, as a uid string."""
    text = str(user).strip()
    if text.isdigit():
        try:
            return str(pwd.getpwuid(int(text)).pw_uid)
        except (KeyError, OverflowError, ValueError):
            pass
    if not text or "\x00" in text:
        return None
    try:
        return str(pwd.getpwnam(text).pw_uid)
    except (KeyError, ValueError):
        return None


def resolve_kuma_dp_user(user):
    """``kuma_dp_user`` as Kuma resolves it, uid 0 refused.

    Empty means Kuma's default: uid 5678 when it exists, else a user named kuma-dp.
    """
    text = "" if user is None else str(user).strip()
    if not text:
        uid = resolve_uid(str(KUMA_DP_UID)) or resolve_uid(KUMA_DP_NAME)
        if uid is None:
            return UidResult(error="kuma_dp_user: '' (Kuma's default) found neither uid %d nor a user named %s on the host"
                             % (KUMA_DP_UID, KUMA_DP_NAME))
    else:
        uid = resolve_uid(text)
        if uid is None:
            return UidResult(error="kuma_dp_user: %r does not refer to a valid user on the host (create it first, "
                             "e.g. with the kuma.mesh.dataplane role)" % text)
    if uid == "0":
        return UidResult(error="kuma_dp_user: %r resolves to uid 0: every process of root would bypass the proxy; "
                         "use the dedicated kuma-dp account" % text)
    return UidResult(uid=uid)


def parse_resolv_conf(text):
    """(name servers, ignored lines) of a resolv.conf, read as glibc's res_init does:
    a line whose first word is ``nameserver``, the address only (``%zone`` allowed for
    IPv6); anything that is not an address (``192.0.2.53/24``) is ignored, never fatal."""
    servers, ignored = [], []
    for raw in text.splitlines():
        # glibc matches the keyword at the very start of the line, followed by a blank
        if not raw.startswith(("nameserver ", "nameserver\t")) and raw.rstrip() != "nameserver":
            continue
        fields = raw.split()
        if len(fields) < 2:
            ignored.append(raw.strip())
            continue
        address = fields[1]
        try:
            parsed = ipaddress.ip_address(address.split("%", 1)[0] if ":" in address else address)
        except ValueError:
            ignored.append(raw.strip())
            continue
        servers.append(str(parsed))
    return servers, ignored


def resolv_conf_servers(path):
    """Name servers of a resolv.conf (see parse_resolv_conf)."""
    with open(path, "rb") as f:
        text = f.read().decode("utf-8", "replace")
    return parse_resolv_conf(text)[0]


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
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return inodes
    for fd in names:
        try:
            target = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


class TcpSocket(object):
    def __init__(self, local_port, remote_port, state, inode):
        self.local_port = local_port
        self.remote_port = remote_port
        self.state = state  # "01" established, "0A" listen
        self.inode = inode


def tcp_sockets(tables=("/proc/net/tcp", "/proc/net/tcp6")):
    out = []
    for table in tables:
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if len(fields) < 10:
                        continue
                    out.append(TcpSocket(int(fields[1].rsplit(":", 1)[1], 16), int(fields[2].rsplit(":", 1)[1], 16),
                                         fields[3], fields[9]))
        except (IOError, OSError, StopIteration, ValueError):
            continue
    return out


class SshSession(object):
    """What the run knows of the SSH session it runs under.

    ``port``: the local (server) port of the session's own connection, or None.
    ``how``: "SSH_CONNECTION", "sshd socket" or None. ``under_sshd``: an sshd
    process is among the module's ancestors (then a None port is worth a warning).
    ``sshd_ports``: the ports sshd serves on this host (under sshd: its listening
    sockets; else, or when none are seen, the Port lines of sshd_config, else 22),
    used to recognise an exclusion an earlier run added for a session.
    """

    def __init__(self, port=None, how=None, under_sshd=False, sshd_ports=()):
        self.port = port
        self.how = how
        self.under_sshd = under_sshd
        self.sshd_ports = tuple(sshd_ports)


def _sshd_config_ports(path="/etc/ssh/sshd_config"):
    ports = []
    files = [path]
    conf_d = path + ".d"
    try:
        files += [os.path.join(conf_d, n) for n in sorted(os.listdir(conf_d)) if n.endswith(".conf")]
    except OSError:
        pass
    for name in files:
        try:
            with open(name) as f:
                for line in f:
                    fields = line.split()
                    if len(fields) >= 2 and fields[0].lower() == "port" and fields[1].isdigit():
                        ports.append(int(fields[1]))
        except (IOError, OSError):
            continue
    return ports or [22]


def _sshd_chain(start_pid):
    """The sshd processes among our ancestors, nearest first."""
    chain = []
    pid = start_pid
    for _depth in range(64):
        pid = _parent_pid(pid)
        if pid <= 1:
            break
        if _comm(pid).startswith("sshd"):
            chain.append(pid)
        elif chain:
            break
    return chain


def _sshd_listen_ports(sockets, chain):
    """Ports sshd listens on: listening sockets held by sshd processes outside our session."""
    listening = dict((s.inode, s.local_port) for s in sockets if s.state == "0A")
    ports = set()
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return ports
    for pid in pids:
        if int(pid) in chain:
            continue
        try:
            if not _comm(int(pid)).startswith("sshd"):
                continue
        except (IOError, OSError):
            continue
        for inode in _socket_inodes(int(pid)):
            if inode in listening:
                ports.add(listening[inode])
    return ports


def ssh_session(environ=None, start_pid=None):
    """The SSH session this process runs under (see SshSession)."""
    environ = os.environ if environ is None else environ
    pid = start_pid or os.getpid()
    try:
        chain = _sshd_chain(pid)
    except (IOError, OSError, ValueError, IndexError):
        chain = []
    fields = environ.get("SSH_CONNECTION", "").split()
    if len(fields) == 4 and fields[3].isdigit() and 0 < int(fields[3]) < 65536:
        port = int(fields[3])
        return SshSession(port, "SSH_CONNECTION", True, sorted(set(_sshd_config_ports()) | set([port])))
    if not chain:
        # not under sshd: no socket to look at (and no /proc scan, for speed)
        return SshSession(None, None, False, _sshd_config_ports())
    sockets = tcp_sockets()
    sshd_ports = sorted(_sshd_listen_ports(sockets, chain)) or _sshd_config_ports()
    # The session's connection is the accepted socket shared by the session's sshd
    # processes whose local port is one sshd listens on (forwarded connections are
    # outbound from the host, or accepted on the session's own listeners).
    by_inode = dict((s.inode, s) for s in sockets if s.state == "01")
    own_listeners = set(s.local_port for s in sockets if s.state == "0A" and any(
        s.inode in _socket_inodes(p) for p in chain))
    candidates = set()
    for session_pid in chain:
        for inode in _socket_inodes(session_pid):
            sock = by_inode.get(inode)
            if sock is None or sock.local_port in own_listeners:
                continue
            if sock.local_port in sshd_ports:
                candidates.add(sock.local_port)
    if len(candidates) == 1:
        return SshSession(candidates.pop(), "sshd socket", True, sshd_ports)
    return SshSession(None, None, True, sshd_ports)


def ssh_session_port(environ=None, start_pid=None):
    """The server port of the SSH session this process runs under, or None."""
    return ssh_session(environ, start_pid).port
