# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kuma.mesh maintainers
# Apache License 2.0 (see LICENSE)
"""What kuma_tproxy keeps around Kuma's rules: the choice of backend
(``backend: auto``), firewalld's RFC3964_IPv4 setting, and the systemd boot
persistence (rules files, restore script, unit).

Reading the host starts no process but ``systemctl show`` (once, for the
unit's state) and ``nft list chain`` (only while firewalld's RFC3964_IPv4
filter is on and IPv6 rules are wanted); processes run through the engine's
``commands`` runner (``run(args, check=True)`` -> (rc, out, err)). Every write goes through ``Writer``,
which pushes how to put the file back on the engine's undo stack before it
writes; files are written only when their content or mode differ, atomically.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import shlex
import tempfile
from collections import namedtuple

from ansible_collections.kuma.mesh.plugins.module_utils.tproxy_config import UNIT_NAME, path_problem
from ansible_collections.kuma.mesh.plugins.module_utils.tproxy_undo import TproxyFailure

FAMILIES = ("ipv4", "ipv6")
HEADER = "Managed by kuma.mesh"
UNIT_DIR = "/etc/systemd/system"
# where systemd finds unit files, most specific first (systemd.unit(5))
UNIT_PATH = ("/etc/systemd/system", "/run/systemd/system", "/usr/local/lib/systemd/system",
             "/usr/lib/systemd/system", "/lib/systemd/system")
FIREWALLD_UNIT = "firewalld.service"
FIREWALLD_CONF = "/etc/firewalld/firewalld.conf"
DEFAULT_DIR = "/etc/kuma-mesh/transparent-proxy"
DEFAULT_SCRIPT = "/usr/local/sbin/kuma-mesh-tproxy-restore"
DEFAULT_UNIT = "kuma-mesh-tproxy.service"
# Outside the persistence directory, which boot_persistence.state=absent removes.
DEFAULT_RFC3964_BACKUP = "/etc/kuma-mesh/firewalld-rfc3964-ipv4.orig"
RFC3964_KEY = re.compile(r"^\s*RFC3964_IPv4\s*=")
DNAT_ACCEPT = "ct status dnat accept"
SEARCH_PATH = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")

# -- the module's options beside the rules' ------------------------------------------

ARGUMENT_SPEC = dict(
    backend=dict(type="str", default="iptables", choices=["auto", "iptables", "firewalld"]),
    other_backend=dict(type="str", default="keep", choices=["keep", "remove"]),
    firewalld_ipv6_redirect=dict(type="str", default="ignore", choices=["ignore", "allow", "refuse"]),
    firewalld_rfc3964_backup=dict(type="str", default=DEFAULT_RFC3964_BACKUP),
    boot_persistence=dict(
        type="dict",
        options=dict(
            state=dict(type="str", default="present", choices=["present", "absent"]),
            dir=dict(type="str", default=DEFAULT_DIR),
            script=dict(type="str", default=DEFAULT_SCRIPT),
            unit=dict(type="str", default=DEFAULT_UNIT),
        ),
    ),
)

Boot = namedtuple("Boot", "state dir script unit")
Options = namedtuple("Options", "backend other_backend ipv6_redirect rfc3964_backup boot")


def _choice(errors, name, value, choices, default):
    value = default if value is None else value
    if value not in choices:
        errors.append("%s: %r is not one of %s" % (name, value, ", ".join(choices)))
    return value


def _path(errors, name, value, default):
    value = default if value is None else value
    problem = path_problem(value)
    if problem:
        errors.append("%s: %r %s" % (name, value, problem))
    elif os.path.normpath(value) in ("/", "/etc", "/usr", "/usr/local/sbin", "/etc/systemd/system") \
            or value.endswith("/") or "/../" in value + "/" or "/./" in value + "/":
        errors.append("%s: %r is not a path of its own (a file or directory kuma_tproxy may remove)" % (name, value))
    return value


def split(params):
    """(Options, the rule options without ours, errors): pure, never raises."""
    errors = []
    if not isinstance(params, dict):
        return None, params, []
    rest = dict(params)
    mine = dict((k, rest.pop(k, None)) for k in ARGUMENT_SPEC)
    backend = _choice(errors, "backend", mine["backend"], ("auto", "iptables", "firewalld"), "iptables")
    other = _choice(errors, "other_backend", mine["other_backend"], ("keep", "remove"), "keep")
    redirect = _choice(errors, "firewalld_ipv6_redirect", mine["firewalld_ipv6_redirect"],
                       ("ignore", "allow", "refuse"), "ignore")
    backup = _path(errors, "firewalld_rfc3964_backup", mine["firewalld_rfc3964_backup"], DEFAULT_RFC3964_BACKUP)
    boot = None
    given = mine["boot_persistence"]
    if given is not None:
        if not isinstance(given, dict):
            errors.append("boot_persistence: %r is not a dictionary" % (given,))
        else:
            unknown = sorted(set(given) - set(Boot._fields))
            if unknown:
                errors.append("boot_persistence: unknown option(s) %s" % ", ".join(unknown))
            state = _choice(errors, "boot_persistence.state", given.get("state"), ("present", "absent"), "present")
            directory = _path(errors, "boot_persistence.dir", given.get("dir"), DEFAULT_DIR)
            script = _path(errors, "boot_persistence.script", given.get("script"), DEFAULT_SCRIPT)
            unit = DEFAULT_UNIT if given.get("unit") is None else given.get("unit")
            if not isinstance(unit, str) or not UNIT_NAME.match(unit):
                errors.append("boot_persistence.unit: %r is not a systemd service name (letters, digits and :_.@- "
                              "ending in .service)" % (unit,))
            boot = Boot(state, directory, script, unit)
    # the rule options' own check knows iptables and firewalld only; auto is resolved later
    rest["backend"] = "firewalld" if backend == "firewalld" else "iptables"
    return Options(backend, other, redirect, backup, boot), rest, errors


# -- firewalld's unit --------------------------------------------------------------------

FirewalldUnit = namedtuple("FirewalldUnit", "installed enabled")


def firewalld_unit(unit_path=UNIT_PATH, name=FIREWALLD_UNIT):
    """Whether firewalld.service is installed and enabled, from the unit files and the
    symlinks ``systemctl enable`` makes (no process). A masked unit is installed, not enabled."""
    found = None
    for directory in unit_path:
        path = os.path.join(directory, name)
        if os.path.lexists(path):
            found = path
            break
    if found is None:
        return FirewalldUnit(False, False)
    try:
        if os.path.islink(found) and os.readlink(found) == "/dev/null":
            return FirewalldUnit(True, False)
    except OSError:
        pass
    etc = unit_path[0]
    try:
        for entry in os.listdir(etc):
            if entry.endswith((".wants", ".requires")) and os.path.lexists(os.path.join(etc, entry, name)):
                return FirewalldUnit(True, True)
    except OSError:
        pass
    return FirewalldUnit(True, False)


def resolve_backend(backend, unit):
    """backend: auto is firewalld when firewalld.service is installed and enabled, else iptables."""
    if backend != "auto":
        return backend
    return "firewalld" if unit.installed and unit.enabled else "iptables"


# -- processes -------------------------------------------------------------------------


def find(name):
    for directory in os.environ.get("PATH", "").split(os.pathsep) + list(SEARCH_PATH):
        path = os.path.join(directory, name)
        if directory and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


# -- files, on the undo stack ----------------------------------------------------------

FileState = namedtuple("FileState", "exists content mode uid gid")


def read_file(path):
    try:
        st = os.lstat(path)
    except OSError:
        return FileState(False, None, None, None, None)
    content = None
    if os.path.isfile(path):
        with open(path, "rb") as f:
            content = f.read()
    return FileState(True, content, st.st_mode & 0o7777, st.st_uid, st.st_gid)


class Writer(object):
    """Writes and removes files for one run; pushes the way back on ``undo`` first."""

    def __init__(self, undo, check_mode, diffs):
        self.undo = undo
        self.check_mode = check_mode
        self.diffs = diffs
        self.changed = []

    def _diff(self, path, before, after):
        self.diffs.append(dict(
            before_header="%s (now)" % path,
            after_header="%s (wanted)" % path,
            before="" if before is None else before.decode("utf-8", "replace"),
            after="" if after is None else after.decode("utf-8", "replace"),
        ))

    def directory(self, path, mode):
        """Create ``path`` (and missing parents, 0755) with ``mode``, root-owned."""
        if os.path.isdir(path):
            st = os.stat(path)
            if st.st_mode & 0o7777 == mode and st.st_uid == 0 and st.st_gid == 0:
                return False
            self.changed.append(path)
            if not self.check_mode:
                old_mode, old_uid, old_gid = st.st_mode & 0o7777, st.st_uid, st.st_gid
                self.undo.push("%s mode put back" % path, lambda: (os.chmod(path, old_mode), os.chown(path, old_uid, old_gid)))
                os.chown(path, 0, 0)
                os.chmod(path, mode)
            return True
        self.changed.append(path)
        if self.check_mode:
            return True
        parent = os.path.dirname(path)
        if parent and parent != path and not os.path.isdir(parent):
            self.directory(parent, 0o755)
        self.undo.push("%s removed again" % path, lambda: os.rmdir(path) if os.path.isdir(path) else None)
        os.mkdir(path, mode)
        os.chown(path, 0, 0)
        os.chmod(path, mode)
        return True

    def file(self, path, content, mode):
        """Write ``content`` (bytes) to ``path``, root-owned with ``mode``, when it differs."""
        now = read_file(path)
        if now.exists and now.content == content and now.mode == mode and now.uid == 0 and now.gid == 0:
            return False
        self.changed.append(path)
        if now.content != content:
            self._diff(path, now.content, content)
        if self.check_mode:
            return True
        self.undo.push("%s %s" % (path, "put back" if now.exists else "removed again"), lambda: restore_file(path, now))
        write_atomic(path, content, mode)
        return True

    def remove(self, path):
        now = read_file(path)
        if not now.exists:
            return False
        self.changed.append(path)
        self._diff(path, now.content, None)
        if self.check_mode:
            return True
        self.undo.push("%s put back" % path, lambda: restore_file(path, now))
        os.unlink(path)
        return True

    def rmdir(self, path):
        """Remove ``path`` when it is an empty directory."""
        try:
            if not os.path.isdir(path) or os.path.islink(path) or os.listdir(path):
                return False
            st = os.stat(path)
        except OSError:
            return False
        self.changed.append(path)
        if self.check_mode:
            return True
        mode, uid, gid = st.st_mode & 0o7777, st.st_uid, st.st_gid

        def back():
            if not os.path.isdir(path):
                os.mkdir(path, mode)
                os.chown(path, uid, gid)
                os.chmod(path, mode)

        self.undo.push("%s created again" % path, back)
        os.rmdir(path)
        return True


def write_atomic(path, content, mode, uid=0, gid=0):
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.chown(tmp, uid, gid)
        os.chmod(tmp, mode)
        os.rename(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def restore_file(path, state):
    """Put ``path`` back as ``state`` (read_file) had it."""
    if not state.exists:
        if os.path.lexists(path):
            os.unlink(path)
        return
    if state.content is None:
        return  # not a regular file: never written by us
    write_atomic(path, state.content, state.mode, state.uid, state.gid)


# -- firewalld's RFC3964_IPv4 ------------------------------------------------------------
# Firewalld before 2.0 (Debian 12 has 1.3) rejects, with its RFC3964_IPv4 filter (on by
# default), every IPv6 packet a host sends to ::/96 - which holds ::1. Kuma's IPv6 OUTPUT
# rule redirects an application's connection to [::1]:15001, and firewalld's "oifname lo
# accept" does not match it (the output hook still sees the interface of the original
# route), so every outbound IPv6 connection fails with "No route to host". Firewalld 2.x
# accepts DNATed packets before that filter and needs nothing. The only setting that helps
# older firewalld is RFC3964_IPv4=no; the line it replaced is kept in the backup file so
# that state=absent puts it back.


def rfc3964_line(text):
    """The last RFC3964_IPv4 line of firewalld.conf, stripped ('' when there is none)."""
    found = ""
    for line in (text or "").splitlines():
        if RFC3964_KEY.match(line):
            found = line.strip()
    return found


def rfc3964_off(line):
    """Whether the filter is off (firewalld's default is yes when the line is missing)."""
    return RFC3964_KEY.sub("", line).strip().strip("\"'").lower() in ("no", "false", "0")


def set_line(text, line):
    """firewalld.conf with its (last) RFC3964_IPv4 line replaced by ``line``, appended when
    there is none, or removed when ``line`` is empty - as lineinfile does."""
    lines = (text or "").splitlines(True)
    index = None
    for i, old in enumerate(lines):
        if RFC3964_KEY.match(old):
            index = i
    if not line:
        return "".join(l for l in lines if not RFC3964_KEY.match(l))
    if index is None:
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        lines.append(line + "\n")
    else:
        lines[index] = line + "\n"
    return "".join(lines)


class Rfc3964(object):
    """firewalld's RFC3964_IPv4 filter against redirected IPv6 (see above)."""

    def __init__(self, options, writer, commands, firewalld_running, conf=FIREWALLD_CONF):
        self.mode = options.ipv6_redirect
        self.backup = options.rfc3964_backup
        self.writer = writer
        self.commands = commands
        self.running = firewalld_running
        self.conf = conf
        self.info = dict(mode=self.mode, conf=conf, backup=self.backup, blocks=False, line=None, changed=False)

    def _conf_text(self):
        state = read_file(self.conf)
        return state.content.decode("utf-8", "replace") if state.content is not None else None

    def blocks(self, families):
        """Whether the running firewalld would reject IPv6 redirected to ::1 (may read
        firewalld's nft output chain)."""
        if self.mode == "ignore" or "ipv6" not in families or not self.running:
            return False
        text = self._conf_text()
        line = rfc3964_line(text)
        self.info["line"] = line
        if text is None or rfc3964_off(line):
            return False
        nft = find("nft")
        out = ""
        if nft is not None:
            _rc, out, _err = self.commands.run([nft, "list", "chain", "inet", "firewalld", "filter_OUTPUT"], check=False)
        blocked = DNAT_ACCEPT not in out
        self.info["blocks"] = blocked
        return blocked

    def refusal(self):
        """The failure of firewalld_ipv6_redirect=refuse, nothing changed."""
        line = self.info["line"] or "RFC3964_IPv4 unset, default yes"
        return TproxyFailure(
            "firewalld rejects IPv6 connections redirected to the proxy (%s in %s, and this firewalld does not "
            "accept DNATed packets first). Set firewalld_ipv6_redirect: allow to let kuma_tproxy set "
            "RFC3964_IPv4=no, or ip_family_mode: ipv4 to redirect IPv4 only" % (line, self.conf),
            firewalld_ipv6_refused=dict(conf=self.conf, line=self.info["line"]),
        )

    def allow(self):
        """Save the original line (once), set RFC3964_IPv4=no, reload firewalld. Returns
        whether firewalld was reloaded."""
        text = self._conf_text() or ""
        if not os.path.exists(self.backup):
            parent = os.path.dirname(self.backup)
            if not os.path.isdir(parent):
                self.writer.directory(parent, 0o755)
            self.writer.file(self.backup, (self.info["line"] + "\n").encode("utf-8"), 0o644)
        changed = self.writer.file(self.conf, set_line(text, "RFC3964_IPv4=no").encode("utf-8"),
                                   read_file(self.conf).mode or 0o644)
        self.info["changed"] = True
        return bool(changed) and self.reload()

    def reload(self):
        """At once: kuma-dp is started and checked after this run. A reload keeps firewalld's
        permanent direct rules. Undone by another reload (after the file is put back)."""
        if self.writer.check_mode or not self.running:
            return False
        systemctl = find("systemctl") or "systemctl"
        args = [systemctl, "reload", FIREWALLD_UNIT]
        self.writer.undo.push("firewalld reloaded again", lambda: self.commands.run(args))
        self.commands.run(args)
        return True

    def restore(self):
        """state=absent: put back the line the module replaced, if it did."""
        saved = read_file(self.backup)
        if not saved.exists or saved.content is None:
            return False
        line = saved.content.decode("utf-8", "replace").strip()
        text = self._conf_text()
        if text is not None:
            state = read_file(self.conf)
            if self.writer.file(self.conf, set_line(text, line).encode("utf-8"), state.mode):
                self.reload()
        self.writer.remove(self.backup)
        self.info["changed"] = True
        return True


# -- systemd boot persistence ---------------------------------------------------------------

RULES_TEMPLATE = """# %(header)s
# Kuma's transparent-proxy rules for %(family)s, as kuma.mesh.kuma_tproxy last
# applied them: iptables-restore --noflush input, restored at boot by
# %(unit)s.
%(rules)s"""

UNIT_TEMPLATE = """# %(header)s
[Unit]
Description=Kuma transparent-proxy iptables rules (kuma.mesh)
Documentation=https://kuma.io/docs/latest/production/dp-config/transparent-proxying/
# Like other firewall units: before any network is configured and before kuma-dp.
DefaultDependencies=no
Wants=network-pre.target
Before=network-pre.target kuma-dp.service shutdown.target
After=local-fs.target systemd-modules-load.service
Conflicts=shutdown.target
ConditionPathExists=%(dir)s/iptables-mode

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=%(script)s

[Install]
WantedBy=multi-user.target
"""

SCRIPT_TEMPLATE = """#!/bin/sh
# %(header)s
# Restores Kuma's transparent-proxy rules at boot, from the rules kuma.mesh's
# kuma_tproxy last applied. Leaves them alone when Kuma's rules are already in
# place (a restart of the unit after Ansible applied them).
set -eu
dir=%(dir_quoted)s
mode=$(cat "$dir/iptables-mode")
case "$mode" in
  nft) wait="" ;;
  legacy) wait="--wait=5" ;;
  *) echo "unknown iptables backend '$mode' in $dir/iptables-mode" >&2; exit 1 ;;
esac
for family in ipv4 ipv6; do
  rules="$dir/$family.rules"
  [ -f "$rules" ] || continue
  if [ "$family" = ipv4 ]; then tool=iptables; else tool=ip6tables; fi
  if "$tool-$mode-save" | grep -q -e 'kuma/mesh/transparent/proxy/' -e 'KUMA_MESH'; then
    echo "$family: Kuma's rules are in place"
    continue
  fi
  if [ "$family" = ipv6 ]; then
    # the IPv6 passthrough source Kuma's rules expect on the loopback
    ip -6 addr replace ::6/128 dev lo
  fi
  # shellcheck disable=SC2086
  "$tool-$mode-restore" --noflush $wait "$rules"
  echo "$family: Kuma's rules restored from $rules"
done
"""


def rules_file(family, unit, text):
    return (RULES_TEMPLATE % dict(header=HEADER, family=family, unit=unit, rules=text)).encode("utf-8")


def unit_file(boot):
    return (UNIT_TEMPLATE % dict(header=HEADER, dir=boot.dir, script=boot.script)).encode("utf-8")


def script_file(boot):
    return (SCRIPT_TEMPLATE % dict(header=HEADER, dir_quoted=shlex.quote(boot.dir))).encode("utf-8")


UnitState = namedtuple("UnitState", "load active file_state need_reload")


def parse_show(text):
    """``systemctl show -p LoadState,ActiveState,UnitFileState,NeedDaemonReload`` output."""
    values = {}
    for line in (text or "").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    return UnitState(values.get("LoadState", ""), values.get("ActiveState", ""), values.get("UnitFileState", ""),
                     values.get("NeedDaemonReload", "no") == "yes")


_OWN_DIR_FILES = ("ipv4.rules", "ipv6.rules", "iptables-mode")


def _written_by_us(path):
    """Whether ``path`` is a regular file with kuma.mesh's header in its first two lines."""
    try:
        if os.path.islink(path) or not os.path.isfile(path):
            return False
        with open(path, "rb") as f:
            head = f.read(512).split(b"\n")[:2]
    except (IOError, OSError):
        return False
    return any(line.strip() == ("# " + HEADER).encode("ascii") for line in head)


def foreign_files(boot, unit_dir=None):
    """Errors for the files and directory the boot persistence would write, take over or
    remove that are not kuma.mesh's (no header; a directory holding other files), so
    that a path option naming a system file (``/bin/sh``, ``ssh.service``, ``/tmp``)
    fails with nothing changed instead of overwriting or removing it."""
    errors = []
    unit_dir = UNIT_DIR if unit_dir is None else unit_dir
    for name, path in (("boot_persistence.unit", os.path.join(unit_dir, boot.unit)),
                       ("boot_persistence.script", boot.script),
                       ("boot_persistence.dir", os.path.join(boot.dir, "ipv4.rules")),
                       ("boot_persistence.dir", os.path.join(boot.dir, "ipv6.rules"))):
        if os.path.lexists(path) and not _written_by_us(path):
            errors.append("%s: %r exists and was not written by kuma.mesh (no '# %s' line); it is neither "
                          "overwritten nor removed" % (name, path, HEADER))
    mode_file = os.path.join(boot.dir, "iptables-mode")
    if os.path.lexists(mode_file) and read_file(mode_file).content not in (b"nft\n", b"legacy\n"):
        errors.append("boot_persistence.dir: %r exists and was not written by kuma.mesh; it is neither "
                      "overwritten nor removed" % mode_file)
    if os.path.lexists(boot.dir):
        try:
            others = sorted(set(os.listdir(boot.dir)) - set(_OWN_DIR_FILES)) if os.path.isdir(boot.dir) else None
        except OSError as exc:
            others = ["(cannot be listed: %s)" % exc]
        if others is None or os.path.islink(boot.dir):
            errors.append("boot_persistence.dir: %r exists and is not a directory" % boot.dir)
        elif others:
            errors.append("boot_persistence.dir: %r holds files kuma.mesh did not write (%s); the directory is "
                          "made root's with mode 0750 and removed with the unit, so it must be kuma.mesh's own"
                          % (boot.dir, ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")))
    return errors


class BootPersistence(object):
    """The systemd unit that restores at boot the rules this run applied."""

    def __init__(self, boot, writer, commands, unit_dir=UNIT_DIR):
        self.boot = boot
        self.writer = writer
        self.commands = commands
        self.unit_path = os.path.join(unit_dir, boot.unit)
        self.systemctl = find("systemctl")
        self.info = dict(state=boot.state, dir=boot.dir, script=boot.script, unit=boot.unit, files_changed=[],
                         systemctl=[])

    def files(self, rules, mode):
        """{path: (content, mode)} of the wanted files, and the rules files to remove."""
        d = self.boot.dir
        wanted = {}
        for family in FAMILIES:
            if family in rules:
                wanted[os.path.join(d, family + ".rules")] = (rules_file(family, self.boot.unit, rules[family]), 0o640)
        wanted[os.path.join(d, "iptables-mode")] = (("%s\n" % mode).encode("ascii"), 0o640)
        wanted[self.boot.script] = (script_file(self.boot), 0o755)
        wanted[self.unit_path] = (unit_file(self.boot), 0o644)
        remove = [os.path.join(d, f + ".rules") for f in FAMILIES if f not in rules]
        return wanted, remove

    def unit_state(self):
        if self.systemctl is None:
            raise TproxyFailure("boot_persistence: systemctl is not installed (the boot persistence needs systemd)",
                                missing_commands=["systemctl"])
        _rc, out, _err = self.commands.run(
            [self.systemctl, "show", "-p", "LoadState,ActiveState,UnitFileState,NeedDaemonReload", self.boot.unit],
            check=False)
        return parse_show(out)

    def _systemctl(self, *args):
        self.info["systemctl"].append(" ".join(args))
        if self.writer.check_mode:
            return
        self.commands.run([self.systemctl] + list(args))

    def present(self, rules, mode):
        state = self.unit_state()
        w = self.writer
        w.directory(self.boot.dir, 0o750)
        wanted, remove = self.files(rules, mode)
        unit_changed = False
        for path in sorted(wanted, key=lambda p: p == self.unit_path):
            content, file_mode = wanted[path]
            parent = os.path.dirname(path)
            if not os.path.isdir(parent):
                w.directory(parent, 0o755)
            if w.file(path, content, file_mode) and path == self.unit_path:
                unit_changed = True
        for path in remove:
            w.remove(path)
        if unit_changed or state.need_reload:
            self._systemctl("daemon-reload")
        enabled = state.file_state == "enabled"
        active = state.active == "active"
        if not enabled:
            self.writer.undo.push("%s disabled again" % self.boot.unit,
                                  lambda: self.commands.run([self.systemctl, "disable", self.boot.unit]))
        if not active:
            self.writer.undo.push("%s stopped again" % self.boot.unit,
                                  lambda: self.commands.run([self.systemctl, "stop", self.boot.unit]))
        if not enabled and not active:
            self._systemctl("enable", "--now", self.boot.unit)
        elif not enabled:
            self._systemctl("enable", self.boot.unit)
        elif not active:
            self._systemctl("start", self.boot.unit)
        self.info["files_changed"] = list(w.changed)
        return bool(w.changed or self.info["systemctl"])

    def absent(self):
        w = self.writer
        d = self.boot.dir
        unit_there = os.path.lexists(self.unit_path)
        if unit_there and self.systemctl is not None:
            state = self.unit_state()
            if state.active in ("active", "activating", "reloading") or state.file_state == "enabled":
                self._systemctl("disable", "--now", self.boot.unit)
        for path in [self.unit_path, self.boot.script] + [os.path.join(d, n) for n in
                                                          ("ipv4.rules", "ipv6.rules", "iptables-mode")]:
            w.remove(path)
        w.rmdir(d)
        if unit_there and self.systemctl is not None:
            self._systemctl("daemon-reload")
        parent = os.path.dirname(d)
        if os.path.basename(parent) == "kuma-mesh":
            w.rmdir(parent)
        self.info["files_changed"] = list(w.changed)
        return bool(w.changed or self.info["systemctl"])
