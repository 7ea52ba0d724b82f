# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kuma.mesh maintainers
# Apache License 2.0 (see LICENSE) / GNU General Public License v3.0+ (see COPYING)
"""Everything kuma_tproxy needs to know about the host, read once into an
immutable value. Reading starts no process (files under /proc, /sys, /etc
only); everything after ``gather`` is pure and testable without root."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
from collections import namedtuple

from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_host as host

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
    for mode in ("nft", "legacy"):
        for family in FAMILIES:
            found = binaries(mode, family)
            if found is not None:
                executables[(mode, family)] = found
    plain = host.find_executable("iptables")
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
    )


def _read(path):
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "replace")
