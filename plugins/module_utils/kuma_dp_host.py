# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kuma.mesh maintainers
# Apache License 2.0 (see LICENSE)
"""kuma_dp_host's logic: the host-side state of a kuma-dp host in one pass.

``gather()`` reads everything the role compares (the user and group, the
files under the configuration directory, the unit, the installed version and
its binaries, the stable link, the unit's systemd state, a local kuma-cp)
into an immutable ``HostState``. ``plan()`` is pure: the wanted state
(``Spec``) and the ``HostState`` in, a ``Plan`` (the steps, each with its
change label and diff) or the list of errors out. ``apply()`` carries the
steps out. Only the module's main talks to Ansible.

Standard library only, Python 3.8 and later (this runs on the hosts).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import errno
import grp
import hashlib
import json
import os
import pwd
import re
import shutil
import stat
import tarfile
import tempfile

from ansible_collections.kuma.mesh.plugins.module_utils import kuma_dp_ready
from ansible_collections.kuma.mesh.plugins.module_utils.strict_args import show
from ansible_collections.kuma.mesh.plugins.module_utils.tproxy_config import UNIT_NAME, path_problem

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
ACCOUNT_RE = re.compile(r"^[a-z_][a-z0-9_.-]{0,30}\$?\Z")
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
VERSION_RE = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?\Z")
SHA256_RE = re.compile(r"^[0-9a-f]{64}\Z")
FILE_NAME_RE = re.compile(r"^[A-Za-z0-9_.+-]{1,255}\Z")
NOLOGIN = "/usr/sbin/nologin"
NOHOME = "/nonexistent"
COMMENT = "Kuma data plane proxy"
MARKER = ".kuma-mesh-installed"
ENV_FILE = "kuma-dp.env"
TPROXY_FILE = "transparent-proxy.yaml"
LOCAL_CP_REASON = (
    "a kuma-cp process runs on this host. Kuma does not support a control plane on the same host as a data "
    "plane proxy with the transparent proxy: the rules redirect the host's traffic, kuma-cp's included, to "
    "the proxy, which gets its configuration from that same kuma-cp. Run kuma-cp on another host, or set "
    "kuma_dp_allow_local_cp: true if you know this setup works for you"
)

# What the module is asked for (built by the module's main from its options).
Spec = collections.namedtuple(
    "Spec",
    [
        "user", "group", "uid", "gid", "adopt_user", "app_users",
        "config_dir", "token", "ca_cert", "environment", "tproxy_config",
        "unit_path", "unit_content", "unit_name",
        "install_dir", "version", "binaries", "archive_top", "archive_sha256", "archive_path",
        "readiness_url", "refuse_local_cp", "after_firewalld", "state", "remove_user",
    ],
)

Account = collections.namedtuple("Account", ["name", "uid", "gid", "home", "shell", "groups"])
Group = collections.namedtuple("Group", ["name", "gid", "members"])
FileState = collections.namedtuple("FileState", ["exists", "content", "uid", "gid", "mode", "is_regular"])
HostState = collections.namedtuple(
    "HostState",
    [
        "account", "group", "uid_owner", "gid_owner", "app_uids",
        "files", "marker", "binaries_ok", "link", "old_versions", "installed_versions", "install_entries",
        "unit_active", "unit_enabled", "local_cp", "firewalld_enabled",
    ],
)
# One thing to do: its change label, a description for diff/messages and the
# data apply() needs.
Step = collections.namedtuple("Step", ["label", "kind", "path", "data"])
Plan = collections.namedtuple("Plan", ["steps", "changes", "diffs", "archive_needed", "restart", "warnings"])


class HostError(Exception):
    """An error the module reports as its failure message."""


# --------------------------------------------------------------- validation --
def validate(spec):
    """Every problem of the input, each naming the option and the value (no I/O)."""
    errors = []
    if not isinstance(spec.user, str) or not ACCOUNT_RE.match(spec.user or ""):
        errors.append("user: %r is not a valid account name" % (spec.user,))
    elif spec.user == "root":
        errors.append("user: 'root' is refused: Kuma's rules never redirect the kuma-dp user's traffic, "
                      "so every root process would bypass the proxy")
    if not isinstance(spec.group, str) or not ACCOUNT_RE.match(spec.group or ""):
        errors.append("group: %r is not a valid group name" % (spec.group,))
    for opt in ("uid", "gid"):
        value = getattr(spec, opt)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 2147483646:
            errors.append("%s: %r is not a number 1-2147483646" % (opt, value))
        elif value == 0:
            errors.append("%s: 0 is refused: the kuma-dp user must not be root (its traffic bypasses the proxy)" % opt)
    if not isinstance(spec.environment, dict):
        errors.append("environment: must be a mapping of names to values")
    else:
        for name, value in spec.environment.items():
            if not isinstance(name, str) or not NAME_RE.match(name):
                errors.append("environment: the name %r is not a variable name ([A-Za-z_][A-Za-z0-9_]*)" % (name,))
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                errors.append("environment: the value of %s must be a string or a number, not %r" % (name, value))
            elif CONTROL_RE.search(str(value)):
                errors.append("environment: the value of %s has a control character (%r)" % (name, str(value)))
    if spec.unit_content is not None and "\x00" in spec.unit_content:
        errors.append("unit_content: has a NUL character")
    if spec.state == "present" and not VERSION_RE.match(spec.version or ""):
        errors.append("version: %r does not look like 2.14.3 or 3.0.0" % (spec.version,))
    if spec.archive_sha256 and not SHA256_RE.match(spec.archive_sha256):
        errors.append("archive_sha256: %r is not 64 lower-case hex digits" % (spec.archive_sha256,))
    for binary in spec.binaries:
        if not re.match(r"^[A-Za-z0-9_.-]+\Z", binary) or binary in (".", ".."):
            errors.append("binaries: %r is not a file name" % (binary,))
    for opt in ("config_dir", "install_dir", "unit_path"):
        value = getattr(spec, opt)
        problem = path_problem(value)
        if problem:
            errors.append("%s: %s %s" % (opt, show(value), problem))
    if not isinstance(spec.unit_name, str) or not UNIT_NAME.match(spec.unit_name):
        errors.append("unit_name: %s is not a systemd service name (letters, digits and :_.@- ending in .service)"
                      % show(spec.unit_name))
    elif isinstance(spec.unit_path, str) and os.path.basename(spec.unit_path) != spec.unit_name:
        errors.append("unit_path: %s is not a file named after unit_name %s (systemd needs the unit file's name "
                      "to be the unit's)" % (show(spec.unit_path), show(spec.unit_name)))
    if spec.archive_top is not None and (not isinstance(spec.archive_top, str) or not FILE_NAME_RE.match(spec.archive_top)
                                         or spec.archive_top in (".", "..")):
        errors.append("archive_top: %s is not a directory name (letters, digits and _.+-)" % show(spec.archive_top))
    for index, entry in enumerate(spec.app_users or []):
        uid = int(entry) if isinstance(entry, str) and re.match(r"^[0-9]{1,10}\Z", entry) else entry
        if isinstance(uid, bool) or not isinstance(uid, (str, int)) or (isinstance(uid, int) and not 0 <= uid <= 4294967294) \
                or (isinstance(uid, str) and not ACCOUNT_RE.match(uid)):
            errors.append("app_users[%d]: %s is not a user name or a uid" % (index, show(entry)))
    if spec.readiness_url:
        try:
            kuma_dp_ready.parse_url(spec.readiness_url, "readiness_url")
        except kuma_dp_ready.ReadyInputError as exc:
            errors.append(str(exc))
    return errors


def app_user_conflicts(user, dp_uids, app_users, lookup):
    """The entries of app_users that are the kuma-dp user.

    ``lookup(entry)`` gives the uid of a name or uid as the host resolves it
    (None when it does not exist). An entry conflicts when it is the kuma-dp
    user's name, or resolves to one of ``dp_uids``.
    """
    bad = []
    wanted = set(int(u) for u in dp_uids if u is not None)
    for entry in app_users:
        text = str(entry).strip()
        if text == user:
            bad.append(text)
            continue
        uid = lookup(text)
        if uid is None and text.isdigit():
            uid = int(text)
        if uid is not None and uid in wanted:
            bad.append(text)
    return bad


def env_file_text(environment):
    """The EnvironmentFile systemd reads: one NAME="value" line each, sorted.

    Values hold no control characters (validate() refuses them). Inside double
    quotes systemd's env-file parser takes a backslash before one of \\ " ` $
    as that character, and expands no variables.
    """
    lines = ["# Managed by kuma.mesh.dataplane (kuma_dp_environment); read by systemd as root."]
    for name in sorted(environment):
        value = "".join("\\" + c if c in '\\"`$' else c for c in str(environment[name]))
        lines.append('%s="%s"' % (name, value))
    return "\n".join(lines) + "\n"


def marker_text(spec):
    return json.dumps(
        {"version": spec.version, "archive_sha256": spec.archive_sha256, "binaries": list(spec.binaries)},
        indent=2, sort_keys=True,
    ) + "\n"


def tproxy_config_text(config):
    """kuma-dp's --transparent-proxy-config file (JSON is YAML)."""
    return json.dumps(config, indent=2, sort_keys=True) + "\n"


# ------------------------------------------------------------------ gather --
def _account(name):
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    groups = sorted(g.gr_name for g in grp.getgrall() if name in g.gr_mem)
    return Account(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir, entry.pw_shell, tuple(groups))


def _group(name):
    try:
        entry = grp.getgrnam(name)
    except KeyError:
        return None
    return Group(entry.gr_name, entry.gr_gid, tuple(entry.gr_mem))


def _uid_owner(uid):
    try:
        return pwd.getpwuid(uid).pw_name
    except (KeyError, OverflowError, TypeError):
        return None


def _gid_owner(gid):
    try:
        return grp.getgrgid(gid).gr_name
    except (KeyError, OverflowError, TypeError):
        return None


def lookup_uid(entry):
    try:
        return pwd.getpwnam(entry).pw_uid
    except KeyError:
        pass
    if entry.isdigit():
        return int(entry)
    return None


def read_file(path, want_content=True):
    try:
        st = os.lstat(path)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            return FileState(False, None, None, None, None, False)
        raise
    content = None
    regular = stat.S_ISREG(st.st_mode)
    if want_content and regular:
        with open(path, "rb") as f:
            content = f.read()
    return FileState(True, content, st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), regular)


def _local_cp():
    """Pids of running kuma-cp processes (by /proc/<pid>/comm or argv[0])."""
    found = []
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return found
    for pid in pids:
        try:
            with open("/proc/%s/comm" % pid) as f:
                comm = f.read().strip()
            if comm != "kuma-cp":
                with open("/proc/%s/cmdline" % pid, "rb") as f:
                    argv0 = f.read().split(b"\0", 1)[0]
                if os.path.basename(argv0) != b"kuma-cp":
                    continue
        except (IOError, OSError):
            continue
        found.append(int(pid))
    return found


def _systemd_state(run_command, unit):
    """(ActiveState, UnitFileState) of the unit and whether firewalld.service is enabled, from one systemctl show."""
    rc, out, _err = run_command(["systemctl", "show", "-p", "Id", "-p", "ActiveState", "-p", "UnitFileState",
                                 unit, "firewalld.service"])
    units = {}
    if rc == 0:
        for block in out.split("\n\n"):
            values = {}
            for line in block.splitlines():
                key, _sep, value = line.partition("=")
                values[key] = value
            units[values.get("Id", "")] = values
    mine = units.get(unit, {})
    firewalld = units.get("firewalld.service", {})
    return mine.get("ActiveState", ""), mine.get("UnitFileState", ""), firewalld.get("UnitFileState", "") == "enabled"


def unit_text(spec, host):
    """The unit's text: with after_firewalld 'auto', firewalld.service is added to its After= line when the
    host has firewalld enabled (kuma-dp then starts after the rules firewalld restores)."""
    text = spec.unit_content
    if text is None:
        return None
    if spec.after_firewalld == "yes" or (spec.after_firewalld == "auto" and host.firewalld_enabled):
        lines = text.split("\n")
        for i, line in enumerate(lines):
            if line.startswith("After=") and "firewalld.service" not in line.split():
                lines[i] = line + " firewalld.service"
                break
        text = "\n".join(lines)
    return text


def paths(spec):
    # (state=absent names no version: every marked version directory goes)
    version_dir = os.path.join(spec.install_dir, spec.version or "")
    return {
        "version_dir": version_dir,
        "marker": os.path.join(version_dir, MARKER),
        "current": os.path.join(spec.install_dir, "current"),
        "token": os.path.join(spec.config_dir, "token"),
        "ca_cert": os.path.join(spec.config_dir, "ca.crt"),
        "env": os.path.join(spec.config_dir, ENV_FILE),
        "tproxy": os.path.join(spec.config_dir, TPROXY_FILE),
    }


def gather(spec, run_command):
    p = paths(spec)
    account = _account(spec.user)
    group = _group(spec.group)
    app_uids = {}
    for entry in spec.app_users:
        app_uids[str(entry)] = lookup_uid(str(entry))
    files = {}
    for key in ("token", "ca_cert", "env", "tproxy"):
        files[key] = read_file(p[key])
    files["config_dir"] = read_file(spec.config_dir, want_content=False)
    files["install_dir"] = read_file(spec.install_dir, want_content=False)
    files["version_dir"] = read_file(p["version_dir"], want_content=False)
    files["unit"] = read_file(spec.unit_path)
    marker = read_file(p["marker"])
    binaries_ok = marker.exists and all(
        read_file(os.path.join(p["version_dir"], "bin", b), want_content=False).is_regular for b in spec.binaries
    )
    try:
        link = os.readlink(p["current"])
    except OSError:
        link = None
    installed = []
    try:
        entries = tuple(sorted(os.listdir(spec.install_dir)))
    except OSError:
        entries = ()
    for entry in entries:
        candidate = os.path.join(spec.install_dir, entry)
        if not os.path.islink(candidate) and os.path.isfile(os.path.join(candidate, MARKER)):
            installed.append(candidate)
    old = [d for d in installed if os.path.basename(d) != spec.version]
    active, enabled, firewalld_enabled = _systemd_state(run_command, spec.unit_name)
    return HostState(
        account=account, group=group,
        uid_owner=_uid_owner(spec.uid), gid_owner=_gid_owner(spec.gid),
        app_uids=app_uids, files=files, marker=marker, binaries_ok=binaries_ok, link=link,
        old_versions=tuple(old), installed_versions=tuple(installed),
        install_entries=entries, unit_active=active, unit_enabled=enabled, firewalld_enabled=firewalld_enabled,
        local_cp=tuple(_local_cp()) if spec.refuse_local_cp else (),
    )


# -------------------------------------------------------------------- plan --
def _file_step(label, path, want, have, uid, gid, mode, secret=False):
    """Steps for one managed file: content (None: absent), owner and mode."""
    if want is None:
        if have.exists:
            return [Step(label, "remove", path, None)], [_diff(path, have, None, secret)]
        return [], []
    data = want.encode("utf-8") if not isinstance(want, bytes) else want
    if not have.exists or not have.is_regular or have.content != data:
        return [Step(label, "write", path, {"content": data, "uid": uid, "gid": gid, "mode": mode})], \
            [_diff(path, have, data, secret)]
    if (have.uid, have.gid, have.mode) != (uid, gid, mode):
        return [Step(label, "attrs", path, {"uid": uid, "gid": gid, "mode": mode})], []
    return [], []


def _diff(path, have, data, secret):
    if secret:
        return {"before_header": path, "after_header": path,
                "before": "(secret, %s)\n" % ("present" if have.exists else "absent"),
                "after": "(secret, %s)\n" % ("present" if data is not None else "absent")}
    before = have.content.decode("utf-8", "replace") if have.content is not None else ""
    after = data.decode("utf-8", "replace") if data is not None else ""
    return {"before_header": path, "after_header": path, "before": before, "after": after}


def plan(spec, host):
    """The steps from host to spec, or HostError with every reason not to."""
    errors = []
    warnings = []
    steps = []
    diffs = []
    p = paths(spec)
    if host.local_cp:
        errors.append("refusing to set up kuma-dp with the transparent proxy: " + LOCAL_CP_REASON
                      + " (pids %s)" % ", ".join(str(pid) for pid in host.local_cp))

    # --- user and group
    uid, gid = spec.uid, spec.gid
    if host.account is not None:
        acc = host.account
        if acc.uid == 0:
            errors.append("user: %s has uid 0; the kuma-dp user must not be root" % acc.name)
        is_ours = (acc.uid == spec.uid and acc.shell == NOLOGIN and acc.home == NOHOME
                   and not acc.groups and host.group is not None and acc.gid == host.group.gid
                   and host.group.gid == spec.gid)
        if not is_ours and not spec.adopt_user:
            errors.append(
                "user: the account %s exists and is not the system account the role creates (uid %d, shell %s, "
                "home %s, group %s, no other groups; it has uid %d, shell %s, home %s, gid %d, groups %s). The role "
                "does not take over an existing account: pick another kuma_dp_user, or set kuma_dp_adopt_user: true "
                "to run kuma-dp as this account as it is" % (
                    acc.name, spec.uid, NOLOGIN, NOHOME, spec.group, acc.uid, acc.shell, acc.home, acc.gid,
                    ",".join(acc.groups) or "none"))
        uid, gid = acc.uid, acc.gid
    else:
        if host.uid_owner is not None:
            errors.append("uid: %d already belongs to the account %s; pick another kuma_dp_uid"
                          % (spec.uid, host.uid_owner))
        if host.group is None and host.gid_owner is not None:
            errors.append("gid: %d already belongs to the group %s; pick another kuma_dp_gid"
                          % (spec.gid, host.gid_owner))
        if host.group is not None and host.group.gid != spec.gid and not spec.adopt_user:
            errors.append("group: the group %s exists with gid %d, not %d; set kuma_dp_gid to %d or "
                          "kuma_dp_adopt_user: true to use it" % (spec.group, host.group.gid, spec.gid,
                                                                  host.group.gid))
        if host.group is None:
            steps.append(Step("user", "groupadd", spec.group, {"gid": spec.gid}))
        else:
            gid = host.group.gid
        steps.append(Step("user", "useradd", spec.user, {"uid": spec.uid, "group": spec.group}))
        diffs.append({"before_header": "user", "after_header": "user", "before": "",
                      "after": "%s:x:%d:%d:%s:%s:%s\n" % (spec.user, spec.uid, gid, COMMENT, NOHOME, NOLOGIN)})

    conflicts = app_user_conflicts(
        spec.user, [spec.uid, host.account.uid if host.account else None], spec.app_users,
        host.app_uids.get)
    if conflicts:
        errors.append(
            "app_users: %s is the kuma-dp user (%s, uid %d). Kuma's rules never redirect that user's traffic, so "
            "the application's traffic would bypass the proxy. Run the application as another user."
            % (", ".join(conflicts), spec.user, uid))
    if errors:
        raise HostError(errors)

    # --- configuration directory and files
    cfg = host.files["config_dir"]
    if not cfg.exists or (cfg.uid, cfg.gid, cfg.mode) != (0, gid, 0o750):
        steps.append(Step("config", "mkdir", spec.config_dir, {"uid": 0, "gid": gid, "mode": 0o750}))
        if not cfg.exists:
            diffs.append({"before_header": spec.config_dir, "after_header": spec.config_dir,
                          "before": "", "after": "directory\n"})
    for key, label, want, owner, mode, secret in (
        ("token", "credentials", spec.token, (uid, gid), 0o600, True),
        ("ca_cert", "credentials", spec.ca_cert, (uid, gid), 0o600, True),
        ("env", "unit", env_file_text(spec.environment) if spec.environment else None, (0, 0), 0o600, True),
        ("tproxy", "config", tproxy_config_text(spec.tproxy_config) if spec.tproxy_config else None,
         (0, gid), 0o640, False),
    ):
        s, d = _file_step(label, p[key], want, host.files[key], owner[0], owner[1], mode, secret)
        steps += s
        diffs += d

    # --- binaries, marker, stable link
    archive_needed = False
    for key in ("install_dir", "version_dir"):
        have = host.files[key]
        path = spec.install_dir if key == "install_dir" else p["version_dir"]
        if not have.exists or (have.uid, have.gid, have.mode) != (0, 0, 0o755):
            steps.append(Step("binaries", "mkdir", path, {"uid": 0, "gid": 0, "mode": 0o755}))
    if not host.binaries_ok:
        steps.append(Step("binaries", "unpack", p["version_dir"], None))
        diffs.append({"before_header": p["version_dir"], "after_header": p["version_dir"], "before": "",
                      "after": "".join("bin/%s\n" % b for b in spec.binaries)})
        archive_needed = spec.archive_path is None
    # without the archive's digest (a run limited to other tags) an existing marker is not rewritten
    if not host.binaries_ok or (spec.archive_sha256 and host.marker.content != marker_text(spec).encode("utf-8")):
        steps.append(Step("binaries", "write", p["marker"],
                          {"content": marker_text(spec).encode("utf-8"), "uid": 0, "gid": 0, "mode": 0o644}))
    if host.link != spec.version:
        steps.append(Step("binaries", "link", p["current"], spec.version))
        diffs.append({"before_header": p["current"], "after_header": p["current"],
                      "before": "%s\n" % (host.link or ""), "after": "%s\n" % spec.version})

    # --- unit
    unit_changed = False
    if spec.unit_content is not None:
        s, d = _file_step("unit", spec.unit_path, unit_text(spec, host), host.files["unit"], 0, 0, 0o644)
        steps += s
        diffs += d
        unit_changed = any(step.kind == "write" for step in s)
    if unit_changed or any(step.path == p["env"] for step in steps):
        steps.append(Step("unit", "daemon-reload", spec.unit_name, None))
    if host.unit_enabled != "enabled":
        steps.append(Step("service", "enable", spec.unit_name, None))

    changes = []
    for step in steps:
        if step.label not in changes:
            changes.append(step.label)
    restart = any(step.label in ("user", "credentials", "config", "binaries", "unit") for step in steps)
    return Plan(tuple(steps), changes, diffs, archive_needed, restart, warnings)


def plan_absent(spec, host):
    """The steps that take kuma-dp off the host: the service, the unit, the configuration
    directory, the versions the module installed (marked), the stable link, the install
    directory when nothing else is in it, and with remove_user the account and group -
    only when they are the system account the module creates."""
    errors, steps, diffs = [], [], []
    p = paths(spec)
    if host.unit_active in ("active", "activating", "reloading", "deactivating") or host.unit_enabled in (
            "enabled", "enabled-runtime", "linked"):
        steps.append(Step("service", "stop", spec.unit_name, None))
    if host.files["unit"].exists:
        steps.append(Step("unit", "remove", spec.unit_path, None))
        steps.append(Step("unit", "daemon-reload", None, None))
        diffs.append(_diff(spec.unit_path, host.files["unit"], None, False))
    if host.files["config_dir"].exists:
        steps.append(Step("config", "rmtree", spec.config_dir, None))
        diffs.append({"before_header": spec.config_dir, "after_header": spec.config_dir,
                      "before": "(directory)\n", "after": ""})
    if host.link is not None:
        steps.append(Step("binaries", "remove", p["current"], None))
    for version_dir in host.installed_versions:
        steps.append(Step("binaries", "rmtree", version_dir, None))
        diffs.append({"before_header": version_dir, "after_header": version_dir, "before": "(directory)\n",
                      "after": ""})
    removed = set(os.path.basename(d) for d in host.installed_versions) | ({"current"} if host.link is not None else set())
    if host.files["install_dir"].exists and not set(host.install_entries) - removed:
        steps.append(Step("binaries", "rmdir", spec.install_dir, None))
    if spec.remove_user:
        acc = host.account
        if acc is not None:
            if not (acc.uid == spec.uid and acc.home == NOHOME and acc.shell == NOLOGIN):
                errors.append(
                    "remove_user: %s (uid %d, home %s, shell %s) is not the system account the role creates "
                    "(uid %d, home %s, shell %s); it is left alone. Remove it yourself if you mean to"
                    % (acc.name, acc.uid, acc.home, acc.shell, spec.uid, NOHOME, NOLOGIN))
            else:
                steps.append(Step("user", "userdel", spec.user, None))
        others = [member for member in (host.group.members if host.group else ()) if member != spec.user]
        if host.group is not None and host.group.gid == spec.gid and not others:
            steps.append(Step("user", "groupdel", spec.group, None))
    if errors:
        raise HostError(errors)
    changes = []
    for step in steps:
        if step.label not in changes:
            changes.append(step.label)
    return Plan(tuple(steps), changes, diffs, False, False, [])


# ------------------------------------------------------------------- apply --
def _write_atomic(path, content, uid, gid, mode):
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".kuma-mesh-", dir=directory)
    try:
        os.fchmod(fd, mode)
        os.fchown(fd, uid, gid)
        with os.fdopen(fd, "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def safe_members(archive, top, binaries):
    """The archive's members for top/bin/<binary>, each a regular file; HostError otherwise."""
    wanted = dict(("%s/bin/%s" % (top, b), b) for b in binaries)
    found = {}
    for member in archive.getmembers():
        name = member.name
        while name.startswith("./"):
            name = name[2:]
        if name not in wanted:
            continue
        if not member.isreg():
            kind = ("a symbolic link to %s" % member.linkname if member.issym()
                    else "a hard link to %s" % member.linkname if member.islnk()
                    else "a device" if member.isdev() else "a directory" if member.isdir() else "not a regular file")
            raise HostError(["archive: the member %s is %s; only regular files are installed" % (member.name, kind)])
        found[wanted[name]] = member
    missing = [b for b in binaries if b not in found]
    if missing:
        raise HostError(["archive: no %s in the archive (looked for %s)"
                         % (", ".join(missing), ", ".join("%s/bin/%s" % (top, b) for b in missing))])
    return found


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def unpack(spec, version_dir):
    if spec.archive_sha256:
        got = sha256_of(spec.archive_path)
        if got != spec.archive_sha256:
            raise HostError(["archive: %s has sha256 %s, expected %s; nothing installed"
                             % (spec.archive_path, got, spec.archive_sha256)])
    bindir = os.path.join(version_dir, "bin")
    if not os.path.isdir(bindir):
        os.mkdir(bindir, 0o755)
    os.chown(bindir, 0, 0)
    os.chmod(bindir, 0o755)
    try:
        archive = tarfile.open(spec.archive_path, "r:*")
    except (tarfile.TarError, EOFError) as e:
        raise HostError(["archive: %s is not a readable tar archive: %s" % (spec.archive_path, e)])
    with archive:
        members = safe_members(archive, spec.archive_top, spec.binaries)
        for binary in spec.binaries:
            source = archive.extractfile(members[binary])
            fd, tmp = tempfile.mkstemp(prefix=".kuma-mesh-", dir=bindir)
            try:
                with os.fdopen(fd, "wb") as out:
                    shutil.copyfileobj(source, out)
                os.chown(tmp, 0, 0)
                os.chmod(tmp, 0o555)
                os.rename(tmp, os.path.join(bindir, binary))
            except BaseException:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                raise


def apply(spec, the_plan, run_command):
    p = paths(spec)

    def run(argv):
        rc, out, err = run_command(argv)
        if rc != 0:
            raise HostError(["%s failed (rc %d): %s" % (" ".join(argv), rc, (err or out).strip())])

    for step in the_plan.steps:
        d = step.data
        if step.kind == "groupadd":
            run(["groupadd", "--system", "--gid", str(d["gid"]), step.path])
        elif step.kind == "useradd":
            run(["useradd", "--system", "--uid", str(d["uid"]), "--gid", d["group"], "--no-create-home",
                 "--home-dir", NOHOME, "--shell", NOLOGIN, "--comment", COMMENT, step.path])
        elif step.kind == "mkdir":
            if not os.path.isdir(step.path):
                os.mkdir(step.path, d["mode"])
            os.chown(step.path, d["uid"], d["gid"])
            os.chmod(step.path, d["mode"])
        elif step.kind == "write":
            _write_atomic(step.path, d["content"], d["uid"], d["gid"], d["mode"])
        elif step.kind == "attrs":
            os.chown(step.path, d["uid"], d["gid"])
            os.chmod(step.path, d["mode"])
        elif step.kind == "remove":
            os.unlink(step.path)
        elif step.kind == "unpack":
            unpack(spec, step.path)
        elif step.kind == "link":
            tmp = step.path + ".kuma-mesh-new"
            if os.path.lexists(tmp):
                os.unlink(tmp)
            os.symlink(step.data, tmp)
            os.rename(tmp, step.path)
        elif step.kind == "daemon-reload":
            run(["systemctl", "daemon-reload"])
        elif step.kind == "stop":
            run(["systemctl", "disable", "--now", step.path])
        elif step.kind == "rmtree":
            shutil.rmtree(step.path)
        elif step.kind == "rmdir":
            os.rmdir(step.path)
        elif step.kind == "userdel":
            run(["userdel", step.path])
        elif step.kind == "groupdel":
            # userdel already removed a primary group of the same name (USERGROUPS_ENAB)
            if _group(step.path) is not None:
                run(["groupdel", step.path])
        elif step.kind == "enable":
            run(["systemctl", "enable", step.path])
    return p


def probe_ready(url, timeout=2.0):
    """Whether kuma-dp's readiness endpoint (validated: kuma_dp_ready's URL grammar) answers READY now; one
    request, as kuma_dp_ready asks it; False on any error or for an empty url."""
    if not url:
        return False
    return kuma_dp_ready.is_ready(kuma_dp_ready.ask(kuma_dp_ready.parse_url(url), timeout))
