"""Throwaway network namespaces with real iptables, and the module run inside them.

Each host is a network namespace; two are joined by a veth pair with TEST-NET
addresses only (192.0.2.0/24, 2001:db8::/32). Nothing here sends traffic
anywhere else.
"""

import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.environ.get("ANSIBLE_COLLECTIONS_PATH", os.path.join(ROOT, ".cache", "collections")).split(":")[0]
SYSTEM_PYTHON = "/usr/bin/python3"  # uid 5678 cannot run pyenv's shims
KUMA_DP_UID = 5678

HOST_V4, PEER_V4 = "192.0.2.1", "192.0.2.2"
HOST_V6, PEER_V6 = "2001:db8::1", "2001:db8::2"


def sh(*args, **kwargs):
    check = kwargs.pop("check", True)
    return subprocess.run(list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          check=check, **kwargs)


def ensure_kuma_dp_user():
    try:
        return pwd.getpwuid(KUMA_DP_UID).pw_name
    except KeyError:
        sh("useradd", "--system", "--uid", str(KUMA_DP_UID), "--no-create-home", "--shell", "/usr/sbin/nologin", "kuma-dp")
        return "kuma-dp"


class Namespace(object):
    def __init__(self, name):
        self.name = name
        sh("ip", "netns", "add", name)
        self.run("ip", "link", "set", "lo", "up")

    def run(self, *args, **kwargs):
        return sh("ip", "netns", "exec", self.name, *args, **kwargs)

    def popen(self, args, uid=None, **kwargs):
        prefix = ["ip", "netns", "exec", self.name]
        if uid is not None:
            prefix += ["setpriv", "--reuid=%d" % uid, "--regid=%d" % uid, "--clear-groups"]
        return subprocess.Popen(prefix + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                universal_newlines=True, **kwargs)

    def save(self, family="ipv4", mode="nft"):
        tool = ("iptables" if family == "ipv4" else "ip6tables") + "-%s-save" % mode
        out = self.run(tool).stdout
        return "\n".join(strip_counters(line) for line in out.splitlines() if not line.startswith("#")) + "\n"

    def restore(self, text, family="ipv4", mode="nft", noflush=True):
        tool = ("iptables" if family == "ipv4" else "ip6tables") + "-%s-restore" % mode
        args = [tool] + (["--noflush"] if noflush else [])
        return self.run(*args, input=text)

    def delete(self):
        sh("ip", "netns", "del", self.name, check=False)


def strip_counters(line):
    if line.startswith(":") and line.endswith("]"):
        return line[: line.rindex("[")].rstrip()
    return line


class Pair(object):
    """Two namespaces, 'host' (where the module runs) and 'peer', joined by veth."""

    def __init__(self):
        tag = uuid.uuid4().hex[:6]
        self.host = Namespace("kmh-" + tag)
        self.peer = Namespace("kmp-" + tag)
        veth_h, veth_p = "vh" + tag, "vp" + tag
        sh("ip", "link", "add", veth_h, "netns", self.host.name, "type", "veth", "peer", "name", veth_p,
           "netns", self.peer.name)
        for ns, dev, v4, v6 in ((self.host, veth_h, HOST_V4, HOST_V6), (self.peer, veth_p, PEER_V4, PEER_V6)):
            ns.run("ip", "addr", "add", v4 + "/24", "dev", dev)
            ns.run("ip", "-6", "addr", "add", v6 + "/64", "dev", dev, "nodad")
            ns.run("ip", "link", "set", dev, "up")
        self.tmp = tempfile.mkdtemp(prefix="kuma-mesh-it-")

    def delete(self):
        self.host.delete()
        self.peer.delete()
        shutil.rmtree(self.tmp, ignore_errors=True)


def run_module(ns, args, check=False, diff=False, env=None, path_prepend=None, module="kuma_tproxy"):
    """Run the real module inside ``ns`` the way Ansible does (args file, JSON out)."""
    payload = dict(args)
    payload["_ansible_check_mode"] = check
    payload["_ansible_diff"] = diff
    fd, path = tempfile.mkstemp(suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump({"ANSIBLE_MODULE_ARGS": payload}, f)
    environment = dict(os.environ)
    environment["PYTHONPATH"] = COLLECTIONS
    environment.pop("SSH_CONNECTION", None)
    if path_prepend:
        environment["PATH"] = path_prepend + os.pathsep + environment["PATH"]
    environment.update(env or {})
    try:
        proc = ns.run(sys.executable, "-m", "ansible_collections.kuma.mesh.plugins.modules." + module, path,
                      env=environment, check=False)
    finally:
        os.unlink(path)
    try:
        result = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError("module printed no JSON (rc=%d):\n%s\n%s" % (proc.returncode, proc.stdout, proc.stderr))
    return result


TRAFFIC = os.path.join(ROOT, "tests", "tools", "traffic.py")


class Servers(object):
    """Background listeners started in namespaces; all stopped at the end."""

    def __init__(self):
        self.procs = []

    def start(self, ns, command, args, uid=None):
        """``command`` is traffic.py's: "origdst" (a proxy stand-in) or "serve" (a service)."""
        proc = ns.popen([SYSTEM_PYTHON, TRAFFIC, command] + [str(a) for a in args], uid=uid)
        line = proc.stdout.readline()
        if line.strip() != "ready":
            proc.kill()
            raise AssertionError("server did not start: %s %s" % (line, proc.stderr.read()))
        self.procs.append(proc)
        return proc

    def stop(self):
        for proc in self.procs:
            proc.kill()
            proc.wait()


def connect(ns, address, port, proto="tcp", uid=None):
    """Connect from ``ns`` (as ``uid``); returns what the far end answered, or an error string."""
    proc = ns.popen([SYSTEM_PYTHON, TRAFFIC, "connect", address, str(port), proto], uid=uid)
    out, err = proc.communicate(timeout=15)
    return out.strip() if proc.returncode == 0 else "error: " + err.strip().splitlines()[-1]


def wait_for(predicate, timeout=5.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# Rules of other tools, in tables Kuma writes and one it never does (filter): the promise tests put
# them on a host and compare them byte for byte after install, change, rollback and uninstall.
FOREIGN_V4 = """*nat
:CUSTOM - [0:0]
-A OUTPUT -d 198.51.100.7/32 -j CUSTOM
-A CUSTOM -j RETURN
COMMIT
*filter
-A INPUT -p tcp -m tcp --dport 9999 -j ACCEPT
COMMIT
"""
FOREIGN_V6 = """*nat
-A OUTPUT -d 2001:db8::99/128 -j RETURN
COMMIT
"""
