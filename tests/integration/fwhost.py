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
import signal
import shlex
import shutil
import subprocess
import sys
import uuid

import ansible

from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_firewalld as fwd
from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_iptables as ipt

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "tools"))
import container_exec  # noqa: E402  pylint: disable=wrong-import-position
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

# The host's state, one section per "=== name" line (see Host.state); counters are left out.
# firewalld's runtime direct configuration and state are read with busctl: the D-Bus calls
# firewall-cmd --direct --get-all-chains/--get-all-rules/--get-all-passthroughs and
# --state make, without starting Python four times.
STATE_FUNCTIONS = r"""
section() { echo "=== $1"; }
nocounters() { grep -v '^#' | sed -e 's/ \[[0-9]*:[0-9]*\]$//'; }
fwbus() { busctl call org.fedoraproject.FirewallD1 /org/fedoraproject/FirewallD1 "org.fedoraproject.FirewallD1$@" 2>&1; }
firewalld_state() {
  section firewalld; systemctl is-active firewalld 2>&1
  busctl get-property org.fedoraproject.FirewallD1 /org/fedoraproject/FirewallD1 org.fedoraproject.FirewallD1 state 2>&1
  section direct-chains; fwbus .direct getAllChains
  section direct-rules; fwbus .direct getAllRules
  section direct-passthroughs; fwbus .direct getAllPassthroughs
  section direct.xml; ls -ld /etc/firewalld/direct.xml 2>&1 | sed 's/^.*\(No such file\)/\1/'
  section etc-firewalld; (cd /etc/firewalld && find . -printf '%y %m %u %g %s %p %l\n' | sort \
      && find . -type f -exec sha256sum {} + | sort -k2) 2>&1
  section iptables; iptables-save 2>&1 | nocounters
  section ip6tables; ip6tables-save 2>&1 | nocounters
  section iptables-legacy; ! command -v iptables-legacy-save >/dev/null || iptables-legacy-save 2>&1 | nocounters
  section ip6tables-legacy; ! command -v ip6tables-legacy-save >/dev/null || ip6tables-legacy-save 2>&1 | nocounters
  section nft; nft list ruleset 2>&1 | sed -e 's/counter packets [0-9]* bytes [0-9]*/counter/'
}
other_state() {
  section systemd-failed; systemctl list-units --failed --plain --no-legend --no-pager 2>&1
  section unit-files; systemctl list-unit-files --no-legend --no-pager 2>&1 | sort
  section etc-systemd; find /etc/systemd /run/systemd/system -printf '%y %m %p %l\n' 2>&1 | sort
  section persistence; ls -ld @FILES@ 2>&1 | sed 's/^.*\(No such file\)/\1/'
  section addresses; ip -o addr 2>&1
  section routes; ip rule 2>&1; ip -6 rule 2>&1; ip route show table all 2>&1; ip -6 route show table all 2>&1
  section users; grep '^kuma-dp:' /etc/passwd /etc/group 2>&1
}
# every section, and (section fingerprint) the digest of firewalld's, which Host.reset compares
state() {
  fw=$(firewalld_state)
  printf '%s\n' "$fw"
  section fingerprint; printf '%s\n' "$fw" | sha256sum | cut -c1-64
  other_state
}
""".replace("@FILES@", " ".join(PERSIST_FILES))
STATE_SCRIPT = STATE_FUNCTIONS + "state\n"

# Waits inside the container (one command, not one per try): until $1 succeeds, at most $2 s.
WAIT_FUNCTIONS = r"""
wait_for() {
  end=$(( $(date +%s) + $2 ))
  until out=$(sh -c "$1" 2>&1); do
    [ "$(date +%s)" -lt "$end" ] || { echo "timed out waiting for $1: $out" >&2; return 1; }
    sleep 0.2
  done
}
"""
SYSTEMD_UP = ("systemctl is-system-running --wait >/dev/null 2>&1; "
              "s=$(systemctl is-system-running); [ \"$s\" = running ] || [ \"$s\" = degraded ]")
# firewalld.service is Type=dbus: active once firewalld took its bus name; RUNNING is the
# state firewall-cmd --state checks (the same property, read without Python)
FIREWALLD_UP = ("systemctl is-active -q firewalld && busctl get-property org.fedoraproject.FirewallD1 "
                "/org/fedoraproject/FirewallD1 org.fedoraproject.FirewallD1 state | grep -qx 's \"RUNNING\"'")
BOOT_SCRIPT = WAIT_FUNCTIONS + r"""
set -e
wait_for '%(systemd)s' 60
# (Debian 13's minimal image has no useradd)
id kuma-dp >/dev/null 2>&1 || { echo 'kuma-dp:x:5678:5678::/nonexistent:/usr/sbin/nologin' >> /etc/passwd \
    && echo 'kuma-dp:x:5678:' >> /etc/group; }
# Kuma installs IPv6 rules only with a non-loopback IPv6 address on the host
ip -6 addr add 2001:db8::1/64 dev lo 2>/dev/null || true
wait_for '%(firewalld)s' 60
""" % dict(systemd=SYSTEMD_UP.replace("'", "'\\''"), firewalld=FIREWALLD_UP.replace("'", "'\\''"))

# Puts the container back as booted (Host.reset) and prints its state (Host.state) for the
# proof. $1: the fingerprint of firewalld's state as booted; firewalld is stopped, its
# configuration put back (stdin: /etc/firewalld as booted, a tar archive) and every rule in
# the kernel flushed before it starts again - only when the fingerprint differs.
# (iptables-legacy tables, once there, cannot be taken away in a network namespace: a
# test that makes them gets its container replaced.)
RESET_SCRIPT = STATE_FUNCTIONS + WAIT_FUNCTIONS + r"""
exec 3>&1 >&2
# kuma_tproxy's boot persistence: the unit, its restore script and rules files
if [ -e /etc/systemd/system/%(unit)s ] || systemctl -q is-active %(unit)s; then
  systemctl disable --now %(unit)s
fi
found=
for f in %(files)s /etc/systemd/system/*.wants/%(unit)s; do
  if [ -e "$f" ] || [ -L "$f" ]; then rm -rf "$f"; found=yes; fi
done
[ -z "$found" ] || systemctl daemon-reload
systemctl reset-failed
if [ "$(firewalld_state | sha256sum | cut -c1-64)" != "$1" ]; then
  # direct.xml, firewalld.conf (RFC3964_IPv4, FirewallBackend), ... as booted
  systemctl stop firewalld
  rm -rf /etc/firewalld
  tar -C /etc -xpf -
  nft flush ruleset
  systemctl start firewalld
  wait_for '%(firewalld)s' 60
  echo "firewalld restarted"
fi
# the addresses Host.boot adds (kuma_tproxy adds ::6/128)
if ip -6 -o addr show dev lo scope global | grep -qv ' inet6 2001:db8::1/64 ' \
    || ! ip -6 -o addr show dev lo scope global | grep -q ' inet6 2001:db8::1/64 '; then
  ip -6 addr flush dev lo scope global
  ip -6 addr add 2001:db8::1/64 dev lo
fi
state >&3
""" % dict(unit=PERSIST_UNIT, files=" ".join(PERSIST_FILES), firewalld=FIREWALLD_UP.replace("'", "'\\''"))


CALLS = dict(podman=0, nsenter=0)  # commands run on the controller (the terminal summary)


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
    text = kwargs.pop("text", True)
    CALLS["podman"] += 1
    return subprocess.run(["podman"] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=text, env=podman_env(), check=check, **kwargs)


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
        self.init = None  # the container's init (container_exec.Init), as container_exec.find_init found it

    def run(self, command, stdin=None, text=True):
        """Runs command (a list) in the container as podman exec would, through nsenter
        (tests/tools/container_exec.py: a podman exec costs 0.3 s of CPU, nsenter 0.01 s);
        with podman exec where nsenter cannot be used or the container is not running."""
        if self.init is None or not container_exec.is_init_of(*self.init):  # looked up again after a restart
            self.init = None
            if container_exec.usable():
                self.init = container_exec.find_init(
                    podman("inspect", "--format", container_exec.INSPECT_FORMAT, self.name, check=False).stdout)
        if self.init is None:
            return podman(*(["exec", "-i", self.name] + list(command)), check=False, input=stdin, text=text)
        CALLS["nsenter"] += 1
        return subprocess.run(container_exec.argv(self.init.pid, command), input=stdin, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, universal_newlines=text, check=False)

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
        proc = self.run(["sh", "-c", script], stdin=stdin)
        if check and proc.returncode != 0:
            raise AssertionError("%s: rc=%d\n%s\n%s" % (script, proc.returncode, proc.stdout, proc.stderr))
        return proc

    def wait(self, what, script, timeout=60):
        """Until ``script`` succeeds in the container (tried there every 0.2 s: one command)."""
        proc = self.sh(WAIT_FUNCTIONS + "wait_for %s %d" % (shlex.quote(script), timeout), check=False)
        if proc.returncode != 0:
            raise AssertionError("timed out waiting for %s: %s %s" % (what, proc.stdout, proc.stderr))
        return proc

    def boot(self):
        """Waits for systemd and firewalld, adds the kuma-dp user and an IPv6 address (one command)."""
        self.sh(BOOT_SCRIPT)

    def wait_firewalld(self):
        self.wait("firewalld", FIREWALLD_UP)

    def module(self, args, check=False, diff=False):
        payload = dict(args, _ansible_check_mode=check, _ansible_diff=diff)
        proc = self.sh("cat > /tmp/args.json && PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=%s:%s python3 -m %s /tmp/args.json"
                       % (COLLECTIONS, ANSIBLE_LIB, MODULE), check=False, stdin=json.dumps({"ANSIBLE_MODULE_ARGS": payload}))
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

    def state(self):
        """{section: text}: what a test may change and the next one must not see."""
        return parse_state(self.sh(STATE_SCRIPT, check=False).stdout)

    def keep_pristine(self):
        """/etc/firewalld as booted (a tar archive, kept here where no test reaches it), for reset."""
        proc = self.run(["tar", "-C", "/etc", "-cpf", "-", "firewalld"], text=False)
        if proc.returncode != 0:
            raise AssertionError("cannot archive /etc/firewalld: %r" % proc.stderr)
        self.etc_firewalld = proc.stdout

    def reset(self, fingerprint):
        """Undoes what a test left, restarting firewalld only when the fingerprint of its state
        differs from ``fingerprint``; returns (rc, log, state as Host.state reads it)."""
        proc = self.run(["sh", "-c", RESET_SCRIPT, "reset", fingerprint], stdin=self.etc_firewalld, text=False)
        out, err = proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")
        return proc.returncode, err, parse_state(out)

    def remove(self):
        podman("rm", "-f", "-t", "0", self.name, check=False)


def _interrupt(signum, frame):
    raise KeyboardInterrupt("signal %d" % signum)


class Pool(object):
    """One container per Debian release, booted on first use, put back before every use."""

    def __init__(self):
        self.hosts = {}
        self.pristine = {}
        self.reasons = {}
        self.stats = dict(boots=0, restarts=0, replaced=0)
        self.log = []
        POOLS.append(self)
        atexit.register(self.close)
        # SIGTERM (a cancelled CI job) unwinds like Ctrl-C, so that the containers are removed
        self.sigterm = None
        if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            self.sigterm = signal.signal(signal.SIGTERM, _interrupt)

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
        rc, log, state = h.reset(pristine["fingerprint"])
        if "firewalld restarted" in log:
            self.stats["restarts"] += 1
        if rc == 0 and state == pristine:
            return h
        # not as booted (or not running at all): a freshly booted container instead
        why = ["reset: rc=%d %s" % (rc, log)] + differences(state, pristine)
        self.log.append("%s: replaced %s:\n%s" % (tag, h.name, "\n".join(why)))
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
        if self.sigterm is not None:
            signal.signal(signal.SIGTERM, self.sigterm)
            self.sigterm = None
