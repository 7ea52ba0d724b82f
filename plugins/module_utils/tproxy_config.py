# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kuma.mesh maintainers
# Apache License 2.0 (see LICENSE)
"""Options of the transparent proxy, their validation, and the per-family view.

Pure code, no I/O: the host facts it needs (the kuma-dp uid, resolv.conf
name servers, the loopback name...) are passed in by the caller. The option
names are Kuma's transparent-proxy configuration in snake_case; the checks
are the ones Kuma applies (pkg/transparentproxy/config/config.go, utils.go)
plus the ones that keep a host reachable.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy

try:
    import netaddr

    HAS_NETADDR = True
except ImportError:  # pragma: no cover - reported by the module
    HAS_NETADDR = False

COMMENT_PREFIX = "kuma/mesh/transparent/proxy"
CHAIN_PREFIX = "KUMA_MESH"
DNS_PORT = 53

DEFAULT_KUMA_DP_USER = "kuma-dp"
DEFAULT_KUMA_DP_UID = 5678

# The argument spec is shared by the module and the role's documentation tests.
_INBOUND = dict(
    enabled=dict(type="bool", default=True),
    port=dict(type="int", default=15006),
    exclude_ports=dict(type="list", elements="int", default=[]),
    exclude_ips=dict(type="list", elements="str", default=[]),
    insert_instead_of_append=dict(type="bool", default=False),
)
_OUTBOUND = dict(
    enabled=dict(type="bool", default=True),
    port=dict(type="int", default=15001),
    exclude_ports=dict(type="list", elements="int", default=[]),
    exclude_ips=dict(type="list", elements="str", default=[]),
    exclude_ports_for_uids=dict(type="list", elements="str", default=[]),
    insert_instead_of_append=dict(type="bool", default=False),
)
_DNS = dict(
    enabled=dict(type="bool", default=False),
    capture_all=dict(type="bool", default=False),
    port=dict(type="int", default=15053),
    skip_conntrack_zone_split=dict(type="bool", default=False),
    resolv_conf=dict(type="path", default="/etc/resolv.conf"),
)
_VNET = dict(networks=dict(type="list", elements="str", default=[]))


def _suboptions(spec):
    return dict(type="dict", default={}, options=copy.deepcopy(spec))


ARGUMENT_SPEC = dict(
    state=dict(type="str", default="present", choices=["present", "absent"]),
    kuma_dp_user=dict(type="str", default=DEFAULT_KUMA_DP_USER),
    ip_family_mode=dict(type="str", default="dualstack", choices=["dualstack", "ipv4"]),
    iptables_mode=dict(type="str", default="auto", choices=["auto", "nft", "legacy"]),
    redirect=dict(
        type="dict",
        default={},
        options=dict(
            inbound=_suboptions(_INBOUND),
            outbound=_suboptions(_OUTBOUND),
            dns=_suboptions(_DNS),
            vnet=_suboptions(_VNET),
        ),
    ),
    drop_invalid_packets=dict(type="bool", default=False),
    log=dict(
        type="dict",
        default={},
        options=dict(enabled=dict(type="bool", default=False), level=dict(type="int", default=7)),
    ),
    comments=dict(type="dict", default={}, options=dict(disabled=dict(type="bool", default=False))),
    wait=dict(type="int", default=5),
    wait_interval=dict(type="int", default=0),
    retry=dict(
        type="dict",
        default={},
        options=dict(
            max_retries=dict(type="int", default=4),
            sleep_between_retries=dict(type="float", default=2.0),
        ),
    ),
    protect_ssh_session=dict(type="bool", default=True),
    backend=dict(type="str", default="iptables", choices=["iptables", "firewalld"]),
)


class ConfigError(Exception):
    """Bad input: ``errors`` lists messages that each name the option and value."""

    def __init__(self, errors):
        self.errors = list(errors)
        super(ConfigError, self).__init__("; ".join(self.errors))


def _valid_port(value):
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535


def _parse_uint16(text):
    if not text.isdigit():
        return None
    value = int(text)
    return value if value <= 65535 else None


def _check_value_or_range(text):
    """Kuma's validateUintValueOrRange: comma list of uint16 values or a-b ranges."""
    for element in [e for e in text.split(",") if e.strip()]:
        for part in element.split("-"):
            if _parse_uint16(part) is None:
                return "validation failed for value or range '%s': invalid uint16 value: '%s'" % (text, part)
    return None


class UidExclusion(object):
    """One ``exclude_ports_for_uids`` entry for one protocol (Kuma's Exclusion)."""

    def __init__(self, protocol, ports, uids):
        self.protocol = protocol
        self.ports = ports  # iptables syntax: "53,3000:5000"
        self.uids = uids  # iptables syntax: "106:108"

    def __eq__(self, other):
        return vars(self) == vars(other)

    def __repr__(self):
        return "UidExclusion(%r, %r, %r)" % (self.protocol, self.ports, self.uids)


def parse_exclude_ports_for_uids(entries):
    """Kuma's parseExcludePortsForUIDs: ``[proto:][ports:]uids`` into exclusions.

    Raises ValueError with Kuma's wording when an entry is one Kuma rejects.
    """
    result = []
    for entry in entries:
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
        if "," in uids:
            raise ValueError("invalid UID entry: '%s'. It should either be a single item or a range" % uids)
        problem = _check_value_or_range(uids)
        if problem or not uids:
            raise ValueError("invalid UID range: " + (problem or "validation failed for value or range '': empty"))
        if protocols in ("", "*"):
            proto_list = ["tcp", "udp"]
        else:
            proto_list = []
            for name in [p for p in protocols.split(",") if p.strip()]:
                name = name.strip().lower()
                if name not in ("tcp", "udp"):
                    raise ValueError("invalid or unsupported protocol: '%s'" % name)
                proto_list.append(name)
        for proto in proto_list:
            result.append(UidExclusion(proto, ports.replace("-", ":"), uids.replace("-", ":")))
    return result


def split_addresses(entries):
    """Kuma accepts comma lists inside each entry (``--exclude-outbound-ips a,b``)."""
    out = []
    for entry in entries:
        out.extend(a.strip() for a in entry.split(",") if a.strip())
    return out


def address_family(address):
    """4 or 6 for an IP address or CIDR, None when it is not one (netaddr)."""
    text = address.strip()
    try:
        if "/" in text:
            return netaddr.IPNetwork(text).version
        return netaddr.IPAddress(text).version
    except (netaddr.AddrFormatError, ValueError, TypeError):
        return None


def _strict_ip(text):
    """netaddr accepts legacy forms such as '10.1' or '1'; Kuma (Go's net) does not."""
    if "/" in text:
        addr, _sep, prefix = text.partition("/")
        if not prefix.isdigit():
            return None
    else:
        addr = text
    if ":" not in addr and addr.count(".") != 3:
        return None
    return address_family(text)


def split_vnet(entry):
    """``iface:CIDR`` split at the first colon (IPv6 CIDRs contain colons)."""
    iface, sep, cidr = entry.partition(":")
    return iface, sep, cidr


def validate(params):
    """Check every option the way Kuma would, before anything is touched.

    Returns the list of error messages; each names the option and the value.
    """
    errors = []
    redirect = params["redirect"]
    inbound, outbound, dns, vnet = redirect["inbound"], redirect["outbound"], redirect["dns"], redirect["vnet"]

    for name, value in (
        ("redirect.inbound.port", inbound["port"]),
        ("redirect.outbound.port", outbound["port"]),
        ("redirect.dns.port", dns["port"]),
    ):
        if not _valid_port(value):
            errors.append("%s: %r is not a valid port (1-65535)" % (name, value))
    for name, values in (
        ("redirect.inbound.exclude_ports", inbound["exclude_ports"]),
        ("redirect.outbound.exclude_ports", outbound["exclude_ports"]),
    ):
        for value in values:
            if not _valid_port(value):
                errors.append("%s: %r is not a valid port (1-65535)" % (name, value))
    if inbound["enabled"] and outbound["enabled"] and inbound["port"] == outbound["port"]:
        errors.append(
            "redirect.inbound.port and redirect.outbound.port: both are %r; inbound and outbound "
            "traffic must be redirected to different ports" % inbound["port"]
        )
    dns_on = dns["enabled"] or dns["capture_all"]
    if dns_on and dns["port"] in (inbound["port"], outbound["port"]):
        errors.append("redirect.dns.port: %r is already used for TCP redirection" % dns["port"])

    for name, values in (
        ("redirect.inbound.exclude_ips", inbound["exclude_ips"]),
        ("redirect.outbound.exclude_ips", outbound["exclude_ips"]),
    ):
        for entry in values:
            if not entry.strip():
                errors.append("%s: %r: an entry cannot be empty" % (name, entry))
                continue
            for address in split_addresses([entry]):
                if _strict_ip(address) is None:
                    errors.append(
                        "%s: %r is not a valid IP address or CIDR (e.g. 10.0.0.1, 172.16.0.0/16, fe80::1, fe80::/10)"
                        % (name, address)
                    )

    for entry in outbound["exclude_ports_for_uids"]:
        try:
            parse_exclude_ports_for_uids([entry])
        except ValueError as exc:
            errors.append("redirect.outbound.exclude_ports_for_uids: %r: %s" % (entry, exc))

    for entry in vnet["networks"]:
        iface, sep, cidr = split_vnet(entry)
        if not sep or not iface:
            errors.append("redirect.vnet.networks: %r is not 'iface:CIDR' (e.g. docker0:172.17.0.0/16)" % entry)
        elif "/" not in cidr or _strict_ip(cidr) is None:
            errors.append("redirect.vnet.networks: %r: %r is not a valid CIDR" % (entry, cidr))
        elif len(iface) > 15 or any(c in iface for c in " /\t\"'"):
            errors.append("redirect.vnet.networks: %r: %r is not a valid interface name" % (entry, iface))

    if not 0 <= params["log"]["level"] <= 7:
        errors.append("log.level: %r is not a syslog level (0-7)" % params["log"]["level"])
    if params["wait"] < 0:
        errors.append("wait: %r must be 0 or more seconds" % params["wait"])
    if params["wait_interval"] < 0:
        errors.append("wait_interval: %r must be 0 or more microseconds" % params["wait_interval"])
    if params["retry"]["max_retries"] < 0:
        errors.append("retry.max_retries: %r must be 0 or more" % params["retry"]["max_retries"])
    if params["retry"]["sleep_between_retries"] < 0:
        errors.append("retry.sleep_between_retries: %r must be 0 or more" % params["retry"]["sleep_between_retries"])
    return errors


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
        self.inbound_exclude_ports = []
        self.inbound_exclude_ips = []
        self.inbound_insert = False
        self.outbound_enabled = True
        self.outbound_port = 15001
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


def family_config(params, ipv6, uid, dns_servers=None, docker_output=False, loopback="lo", extra_inbound_exclude=None):
    """Build one family's view of the validated options (Kuma's Initialize).

    ``dns_servers`` are the resolv.conf name servers (all families; this keeps
    the ones of ``ipv6``'s family). ``docker_output`` tells whether the nat
    table has a DOCKER_OUTPUT chain. ``extra_inbound_exclude`` are ports added
    on top of the user's (the SSH session's port).
    """
    version = 6 if ipv6 else 4
    redirect = params["redirect"]
    inbound, outbound, dns, vnet = redirect["inbound"], redirect["outbound"], redirect["dns"], redirect["vnet"]
    cfg = FamilyConfig(ipv6, uid, loopback)
    cfg.comments = not params["comments"]["disabled"]

    cfg.inbound_enabled = inbound["enabled"]
    cfg.inbound_port = inbound["port"]
    cfg.inbound_exclude_ports = list(inbound["exclude_ports"])
    for port in extra_inbound_exclude or []:
        if port not in cfg.inbound_exclude_ports:
            cfg.inbound_exclude_ports.append(port)
    cfg.inbound_exclude_ips = [a for a in split_addresses(inbound["exclude_ips"]) if address_family(a) == version]
    cfg.inbound_insert = inbound["insert_instead_of_append"]

    cfg.outbound_enabled = outbound["enabled"]
    cfg.outbound_port = outbound["port"]
    cfg.outbound_exclude_ports = list(outbound["exclude_ports"])
    cfg.outbound_exclusions = parse_exclude_ports_for_uids(outbound["exclude_ports_for_uids"]) + [
        a for a in split_addresses(outbound["exclude_ips"]) if address_family(a) == version
    ]
    cfg.outbound_insert = outbound["insert_instead_of_append"]

    cfg.dns_port = dns["port"]
    cfg.docker_output = docker_output
    if dns["enabled"] or dns["capture_all"]:
        cfg.dns_enabled = True
        cfg.dns_capture_all = dns["capture_all"]
        # Kuma: no zone split when all DNS is captured inside Docker with custom networks.
        cfg.conntrack_zone_split = not dns["skip_conntrack_zone_split"] and not (docker_output and dns["capture_all"])
        if not dns["capture_all"]:
            cfg.dns_servers = [s for s in (dns_servers or []) if address_family(s) == version]
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


def with_defaults(overrides=None):
    """The module's parameters with defaults filled in (for tests and tools)."""

    def fill(spec, given):
        out = {}
        given = given or {}
        for key, opt in spec.items():
            value = given.get(key)
            if opt.get("options"):
                out[key] = fill(opt["options"], value)
            elif value is None:
                out[key] = copy.deepcopy(opt.get("default"))
            else:
                out[key] = value
        unknown = set(given) - set(spec)
        if unknown:
            raise KeyError("unknown options: %s" % ", ".join(sorted(unknown)))
        return out

    return fill(ARGUMENT_SPEC, overrides)
