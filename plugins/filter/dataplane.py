# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kuma.mesh maintainers
# Apache License 2.0 (see LICENSE)
"""Filters of the dataplane role and the playbooks: its decisions, in Python with unit tests.

- ``dp_input_errors``: every problem of the role's variables, each naming the variable and the value.
- ``dp_tproxy_options``: the kuma_tproxy options of the rules, from kuma_dp_tproxy and the role's settings.
- ``dp_tproxy_kuma_dp_config``: kuma-dp's --transparent-proxy-config from those same options.
- ``dp_systemd_quote``: one argument of an ExecStart line, quoted as systemd reads it.
- ``dp_drift_report``: the lines of kuma.mesh.remediate's report.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


import copy
import re

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # pragma: no cover
    AnsibleFilterError = ValueError

CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
VERSION_RE = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?\Z")
SAFE_ARG_RE = re.compile(r"^[A-Za-z0-9_=:/.,@+-]+\Z")

# The settings of kuma_dp_tproxy the role has defaults for (different from
# kuma_tproxy's where Kuma's kuma-dp differs), by path.
TPROXY_DEFAULTS = (
    (("redirect", "inbound", "enabled"), True),
    (("redirect", "inbound", "port"), 15006),
    (("redirect", "outbound", "enabled"), True),
    (("redirect", "outbound", "port"), 15001),
    (("redirect", "dns", "enabled"), True),
    (("redirect", "dns", "port"), 15053),
)


def _get(data, path, default=None):
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return default
        data = data[key]
    return data


def _set(data, path, value):
    for key in path[:-1]:
        data = data.setdefault(key, {})
    data[path[-1]] = value


def _as_bool(value):
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on", "y", "t")


def dp_tproxy_options(tproxy, user, ip_family_mode, ssh_port=22):
    """kuma_tproxy's options for the role: kuma_dp_tproxy with the role's user, family and defaults.

    The role's defaults fill what kuma_dp_tproxy leaves out (DNS on, Kuma's ports), and
    ssh_port (unless 0 or None) is added to redirect.inbound.exclude_ports.
    """
    options = copy.deepcopy(tproxy) if isinstance(tproxy, dict) else {}
    # kumactl refuses --redirect-dns with --redirect-all-dns-traffic, and so does
    # kuma_tproxy: capture_all leaves the role's default of dns.enabled out.
    if _as_bool(_get(options, ("redirect", "dns", "capture_all"), False)) and \
            _get(options, ("redirect", "dns", "enabled")) is None:
        _set(options, ("redirect", "dns", "enabled"), False)
    for path, default in TPROXY_DEFAULTS:
        if _get(options, path) is None:
            _set(options, path, default)
    options["kuma_dp_user"] = str(user)
    options["ip_family_mode"] = ip_family_mode
    if ssh_port not in (None, "", 0, "0"):
        ports = list(_get(options, ("redirect", "inbound", "exclude_ports"), []) or [])
        if int(ssh_port) not in [int(p) for p in ports if str(p).strip().isdigit()]:
            ports.append(int(ssh_port))
        _set(options, ("redirect", "inbound", "exclude_ports"), ports)
    return options


def dp_tproxy_kuma_dp_config(options):
    """kuma-dp's transparent-proxy configuration (Kuma's DataplaneConfig) from kuma_tproxy's options.

    The keys are those kuma-dp reads (pkg/transparentproxy/config/dataplane):
    ipFamilyMode and redirect.{inbound,outbound,dns}.{enabled,port}, redirect.vnet.networks.
    """
    def flow(name):
        return {"enabled": _as_bool(_get(options, ("redirect", name, "enabled"), True)),
                "port": int(_get(options, ("redirect", name, "port"), 0))}

    config = {
        "ipFamilyMode": options.get("ip_family_mode", "dualstack"),
        "redirect": {"inbound": flow("inbound"), "outbound": flow("outbound"), "dns": flow("dns")},
    }
    if _as_bool(_get(options, ("redirect", "dns", "capture_all"), False)):
        config["redirect"]["dns"]["enabled"] = True
    networks = list(_get(options, ("redirect", "vnet", "networks"), []) or [])
    if networks:
        config["redirect"]["vnet"] = {"networks": networks}
    return config


def _port_ok(value):
    try:
        return 1 <= int(value) <= 65535 and not isinstance(value, bool)
    except (TypeError, ValueError):
        return False


def dp_input_errors(v):
    """Every problem of the role's variables (a dict of them), each naming the variable and the value."""
    errors = []
    state = v.get("kuma_dp_state", "present")
    version = str(v.get("kuma_dp_version", ""))
    if not VERSION_RE.match(version):
        errors.append("kuma_dp_version must look like 2.14.3 or 3.0.0 (got %r)" % version)
    if state == "present" and not re.match(r"^https?://[^/]+", str(v.get("kuma_dp_cp_address", ""))):
        errors.append("kuma_dp_cp_address must be the control plane URL, e.g. https://kuma-cp:5678 (got %r)"
                      % v.get("kuma_dp_cp_address", ""))
    for a, b in (("kuma_dp_token", "kuma_dp_token_src"), ("kuma_dp_ca_cert", "kuma_dp_ca_cert_src")):
        if v.get(a) and v.get(b):
            errors.append("set %s or %s, not both" % (a, b))
    checksum = str(v.get("kuma_dp_checksum", ""))
    if checksum and not re.match(r"^(sha256:)?[0-9a-fA-F]{64}$", checksum):
        errors.append("kuma_dp_checksum must be 64 hex digits, optionally prefixed sha256: (got %r)" % checksum)
    user = v.get("kuma_dp_user")
    if str(user) in ("root", "0"):
        errors.append("kuma_dp_user: %r is refused: Kuma's rules never redirect the kuma-dp user's traffic, so "
                      "every root process would bypass the proxy" % (user,))
    for name in ("kuma_dp_uid", "kuma_dp_gid"):
        value = v.get(name)
        try:
            number = int(value)
        except (TypeError, ValueError):
            errors.append("%s must be a number (got %r)" % (name, value))
            continue
        if number <= 0 or number > 2147483646:
            errors.append("%s must be 1-2147483646, not %r (the kuma-dp user must not be root)" % (name, value))
    env = v.get("kuma_dp_environment") or {}
    if not isinstance(env, dict):
        errors.append("kuma_dp_environment must be a mapping of names to values")
    else:
        for name, value in env.items():
            if not isinstance(name, str) or not NAME_RE.match(name):
                errors.append("kuma_dp_environment: %r is not a variable name ([A-Za-z_][A-Za-z0-9_]*)" % (name,))
            if isinstance(value, (dict, list, bool)) or value is None:
                errors.append("kuma_dp_environment: the value of %s must be a string or a number (got %r)"
                              % (name, value))
            elif CONTROL_RE.search(str(value)):
                errors.append("kuma_dp_environment: the value of %s has a control character (%r)" % (name, str(value)))
    args = v.get("kuma_dp_extra_args") or []
    if not isinstance(args, list):
        errors.append("kuma_dp_extra_args must be a list of arguments")
    else:
        for arg in args:
            if not isinstance(arg, (str, int)) or isinstance(arg, bool):
                errors.append("kuma_dp_extra_args: %r is not a string" % (arg,))
            elif CONTROL_RE.search(str(arg)):
                errors.append("kuma_dp_extra_args: %r has a control character" % (str(arg),))
    tproxy = v.get("kuma_dp_tproxy") or {}
    if not isinstance(tproxy, dict):
        errors.append("kuma_dp_tproxy must be a mapping of kuma_tproxy options")
        tproxy = {}
    for key, role_var in (("kuma_dp_user", "kuma_dp_user"), ("ip_family_mode", "kuma_dp_ip_family_mode")):
        if key in tproxy and str(tproxy[key]) not in (str(v.get(role_var)), str(v.get("kuma_dp_uid"))
                                                      if key == "kuma_dp_user" else str(v.get(role_var))):
            errors.append("kuma_dp_tproxy.%s is %r but %s is %r: set %s only"
                          % (key, tproxy[key], role_var, v.get(role_var), role_var))
    options = dp_tproxy_options(tproxy, user, v.get("kuma_dp_ip_family_mode", "dualstack"), None)
    ports = {}
    for path, _default in TPROXY_DEFAULTS:
        if path[-1] == "port":
            ports["kuma_dp_tproxy." + ".".join(path)] = _get(options, path)
    ports["kuma_dp_readiness_port"] = v.get("kuma_dp_readiness_port", 9902)
    if v.get("kuma_dp_admin_port") not in (None, "", 0):
        ports["kuma_dp_admin_port"] = v.get("kuma_dp_admin_port")
    for name, port in ports.items():
        if not _port_ok(port):
            errors.append("%s must be a port 1-65535 (got %r)" % (name, port))
    seen = {}
    for name, port in ports.items():
        if _port_ok(port):
            seen.setdefault(int(port), []).append(name)
    for port, names in sorted(seen.items()):
        if len(names) > 1:
            errors.append("%s are all port %d; they must differ" % (" and ".join(names), port))
    ssh = v.get("kuma_dp_ssh_port")
    if ssh not in (None, "", 0) and not _port_ok(ssh):
        errors.append("kuma_dp_ssh_port must be a port 1-65535, or 0 to redirect SSH too (got %r)" % (ssh,))
    return errors


def dp_systemd_quote(value):
    """One argument as systemd reads it in ExecStart: quoted when needed, % and $ escaped."""
    text = str(value)
    if CONTROL_RE.search(text):
        raise AnsibleFilterError("dp_systemd_quote: %r has a control character; it cannot be a unit argument" % text)
    if SAFE_ARG_RE.match(text):
        return text
    return '"%s"' % text.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")


def dp_drift_report(hosts_all, hosts_checked, drift, to_repair):
    """kuma.mesh.remediate's report: one line per host, then the totals.

    ``drift`` maps each checked host to its list of drift labels; ``to_repair``
    lists the hosts that will be repaired.
    """
    lines = []
    in_sync = drifted = unchecked = 0
    repairing = 0
    for host in hosts_all:
        if host not in hosts_checked:
            unchecked += 1
            lines.append("%s: not checked (unreachable or failed, see above)" % host)
        elif drift.get(host):
            drifted += 1
            report_only = host not in to_repair
            repairing += 0 if report_only else 1
            lines.append("%s: drifted: %s%s" % (host, ", ".join(drift[host]), " (report only)" if report_only else ""))
        else:
            in_sync += 1
            lines.append("%s: in sync" % host)
    parts = []
    if in_sync:
        parts.append("%d in sync" % in_sync)
    if drifted:
        parts.append("%d drifted" % drifted)
    if unchecked:
        parts.append("%d not checked" % unchecked)
    total = "%d host%s: %s" % (len(hosts_all), "" if len(hosts_all) == 1 else "s", ", ".join(parts))
    if repairing:
        total += "; repairing %d" % repairing
    elif drifted:
        total += "; nothing repaired (kuma_mesh_report_only)"
    return lines + [total]


class FilterModule(object):
    def filters(self):
        return {
            "dp_input_errors": dp_input_errors,
            "dp_tproxy_options": dp_tproxy_options,
            "dp_tproxy_kuma_dp_config": dp_tproxy_kuma_dp_config,
            "dp_systemd_quote": dp_systemd_quote,
            "dp_drift_report": dp_drift_report,
        }
