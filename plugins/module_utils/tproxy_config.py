# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kuma.mesh maintainers
# Apache License 2.0 (see LICENSE)
"""Options of the transparent proxy: their grammar, their bounds, kumactl's
configuration, and the per-family view the rule builder takes.

Pure code, no I/O, standard library only (Python 3.8+): the host facts it
needs (the kuma-dp uid, resolv.conf name servers, the loopback name, the text
of ``config_file``...) are passed in by the caller.

The public API (used by the module's engine):

* ``effective_params(params, config_file_text=None) -> (params, errors)``:
  kumactl's precedence. Kuma's defaults, under ``config_file`` (kumactl's
  configuration read from the target), under ``config`` (the same given
  inline), under the module's explicitly set options (the ones that are not
  ``None``). Unknown or unsupported kumactl keys are refused by name. The
  result has every option filled in.
* ``validate(params) -> [error strings]``: every option's grammar and bounds.
  Each error names the option path and the offending value (``repr``). It
  never raises, whatever the input (unfilled ``None`` values count as
  Kuma's defaults).
* ``family_config(params, ipv6, uid, dns_servers=None, docker_output=False,
  loopback="lo", extra_inbound_exclude=None) -> FamilyConfig``: one family's
  view of options that ``validate`` accepted.

The grammar of every string that can reach an ``iptables-restore`` line is
conservative: printable ASCII only, nothing that could start a new line, a
new option (a leading ``-`` or ``!``) or a quoted string. Addresses go
through the standard library's ``ipaddress`` with the strictness of Go's
``net.ParseIP``/``net.ParseCIDR`` (what Kuma uses).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import ipaddress
import json
import math
import re

try:  # only to read kumactl configurations written in YAML
    import yaml

    HAS_YAML = True
except ImportError:  # pragma: no cover - JSON (a subset of YAML) still works
    HAS_YAML = False


COMMENT_PREFIX = "kuma/mesh/transparent/proxy"
CHAIN_PREFIX = "KUMA_MESH"
DNS_PORT = 53

DEFAULT_KUMA_DP_USER = "kuma-dp"
DEFAULT_KUMA_DP_UID = 5678

# Bounds (the module documents each of them).
MAX_LIST_ENTRIES = 1024
MAX_WAIT = 3600  # seconds
MAX_WAIT_INTERVAL = 999999  # microseconds: iptables refuses 1 second or more
MAX_RETRIES = 100
MAX_SLEEP_BETWEEN_RETRIES = 600.0  # seconds
MAX_MULTIPORT = 15  # iptables' multiport: at most 15 ports, a range counts 2
MAX_UID = 4294967294  # (uid_t)-1 is "no uid"
MAX_STRING = 4096

# -- Kuma's defaults (pkg/transparentproxy/config/config.go DefaultConfig) ---


def _flow(port):
    return dict(
        enabled=True,
        port=port,
        include_ports=[],
        exclude_ports=[],
        exclude_ips=[],
        exclude_ports_for_uids=[],
        insert_instead_of_append=False,
    )


DEFAULTS = dict(
    kuma_dp_user="",
    ip_family_mode="dualstack",
    redirect=dict(
        inbound=_flow(15006),
        outbound=_flow(15001),
        dns=dict(
            enabled=False,
            capture_all=False,
            port=15053,
            skip_conntrack_zone_split=False,
            resolv_conf="/etc/resolv.conf",
        ),
        vnet=dict(networks=[]),
    ),
    drop_invalid_packets=False,
    log=dict(enabled=False, level=7),
    comments=dict(disabled=False),
    wait=5,
    wait_interval=0,
    retry=dict(max_retries=4, sleep_between_retries=2.0),
    iptables_executables=dict(
        iptables=None,
        iptables_save=None,
        iptables_restore=None,
        ip6tables=None,
        ip6tables_save=None,
        ip6tables_restore=None,
    ),
)

# Options only the module has (kumactl's configuration cannot set them).
MODULE_DEFAULTS = dict(
    state="present",
    iptables_mode="auto",
    protect_ssh_session=True,
    backend="iptables",
    config=None,
    config_file=None,
)

# -- the argument spec -------------------------------------------------------
# Options that kumactl's configuration can set have no default here: an
# option the task does not set is None, so that ``config``/``config_file``
# can fill it (kumactl: defaults < --config < flags). ``effective_params``
# fills Kuma's defaults (DEFAULTS above, documented per option).


def _flow_spec():
    return dict(
        enabled=dict(type="bool"),
        port=dict(type="int"),
        include_ports=dict(type="list", elements="int"),
        exclude_ports=dict(type="list", elements="int"),
        exclude_ips=dict(type="list", elements="str"),
        exclude_ports_for_uids=dict(type="list", elements="str"),
        insert_instead_of_append=dict(type="bool"),
    )


ARGUMENT_SPEC = dict(
    state=dict(type="str", default="present", choices=["present", "absent"]),
    kuma_dp_user=dict(type="str"),
    ip_family_mode=dict(type="str", choices=["dualstack", "ipv4"]),
    iptables_mode=dict(type="str", default="auto", choices=["auto", "nft", "legacy"]),
    redirect=dict(
        type="dict",
        options=dict(
            inbound=dict(type="dict", options=_flow_spec()),
            outbound=dict(type="dict", options=_flow_spec()),
            dns=dict(
                type="dict",
                options=dict(
                    enabled=dict(type="bool"),
                    capture_all=dict(type="bool"),
                    port=dict(type="int"),
                    skip_conntrack_zone_split=dict(type="bool"),
                    resolv_conf=dict(type="str"),
                ),
            ),
            vnet=dict(type="dict", options=dict(networks=dict(type="list", elements="str"))),
        ),
    ),
    drop_invalid_packets=dict(type="bool"),
    log=dict(type="dict", options=dict(enabled=dict(type="bool"), level=dict(type="int"))),
    comments=dict(type="dict", options=dict(disabled=dict(type="bool"))),
    wait=dict(type="int"),
    wait_interval=dict(type="int"),
    retry=dict(
        type="dict",
        options=dict(max_retries=dict(type="int"), sleep_between_retries=dict(type="float")),
    ),
    iptables_executables=dict(
        type="dict",
        options=dict(
            iptables=dict(type="str"),
            iptables_save=dict(type="str"),
            iptables_restore=dict(type="str"),
            ip6tables=dict(type="str"),
            ip6tables_save=dict(type="str"),
            ip6tables_restore=dict(type="str"),
        ),
    ),
    protect_ssh_session=dict(type="bool", default=True),
    backend=dict(type="str", default="iptables", choices=["iptables", "firewalld"]),
    config=dict(type="raw"),
    config_file=dict(type="str"),
)


class ConfigError(Exception):
    """Bad input: ``errors`` lists messages that each name the option and value."""

    def __init__(self, errors):
        self.errors = list(errors)
        super(ConfigError, self).__init__("; ".join(self.errors))


# -- small grammar helpers ---------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ufeff]")
_DIGITS = re.compile(r"^[0-9]+\Z")
_IPV4 = re.compile(r"^(0|[1-9][0-9]{0,2})(\.(0|[1-9][0-9]{0,2})){3}\Z")
_IPV6_CHARS = re.compile(r"^[0-9A-Fa-f:.]+\Z")
_PREFIX = re.compile(r"^(0|[1-9][0-9]{0,2})\Z")
# Interface names: what the kernel allows (1-15 bytes, not . or .., no /, :
# or whitespace) narrowed to a conservative printable set; a trailing + is
# iptables' prefix wildcard (Kuma's "br+:172.18.0.0/16").
_IFACE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}\Z")
_IFACE_WILDCARD = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,13}\+\Z")
# User names as shadow-utils takes them (plus a leading digit, which
# Debian's adduser allows), or a numeric uid.
_USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,30}\$?\Z")
_PATH = re.compile(r"^/[A-Za-z0-9_./+@%=,~-]*\Z")
# systemd service unit names (boot_persistence.unit, kuma_dp_host's unit_name)
UNIT_NAME = re.compile(r"^[A-Za-z0-9:_.@-]{1,246}\.service\Z")
_DURATION = re.compile(r"^([0-9]*(\.[0-9]*)?)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")
_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,
    "\u03bcs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_str(value):
    return isinstance(value, str)


def _short(value):
    """repr() of a value, cut so that a huge value cannot flood the message."""
    text = repr(value)
    return text if len(text) <= 200 else text[:200] + "...'"


def _valid_port(value):
    return _is_int(value) and 1 <= value <= 65535


def _parse_uint16(text):
    if not _DIGITS.match(text) or len(text) > 5:
        return None
    value = int(text)
    return value if value <= 65535 else None


def has_control(text):
    return bool(_CONTROL.search(text))


def _string_problem(text):
    """Why ``text`` cannot reach a rule, or None (control characters, quotes,
    backslashes, non-ASCII, huge)."""
    if not _is_str(text):
        return "is not a string"
    if len(text) > MAX_STRING:
        return "is longer than %d characters" % MAX_STRING
    if has_control(text):
        return "contains a control character (newline, tab, NUL...)"
    if any(ord(c) > 126 for c in text):
        return "contains a non-ASCII character"
    if any(c in text for c in "\"'\\`$;#"):
        return "contains a quote, backslash or shell/comment character"
    return None


def _check_value_or_range(text, maximum=65535, what="uint16"):
    """Kuma's validateUintValueOrRange, stricter: a comma list of values or
    ``a-b`` ranges, each part a number, a range exactly two parts with
    low <= high, no empty element."""
    if text == "":
        return "validation failed for value or range '': empty"
    for element in text.split(","):
        if element == "":
            return "validation failed for value or range '%s': empty element" % text
        parts = element.split("-")
        if len(parts) > 2:
            return "validation failed for value or range '%s': '%s' is not a value or an a-b range" % (text, element)
        values = []
        for part in parts:
            if not _DIGITS.match(part) or len(part) > 10 or int(part) > maximum:
                return "validation failed for value or range '%s': invalid %s value: '%s'" % (text, what, part)
            values.append(int(part))
        if len(values) == 2 and values[0] > values[1]:
            return "validation failed for value or range '%s': range '%s' goes down (low must be <= high)" % (
                text,
                element,
            )
    return None


def _multiport_count(text):
    return sum(2 if "-" in e else 1 for e in text.split(","))


class UidExclusion(object):
    """One ``exclude_ports_for_uids`` entry for one protocol (Kuma's Exclusion)."""

    def __init__(self, protocol, ports, uids):
        self.protocol = protocol
        self.ports = ports  # iptables syntax: "53,3000:5000"
        self.uids = uids  # iptables syntax: "106:108"

    def __eq__(self, other):
        return isinstance(other, UidExclusion) and vars(self) == vars(other)

    def __ne__(self, other):
        return not self == other

    def __hash__(self):
        return hash((self.protocol, self.ports, self.uids))

    def __repr__(self):
        return "UidExclusion(%r, %r, %r)" % (self.protocol, self.ports, self.uids)


def parse_exclude_ports_for_uids(entries):
    """Kuma's parseExcludePortsForUIDs: ``[proto:][ports:]uids`` into exclusions.

    Raises ValueError with Kuma's wording when an entry is one Kuma rejects,
    and also (stricter than Kuma) for empty list elements, ranges with more
    than two parts or going down, and more ports than iptables' multiport
    match takes. Identical exclusions are kept once.
    """
    result = []
    for entry in entries:
        if not _is_str(entry):
            raise ValueError("not a string")
        problem = _string_problem(entry)
        if problem or " " in entry:
            raise ValueError(problem or "contains a space")
        parts = entry.split(":")
        if len(parts) > 3:
            raise ValueError(
                "invalid format for excluding ports by UIDs: '%s'. Expected format: <protocol:>?<ports:>?<uids>" % entry
            )
        if len(parts) == 1:
            protocols, ports, uids = "*", "*", parts[0]
        elif len(parts) == 2:
            protocols, ports, uids = "*", parts[0], parts[1]
        else:
            protocols, ports, uids = parts
        if uids == "*":
            raise ValueError("wildcard '*' is not allowed for UIDs")
        if ports in ("*", ""):
            ports = "1-65535"
        problem = _check_value_or_range(ports)
        if problem:
            raise ValueError("invalid port range: " + problem)
        if _multiport_count(ports) > MAX_MULTIPORT:
            raise ValueError(
                "invalid port range: '%s' has more than %d ports (a range counts 2), "
                "more than iptables' multiport match takes" % (ports, MAX_MULTIPORT)
            )
        if "," in uids:
            raise ValueError("invalid UID entry: '%s'. It should either be a single item or a range" % uids)
        problem = _check_value_or_range(uids)  # Kuma: uids are uint16 here too
        if problem:
            raise ValueError("invalid UID range: " + problem)
        if protocols in ("", "*"):
            proto_list = ["tcp", "udp"]
        else:
            proto_list = []
            for name in [p for p in protocols.split(",") if p.strip()]:
                name = name.strip().lower()
                if name not in ("tcp", "udp"):
                    raise ValueError("invalid or unsupported protocol: '%s'" % name)
                if name not in proto_list:
                    proto_list.append(name)
            if not proto_list:
                raise ValueError("invalid or unsupported protocol: '%s'" % protocols)
        for proto in proto_list:
            exclusion = UidExclusion(proto, ports.replace("-", ":"), uids.replace("-", ":"))
            if exclusion not in result:
                result.append(exclusion)
    return result


def split_addresses(entries):
    """Kuma accepts comma lists inside each entry (``--exclude-outbound-ips a,b``).
    Spaces around the commas are dropped; identical addresses are kept once."""
    out = []
    for entry in entries:
        if not _is_str(entry):
            continue
        for address in entry.split(","):
            address = address.strip(" ")
            if address and address not in out:
                out.append(address)
    return out


def parse_ip(text):
    """An IP address or CIDR as Go's net.ParseIP / net.ParseCIDR read it
    (standard library only): an ``ipaddress`` address or network, or None.

    Refused like Go: IPv4 with fewer than four parts or leading zeros
    (``10.1``, ``010.0.0.1``), zones (``fe80::1%eth0``), bad prefixes. Also
    refused (Kuma would write rules iptables cannot take): IPv4-mapped IPv6
    addresses (Go treats ``::ffff:10.0.0.1`` as IPv4) and prefixes with
    leading zeros.
    """
    if not _is_str(text) or not text or len(text) > 64:
        return None
    addr, sep, prefix = text.partition("/")
    if sep and not _PREFIX.match(prefix):
        return None
    try:
        if ":" in addr:
            if not _IPV6_CHARS.match(addr):
                return None
            parsed = ipaddress.IPv6Address(u"%s" % addr)
            if parsed.ipv4_mapped is not None:
                return None
            if "." in addr and not _IPV4.match(addr.rsplit(":", 1)[1]):
                return None
        else:
            if not _IPV4.match(addr):
                return None
            parsed = ipaddress.IPv4Address(u"%s" % addr)
        if sep:
            return ipaddress.ip_network(u"%s/%s" % (parsed, prefix), strict=False)
        return parsed
    except ValueError:
        return None


def address_family(address):
    """4 or 6 for an IP address or CIDR, None when it is not one."""
    parsed = parse_ip(address.strip() if _is_str(address) else address)
    return parsed.version if parsed is not None else None


def split_vnet(entry):
    """``iface:CIDR`` split at the first colon (IPv6 CIDRs contain colons)."""
    iface, sep, cidr = entry.partition(":")
    return iface, sep, cidr


def interface_problem(name):
    """Why ``name`` is not an interface name we write into a rule, or None."""
    if not _is_str(name) or name == "":
        return "is empty"
    if len(name) > 15:
        return "is longer than 15 characters (the kernel's limit)"
    if name in (".", ".."):
        return "is not a valid interface name"
    if name.startswith(("-", "!")):
        return "starts with %r, which iptables would read as an option or a negation" % name[0]
    if not (_IFACE.match(name) or _IFACE_WILDCARD.match(name)):
        return (
            "is not a valid interface name (letters, digits, '_', '.', '-'; a trailing '+' matches every "
            "interface starting with the name)"
        )
    return None


def path_problem(path):
    """Why ``path`` is not an absolute path we read or write, or None: the one grammar
    of every path option (printable ASCII letters, digits and ``_./+@%=,~-``, no
    ``..`` component, at most 4095 characters)."""
    if not _is_str(path) or not path:
        return "is empty"
    if has_control(path) or any(ord(c) > 126 for c in path):
        return "contains a control or non-ASCII character"
    if not path.startswith("/"):
        return "is not an absolute path"
    if len(path) > 4095:
        return "is longer than 4095 characters"
    if not _PATH.match(path):
        return "contains a character other than letters, digits and _./+@%=,~-"
    if ".." in path.split("/"):
        return "has a '..' component (give the path without it)"
    return None


def user_problem(user):
    """Why ``user`` cannot be kuma_dp_user, or None. Empty means: as Kuma,
    uid 5678, else a user named kuma-dp (the engine resolves it)."""
    if user is None or user == "":
        return None
    if not _is_str(user):
        return "is not a string"
    if has_control(user) or not (_USER.match(user) or _DIGITS.match(user)):
        return "is not a user name or a uid"
    if user == "root" or (_DIGITS.match(user) and int(user) == 0):
        return "is root (uid 0): every process of root would bypass the proxy"
    if _DIGITS.match(user) and (len(user) > 10 or int(user) > MAX_UID):
        return "is not a valid uid (0-%d)" % MAX_UID
    return None


# -- completion: None means "not set" ------------------------------------------


def _complete(value, default):
    """``value`` with every None (or missing key) filled from ``default``."""
    if isinstance(default, dict):
        if not isinstance(value, dict):
            value = {}
        out = {}
        for key, sub in default.items():
            out[key] = _complete(value.get(key), sub)
        for key, sub in value.items():
            if key not in out:
                out[key] = copy.deepcopy(sub)
        return out
    return copy.deepcopy(default) if value is None else value


def complete(params):
    """Module parameters with every unset option at Kuma's (or the module's) default."""
    params = params if isinstance(params, dict) else {}
    out = _complete(params, DEFAULTS)
    for key, default in MODULE_DEFAULTS.items():
        if out.get(key) is None:
            out[key] = default
    return out


# -- validation ----------------------------------------------------------------


def _get(params, *path):
    value = params
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _list(errors, name, value):
    """The list, or None after an error (wrong type, too long)."""
    if not isinstance(value, list):
        errors.append("%s: %s is not a list" % (name, _short(value)))
        return None
    if len(value) > MAX_LIST_ENTRIES:
        errors.append("%s: %d entries, more than the %d allowed" % (name, len(value), MAX_LIST_ENTRIES))
        return None
    return value


def _bool(errors, name, value):
    if not isinstance(value, bool):
        errors.append("%s: %s is not a boolean" % (name, _short(value)))


def _int_in(errors, name, value, low, high, unit=""):
    if not _is_int(value) or not low <= value <= high:
        errors.append("%s: %s is not a whole number from %d to %d%s" % (name, _short(value), low, high, unit))


def _check_ports(errors, name, values):
    values = _list(errors, name, values)
    for value in values or []:
        if not _valid_port(value):
            errors.append("%s: %s is not a valid port (1-65535)" % (name, _short(value)))


def _check_addresses(errors, name, values):
    values = _list(errors, name, values)
    for entry in values or []:
        if not _is_str(entry):
            errors.append("%s: %s is not a string" % (name, _short(entry)))
            continue
        problem = _string_problem(entry)
        if problem:
            errors.append("%s: %s %s" % (name, _short(entry), problem))
            continue
        addresses = [a.strip(" ") for a in entry.split(",")]
        if not any(addresses):
            errors.append("%s: %s: an entry cannot be empty or hold only commas" % (name, _short(entry)))
            continue
        for address in addresses:
            if address and parse_ip(address) is None:
                errors.append(
                    "%s: %s is not a valid IP address or CIDR (e.g. 10.0.0.1, 172.16.0.0/16, fe80::1, fe80::/10)"
                    % (name, _short(address))
                )


def _check_flow(errors, prefix, flow, inbound):
    _bool(errors, prefix + ".enabled", flow.get("enabled"))
    if not _valid_port(flow.get("port")):
        errors.append("%s.port: %s is not a valid port (1-65535)" % (prefix, _short(flow.get("port"))))
    _check_ports(errors, prefix + ".include_ports", flow.get("include_ports"))
    _check_ports(errors, prefix + ".exclude_ports", flow.get("exclude_ports"))
    _check_addresses(errors, prefix + ".exclude_ips", flow.get("exclude_ips"))
    _bool(errors, prefix + ".insert_instead_of_append", flow.get("insert_instead_of_append"))
    entries = _list(errors, prefix + ".exclude_ports_for_uids", flow.get("exclude_ports_for_uids"))
    for entry in entries or []:
        try:
            parse_exclude_ports_for_uids([entry])
        except ValueError as exc:
            errors.append("%s.exclude_ports_for_uids: %s: %s" % (prefix, _short(entry), exc))
            continue
        if inbound:
            errors.append(
                "%s.exclude_ports_for_uids: %s: not supported for inbound traffic: Kuma's builder turns each "
                "entry into '-A KUMA_MESH_INBOUND -j RETURN', which stops all inbound redirection (inbound "
                "packets have no owner uid); use redirect.inbound.exclude_ports or exclude_ips" % (prefix, _short(entry))
            )


def validate(params):
    """Check every option's grammar and bounds before anything is touched.

    Returns the list of error messages; each names the option path and the
    offending value. Never raises: any input of the argument spec's types
    (and any other) gives a list. ``None`` counts as Kuma's default.
    """
    errors = []
    try:
        _validate(complete(params), errors)
    except Exception as exc:  # pragma: no cover - a bug; still no traceback for the user
        errors.append("options: could not be checked (%s: %s)" % (type(exc).__name__, exc))
    return errors


def _validate(params, errors):
    problem = user_problem(params.get("kuma_dp_user"))
    if problem:
        errors.append("kuma_dp_user: %s %s" % (_short(params.get("kuma_dp_user")), problem))
    for name, choices in (
        ("state", ("present", "absent")),
        ("ip_family_mode", ("dualstack", "ipv4")),
        ("iptables_mode", ("auto", "nft", "legacy")),
        ("backend", ("iptables", "firewalld")),
    ):
        if params.get(name) not in choices:
            errors.append("%s: %s is not one of %s" % (name, _short(params.get(name)), ", ".join(choices)))

    redirect = params.get("redirect")
    if not isinstance(redirect, dict):
        errors.append("redirect: %s is not a dictionary" % _short(redirect))
        return
    sections = {}
    for key in ("inbound", "outbound", "dns", "vnet"):
        section = redirect.get(key)
        if not isinstance(section, dict):
            errors.append("redirect.%s: %s is not a dictionary" % (key, _short(section)))
            return
        sections[key] = section
    inbound, outbound, dns, vnet = sections["inbound"], sections["outbound"], sections["dns"], sections["vnet"]
    _check_flow(errors, "redirect.inbound", inbound, inbound=True)
    _check_flow(errors, "redirect.outbound", outbound, inbound=False)

    if inbound.get("enabled") and outbound.get("enabled") and inbound.get("port") == outbound.get("port"):
        errors.append(
            "redirect.inbound.port and redirect.outbound.port: both are %s; inbound and outbound "
            "traffic must be redirected to different ports" % _short(inbound.get("port"))
        )

    for key in ("enabled", "capture_all", "skip_conntrack_zone_split"):
        _bool(errors, "redirect.dns." + key, dns.get(key))
    if not _valid_port(dns.get("port")):
        errors.append("redirect.dns.port: %s is not a valid port (1-65535)" % _short(dns.get("port")))
    elif (dns.get("enabled") or dns.get("capture_all")) and dns.get("port") in (inbound.get("port"), outbound.get("port")):
        errors.append("redirect.dns.port: %s is already used for TCP redirection" % _short(dns.get("port")))
    problem = path_problem(dns.get("resolv_conf"))
    if problem:
        errors.append("redirect.dns.resolv_conf: %s %s" % (_short(dns.get("resolv_conf")), problem))

    networks = _list(errors, "redirect.vnet.networks", vnet.get("networks"))
    seen = {}
    for entry in networks or []:
        if not _is_str(entry):
            errors.append("redirect.vnet.networks: %s is not a string" % _short(entry))
            continue
        problem = _string_problem(entry)
        if problem:
            errors.append("redirect.vnet.networks: %s %s" % (_short(entry), problem))
            continue
        iface, sep, cidr = split_vnet(entry)
        if not sep or not iface:
            errors.append("redirect.vnet.networks: %s is not 'iface:CIDR' (e.g. docker0:172.17.0.0/16)" % _short(entry))
            continue
        problem = interface_problem(iface)
        if problem:
            errors.append("redirect.vnet.networks: %s: interface %s %s" % (_short(entry), _short(iface), problem))
            continue
        network = parse_ip(cidr) if "/" in cidr else None
        if network is None:
            errors.append("redirect.vnet.networks: %s: %s is not a valid CIDR" % (_short(entry), _short(cidr)))
            continue
        key = (iface, network.version)
        if key in seen and seen[key] != cidr:
            errors.append(
                "redirect.vnet.networks: %s: interface %s already has the IPv%d network %s (one per family)"
                % (_short(entry), _short(iface), network.version, _short(seen[key]))
            )
        seen.setdefault(key, cidr)

    _bool(errors, "drop_invalid_packets", params.get("drop_invalid_packets"))
    for name, section, keys in (
        ("log", params.get("log"), ("enabled", "level")),
        ("comments", params.get("comments"), ("disabled",)),
        ("retry", params.get("retry"), ("max_retries", "sleep_between_retries")),
        ("iptables_executables", params.get("iptables_executables"), ()),
    ):
        if not isinstance(section, dict):
            errors.append("%s: %s is not a dictionary" % (name, _short(section)))
            return
    _bool(errors, "log.enabled", params["log"].get("enabled"))
    if not _is_int(params["log"].get("level")) or not 0 <= params["log"]["level"] <= 7:
        errors.append("log.level: %s is not a syslog level (0-7)" % _short(params["log"].get("level")))
    _bool(errors, "comments.disabled", params["comments"].get("disabled"))
    _int_in(errors, "wait", params.get("wait"), 0, MAX_WAIT, " seconds")
    _int_in(errors, "wait_interval", params.get("wait_interval"), 0, MAX_WAIT_INTERVAL, " microseconds")
    _int_in(errors, "retry.max_retries", params["retry"].get("max_retries"), 0, MAX_RETRIES)
    sleep = params["retry"].get("sleep_between_retries")
    if (
        isinstance(sleep, bool)
        or not isinstance(sleep, (int, float))
        or not math.isfinite(sleep)
        or not 0 <= sleep <= MAX_SLEEP_BETWEEN_RETRIES
    ):
        errors.append(
            "retry.sleep_between_retries: %s is not a number of seconds from 0 to %g"
            % (_short(sleep), MAX_SLEEP_BETWEEN_RETRIES)
        )
    _bool(errors, "protect_ssh_session", params.get("protect_ssh_session"))

    executables = params["iptables_executables"]
    for family, names in (
        ("IPv4", ("iptables", "iptables_save", "iptables_restore")),
        ("IPv6", ("ip6tables", "ip6tables_save", "ip6tables_restore")),
    ):
        given = [n for n in names if executables.get(n) is not None]
        for name in given:
            problem = path_problem(executables[name])
            if problem:
                errors.append("iptables_executables.%s: %s %s" % (name, _short(executables[name]), problem))
        if given and len(given) != 3:
            errors.append(
                "iptables_executables: %s: the %s executables must be given together (%s); only %s given"
                % (_short(dict((n, executables[n]) for n in given)), family, ", ".join(names), ", ".join(given))
            )
    unknown = set(executables) - set(DEFAULTS["iptables_executables"])
    for name in sorted(unknown, key=str):
        errors.append("iptables_executables: %s is not a known executable" % _short(name))


# -- the per-family view -------------------------------------------------------


class FamilyConfig(object):
    """Kuma's InitializedConfigIPvX: everything the builder needs for one family."""

    def __init__(self, ipv6, uid, loopback="lo"):
        self.ipv6 = ipv6
        self.uid = str(uid)
        self.loopback = loopback
        self.localhost = "::1/128" if ipv6 else "127.0.0.1/32"
        self.inbound_passthrough = "::6/128" if ipv6 else "127.0.0.6/32"
        self.comments = True
        self.inbound_enabled = True
        self.inbound_port = 15006
        self.inbound_include_ports = []
        self.inbound_exclude_ports = []
        self.inbound_exclude_ips = []
        self.inbound_insert = False
        self.outbound_enabled = True
        self.outbound_port = 15001
        self.outbound_include_ports = []
        self.outbound_exclude_ports = []
        self.outbound_exclusions = []  # UidExclusion then address strings, Kuma's order
        self.outbound_insert = False
        self.dns_enabled = False
        self.dns_capture_all = False
        self.dns_port = 15053
        self.dns_servers = []
        self.conntrack_zone_split = False
        self.docker_output = False
        self.vnet = {}  # interface -> CIDR as given
        self.drop_invalid_packets = False
        self.log_enabled = False
        self.log_level = 7

    @property
    def family(self):
        return "ipv6" if self.ipv6 else "ipv4"


def _unique(values):
    out = []
    for value in values:
        if value not in out:
            out.append(value)
    return out


def family_config(params, ipv6, uid, dns_servers=None, docker_output=False, loopback="lo", extra_inbound_exclude=None):
    """Build one family's view of options ``validate`` accepted (Kuma's Initialize).

    ``dns_servers`` are the resolv.conf name servers (all families; this keeps
    the ones of ``ipv6``'s family, and drops any that is not a plain address).
    ``docker_output`` tells whether the nat table has a DOCKER_OUTPUT chain.
    ``extra_inbound_exclude`` are ports added on top of the user's (the SSH
    session's port). Duplicate ports, addresses and exclusions are kept once,
    in the order first given. Raises ConfigError when ``params`` has errors
    (the caller validates first).
    """
    params = complete(params)
    errors = validate(params)
    if errors:
        raise ConfigError(errors)
    version = 6 if ipv6 else 4
    redirect = params["redirect"]
    inbound, outbound, dns, vnet = redirect["inbound"], redirect["outbound"], redirect["dns"], redirect["vnet"]
    cfg = FamilyConfig(ipv6, uid, loopback)
    cfg.comments = not params["comments"]["disabled"]

    cfg.inbound_enabled = inbound["enabled"]
    cfg.inbound_port = inbound["port"]
    cfg.inbound_include_ports = _unique(inbound["include_ports"])
    cfg.inbound_exclude_ports = _unique(list(inbound["exclude_ports"]) + list(extra_inbound_exclude or []))
    cfg.inbound_exclude_ips = [a for a in split_addresses(inbound["exclude_ips"]) if address_family(a) == version]
    cfg.inbound_insert = inbound["insert_instead_of_append"]

    cfg.outbound_enabled = outbound["enabled"]
    cfg.outbound_port = outbound["port"]
    cfg.outbound_include_ports = _unique(outbound["include_ports"])
    cfg.outbound_exclude_ports = _unique(outbound["exclude_ports"])
    cfg.outbound_exclusions = _unique(parse_exclude_ports_for_uids(outbound["exclude_ports_for_uids"])) + [
        a for a in split_addresses(outbound["exclude_ips"]) if address_family(a) == version
    ]
    cfg.outbound_insert = outbound["insert_instead_of_append"]

    cfg.dns_port = dns["port"]
    cfg.docker_output = bool(docker_output)
    if dns["enabled"] or dns["capture_all"]:
        cfg.dns_enabled = True
        cfg.dns_capture_all = dns["capture_all"]
        # Kuma: no zone split when all DNS is captured inside Docker with custom networks.
        cfg.conntrack_zone_split = not dns["skip_conntrack_zone_split"] and not (docker_output and dns["capture_all"])
        if not dns["capture_all"]:
            servers = []
            for server in dns_servers or []:
                parsed = parse_ip(server) if _is_str(server) and "/" not in server else None
                if parsed is not None and parsed.version == version and str(parsed) not in servers:
                    servers.append(str(parsed))
            cfg.dns_servers = servers
            if not cfg.dns_servers:
                cfg.dns_enabled = False
                cfg.conntrack_zone_split = False

    for entry in vnet["networks"]:
        iface, _sep, cidr = split_vnet(entry)
        if address_family(cidr) == version:
            cfg.vnet[iface] = cidr

    cfg.drop_invalid_packets = params["drop_invalid_packets"]
    cfg.log_enabled = params["log"]["enabled"]
    cfg.log_level = params["log"]["level"]
    return cfg


def restore_lock_args(params):
    """The xtables-lock flags for a legacy ``*-restore``, passed explicitly:
    ``--wait=N`` (N seconds; 0 means do not wait: fail at once when another
    program holds the lock) and ``--wait-interval=U`` when U > 0.
    (iptables-nft takes no lock and needs none.)"""
    params = complete(params)
    args = ["--wait=%d" % params["wait"]]
    if params["wait_interval"] > 0:
        args.append("--wait-interval=%d" % params["wait_interval"])
    return args


def with_defaults(overrides=None):
    """The module's parameters with defaults filled in (for tests and tools).
    Raises KeyError for an option the module does not have."""

    def check(spec, given, path):
        for key, value in (given or {}).items():
            if key not in spec:
                raise KeyError("unknown options: %s" % (path + key))
            if spec[key].get("options") and isinstance(value, dict):
                check(spec[key]["options"], value, path + key + ".")

    check(ARGUMENT_SPEC, overrides, "")
    return complete(copy.deepcopy(overrides or {}))


# -- kumactl's transparent-proxy configuration -----------------------------------
# The YAML/JSON that ``kumactl install transparent-proxy --config``/
# ``--config-file`` takes (pkg/transparentproxy/config/config.go, the same keys
# in release-2.14 and master/3.x), mapped onto the module's options.

MAX_CONFIG_TEXT = 1024 * 1024


class _Refused(Exception):
    pass


def _c_bool(value):
    if not isinstance(value, bool):
        raise _Refused("is not a boolean")
    return value


def _c_uint(maximum):
    def convert(value):
        if not _is_int(value) or not 0 <= value <= maximum:
            raise _Refused("is not a whole number from 0 to %d" % maximum)
        return value

    return convert


def _c_port(value):
    if not _valid_port(value):
        raise _Refused("is not a valid port (uint16 in the range [1, 65535])")
    return value


def _c_ports(value):
    """Kuma's Ports: a list of numbers or strings, a number, or a comma string."""
    if _is_int(value):
        items = [str(value)]
    elif _is_str(value):
        items = [value]
    elif isinstance(value, list):
        items = []
        for item in value:
            if not (_is_int(item) or _is_str(item)):
                raise _Refused("holds %s, which is not a port" % _short(item))
            items.append(str(item))
    else:
        raise _Refused("is not a list of ports")
    out = []
    for item in items:
        for part in item.split(","):
            part = part.strip(" ")
            if not part:
                continue
            port = _parse_uint16(part)
            if not port:
                raise _Refused("value '%s' is not a valid port (uint16 in the range [1, 65535])" % part)
            out.append(port)
    return out


def _c_strings(value):
    if not isinstance(value, list):
        raise _Refused("is not a list")
    out = []
    for item in value:
        if _is_int(item):  # YAML reads "- 1" as a number; kumactl takes it as "1"
            item = str(item)
        if not _is_str(item):
            raise _Refused("holds %s, which is not a string" % _short(item))
        out.append(item)
    return out


def _c_string(value):
    if _is_int(value):
        value = str(value)
    if not _is_str(value):
        raise _Refused("is not a string")
    return value


def _c_family(value):
    if not _is_str(value) or value.lower() not in ("", "dualstack", "ipv4"):
        raise _Refused("must be one of 'dualstack' or 'ipv4'")
    return value.lower() or "dualstack"


def go_duration(value):
    """Kuma's config_types.Duration: a Go duration string ("2s", "1m30s",
    "500ms") or a number of nanoseconds. Returns seconds (float); raises
    ValueError."""
    if _is_int(value) or (isinstance(value, float) and math.isfinite(value)):
        return value / 1e9
    if not _is_str(value) or not value or len(value) > 64:
        raise ValueError("is not a duration")
    text = value
    sign = 1.0
    if text[0] in "+-":
        sign = -1.0 if text[0] == "-" else 1.0
        text = text[1:]
    if text == "0":
        return 0.0
    if not text:
        raise ValueError("is not a duration")
    total = 0.0
    while text:
        match = _DURATION.match(text)
        if not match or match.group(1) in ("", "."):
            raise ValueError("is not a Go duration (e.g. 2s, 500ms, 1m30s)")
        total += float(match.group(1)) * _DURATION_UNITS[match.group(3)]
        text = text[match.end():]
    return sign * total


def _c_duration(value):
    try:
        return go_duration(value)
    except (ValueError, OverflowError) as exc:
        raise _Refused(str(exc))


def _flow_keys(prefix):
    return {
        "enabled": (prefix + ("enabled",), _c_bool),
        "port": (prefix + ("port",), _c_port),
        "includePorts": (prefix + ("include_ports",), _c_ports),
        "excludePorts": (prefix + ("exclude_ports",), _c_ports),
        "excludePortsForUIDs": (prefix + ("exclude_ports_for_uids",), _c_strings),
        "excludePortsForIPs": (prefix + ("exclude_ips",), _c_strings),
        "insertRedirectInsteadOfAppend": (prefix + ("insert_instead_of_append",), _c_bool),
    }


CONFIG_KEYS = {
    "kumaDPUser": (("kuma_dp_user",), _c_string),
    "ipFamilyMode": (("ip_family_mode",), _c_family),
    "redirect": {
        "inbound": _flow_keys(("redirect", "inbound")),
        "outbound": _flow_keys(("redirect", "outbound")),
        "dns": {
            "enabled": (("redirect", "dns", "enabled"), _c_bool),
            "port": (("redirect", "dns", "port"), _c_port),
            "captureAll": (("redirect", "dns", "capture_all"), _c_bool),
            "skipConntrackZoneSplit": (("redirect", "dns", "skip_conntrack_zone_split"), _c_bool),
            "resolvConfigPath": (("redirect", "dns", "resolv_conf"), _c_string),
        },
        "vnet": {"networks": (("redirect", "vnet", "networks"), _c_strings)},
    },
    "dropInvalidPackets": (("drop_invalid_packets",), _c_bool),
    "log": {
        "enabled": (("log", "enabled"), _c_bool),
        "level": (("log", "level"), _c_uint(65535)),
    },
    "wait": (("wait",), _c_uint(2 ** 32 - 1)),
    "waitInterval": (("wait_interval",), _c_uint(2 ** 32 - 1)),
    "retry": {
        "maxRetries": (("retry", "max_retries"), _c_uint(2 ** 32 - 1)),
        "sleepBetweenRetries": (("retry", "sleep_between_retries"), _c_duration),
    },
    "comments": {"disabled": (("comments", "disabled"), _c_bool)},
    "iptablesExecutables": {
        "iptables": (("iptables_executables", "iptables"), _c_string),
        "iptables-save": (("iptables_executables", "iptables_save"), _c_string),
        "iptables-restore": (("iptables_executables", "iptables_restore"), _c_string),
        "ip6tables": (("iptables_executables", "ip6tables"), _c_string),
        "ip6tables-save": (("iptables_executables", "ip6tables_save"), _c_string),
        "ip6tables-restore": (("iptables_executables", "ip6tables_restore"), _c_string),
    },
}

# kumactl keys the module does not take; accepted only at their neutral value.
UNSUPPORTED_KEYS = {
    "verbose": (False, "long option names in the rules are not supported"),
    "dryRun": (False, "use Ansible's check mode"),
    "storeFirewalld": (False, "use the module's backend: firewalld"),
    "cniMode": (False, "CNI mode is for Kubernetes, not for hosts"),
}


def _set_path(target, path, value):
    for key in path[:-1]:
        target = target.setdefault(key, {})
    target[path[-1]] = value


def _walk_config(data, keys, where, out, errors):
    if not isinstance(data, dict):
        errors.append("%s: %s is not a mapping" % (where, _short(data)))
        return
    for key, value in data.items():
        name = "%s.%s" % (where, key)
        if key in UNSUPPORTED_KEYS and keys is CONFIG_KEYS:
            neutral, why = UNSUPPORTED_KEYS[key]
            if value != neutral or not isinstance(value, bool):
                errors.append("%s: %s is not supported (%s)" % (name, _short(value), why))
            continue
        if key == "ebpf" and keys is CONFIG_KEYS:  # Kuma 2.x only
            if not isinstance(value, dict) or value.get("enabled", False) is not False:
                errors.append("%s: %s is not supported (eBPF mode; only enabled: false is accepted)" % (name, _short(value)))
            continue
        if not _is_str(key) or key not in keys:
            errors.append("%s: unknown or unsupported kumactl configuration key %s" % (where, _short(key)))
            continue
        spec = keys[key]
        if isinstance(spec, dict):
            if value is None:
                continue
            _walk_config(value, spec, name, out, errors)
            continue
        path, convert = spec
        if value is None:  # YAML "key:" with nothing: Go leaves the field as it was
            continue
        try:
            _set_path(out, path, convert(value))
        except _Refused as exc:
            errors.append("%s: %s %s" % (name, _short(value), exc))


def parse_kumactl_config(data, source="config"):
    """kumactl's configuration (a dict, or YAML/JSON text) -> (module options
    it sets, nested as the module's, [errors]). Pure; never raises."""
    errors = []
    if _is_str(data):
        if len(data) > MAX_CONFIG_TEXT:
            return {}, ["%s: longer than %d bytes" % (source, MAX_CONFIG_TEXT)]
        text = data
        try:
            data = json.loads(text) if text.strip() else {}
        except ValueError:
            if not HAS_YAML:
                return {}, [
                    "%s: is not JSON, and PyYAML is not installed on the target to read YAML "
                    "(give it as a dictionary, or as JSON)" % source
                ]
            try:
                data = yaml.safe_load(text)
            except Exception as exc:  # any YAML error, whatever its class
                return {}, ["%s: is not valid YAML: %s" % (source, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)]
        if data is None:
            data = {}
    out = {}
    _walk_config(data, CONFIG_KEYS, source, out, errors)
    return out, errors


def _merge(base, top):
    """``top`` over ``base``: dicts merged key by key, anything else (lists too) replaced;
    None in ``top`` leaves ``base``."""
    if isinstance(base, dict) and isinstance(top, dict):
        out = dict(base)
        for key, value in top.items():
            out[key] = _merge(base.get(key), value)
        return out
    return copy.deepcopy(base) if top is None else copy.deepcopy(top)


def effective_params(params, config_file_text=None):
    """The options a run uses, with kumactl's precedence: Kuma's defaults, then
    ``config_file`` (its text, read by the caller), then ``config``, then the
    module's explicitly set options (those that are not None). Returns
    ``(params, errors)``; ``params`` has every option filled in. Pure; never
    raises.

    As kumactl: ``redirect.dns.enabled`` and ``redirect.dns.capture_all``
    both set to true by the module's options is refused (kumactl refuses
    ``--redirect-dns`` with ``--redirect-all-dns-traffic``), while a
    configuration may hold both (capture_all wins); capture_all implies
    enabled.
    """
    errors = []
    if not isinstance(params, dict):
        return complete({}), ["options: %s is not a dictionary" % _short(params)]
    try:
        dns = _get(params, "redirect", "dns") or {}
        if isinstance(dns, dict) and dns.get("enabled") is True and dns.get("capture_all") is True:
            errors.append(
                "redirect.dns.enabled and redirect.dns.capture_all: both are true; only one of them may be set "
                "(kumactl: only one of '--redirect-dns' or '--redirect-all-dns-traffic' should be specified)"
            )
        layers = []
        config_file = params.get("config_file")
        if config_file is not None:
            problem = path_problem(config_file)
            if problem:
                errors.append("config_file: %s %s" % (_short(config_file), problem))
            elif config_file_text is None:
                errors.append("config_file: %s was not read" % _short(config_file))
            else:
                layer, problems = parse_kumactl_config(config_file_text, "config_file %s" % config_file)
                layers.append(layer)
                errors += problems
        inline = params.get("config")
        if inline is not None:
            if not isinstance(inline, (dict, str)):
                errors.append("config: %s is not a dictionary or YAML/JSON text" % _short(inline))
            else:
                layer, problems = parse_kumactl_config(inline, "config")
                layers.append(layer)
                errors += problems
        merged = copy.deepcopy(DEFAULTS)
        for layer in layers:
            merged = _merge(merged, layer)
        own = dict((k, v) for k, v in params.items() if k not in ("config", "config_file"))
        merged = _merge(merged, own)
        merged["config"] = params.get("config")
        merged["config_file"] = params.get("config_file")
        result = complete(merged)
        dns = _get(result, "redirect", "dns")
        if isinstance(dns, dict) and dns.get("capture_all") is True:
            dns["enabled"] = True
        return result, errors
    except Exception as exc:  # pragma: no cover - a bug; still no traceback for the user
        return complete({}), errors + ["options: could not be merged (%s: %s)" % (type(exc).__name__, exc)]
