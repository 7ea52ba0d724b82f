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
import functools
import math
import re

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # pragma: no cover
    AnsibleFilterError = ValueError

from ansible_collections.kuma.mesh.plugins.module_utils import strict_args
from ansible_collections.kuma.mesh.plugins.module_utils.kuma_dp_host import ACCOUNT_RE, CONTROL_RE, NAME_RE, VERSION_RE
from ansible_collections.kuma.mesh.plugins.module_utils.strict_args import show
from ansible_collections.kuma.mesh.plugins.module_utils.tproxy import ARGUMENT_SPEC as TPROXY_SPEC

# The grammars are the modules' (module_utils): a value kuma_dp_host, kuma_tproxy
# or kuma_dataplane would refuse is refused here, on the controller, the same way.
SAFE_ARG_RE = re.compile(r"\A[A-Za-z0-9_=:/.,@+-]+\Z")
SURROGATE_RE = re.compile("[\ud800-\udfff]")
CP_ADDRESS_RE = re.compile(r"\Ahttps?://[^/\s]+(/\S*)?\Z")
CHECKSUM_RE = re.compile(r"\A(sha256:)?[0-9a-fA-F]{64}\Z")
IP_FAMILY_MODES = tuple(TPROXY_SPEC["ip_family_mode"]["choices"])
MAX_ID = 2147483646  # kuma_dp_host's uid and gid
MAX_ABS_INT = 2 ** 63  # larger integers are no value of the role
# kuma_tproxy's options the transparent_proxy role passes through (the others are the role's own)
TPROXY_ROLE_OWN = ("state", "backend", "other_backend", "firewalld_ipv6_redirect", "firewalld_rfc3964_backup",
                   "boot_persistence")
TPROXY_PASSED = dict((k, v) for k, v in TPROXY_SPEC.items() if k not in TPROXY_ROLE_OWN)
TRUE_WORDS = ("yes", "true", "on", "y", "t", "1")

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


def _filter(function):
    """The filter's one error path: AnsibleFilterError. Input is checked first, by the
    grammars below; an exception past them is a bug, still reported as a filter error."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except AnsibleFilterError:
            raise
        except Exception as exc:  # pylint: disable=broad-except  # never a traceback in a play
            raise AnsibleFilterError("%s: could not be computed from its input (%s); this is a bug of kuma.mesh"
                                     % (function.__name__, type(exc).__name__))
    return wrapper


def _refuse(name, errors):
    if errors:
        raise AnsibleFilterError("%s: %s" % (name, "; ".join(errors)))


def _get(data, path, default=None):
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return default
        data = data[key]
    return data


def _set(data, path, value):
    for key in path[:-1]:
        if not isinstance(data.get(key), dict):
            data[key] = {}
        data = data[key]
    data[path[-1]] = value


def _int_problem(value, low, high):
    """Why ``value`` is not a whole number low-high (strict_args' int grammar), or None."""
    problem = strict_args.type_problem("int", value) if value is not None else "is not set"
    if problem:
        return problem
    if not low <= int(value) <= high:
        return "is not in the range %d-%d" % (low, high)
    return None


def _bool_problem(value):
    return strict_args.type_problem("bool", value) if value is not None else None


def _as_bool(value):
    """A value of strict_args' bool grammar (checked before) as a bool."""
    if isinstance(value, bool):
        return value
    return str(value).lower() in TRUE_WORDS


def _text(value):
    """A string, or an int's decimal text (as Ansible passes it); None for anything else."""
    if isinstance(value, str):
        return value
    if strict_args.is_int(value) and abs(value) < MAX_ABS_INT:
        return str(value)
    return None


def _text_problem(text):
    if CONTROL_RE.search(text):
        return "has a control character (newline, tab, NUL...)"
    if SURROGATE_RE.search(text):
        return "is not valid Unicode text (a lone surrogate)"
    return None


def _tproxy_errors(tproxy, name):
    """Errors of kuma_tproxy options (kuma_dp_tproxy) against kuma_tproxy's argument spec
    (strict_args, the modules' boundary), and of their redirect ports' range."""
    if tproxy is None:
        return []
    if not isinstance(tproxy, dict):
        return ["%s: %s is not a mapping of kuma_tproxy options" % (name, show(tproxy))]
    errors = strict_args.check(TPROXY_PASSED, tproxy, name)
    if errors:
        return errors
    for flow in ("inbound", "outbound", "dns"):
        port = _get(tproxy, ("redirect", flow, "port"))
        if port is not None and _int_problem(port, 1, 65535):
            errors.append("%s.redirect.%s.port must be a port 1-65535 (got %s)" % (name, flow, show(port)))
    return errors


def _ssh_port_problem(ssh_port):
    if ssh_port in (None, "", 0, "0") and not isinstance(ssh_port, bool):
        return None
    return _int_problem(ssh_port, 0, 65535)


@_filter
def dp_tproxy_options(tproxy, user, ip_family_mode, ssh_port=22):
    """kuma_tproxy's options for the role: kuma_dp_tproxy with the role's user, family and defaults.

    The role's defaults fill what kuma_dp_tproxy leaves out (DNS on, Kuma's ports), and
    ssh_port (unless 0 or None) is added to redirect.inbound.exclude_ports. Input outside
    kuma_tproxy's grammar is refused with AnsibleFilterError naming the option and the value.
    """
    errors = _tproxy_errors(tproxy, "kuma_dp_tproxy")
    user_text = _text(user)
    if user_text is None or _text_problem(user_text):
        errors.append("user: %s is not a user name" % show(user))
    if ip_family_mode not in IP_FAMILY_MODES:
        errors.append("ip_family_mode: %s is not one of %s" % (show(ip_family_mode), ", ".join(IP_FAMILY_MODES)))
    problem = _ssh_port_problem(ssh_port)
    if problem:
        errors.append("ssh_port: %s %s (a port, or 0 or null for none)" % (show(ssh_port), problem))
    _refuse("dp_tproxy_options", errors)
    options = copy.deepcopy(tproxy) if tproxy else {}
    # kumactl refuses --redirect-dns with --redirect-all-dns-traffic, and so does
    # kuma_tproxy: capture_all leaves the role's default of dns.enabled out.
    if _as_bool(_get(options, ("redirect", "dns", "capture_all"), False)) and \
            _get(options, ("redirect", "dns", "enabled")) is None:
        _set(options, ("redirect", "dns", "enabled"), False)
    for path, default in TPROXY_DEFAULTS:
        if _get(options, path) is None:
            _set(options, path, default)
    options["kuma_dp_user"] = user_text
    options["ip_family_mode"] = ip_family_mode
    if ssh_port not in (None, "", 0, "0"):
        ports = list(_get(options, ("redirect", "inbound", "exclude_ports")) or [])
        if int(ssh_port) not in [int(p) for p in ports]:
            ports.append(int(ssh_port))
        _set(options, ("redirect", "inbound", "exclude_ports"), ports)
    return options


@_filter
def dp_tproxy_kuma_dp_config(options):
    """kuma-dp's transparent-proxy configuration (Kuma's DataplaneConfig) from kuma_tproxy's options.

    The keys are those kuma-dp reads (pkg/transparentproxy/config/dataplane):
    ipFamilyMode and redirect.{inbound,outbound,dns}.{enabled,port}, redirect.vnet.networks.
    """
    if not isinstance(options, dict):
        _refuse("dp_tproxy_kuma_dp_config", ["%s is not a mapping of kuma_tproxy options" % show(options)])
    # kuma_tproxy's argument spec, ip_family_mode's choices included
    _refuse("dp_tproxy_kuma_dp_config", _tproxy_errors(options, "options"))
    mode = options.get("ip_family_mode")

    def flow(name):
        enabled = _get(options, ("redirect", name, "enabled"))
        return {"enabled": True if enabled is None else _as_bool(enabled),
                "port": int(_get(options, ("redirect", name, "port")) or 0)}

    config = {
        "ipFamilyMode": mode or "dualstack",
        "redirect": {"inbound": flow("inbound"), "outbound": flow("outbound"), "dns": flow("dns")},
    }
    if _as_bool(_get(options, ("redirect", "dns", "capture_all")) or False):
        config["redirect"]["dns"]["enabled"] = True
    networks = list(_get(options, ("redirect", "vnet", "networks")) or [])
    if networks:
        config["redirect"]["vnet"] = {"networks": networks}
    return config


def _port_problem(value):
    return _int_problem(value, 1, 65535)


@_filter
def dp_input_errors(v):
    """Every problem of the role's variables (a dict of them), each naming the variable and the value.

    The grammars are the modules' (strict_args for numbers, kuma_dp_host's for names,
    versions and the environment, kuma_tproxy's argument spec for kuma_dp_tproxy).
    Only a non-mapping input raises AnsibleFilterError."""
    if not isinstance(v, dict):
        _refuse("dp_input_errors", ["the input must be a mapping of the dataplane role's variables, not %s" % show(v)])
    errors = []
    state = v.get("kuma_dp_state", "present")
    if state not in ("present", "absent"):
        errors.append("kuma_dp_state must be present or absent (got %s)" % show(state))
    version = v.get("kuma_dp_version", "")
    if not isinstance(version, str) or not VERSION_RE.match(version):
        errors.append("kuma_dp_version must look like 2.14.3 or 3.0.0 (got %s)" % show(version))
    address = v.get("kuma_dp_cp_address", "")
    if state == "present" and (not isinstance(address, str) or not CP_ADDRESS_RE.match(address)):
        errors.append("kuma_dp_cp_address must be the control plane URL, e.g. https://kuma-cp:5678 (got %s)"
                      % show(address))
    for a, b in (("kuma_dp_token", "kuma_dp_token_src"), ("kuma_dp_ca_cert", "kuma_dp_ca_cert_src")):
        if v.get(a) and v.get(b):
            errors.append("set %s or %s, not both" % (a, b))
    checksum = v.get("kuma_dp_checksum", "")
    if checksum not in ("", None) and (not isinstance(checksum, str) or not CHECKSUM_RE.match(checksum)):
        errors.append("kuma_dp_checksum must be 64 hex digits, optionally prefixed sha256: (got %s)" % show(checksum))
    user = v.get("kuma_dp_user")
    user_text = _text(user)
    if user_text in ("root", "0"):
        errors.append("kuma_dp_user: %s is refused: Kuma's rules never redirect the kuma-dp user's traffic, so "
                      "every root process would bypass the proxy" % show(user))
    elif not isinstance(user, str) or not ACCOUNT_RE.match(user):
        errors.append("kuma_dp_user: %s is not a user name (lower-case letters, digits and _.-, starting with a "
                      "letter or _, at most 32)" % show(user))
    if "kuma_dp_group" in v and (not isinstance(v["kuma_dp_group"], str) or not ACCOUNT_RE.match(v["kuma_dp_group"])):
        errors.append("kuma_dp_group: %s is not a group name (lower-case letters, digits and _.-, starting with a "
                      "letter or _, at most 32)" % show(v["kuma_dp_group"]))
    for name in ("kuma_dp_uid", "kuma_dp_gid"):
        value = v.get(name)
        problem = _int_problem(value, 1, MAX_ID)
        if problem:
            errors.append("%s must be 1-%d (the kuma-dp user must not be root): %s %s"
                          % (name, MAX_ID, show(value), problem))
    errors.extend(_environment_errors(v.get("kuma_dp_environment")))
    errors.extend(_extra_args_errors(v.get("kuma_dp_extra_args")))
    mode = v.get("kuma_dp_ip_family_mode", "dualstack")
    if mode not in IP_FAMILY_MODES:
        errors.append("kuma_dp_ip_family_mode must be one of %s (got %s)" % (", ".join(IP_FAMILY_MODES), show(mode)))
        mode = "dualstack"
    tproxy = v.get("kuma_dp_tproxy")
    tproxy_errors = _tproxy_errors(tproxy, "kuma_dp_tproxy")
    errors.extend(tproxy_errors)
    tproxy = tproxy if isinstance(tproxy, dict) and not tproxy_errors else {}
    for key, role_var in (("kuma_dp_user", "kuma_dp_user"), ("ip_family_mode", "kuma_dp_ip_family_mode")):
        if tproxy.get(key) is None:
            continue
        allowed = [_text(v.get(role_var))] + ([_text(v.get("kuma_dp_uid"))] if key == "kuma_dp_user" else [])
        if _text(tproxy[key]) not in [a for a in allowed if a is not None]:
            errors.append("kuma_dp_tproxy.%s is %s but %s is %s: set %s only"
                          % (key, show(tproxy[key]), role_var, show(v.get(role_var)), role_var))
    ports = {}
    for path, default in TPROXY_DEFAULTS:
        if path[-1] == "port":
            value = _get(tproxy, path)
            ports["kuma_dp_tproxy." + ".".join(path)] = default if value is None else value
    ports["kuma_dp_readiness_port"] = v.get("kuma_dp_readiness_port", 9902)
    if v.get("kuma_dp_admin_port") not in (None, "") or isinstance(v.get("kuma_dp_admin_port"), bool):
        ports["kuma_dp_admin_port"] = v.get("kuma_dp_admin_port")
    seen = {}
    for name, port in ports.items():
        if _port_problem(port):
            if not name.startswith("kuma_dp_tproxy."):  # reported by _tproxy_errors
                errors.append("%s must be a port 1-65535 (got %s)" % (name, show(port)))
        else:
            seen.setdefault(int(port), []).append(name)
    for port, names in sorted(seen.items()):
        if len(names) > 1:
            errors.append("%s are all port %d; they must differ" % (" and ".join(names), port))
    ssh = v.get("kuma_dp_ssh_port")
    if _ssh_port_problem(ssh):
        errors.append("kuma_dp_ssh_port must be a port 1-65535, or 0 to redirect SSH too (got %s)" % show(ssh))
    return errors


def _environment_errors(env):
    if env is None:
        return []
    if not isinstance(env, dict):
        return ["kuma_dp_environment must be a mapping of names to values (got %s)" % show(env)]
    errors = []
    for name, value in env.items():
        if not isinstance(name, str) or not NAME_RE.match(name):
            errors.append("kuma_dp_environment: %s is not a variable name ([A-Za-z_][A-Za-z0-9_]*)" % show(name))
            continue
        if isinstance(value, float) and math.isfinite(value):
            continue
        text = _text(value)
        if text is None:
            errors.append("kuma_dp_environment: the value of %s must be a string or a number (got %s)"
                          % (name, show(value)))
        elif _text_problem(text):
            errors.append("kuma_dp_environment: the value of %s %s (%s)" % (name, _text_problem(text), show(text)))
    return errors


def _extra_args_errors(args):
    if args is None:
        return []
    if not isinstance(args, list):
        return ["kuma_dp_extra_args must be a list of arguments (got %s)" % show(args)]
    errors = []
    for index, arg in enumerate(args):
        text = _text(arg)
        if text is None:
            errors.append("kuma_dp_extra_args[%d]: %s is not a string" % (index, show(arg)))
        elif _text_problem(text):
            errors.append("kuma_dp_extra_args[%d]: %s %s" % (index, show(text), _text_problem(text)))
    return errors


@_filter
def dp_systemd_quote(value):
    """One argument as systemd reads it in ExecStart: quoted when needed, % and $ escaped."""
    text = _text(value)
    if text is None:
        _refuse("dp_systemd_quote", ["%s is not a string; a unit argument is text" % show(value)])
    problem = _text_problem(text)
    if problem:
        # "control character" is the wording the role's tests and users know
        _refuse("dp_systemd_quote", ["%s %s; it cannot be a unit argument" % (show(text), problem)])
    if SAFE_ARG_RE.match(text):
        return text
    return '"%s"' % text.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")


def _names_problem(value):
    if not isinstance(value, list):
        return "%s is not a list of host names" % show(value)
    bad = [h for h in value if not isinstance(h, str)]
    return "%s is not a host name" % show(bad[0]) if bad else None


@_filter
def dp_drift_report(hosts_all, hosts_checked, drift, to_repair):
    """kuma.mesh.remediate's report: one line per host, then the totals.

    ``drift`` maps each checked host to its list of drift labels; ``to_repair``
    lists the hosts that will be repaired.
    """
    errors = []
    for name, value in (("hosts_all", hosts_all), ("hosts_checked", hosts_checked), ("to_repair", to_repair)):
        problem = _names_problem(value)
        if problem:
            errors.append("%s: %s" % (name, problem))
    if not isinstance(drift, dict):
        errors.append("drift: %s is not a mapping of hosts to drift labels" % show(drift))
    else:
        for host, labels in drift.items():
            if labels is not None and (not isinstance(labels, list) or not all(isinstance(x, str) for x in labels)):
                errors.append("drift[%s]: %s is not a list of drift labels" % (show(host), show(labels)))
    _refuse("dp_drift_report", errors)
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
