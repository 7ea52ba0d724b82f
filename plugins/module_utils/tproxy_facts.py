# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kuma.mesh maintainers
# Apache License 2.0 (see LICENSE)
"""Everything kuma_tproxy needs to know about the host, read once into an
immutable value. ``gather`` starts no process (files under /proc, /sys, /etc
only). ``with_features`` adds what the chosen iptables backend can write (the
comment module, conntrack zones, the mangle table): read from the rules the
run has already saved, and probed in a throwaway network namespace only for a
feature the run wants and nothing read shows. Everything after is pure and
testable without root."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
from collections import namedtuple

from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_host as host
from ansible_collections.kuma.mesh.plugins.module_utils.tproxy_config import CHAIN_PREFIX, parse_ip

FAMILIES = ("ipv4", "ipv6")
PREFIX = {"ipv4": "iptables", "ipv6": "ip6tables"}
_LEGACY_TABLE_NAMES = {"ipv4": "/proc/net/ip_tables_names", "ipv6": "/proc/net/ip6_tables_names"}

Binaries = namedtuple("Binaries", "save restore")

Facts = namedtuple(
    "Facts",
    [
        "uid",  # kuma_dp_user resolved (str), or None
        "uid_error",  # why it did not resolve, or None
        "dns_servers",  # tuple of name server addresses of resolv.conf
        "dns_ignored",  # tuple of nameserver lines that hold no address
        "resolv_conf_exists",
        "kuma_backup",  # resolv.conf.kuma-backup path when kumactl left one, else None
        "loopback",
        "ssh",  # tproxy_host.SshSession
        "has_local_ipv6",
        "passthrough_ipv6",  # ::6 on the loopback now
        "executables",  # {(mode, family): Binaries}
        "legacy_in_use",  # {family: bool}
        "default_mode",  # what the plain `iptables` points to, or None
        "ip",  # path of `ip`, or None
        "nft",  # path of `nft`, or None
        "executable_errors",  # tuple of messages: iptables_executables that are not executable files
        "features",  # {family: Features} of the chosen backend ({} until with_features)
    ],
)


def binaries(mode, family, path_env=None):
    """(save, restore) of ``mode`` for ``family``, or None when not installed."""
    found = []
    for tool in ("save", "restore"):
        path = host.find_executable("%s-%s-%s" % (PREFIX[family], mode, tool), path_env)
        if path is None:
            plain = host.find_executable("%s-%s" % (PREFIX[family], tool), path_env)
            path = plain if plain and host.executable_mode(plain) == mode else None
        if path is None:
            return None
        found.append(path)
    return Binaries(*found)


# the three executables of a family in iptables_executables
_GIVEN = {
    "ipv4": ("iptables", "iptables_save", "iptables_restore"),
    "ipv6": ("ip6tables", "ip6tables_save", "ip6tables_restore"),
}

ConfigFile = namedtuple("ConfigFile", "text error")


def read_config_file(path, limit):
    """The text of ``config_file`` on the host (at most ``limit`` bytes), as a
    ConfigFile; ``error`` names the option and the path when it cannot be read."""
    try:
        if not os.path.isfile(path):
            return ConfigFile(None, "config_file: %r does not exist or is not a regular file" % (path,))
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except (IOError, OSError) as exc:
        return ConfigFile(None, "config_file: %r cannot be read: %s" % (path, exc.strerror or exc))
    except (TypeError, ValueError) as exc:
        return ConfigFile(None, "config_file: %r cannot be read: %s" % (path, exc))
    if len(data) > limit:
        return ConfigFile(None, "config_file: %r is larger than %d bytes" % (path, limit))
    try:
        return ConfigFile(data.decode("utf-8"), None)
    except UnicodeDecodeError as exc:
        return ConfigFile(None, "config_file: %r is not UTF-8 text (%s)" % (path, exc.reason))


def given_binaries(params, family):
    """(mode, Binaries) from iptables_executables for ``family``, or None when not given.
    The mode is iptables_mode when it names one, else what the iptables executable
    resolves to (xtables-nft-multi or xtables-legacy-multi), else nft as Kuma assumes."""
    executables = params.get("iptables_executables") or {}
    names = _GIVEN[family]
    if not all(executables.get(n) for n in names):
        return None
    mode = params.get("iptables_mode")
    if mode not in ("nft", "legacy"):
        mode = None
        for name in names:
            mode = host.executable_mode(executables[name])
            if mode:
                break
        mode = mode or "nft"
    return mode, Binaries(executables[names[1]], executables[names[2]])


def legacy_in_use(family):
    """Legacy tables exist only once something loaded them: without any, there is nothing to read."""
    try:
        with open(_LEGACY_TABLE_NAMES[family]) as f:
            return bool(f.read().strip())
    except (IOError, OSError):
        return False


def gather(params, with_ssh=True):
    """The host as this run sees it (one read, before any planning)."""
    user = host.resolve_kuma_dp_user(params.get("kuma_dp_user"))
    dns = params["redirect"]["dns"]
    path = dns["resolv_conf"]
    servers, ignored, exists = (), (), False
    try:
        exists = os.path.isfile(path)
        if exists:
            found, bad = host.parse_resolv_conf(_read(path))
            servers, ignored = tuple(found), tuple(bad)
    except (IOError, OSError, TypeError, ValueError):
        exists = False
    backup = None
    try:
        candidate = os.path.join(os.path.dirname(path), "resolv.conf.kuma-backup")
        backup = candidate if os.path.isfile(candidate) else None
    except (TypeError, ValueError):
        backup = None
    executables = {}
    given = dict((f, given_binaries(params, f)) for f in FAMILIES)
    for family in FAMILIES:
        if given[family] is not None:
            # iptables_executables: these and no others for this family
            mode, found = given[family]
            executables[(mode, family)] = found
            continue
        for mode in ("nft", "legacy"):
            found = binaries(mode, family)
            if found is not None:
                executables[(mode, family)] = found
    plain = (params.get("iptables_executables") or {}).get("iptables") or host.find_executable("iptables")
    return Facts(
        uid=user.uid,
        uid_error=user.error,
        dns_servers=servers,
        dns_ignored=ignored,
        resolv_conf_exists=exists,
        kuma_backup=backup,
        loopback=host.loopback_name(),
        ssh=host.ssh_session() if with_ssh else host.SshSession(),
        has_local_ipv6=host.has_local_ipv6(),
        passthrough_ipv6=host.has_inbound_passthrough_ipv6(),
        executables=executables,
        legacy_in_use=dict((f, legacy_in_use(f)) for f in FAMILIES),
        default_mode=(plain and host.executable_mode(plain)) or None,
        ip=host.find_executable("ip"),
        nft=host.find_executable("nft"),
        executable_errors=tuple(_executable_errors(params)),
        features={},
    )


def _executable_errors(params):
    out = []
    executables = params.get("iptables_executables") or {}
    for family in FAMILIES:
        for name in _GIVEN[family]:
            path = executables.get(name)
            if path and not (os.path.isfile(path) and os.access(path, os.X_OK)):
                out.append("iptables_executables.%s: %r is not an executable file on the host" % (name, path))
    return out


def _read(path):
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "replace")


# -- what the chosen backend can write (Kuma's Functionality) ------------------------

FEATURES = ("comment", "conntrack_zone", "mangle")

# Each feature as the rules use it, alone: the line a probe commits, in its table.
_PROBES = {
    "conntrack_zone": ("raw", "-A OUTPUT -p udp -m udp --dport 53 -m owner --uid-owner 0 -j CT --zone 1"),
    "comment": ("nat", '-A OUTPUT -p tcp -m comment --comment "kuma/mesh/probe" -j RETURN'),
    "mangle": ("mangle", "-A PREROUTING -m conntrack --ctstate INVALID -j DROP"),
}

_CONTROL = "*nat\n-A OUTPUT -p tcp -j RETURN\nCOMMIT\n"


class Features(namedtuple("Features", "missing how")):
    """What one family's iptables backend cannot write: ``missing`` is a tuple of
    (feature, reason) pairs; ``how`` says how that was found ("rules" read from the
    saved rules, "netns" probed in a throwaway network namespace, "test" probed
    with ``--test`` where no namespace could be made, with ", inconclusive" when
    the probe failed for another reason; None: nothing needed)."""

    __slots__ = ()

    def has(self, feature):
        return feature not in dict(self.missing)

    def reason(self, feature):
        return dict(self.missing).get(feature)


ALL = Features((), None)


def _seen(feature, tables):
    """Whether the saved rules already prove ``feature`` works on this host."""
    if feature == "comment":
        return any("-m comment --comment" in line
                   for table in tables.values() for lines in table.rules.values() for line in lines)
    found = tables.get(_PROBES[feature][0])
    if found is None:
        return False
    if feature == "conntrack_zone":
        return any("-j CT --zone" in rule for rule in found.rules.get("OUTPUT", []) + found.rules.get("PREROUTING", []))
    return any("--ctstate INVALID" in rule and rule.endswith("-j DROP") for rule in found.rules.get("PREROUTING", []))


def probe_text(features):
    """The ``*-restore`` input that writes ``features`` (one rule each), raw, nat, mangle."""
    blocks = []
    for feature in sorted(features, key=lambda f: ("raw", "nat", "mangle").index(_PROBES[f][0])):
        table, line = _PROBES[feature]
        blocks.append("*%s\n%s\nCOMMIT\n" % (table, line))
    return "".join(blocks)


def _reason(message):
    lines = [line.strip() for line in (message or "").splitlines() if line.strip()]
    return " ".join(lines)[:300] or "the restore failed without a message"


def probe(runner, features, unshare):
    """Features: which of ``features`` ``runner``'s ``*-restore`` cannot commit.

    One restore of all of them in a throwaway network namespace (``unshare --net``:
    the kernel checks the rules, the host's own rules never change); only when that
    fails, one per feature to name the missing ones. Where no namespace can be made
    (no unshare, or not permitted), ``--test`` in place checks what userspace can
    (the extension is there), which is as far as Kuma's own check goes."""
    prefix = [unshare, "--net", "--"] if unshare else None
    rc, message = runner.probe(probe_text(features), prefix)
    how = "netns"
    if prefix and rc != 0 and message.startswith("unshare"):
        prefix, how = None, "test"
        rc, message = runner.probe(probe_text(features), None)
    elif not prefix:
        how = "test"
    if rc == 0:
        return Features((), how)
    # the same restore with no feature at all: when that fails too (the xtables lock
    # held, no permission...), the failure says nothing about the features, and the
    # rules are written whole as before (a real problem then fails the apply)
    if runner.probe(_CONTROL, prefix)[0] != 0:
        return Features((), how + ", inconclusive")
    if len(features) == 1:
        return Features(((features[0], _reason(message)),), how)
    missing = []
    for feature in features:
        rc, message = runner.probe(probe_text([feature]), prefix)
        if rc != 0:
            missing.append((feature, _reason(message)))
    return Features(tuple(missing), how)


def wanted_features(params, present, family, facts, tables):
    """The features this run's rules for ``family`` would use (Kuma's conditions)."""
    out = []
    if not params["comments"]["disabled"]:
        # removing: only rules that are there need finding, and with comments when they have them
        if present or any(name.startswith(CHAIN_PREFIX) for t in tables.values() for name in t.chains):
            out.append("comment")
    if not present:
        return out
    dns = params["redirect"]["dns"]
    if (dns["enabled"] or dns["capture_all"]) and not dns["skip_conntrack_zone_split"]:
        version = 6 if family == "ipv6" else 4
        if dns["capture_all"] or any(_version(s) == version for s in facts.dns_servers):
            out.append("conntrack_zone")
    if params["drop_invalid_packets"]:
        out.append("mangle")
    return out


def _version(address):
    """The family of a resolv.conf server as tproxy_config.family_config reads it."""
    parsed = parse_ip(address) if isinstance(address, str) and "/" not in address else None
    return parsed.version if parsed is not None else None


def with_features(facts, params, present, stores):
    """``facts`` with ``features`` for the chosen iptables backend (``stores``:
    {family: IptablesStore or None}). Read from each store's saved rules; probed
    only for a wanted feature they do not show. The firewalld backend is left as
    it is (firewalld writes the rules)."""
    if params.get("backend") != "iptables":
        return facts
    found = {}
    unshare = host.find_executable("unshare")
    for family in FAMILIES:
        store = stores.get(family)
        if store is None:
            continue
        if family == "ipv6" and present and not (params["ip_family_mode"] == "dualstack" and facts.has_local_ipv6):
            continue
        tables = store.tables()
        wanted = [f for f in wanted_features(params, present, family, facts, tables) if not _seen(f, tables)]
        found[family] = probe(store.runner, wanted, unshare) if wanted else Features((), "rules")
    return facts._replace(features=found)
