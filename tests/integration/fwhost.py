"""Booted systemd containers with firewalld (Debian 12 and 13), one per release for the
whole test session, shared by test_firewalld.py and test_persist_firewalld.py through
the session fixture ``firewalld_hosts`` (conftest.py).

Each container boots from localhost/kuma-mesh-debian:<tag>-firewalld
(tests/containers/build-image.sh; scripts/testbed builds them) with no network.
The target needs no Ansible: the checkout is bind-mounted read-only where
Ansible looks for collections and the controller's own ``ansible`` package
(only its module_utils are imported by a module) beside it; netaddr and
firewalld's Python client come from the image's Debian packages.

Right after its first boot a container's state is recorded (``Host.state``: firewalld's
runtime and permanent direct configuration, /etc/firewalld byte for byte, the kernel's
iptables, ip6tables and nftables rules, the unit files, the addresses and routes, what
kuma_tproxy's boot persistence writes). Before every later test ``Pool.clean`` puts the
container back and proves it: its state must equal the recorded one, or the container
is replaced by a freshly booted one (whose state must equal it too). A test that breaks
its host (stops firewalld, reboots the container, makes direct.xml a directory) cannot
change what the next test sees.

Containers are always removed: at the end of the session (the fixture's finalizer, which
pytest runs on failures and Ctrl-C too) and, should that not run, at exit.
"""

import atexit
import json
import os
import shutil
import subprocess
import time
import uuid

import ansible

from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_firewalld as fwd
from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_iptables as ipt

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TAGS = ("12-firewalld", "13-firewalld")
IMAGE = "localhost/kuma-mesh-debian:%s"
COLLECTIONS = "/usr/share/ansible/collections"
ANSIBLE_LIB = "/opt/ansible-lib"  # holds the controller's ansible package
MODULE = "ansible_collections.kuma.mesh.plugins.modules.kuma_tproxy"
SESSION = uuid.uuid4().hex[:6]  # in every container name of this session
POOLS = []  # for the terminal summary (conftest.py)

# What kuma_tproxy's boot_persistence and firewalld_ipv6_redirect write
# (plugins/module_utils/tproxy_persist.py: DEFAULT_DIR, DEFAULT_SCRIPT, DEFAULT_UNIT,
# DEFAULT_RFC3964_BACKUP); firewalld.conf itself comes back with /etc/firewalld.
PERSIST_UNIT = "kuma-mesh-tproxy.service"
PERSIST_FILES = ("/etc/kuma-mesh", "/usr/local/sbin/kuma-mesh-tproxy-restore",
                 "/etc/systemd/system/%s" % PERSIST_UNIT)

# The host's state, one section per "=== name" line (see Host.state). Counters are left out.
STATE_SCRIPT = r"""
section() { echo "=== $1"; }
nocounters() { grep -v '^#' | sed -e 's/ \[[0-9]*:[0-9]*\]$//'; }
section systemd-failed; systemctl list-units --failed --plain --no-legend --no-pager 2>&1
section firewalld; systemctl is-active firewalld 2>&1; firewall-cmd --state 2>&1
section direct-chains; firewall-cmd --direct --get-all-chains 2>&1
section direct-rules; firewall-cmd --direct --get-all-rules 2>&1
section direct-passthroughs; firewall-cmd --direct --get-all-passthroughs 2>&1
section direct.xml; ls -ld /etc/firewalld/direct.xml 2>&1 | sed 's/^.*\(No such file\)/\1/'
section etc-firewalld; (cd /etc/firewalld && find . -printf '%y %m %u %g %s %p %l\n' | sort \
    && find . -type f -exec sha256sum {} + | sort -k2) 2>&1
section iptables; iptables-save 2>&1 | nocounters
section ip6tables; ip6tables-save 2>&1 | nocounters
section iptables-legacy; ! command -v iptables-legacy-save >/dev/null || iptables-legacy-save 2>&1 | nocounters
section ip6tables-legacy; ! command -v ip6tables-legacy-save >/dev/null || ip6tables-legacy-save 2>&1 | nocounters
section nft; nft list ruleset 2>&1 | sed -e 's/counter packets [0-9]* bytes [0-9]*/counter/'
section unit-files; systemctl list-unit-files --no-legend --no-pager 2>&1 | sort
section etc-systemd; find /etc/systemd /run/systemd/system -printf '%y %m %p %l\n' 2>&1 | sort
section persistence; ls -ld @FILES@ 2>&1 | sed 's/^.*\(No such file\)/\1/'
section addresses; ip -o addr 2>&1
section routes; ip rule 2>&1; ip -6 rule 2>&1; ip route show table all 2>&1; ip -6 route show table all 2>&1
section users; grep '^kuma-dp:' /etc/passwd /etc/group 2>&1
""".replace("@FILES@", " ".join(PERSIST_FILES))

# Sections a reset can fix without touching firewalld.
FIREWALLD_SECTIONS = ("firewalld", "direct-chains", "direct-rules", "direct-passthroughs", "direct.xml", "etc-firewalld",
                      "iptables", "ip6tables", "iptables-legacy", "ip6tables-legacy", "nft")

# Wait for a condition inside the container (one podman exec, not one per try).
WAIT_SCRIPT = r"""
end=$(( $(date +%%s) + %(timeout)d ))
until out=$( { %(script)s ; } 2>&1 ); do
  [ "$(date +%%s)" -lt "$end" ] || { echo "$out"; exit 1; }
  sleep %(interval)s
done
echo "$out"
"""

# Puts the container back as booted (Host.reset). $1: whether firewalld's state differs.
# (iptables-legacy tables, once there, cannot be taken away in a network namespace: a
# test that makes them gets its container replaced.)
RESET_SCRIPT = r"""
set -u
# kuma_tproxy's boot persistence: the unit, its restore script and rules files
if [ -e /etc/systemd/system/%(unit)s ] || systemctl -q is-active %(unit)s; then
  systemctl disable --now %(unit)s
fi
if ls -d %(files)s /etc/systemd/system/*.wants/%(unit)s >/dev/null 2>&1; then
  rm -rf %(files)s /etc/systemd/system/*.wants/%(unit)s
  systemctl daemon-reload
fi
systemctl reset-failed
if [ "$1" = yes ]; then
  # firewalld's configuration as booted (direct.xml, firewalld.conf: RFC3964_IPv4,
  # FirewallBackend, ...), with every rule in the kernel flushed while it is stopped
  systemctl stop firewalld
  rm -rf /etc/firewalld
  tar -C /etc -xpf -
  nft flush ruleset
  systemctl start firewalld
fi
# the addresses Host.boot adds (kuma_tproxy adds ::6/128)
ip -6 addr flush dev lo scope global
ip -6 addr add 2001:db8::1/64 dev lo
"""


def podman_env():
    env = dict(os.environ)
    if not env.get("CONTAINERS_CONF"):
        for path in (os.path.join(ROOT, ".cache", "containers", "containers.conf"),
                     os.path.join(ROOT, "tests", "containers", "containers.conf")):
            if os.path.isfile(path):
                env["CONTAINERS_CONF"] = path
                break
    return env


def podman(*args, **kwargs):
    check = kwargs.pop("check", True)
    return subprocess.run(["podman"] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, env=podman_env(), check=check, **kwargs)


def unavailable(tag):
    if not shutil.which("podman"):
        return "podman is not installed (scripts/testbed installs it)"
    if podman("image", "exists", IMAGE % tag, check=False).returncode != 0:
        return "image %s is missing (scripts/testbed builds it)" % (IMAGE % tag)
    return None


def parse_state(text):
    sections, name = {}, None
    for line in text.splitlines():
        if line.startswith("=== "):
            name = line[4:]
            sections[name] = []
        elif name is not None:
            sections[name].append(line)
    return dict((k, "\n".join(v)) for k, v in sections.items())


def differences(state, pristine):
    """The sections of ``state`` that differ from ``pristine``, with both texts."""
    out = []
    for name in sorted(set(state) | set(pristine)):
        if state.get(name) != pristine.get(name):
            out.append("--- %s now:\n%s\n--- %s as booted:\n%s" % (name, state.get(name), name, pristine.get(name)))
    return out


class Host(object):
    """One booted systemd container with firewalld."""

    def __init__(self, tag):
        self.tag = tag
        self.name = "kuma-mesh-fw-%s-%s-%s" % (tag, SESSION, uuid.uuid4().hex[:6])

    def start(self):
        podman(
            "run", "-d", "--name", self.name, "--systemd=always", "--network", "none",
            # SYS_ADMIN: Debian 13's systemd needs it to start polkit (User= with sandboxing);
            # without polkit, firewalld 2.x waits for it and never gets to RUNNING
            "--cap-add", "NET_ADMIN,NET_RAW,SYS_ADMIN",
            "-v", "%s:%s/ansible_collections/kuma/mesh:ro" % (ROOT, COLLECTIONS),
            "-v", "%s:%s/ansible:ro" % (os.path.dirname(ansible.__file__), ANSIBLE_LIB),
            IMAGE % self.tag, "/sbin/init",
        )
        self.boot()

    def sh(self, script, check=True, stdin=None):
        proc = podman("exec", "-i", self.name, "sh", "-c", script, check=False, input=stdin)
        if check and proc.returncode != 0:
            raise AssertionError("%s: rc=%d\n%s\n%s" % (script, proc.returncode, proc.stdout, proc.stderr))
        return proc

    def wait(self, what, script, timeout=60, interval=0.2):
        """Until ``script`` succeeds in the container: tried there in a loop, one exec."""
        deadline = time.time() + timeout
        while True:
            proc = self.sh(WAIT_SCRIPT % dict(script=script, timeout=timeout, interval=interval), check=False)
            if proc.returncode == 0:
                return proc
            # podman exec itself failed (container not up yet): try again
            if time.time() > deadline or proc.returncode == 1:
                raise AssertionError("timed out waiting for %s: %s %s" % (what, proc.stdout, proc.stderr))
            time.sleep(interval)

    def boot(self):
        self.wait("systemd", "systemctl is-system-running --wait >/dev/null 2>&1; "
                  "s=$(systemctl is-system-running); [ \"$s\" = running ] || [ \"$s\" = degraded ]")
        # (Debian 13's minimal image has no useradd)
        self.sh("id kuma-dp >/dev/null 2>&1 || { echo 'kuma-dp:x:5678:5678::/nonexistent:/usr/sbin/nologin' >> /etc/passwd"
                " && echo 'kuma-dp:x:5678:' >> /etc/group; }; "
                # Kuma installs IPv6 rules only with a non-loopback IPv6 address on the host
                "ip -6 addr add 2001:db8::1/64 dev lo 2>/dev/null || true")
        self.wait_firewalld()

    def wait_firewalld(self):
        # firewalld.service is Type=dbus: active once firewalld has started (and took its bus name)
        self.wait("firewalld", "systemctl is-active -q firewalld && firewall-cmd --state")

    def module(self, args, check=False, diff=False):
        payload = dict(args, _ansible_check_mode=check, _ansible_diff=diff)
        self.sh("cat > /tmp/args.json", stdin=json.dumps({"ANSIBLE_MODULE_ARGS": payload}))
        proc = self.sh("PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=%s:%s python3 -m %s /tmp/args.json"
                       % (COLLECTIONS, ANSIBLE_LIB, MODULE), check=False)
        try:
            return json.loads(proc.stdout)
        except ValueError:
            raise AssertionError("module printed no JSON (rc=%d):\n%s\n%s" % (proc.returncode, proc.stdout, proc.stderr))

    def direct_xml(self):
        return self.sh("cat /etc/firewalld/direct.xml 2>/dev/null || true").stdout

    def permanent(self):
        return fwd.DirectXml(self.direct_xml()).direct

    def runtime_rules(self):
        return self.sh("firewall-cmd --direct --get-all-rules").stdout.splitlines()

    def runtime_chains(self):
        return self.sh("firewall-cmd --direct --get-all-chains").stdout.splitlines()

    def save(self, family):
        return ipt.parse_save(self.sh("%s-save" % ("iptables" if family == "ipv4" else "ip6tables")).stdout)

    def running(self):
        proc = podman("inspect", "--format", "{{.State.Running}}", self.name, check=False)
        return proc.returncode == 0 and proc.stdout.strip() == "true"

    def state(self):
        """{section: text}: what a test may change and the next one must not see."""
        return parse_state(self.sh(STATE_SCRIPT, check=False).stdout)

    def keep_pristine(self):
        """/etc/firewalld as booted (a tar archive, kept here where no test reaches it), for reset."""
        proc = subprocess.run(["podman", "exec", self.name, "tar", "-C", "/etc", "-cpf", "-", "firewalld"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=podman_env(), check=True)
        self.etc_firewalld = proc.stdout

    def reset(self, state, pristine):
        """Undo what a test left (``state``, as Host.state read it); firewalld is restarted
        only when its state differs. Returns (rc, output)."""
        firewalld = any(state.get(s) != pristine.get(s) for s in FIREWALLD_SECTIONS)
        script = RESET_SCRIPT % dict(unit=PERSIST_UNIT, files=" ".join(PERSIST_FILES))
        proc = subprocess.run(["podman", "exec", "-i", self.name, "sh", "-c", script, "reset", "yes" if firewalld else "no"],
                              input=self.etc_firewalld if firewalld else b"", stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, env=podman_env())
        if proc.returncode == 0 and firewalld:
            self.wait_firewalld()
        return proc.returncode, proc.stdout.decode("utf-8", "replace")

    def remove(self):
        podman("rm", "-f", "-t", "0", self.name, check=False)


class Pool(object):
    """One container per Debian release, booted on first use, put back before every use."""

    def __init__(self):
        self.hosts = {}
        self.pristine = {}
        self.reasons = {}
        self.stats = dict(boots=0, resets=0, restarts=0, replaced=0)
        self.log = []
        POOLS.append(self)
        atexit.register(self.close)

    def unavailable(self, tag):
        if tag not in self.reasons:
            self.reasons[tag] = unavailable(tag)
        return self.reasons[tag]

    def _boot(self, tag):
        h = Host(tag)
        self.hosts[tag] = h  # removed at the end even when the boot fails
        self.stats["boots"] += 1
        h.start()
        h.keep_pristine()
        return h

    def clean(self, tag):
        """The container of ``tag``, in its state right after its first boot."""
        h = self.hosts.get(tag)
        if h is None:
            h = self._boot(tag)
            self.pristine[tag] = h.state()
            return h
        pristine = self.pristine[tag]
        why = []
        if h.running():
            state = h.state()
            if state == pristine:
                return h
            self.stats["resets"] += 1
            if any(state.get(s) != pristine.get(s) for s in FIREWALLD_SECTIONS):
                self.stats["restarts"] += 1
            rc, out = h.reset(state, pristine)
            if rc != 0:
                why.append("reset failed (rc=%d): %s" % (rc, out))
            state = h.state()
            if state == pristine:
                return h
            why += differences(state, pristine)
        else:
            why.append("the container is not running")
        # not as booted: a freshly booted container instead
        self.log.append("%s: replaced %s: %s" % (tag, h.name, "\n".join(why)))
        self.stats["replaced"] += 1
        h.remove()
        h = self._boot(tag)
        state = h.state()
        if state != pristine:
            raise AssertionError("a freshly booted %s container differs from the first one:\n%s"
                                 % (tag, "\n".join(differences(state, pristine))))
        return h

    def close(self):
        for h in list(self.hosts.values()):
            h.remove()
        self.hosts.clear()
