# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kuma.mesh maintainers
# Apache License 2.0 (see LICENSE)
"""kuma_dataplane's logic: build and validate a Kuma Dataplane, render it, write it.

``build()`` and ``render()`` are pure (no I/O): options in, the resource, its
YAML text, errors and warnings out. ``run()`` is the small file-writing part
the module calls.

The checks are Kuma's own, read from the kumahq/kuma sources of release
v2.14.3 (2.x rules) and of the 3.0 development line (3.x rules):

- pkg/core/resources/apis/mesh/dataplane_validator.go  (networking, inbounds,
  reachableBackends)
- pkg/core/resources/apis/mesh/validators.go           (tags, ports)
- pkg/core/resources/apis/mesh/meta_validator.go       (name and mesh, which
  kuma-dp checks itself in app/kuma-dp/cmd/dataplane.go)
- pkg/core/metadata/protocol.go                         (protocols)
- api/mesh/v1alpha1/dataplane.proto                     (fields, enums, ranges)
- pkg/api-server/resource_crud_endpoints.go (3.x), resource_endpoints.go (2.x)
                                                        (labels)
- pkg/transparentproxy/config/dataplane/config_dataplane.go (ipFamilyMode)
- pkg/core/resources/apis/meshservice/generate/generator.go (3.x kuma.io/workload)

A few checks are the collection's own, stricter than Kuma because Kuma would
accept the value and then misbehave (each is marked "collection rule").
Error messages name the option path and the value, then say what is wrong,
in Kuma's words where Kuma has some.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import json
import os
import re
import stat
import tempfile

from ansible.module_utils.common.text.converters import to_bytes, to_native, to_text

from ansible_collections.kuma.mesh.plugins.module_utils.strict_args import is_int as _is_int, show
from ansible_collections.kuma.mesh.plugins.module_utils.tproxy_config import path_problem

SERVICE_TAG = "kuma.io/service"
PROTOCOL_TAG = "kuma.io/protocol"
MESH_LABEL = "kuma.io/mesh"
WORKLOAD_LABEL = "kuma.io/workload"

# pkg/transparentproxy/consts/consts.go (DefaultRedirectInbountPort/OutboundPort)
DEFAULT_REDIRECT_PORT_INBOUND = 15006
DEFAULT_REDIRECT_PORT_OUTBOUND = 15001

# api/mesh/v1alpha1/dataplane.proto, TransparentProxying.IpFamilyMode, as
# protojson spells the enum values.
IP_FAMILY_MODES = {"dualstack": "DualStack", "ipv4": "IPv4"}

# pkg/core/resources/apis/mesh/dataplane_validator.go: allowedKinds
BACKEND_KINDS = ("MeshExternalService", "MeshMultiZoneService", "MeshService")

# pkg/core/metadata/protocol.go: ParseProtocol accepts these (lower-cased);
# AllowedValuesHint lists SupportedProtocols. 3.x dropped kafka.
_PARSED_PROTOCOLS = {
    2: ("http", "http2", "tcp", "tls", "grpc", "kafka", "mysql"),
    3: ("http", "http2", "tcp", "tls", "grpc", "mysql"),
}
_SUPPORTED_PROTOCOLS = {
    2: ("grpc", "http", "http2", "kafka", "tcp"),
    3: ("grpc", "http", "http2", "tcp"),
}

# pkg/core/resources/apis/mesh/validators.go
_TAG_NAME = re.compile(r"[a-zA-Z0-9.\-_:/]*")
_TAG_VALUE = re.compile(r"[a-zA-Z0-9.\-_:]*")
# pkg/core/resources/apis/mesh/meta_validator.go
_IDENTIFIER = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
IDENTIFIER_MSG = (
    "invalid characters. A lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
    "characters, '-' or '.', and must start and end with an alphanumeric character"
)
_BACKWARD_COMPAT = re.compile(r"[0-9a-z-_.]*")
BACKWARD_COMPAT_MSG = "invalid characters. Valid characters are numbers, lowercase latin letters and '-', '_', '.' symbols."
# github.com/asaskevich/govalidator: rxDNSName (IsDNSName)
_DNS_NAME = re.compile(r"([a-zA-Z0-9_]{1}[a-zA-Z0-9_-]{0,62}){1}(\.[a-zA-Z0-9_]{1}[a-zA-Z0-9_-]{0,62})*[\._]?")
# k8s.io/apimachinery/pkg/util/validation: IsQualifiedName, IsValidLabelValue
_QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_DNS1123_SUBDOMAIN = _IDENTIFIER
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
# k8s.io/apimachinery/pkg/api/validation: NameIsDNS1035Label
_DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")

# C0 and C1 controls, DEL, unpaired surrogates, and the Unicode line/paragraph
# separators and BOM that YAML readers treat specially.
_FORBIDDEN_CHAR = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029\ufeff]")
# protojson's google.protobuf.Duration: seconds with up to 9 fractional digits and an "s".
_DURATION = re.compile(r"([0-9]{1,12})(?:\.([0-9]{1,9}))?s")
_MAX_DURATION_SECONDS = 315576000000  # durationpb CheckValid: +-10000 years
_UINT32_MAX = 4294967295
# net/url unescape: '%' must be followed by two hex digits.
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")

_VERSION = re.compile(r"v?(\d+)\.(\d+)(?:\.(\d+))?(?:[-+][0-9A-Za-z.+-]*)?")


def _full(regexp, value):
    """Go's regexp ``^...$`` on a whole string (Python's ``$`` also matches before a final newline)."""
    return regexp.fullmatch(value) is not None


class BuildResult(object):
    """What ``build`` returns: the Dataplane as a dict, errors and warnings (lists of str)."""

    def __init__(self, resource, errors, warnings, major):
        self.resource = resource
        self.errors = errors
        self.warnings = warnings
        self.major = major


def parse_kuma_version(version):
    """(major, minor) of ``version`` ("2.14.3", "v3.0.0", "3.0.0-rc1"), or None when malformed."""
    if not isinstance(version, str):
        version = "" if version is None else str(version)
    m = _VERSION.fullmatch(version.strip())
    if m is None:
        return None
    return int(m.group(1)), int(m.group(2))


# -- small value checks ---------------------------------------------------------
# Go's net.ParseIP (Go 1.22+: netip.ParseAddr, zones refused). IPv4: exactly four
# decimal fields 0-255, no leading zeros; IPv6: hextets of 1-4 hex digits, at most
# one "::" standing for at least one group, an optional dotted IPv4 tail (same
# IPv4 rules), no zone ("%eth0"). Python's ipaddress differs in the details
# (scope ids since 3.9, leading zeros before 3.8.12/3.9.5), so the IPv4 parts
# are checked here and ipaddress only gets what Go would accept.
_GO_IPV4 = re.compile(r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(?:\.(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}")
_GO_IPV6_CHARS = re.compile(r"[0-9A-Fa-f:.]+")
_V4_IN_V6_PREFIX = b"\x00" * 10 + b"\xff\xff"


def parse_ip(value):
    """Go's net.ParseIP(value) as 16 bytes (IPv4 in its IPv4-mapped form, as Go stores it), or None."""
    if not isinstance(value, str) or not value or len(value) > 64:
        return None
    if ":" not in value:
        if _full(_GO_IPV4, value):
            return _V4_IN_V6_PREFIX + bytes(int(x) for x in value.split("."))
        return None
    if not _full(_GO_IPV6_CHARS, value):
        return None  # zone ids, spaces, brackets, prefix lengths
    head, sep, tail = value.rpartition(":")
    if "." in head:
        return None
    if "." in tail and not _full(_GO_IPV4, tail):
        return None
    try:
        return ipaddress.IPv6Address(value).packed
    except ValueError:
        return None


def is_ip(value):
    """Go's net.ParseIP(value) != nil."""
    return parse_ip(value) is not None


def is_ipv4(value):
    """govalidator.IsIPv4 as Kuma uses it: net.ParseIP accepts it and it has a '.' (so ::ffff:10.0.0.1 counts)."""
    return is_ip(value) and "." in value


def is_unspecified(value):
    """Go's net.IP.IsUnspecified: 0.0.0.0 (also as ::ffff:0.0.0.0) or ::."""
    packed = parse_ip(value)
    return packed is not None and packed in (b"\x00" * 16, _V4_IN_V6_PREFIX + b"\x00" * 4)


def is_loopback_v4(value):
    """net.ParseIP(value).Equal(127.0.0.1)."""
    return parse_ip(value) == _V4_IN_V6_PREFIX + b"\x7f\x00\x00\x01"


def is_dns_name(value):
    """govalidator.IsDNSName."""
    if not value or len(value.replace(".", "")) > 255:
        return False
    return not is_ip(value) and _full(_DNS_NAME, value)


def _same_ip(a, b):
    """Kuma compares addresses as strings; two spellings of one IP are the same address too."""
    if a == b:
        return True
    packed = parse_ip(a)
    return packed is not None and packed == parse_ip(b)


def _port_error(value, low=1):
    """pkg/core/resources/apis/mesh/validators.go ValidatePort: "port must be in the range [1, 65535]"."""
    if not _is_int(value) or not low <= value <= 65535:
        return "%r: port must be in the range [%d, 65535]" % (value, low)
    return None


def qualified_name_errors(key):
    """k8s IsQualifiedName, in short: [prefix/]name, prefix a DNS-1123 subdomain, name <= 63."""
    msgs = []
    parts = key.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            msgs.append("prefix part must be non-empty")
        elif len(prefix) > 253:
            msgs.append("prefix part must be no more than 253 characters")
        elif not _full(_DNS1123_SUBDOMAIN, prefix):
            msgs.append("prefix part must be a lowercase RFC 1123 subdomain")
    else:
        return [
            "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start "
            "and end with an alphanumeric character, with an optional DNS subdomain prefix and '/'"
        ]
    if not name:
        msgs.append("name part must be non-empty")
    elif len(name) > 63:
        msgs.append("name part must be no more than 63 characters")
    elif not _full(_QUALIFIED_NAME, name):
        msgs.append(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
            "with an alphanumeric character"
        )
    return msgs


def label_value_errors(value):
    """k8s IsValidLabelValue: empty, or <= 63 characters of the qualified-name form."""
    if value == "":
        return []
    msgs = []
    if len(value) > 63:
        msgs.append("must be no more than 63 characters")
    if not _full(_QUALIFIED_NAME, value):
        msgs.append(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
            "and must start and end with an alphanumeric character"
        )
    return msgs


class _Checker(object):
    """Collects errors and warnings while the resource is built."""

    def __init__(self, major):
        self.major = major
        self.version = None
        self.errors = []
        self.warnings = []
        self.reported = set()  # option paths whose value already has an error

    def error(self, path, message):
        self.errors.append("%s: %s" % (path, message))

    def errors_for(self, path):
        prefix = path + ":"
        return [e for e in self.errors if e.startswith(prefix)]

    def plain(self, path, value):
        """A string option: a str without mustache tags. Returns the str or None."""
        if value is None:
            return None
        if not isinstance(value, str):
            self.error(path, "%r must be a string" % (value,))
            return None
        bad = _FORBIDDEN_CHAR.search(value)
        if bad is not None:
            # Collection rule: a control character (or an unpaired surrogate) in a
            # Dataplane value is never meant, and several readers of the file choke on it.
            self.error(path, "%r contains the control character %r, which no Dataplane value may contain" % (value, bad.group()))
            return None
        if "{{" in value:
            # app/kuma-dp/cmd/dataplane.go renders the file with mustache
            # (pkg/util/template/render.go) before parsing it.
            self.error(
                path,
                "%r contains '{{': kuma-dp renders the Dataplane file as a mustache template "
                "(--dataplane-var), so values must be plain" % (value,),
            )
            return None
        return value

    def string_map(self, path, value):
        """A map<string,string> option (labels, tags). Integers become strings; other types are errors.

        Entries with an error keep their key (so "kuma.io/service is required" is not reported
        on top) and are listed in ``self.reported`` so that later checks skip them.
        """
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.error(path, "%r must be a dictionary of strings" % (value,))
            return {}
        out = {}
        for key in sorted(value, key=str):
            item = value[key]
            kpath = "%s[%r]" % (path, key)
            if not isinstance(key, str) or self.plain(path, key) is None:
                if not isinstance(key, str):
                    self.error(path, "key %r must be a string" % (key,))
                continue
            if _is_int(item):
                item = str(item)
            elif not isinstance(item, str):
                self.error(kpath, "%r must be a string (quote it)" % (item,))
                self.reported.add(kpath)
            elif self.plain(kpath, item) is None:
                self.reported.add(kpath)
            out[key] = item
        return out


# -- the resource -------------------------------------------------------------------
def build(params):
    """Validate ``params`` (the module's options) and build the Dataplane dict.

    Returns a BuildResult; ``resource`` is only meaningful when ``errors`` is empty.
    """
    version = parse_kuma_version(params.get("kuma_version"))
    if version is None or version[0] not in (2, 3):
        c = _Checker(None)
        c.error(
            "kuma_version",
            "%r is not a Kuma version this module knows (2.x or 3.x, e.g. '2.14.3' or '3.0.0')"
            % (params.get("kuma_version"),),
        )
        return BuildResult(None, c.errors, c.warnings, None)
    major, minor = version
    c = _Checker(major)
    c.version = params.get("kuma_version")
    if major == 2 and minor < 14:
        c.warnings.append(
            "kuma_version %s: the Dataplane is validated with Kuma 2.14's rules; older 2.x releases may differ"
            % params.get("kuma_version")
        )

    name = _meta_name(c, params.get("name"))
    mesh = _meta_mesh(c, params.get("mesh", "default"))
    address = _address(c, params.get("address"))
    labels = _labels(c, params.get("labels"), mesh)

    tp_params = params.get("transparent_proxying") or {}
    redirect_in, redirect_out = _redirect_ports(c, tp_params, params.get("expected_redirect_ports") or {})
    ip_family_mode = _ip_family_mode(c, tp_params.get("ip_family_mode"), address)

    inbounds = _inbounds(c, params.get("inbounds") or [], address, (redirect_in, redirect_out))
    if major == 3 and inbounds and WORKLOAD_LABEL not in labels:
        # meshservice/generate/generator.go: on Universal, 3.x generates MeshServices
        # only from the kuma.io/workload label.
        c.warnings.append(
            "labels: no %r label; Kuma 3.x generates no MeshService for this Dataplane's inbounds without it"
            % WORKLOAD_LABEL
        )

    advertised = _advertised_address(c, params.get("advertised_address"))
    outbounds = _outbounds(c, params.get("outbounds"), params.get("kuma_dp_transparent_proxy"))
    admin_port = _admin_port(c, params.get("admin_port"), address, inbounds, outbounds, (redirect_in, redirect_out))

    tp = dict(
        redirectPortInbound=redirect_in,
        redirectPortOutbound=redirect_out,
        ipFamilyMode=IP_FAMILY_MODES.get(ip_family_mode, ip_family_mode),
    )
    direct = _direct_access_services(c, tp_params.get("direct_access_services"))
    if direct:
        tp["directAccessServices"] = direct
    services = _reachable_services(c, tp_params.get("reachable_services"))
    if services:
        tp["reachableServices"] = services
    refs = _reachable_backends(c, tp_params.get("reachable_backends"))
    if refs is not None:
        tp["reachableBackends"] = dict(refs=refs)

    networking = dict(address=address)
    if advertised:
        networking["advertisedAddress"] = advertised
    if inbounds:
        networking["inbound"] = inbounds
    if outbounds:
        networking["outbound"] = outbounds
    networking["transparentProxying"] = tp
    if admin_port is not None:
        networking["admin"] = dict(port=admin_port)

    resource = dict(type="Dataplane", mesh=mesh, name=name)
    if labels:
        resource["labels"] = labels
    resource["networking"] = networking
    metrics = _metrics(c, params.get("metrics"))
    if metrics is not None:
        resource["metrics"] = metrics
    probes = _probes(c, params.get("probes"))
    if probes is not None:
        resource["probes"] = probes
    return BuildResult(resource, c.errors, c.warnings, major)


def _meta_name(c, name):
    # app/kuma-dp/cmd/dataplane.go calls ValidateMeta (meta_validator.go) on the file.
    if name is None:
        c.error("name", "cannot be empty")
        return None
    name = c.plain("name", name)
    if name is None:
        return None
    if name == "":
        c.error("name", "cannot be empty")
    elif len(name) > 253:
        c.error("name", "%r: value length must less or equal 253" % (name,))
    elif not _full(_IDENTIFIER, name):
        c.error("name", "%r: %s" % (name, IDENTIFIER_MSG))
    return name


def _meta_mesh(c, mesh):
    if mesh is None:
        mesh = ""
    mesh = c.plain("mesh", mesh)
    if mesh is None:
        return None
    if mesh == "":
        # Kuma's backward-compatible regexp accepts "", but a Dataplane needs a mesh (collection rule).
        c.error("mesh", "cannot be empty")
    elif not _full(_BACKWARD_COMPAT, mesh):
        c.error("mesh", "%r: %s" % (mesh, BACKWARD_COMPAT_MSG))
    return mesh


def _address(c, address):
    # dataplane_validator.go validateAddress
    if address is None:
        c.error("address", "address can't be empty")
        return None
    address = c.plain("address", address)
    if address is None:
        return None
    if address == "":
        c.error("address", "address can't be empty")
        return address
    if is_unspecified(address):
        c.error("address", "%r must not be 0.0.0.0 or ::" % (address,))
    elif not is_ip(address) and not is_dns_name(address):
        c.error("address", "%r: address has to be valid IP address or domain name" % (address,))
    elif not is_ip(address) and re.fullmatch(r"[0-9.]+", address):
        # Kuma would take "10.0.0.256" or "10.0.1" as a domain name (collection rule).
        c.error("address", "%r is not a valid IP address (and digits and dots make no domain name)" % (address,))
    return address


def _labels(c, labels, mesh):
    labels = c.string_map("labels", labels)
    for key in sorted(labels):
        value = labels[key]
        path = "labels[%r]" % (key,)
        if path in c.reported:
            continue
        # pkg/api-server/resource_crud_endpoints.go validateLabels (3.x),
        # resource_endpoints.go (2.x): k8s label syntax for keys and values.
        for msg in qualified_name_errors(key):
            c.error(path, "key %r: %s" % (key, msg))
        for msg in label_value_errors(value):
            c.error(path, "%r: %s" % (value, msg))
        if key == MESH_LABEL and mesh and value != mesh:
            c.error(path, "%r: %s label must not differ from mesh set on resource (%r)" % (value, MESH_LABEL, mesh))
    workload = labels.get(WORKLOAD_LABEL)
    if c.major == 3 and "labels[%r]" % WORKLOAD_LABEL not in c.reported:
        if workload is not None and (len(workload) > 63 or not _full(_DNS1035_LABEL, workload)):
            # meshservice/generate/generator.go skips such a Dataplane silently (collection rule: say it).
            c.error(
                "labels[%r]" % WORKLOAD_LABEL,
                "%r: Kuma 3.x generates the MeshService from this label only when it is a DNS-1035 label "
                "(lower case letters, digits and '-', starting with a letter, at most 63 characters)" % (workload,),
            )
    return labels


def _redirect_ports(c, tp, expected):
    ports = []
    for direction, default in (("inbound", DEFAULT_REDIRECT_PORT_INBOUND), ("outbound", DEFAULT_REDIRECT_PORT_OUTBOUND)):
        opt = "transparent_proxying.redirect_port_%s" % direction
        exp_opt = "expected_redirect_ports.%s" % direction
        given = tp.get("redirect_port_%s" % direction)
        want = expected.get(direction)
        # dataplane.proto: uint32 redirect_port_* [(validate.rules).uint32 = {lte: 65535}]; 0 disables.
        for path, value in ((opt, given), (exp_opt, want)):
            if value is not None and (not _is_int(value) or not 0 <= value <= 65535):
                c.error(path, "%r: port must be in the range [0, 65535] (0 disables redirection)" % (value,))
        if given is not None and want is not None and given != want:
            c.error(
                opt,
                "%r does not agree with the transparent proxy's %s redirect port %r (%s)" % (given, direction, want, exp_opt),
            )
        ports.append(given if given is not None else want if want is not None else default)
    redirect_in, redirect_out = ports
    if _is_int(redirect_in) and _is_int(redirect_out):
        if redirect_in == redirect_out and redirect_in != 0:
            c.error(
                "transparent_proxying.redirect_port_inbound",
                "%r: the inbound and outbound redirect ports must differ (collection rule)" % (redirect_in,),
            )
        if redirect_in == 0 and redirect_out == 0:
            # config_dataplane.go Enabled(): both disabled means no transparent proxying (collection rule).
            c.error(
                "transparent_proxying",
                "redirect_port_inbound and redirect_port_outbound are both 0, which disables transparent "
                "proxying; this module writes Dataplanes for transparent proxying",
            )
    return redirect_in, redirect_out


def _ip_family_mode(c, mode, address):
    if mode is None:
        mode = "dualstack"
    if mode not in IP_FAMILY_MODES:
        c.error("transparent_proxying.ip_family_mode", "%r: must be one of dualstack, ipv4" % (mode,))
        return mode
    if mode == "ipv4" and address and not c.errors_for("address") and not is_ipv4(address):
        # pkg/transparentproxy/config/dataplane/config_dataplane.go Enabled(): with
        # ipFamilyMode IPv4 transparent proxying is off unless the address is IPv4.
        c.error(
            "transparent_proxying.ip_family_mode",
            "'ipv4' needs an IPv4 address: Kuma disables transparent proxying for address %r in this mode" % (address,),
        )
    return mode


def _protocol(c, path, value):
    # dataplane_validator.go validateInbound; metadata/protocol.go ParseProtocol
    if value.lower() not in _PARSED_PROTOCOLS[c.major]:
        c.error(
            path,
            "has an invalid value %r. Allowed values: %s" % (value, ", ".join(_SUPPORTED_PROTOCOLS[c.major])),
        )


def _inbounds(c, inbounds, dp_address, redirect_ports):
    out = []
    seen_ports = {}
    seen_names = {}
    if not isinstance(inbounds, list):
        c.error("inbounds", "%r must be a list" % (inbounds,))
        return out
    for i, inbound in enumerate(inbounds):
        path = "inbounds[%d]" % i
        if not isinstance(inbound, dict):
            c.error(path, "%r must be a dictionary" % (inbound,))
            continue
        item = _inbound(c, path, inbound, dp_address)
        out.append(item)
        port = item.get("port")
        # Collection rules: Kuma does not refuse these, but Envoy cannot serve them.
        key = (item.get("address") or dp_address, port)
        if port is not None and key in seen_ports:
            c.error(path + ".port", "%r is already used by inbounds[%d] on the same address" % (port, seen_ports[key]))
        else:
            seen_ports[key] = i
        name = item.get("name")
        if name:
            if name in seen_names:
                c.error(path + ".name", "%r is already the name of inbounds[%d]" % (name, seen_names[name]))
            else:
                seen_names[name] = i
        for field, opt in (("port", "port"), ("servicePort", "service_port")):
            value = item.get(field)
            if value is not None and value != 0 and value in redirect_ports:
                which = "inbound" if value == redirect_ports[0] else "outbound"
                c.error(
                    "%s.%s" % (path, opt),
                    "%r is transparent_proxying.redirect_port_%s, where kuma-dp listens; the application "
                    "cannot use it (collection rule)" % (value, which),
                )
    return out


def _inbound(c, path, inbound, dp_address):
    item = {}
    port = inbound.get("port")
    err = _port_error(port)
    if err:
        c.error(path + ".port", err)
    item["port"] = port

    service_port = inbound.get("service_port")
    if service_port is not None and service_port != 0:
        err = _port_error(service_port)
        if err:
            c.error(path + ".service_port", err)
        item["servicePort"] = service_port

    service_address = c.plain(path + ".service_address", inbound.get("service_address"))
    address = c.plain(path + ".address", inbound.get("address"))
    same_port = not service_port or service_port == port
    if service_address:
        if not is_ip(service_address):
            c.error(path + ".service_address", "%r: serviceAddress has to be valid IP address" % (service_address,))
        elif dp_address and _same_ip(service_address, dp_address) and same_port:
            c.error(
                path + ".service_address",
                "%r: serviceAddress and servicePort has to differ from address and port" % (service_address,),
            )
        item["serviceAddress"] = service_address
    if address:
        if not is_ip(address):
            c.error(path + ".address", "%r: address has to be valid IP address" % (address,))
        elif service_address and _same_ip(address, service_address) and same_port:
            c.error(
                path + ".service_address",
                "%r: serviceAddress and servicePort has to differ from address and port" % (service_address,),
            )
        item["address"] = address

    name = c.plain(path + ".name", inbound.get("name"))
    if name:
        item["name"] = name
    protocol = c.plain(path + ".protocol", inbound.get("protocol"))
    if protocol:
        _protocol(c, path + ".protocol", protocol)
        item["protocol"] = protocol

    _inbound_health(c, path, inbound, item)

    raw_tags = inbound.get("tags")
    if c.major == 3:
        if raw_tags:
            # api/mesh/v1alpha1/dataplane.proto (3.x): Inbound `reserved "tags"`;
            # kuma-dp parses with AllowUnknownFields, so the tags would vanish silently.
            c.error(
                path + ".tags",
                "%r: Kuma 3.x Dataplane inbounds have no tags (the field was removed); use name and protocol "
                "on the inbound and Dataplane labels (e.g. kuma.io/workload)" % (raw_tags,),
            )
        return item

    tags = c.string_map(path + ".tags", raw_tags)
    _tags_2x(c, path + ".tags", tags)
    item["tags"] = tags
    # Kuma's field order: tags before serviceProbe, health and state.
    for field in ("serviceProbe", "health", "state"):
        if field in item:
            item[field] = item.pop(field)
    return item


def _tags_syntax(c, path, tags):
    """validators.go validateTagKeyValues and ValidateTags' value check: key and value syntax."""
    for key in sorted(tags):
        value = tags[key]
        kpath = "%s[%r]" % (path, key)
        if kpath in c.reported:
            continue
        if key == "":
            c.error(path, "tag name must be non-empty")
        if not _full(_TAG_NAME, key):
            c.error(kpath, "tag name must consist of alphanumeric characters, dots, dashes, slashes and underscores")
        if value == "":
            c.error(kpath, "tag value must be non-empty")
        elif not _full(_TAG_VALUE, value):
            c.error(kpath, "%r: tag value must consist of alphanumeric characters, dots, dashes and underscores" % (value,))


def _tags_2x(c, path, tags):
    """validators.go ValidateTags with the inbound's kuma.io/protocol check (Kuma 2.14)."""
    if PROTOCOL_TAG in tags and "%s[%r]" % (path, PROTOCOL_TAG) not in c.reported:
        value = tags[PROTOCOL_TAG]
        if value.lower() not in _PARSED_PROTOCOLS[2]:
            c.error(
                "%s[%r]" % (path, PROTOCOL_TAG),
                "tag %r has an invalid value %r. Allowed values: %s"
                % (PROTOCOL_TAG, value, ", ".join(_SUPPORTED_PROTOCOLS[2])),
            )
    _tags_syntax(c, path, tags)
    if SERVICE_TAG not in tags:
        # Kuma 2.14 requires it when an inbound has tags; inbounds without tags
        # need the CP's experimental inboundTagsDisabled, off by default.
        c.error(path, "%r is required for Kuma 2.x" % (SERVICE_TAG,))


def _reachable_services(c, services):
    if services is None:
        return []
    path = "transparent_proxying.reachable_services"
    if c.major == 3:
        if services:
            # dataplane.proto (3.x): reserved "reachable_services".
            c.error(path, "%r was removed in Kuma 3.x; use transparent_proxying.reachable_backends" % (services,))
        return []
    out = []
    if _list_or_error(c, path, services) is None:
        return out
    for i, service in enumerate(services):
        ipath = "%s[%d]" % (path, i)
        service = c.plain(ipath, service)
        if service is None:
            continue
        # A kuma.io/service value (collection rule: tag value syntax, validators.go).
        if service == "":
            c.error(ipath, "cannot be empty")
        elif not _full(_TAG_VALUE, service):
            c.error(
                ipath,
                "%r: a kuma.io/service value must consist of alphanumeric characters, dots, dashes and underscores"
                % (service,),
            )
        out.append(service)
    return out


def _reachable_backends(c, refs):
    """dataplane_validator.go validateTransparentProxying (same in 2.14 and 3.x)."""
    if refs is None:
        return None
    path = "transparent_proxying.reachable_backends"
    out = []
    if _list_or_error(c, path, refs) is None:
        return out
    for i, ref in enumerate(refs):
        ipath = "%s[%d]" % (path, i)
        if not isinstance(ref, dict):
            c.error(ipath, "%r must be a dictionary" % (ref,))
            continue
        kind = c.plain(ipath + ".kind", ref.get("kind"))
        name = c.plain(ipath + ".name", ref.get("name")) or ""
        namespace = c.plain(ipath + ".namespace", ref.get("namespace")) or ""
        labels = c.string_map(ipath + ".labels", ref.get("labels"))
        port = ref.get("port")
        if kind not in BACKEND_KINDS:
            c.error(ipath + ".kind", "%r: invalid value. Available values are: %s" % (kind, ",".join(BACKEND_KINDS)))
        if name:
            if len(name) > 253:
                c.error(ipath + ".name", "%r: value length must less or equal 253" % (name,))
            elif not _full(_IDENTIFIER, name):
                c.error(ipath + ".name", "%r: %s" % (name, IDENTIFIER_MSG))
        if not name and not namespace and not labels:
            c.error(ipath + ".name", "name or labels are required")
        if not name and namespace:
            c.error(ipath + ".name", "name is required, when namespace is defined")
        if (name or namespace) and labels:
            c.error(ipath + ".labels", "labels cannot be defined when name is specified")
        if namespace and (len(namespace) > 63 or not _full(_DNS1123_LABEL, namespace)):
            # Kuma does not check it; a Kubernetes namespace is a DNS-1123 label (collection rule).
            c.error(ipath + ".namespace", "%r: a namespace must be a lowercase RFC 1123 label of at most 63 "
                    "characters (collection rule)" % (namespace,))
        _selector_labels(c, ipath + ".labels", labels)
        if port is not None:
            # google.protobuf.UInt32Value; Kuma does not range-check it (collection rule).
            err = _port_error(port)
            if err:
                c.error(ipath + ".port", err)
        item = dict(kind=kind)
        if name:
            item["name"] = name
        if namespace:
            item["namespace"] = namespace
        if port is not None:
            item["port"] = port
        if labels:
            item["labels"] = labels
        out.append(item)
    return out


# -- fields added for Universal: health, outbounds, admin, 2.x extras ------------------
INBOUND_STATES = ("Ready", "NotReady", "Ignored")  # dataplane.proto Inbound.State, protojson names
PROMETHEUS_TLS_MODES = ("activeMTLSBackend", "providedTLS", "disabled")  # metrics.proto PrometheusTlsConfig.Mode
OUTBOUND_DEFAULT_ADDRESS = "127.0.0.1"  # dataplane_helpers.go ToOutboundInterface


def _removed_in_3(c, path, value, what):
    """Refuse an option whose Dataplane field Kuma 3.x removed (dataplane.proto ``reserved``)."""
    c.error(path, "%r: Kuma 3.x (kuma_version %s) has no %s; the field was removed in 3.x (dataplane.proto "
            "reserves it) and kuma-dp would drop it silently" % (value, c.version, what))


def _dict_or_error(c, path, value):
    if value is None:
        return None
    if not isinstance(value, dict):
        c.error(path, "%r must be a dictionary" % (value,))
        return None
    return value


def _list_or_error(c, path, value):
    if value is None:
        return None
    if not isinstance(value, list):
        c.error(path, "%r must be a list" % (value,))
        return None
    return value


def _duration(c, path, value):
    """google.protobuf.Duration as protojson writes it ("10s", "0.5s"); Kuma's ValidateDuration."""
    value = c.plain(path, value)
    if value is None:
        return None
    m = _DURATION.fullmatch(value)
    if m is None:
        c.error(path, "%r must be a duration in seconds as Kuma's YAML spells it, e.g. '10s' or '0.5s'" % (value,))
        return None
    seconds = int(m.group(1))
    if seconds == 0 and not (m.group(2) or "").strip("0"):
        # validators.go ValidateDuration
        c.error(path, "%r: must have a positive value" % (value,))
    elif seconds > _MAX_DURATION_SECONDS:
        c.error(path, "%r: must have a valid value" % (value,))
    return value


def _threshold(c, path, value):
    """google.protobuf.UInt32Value; validators.go ValidateThreshold: positive."""
    if value is None:
        return None
    if not _is_int(value) or value > _UINT32_MAX:
        c.error(path, "%r must be an integer from 1 to %d" % (value, _UINT32_MAX))
    elif value <= 0:
        c.error(path, "%r: must have a positive value" % (value,))
    return value


def _inbound_health(c, path, inbound, item):
    """Inbound serviceProbe, health and state (dataplane.proto; same on 2.14 and 3.x)."""
    probe = _dict_or_error(c, path + ".service_probe", inbound.get("service_probe"))
    if probe is not None:
        ppath = path + ".service_probe"
        out = {}
        for opt, field in (("interval", "interval"), ("timeout", "timeout")):
            value = _duration(c, "%s.%s" % (ppath, opt), probe.get(opt))
            if value is not None:
                out[field] = value
        for opt, field in (("unhealthy_threshold", "unhealthyThreshold"), ("healthy_threshold", "healthyThreshold")):
            value = _threshold(c, "%s.%s" % (ppath, opt), probe.get(opt))
            if value is not None:
                out[field] = value
        # The TCP checker is the only one (Tcp tcp = 5); Kuma's docs write it out.
        out["tcp"] = {}
        item["serviceProbe"] = out
    health = _dict_or_error(c, path + ".health", inbound.get("health"))
    if health is not None:
        ready = health.get("ready")
        if not isinstance(ready, bool):
            c.error(path + ".health.ready", "%r must be true or false" % (ready,))
        item["health"] = dict(ready=ready)
    state = inbound.get("state")
    if state is not None:
        if state not in INBOUND_STATES:
            c.error(path + ".state", "%r: must be one of %s" % (state, ", ".join(INBOUND_STATES)))
        item["state"] = state


def _advertised_address(c, value):
    path = "advertised_address"
    value = c.plain(path, value)
    if value is None or value == "":
        return None
    if c.major == 3:
        # dataplane.proto (3.x): reserved 7, "Formerly advertisedAddress, see #15629".
        _removed_in_3(c, path, value, "networking.advertisedAddress")
        return None
    # Kuma 2.14 does not validate it; it is used as the inbounds' advertised IP
    # (dataplane_helpers.go ToInboundInterface). Collection rule: address's rules.
    if is_unspecified(value):
        c.error(path, "%r must not be 0.0.0.0 or ::" % (value,))
    elif not is_ip(value) and (not is_dns_name(value) or re.fullmatch(r"[0-9.]+", value)):
        c.error(path, "%r: advertisedAddress has to be valid IP address or domain name (collection rule)" % (value,))
    return value


def _outbounds(c, outbounds, tp_flag):
    outbounds = _list_or_error(c, "outbounds", outbounds)
    if not outbounds:
        return []
    if tp_flag is True:
        # pkg/xds/bootstrap/generator.go dataplaneFor (2.14 and 3.x): a --dataplane-file
        # Dataplane with outbounds is refused when kuma-dp runs with a transparent-proxy
        # configuration.
        c.error(
            "outbounds",
            "%d outbound(s) given, but kuma_dp_transparent_proxy is true: Kuma's control plane refuses them "
            "at bootstrap (\"outbound: should be empty since dataplane is in Transparent Proxying mode\")"
            % len(outbounds),
        )
    elif tp_flag is None:
        c.warnings.append(
            "outbounds: Kuma's control plane accepts networking.outbound only when kuma-dp runs without "
            "--transparent-proxy/--transparent-proxy-config (pkg/xds/bootstrap/generator.go); set "
            "kuma_dp_transparent_proxy to say how kuma-dp runs"
        )
    out = []
    seen = {}
    for i, outbound in enumerate(outbounds):
        path = "outbounds[%d]" % i
        if not isinstance(outbound, dict):
            c.error(path, "%r must be a dictionary" % (outbound,))
            continue
        item = _outbound(c, path, outbound)
        out.append(item)
        port = item.get("port")
        address = item.get("address") or OUTBOUND_DEFAULT_ADDRESS
        key = (parse_ip(address) or address, port)
        if _is_int(port) and key in seen:
            # Collection rule: Envoy cannot bind two outbound listeners there.
            c.error(path + ".port", "%r is already used by outbounds[%d] on address %r (collection rule)"
                    % (port, seen[key], address))
        else:
            seen[key] = i
    return out


def _outbound(c, path, outbound):
    """dataplane_validator.go validateOutbound (2.14: tags or backendRef; 3.x: backendRef only)."""
    item = {}
    address = c.plain(path + ".address", outbound.get("address"))
    if address:
        if not is_ip(address):
            c.error(path + ".address", "%r: address has to be valid IP address" % (address,))
        item["address"] = address
    port = outbound.get("port")
    err = _port_error(port)
    if err:
        c.error(path + ".port", err)
    item["port"] = port

    raw_tags = outbound.get("tags")
    ref = _dict_or_error(c, path + ".backend_ref", outbound.get("backend_ref"))
    if c.major == 3 and raw_tags:
        # dataplane.proto (3.x): Outbound reserved "tags", see #17808.
        c.error(path + ".tags", "%r: Kuma 3.x outbounds have no tags (the field was removed); use backend_ref"
                % (raw_tags,))
        raw_tags = None
    if ref is not None and raw_tags:
        c.error(path + ".backend_ref", "both backendRef and tags/service cannot be defined")
    if ref is not None:
        item["backendRef"] = _outbound_backend_ref(c, path + ".backend_ref", ref)
    elif c.major == 3:
        if not c.errors_for(path + ".tags"):
            c.error(path + ".backend_ref", "must be defined")
    else:
        tags = c.string_map(path + ".tags", raw_tags)
        if not tags:
            c.error(path + ".tags", 'mandatory tag "kuma.io/service" is missing')
        else:
            _tags_syntax(c, path + ".tags", tags)
            if SERVICE_TAG not in tags:
                c.error(path + ".tags", 'mandatory tag "kuma.io/service" is missing')
            item["tags"] = tags
    return item


def _outbound_backend_ref(c, path, ref):
    kind = ref.get("kind")
    name = c.plain(path + ".name", ref.get("name")) or ""
    labels = c.string_map(path + ".labels", ref.get("labels"))
    port = ref.get("port")
    if kind not in BACKEND_KINDS:
        c.error(path + ".kind", "%r: invalid value. Available values are: %s" % (kind, ",".join(BACKEND_KINDS)))
    if not name and not labels:
        c.error(path, "either 'name' or 'labels' should be specified")
    if name:
        # Kuma does not check the name; it names a resource (collection rule: Kuma's identifier rule).
        if len(name) > 253:
            c.error(path + ".name", "%r: value length must less or equal 253" % (name,))
        elif not _full(_IDENTIFIER, name):
            c.error(path + ".name", "%r: %s (collection rule)" % (name, IDENTIFIER_MSG))
    _selector_labels(c, path + ".labels", labels)
    if kind != "MeshExternalService" or port is not None:
        # Required for MeshService and MeshMultiZoneService; for MeshExternalService Kuma
        # takes the port from the endpoints (a given one must still be a port: collection rule).
        err = _port_error(port)
        if err:
            c.error(path + ".port", err)
    item = dict(kind=kind)
    if name:
        item["name"] = name
    if port is not None:
        item["port"] = port
    if labels:
        item["labels"] = labels
    return item


def _selector_labels(c, path, labels):
    """Labels selecting MeshServices: Kubernetes label syntax (collection rule; Kuma does not check them)."""
    for key in sorted(labels):
        kpath = "%s[%r]" % (path, key)
        if kpath in c.reported:
            continue
        for msg in qualified_name_errors(key):
            c.error(kpath, "key %r: %s (collection rule)" % (key, msg))
        for msg in label_value_errors(labels[key]):
            c.error(kpath, "%r: %s (collection rule)" % (labels[key], msg))


def _admin_port(c, port, dp_address, inbounds, outbounds, redirect_ports):
    """networking.admin.port (EnvoyAdmin.port): dataplane_validator.go Validate, admin checks."""
    if port is None:
        return None
    path = "admin_port"
    err = _port_error(port)
    if err:
        # uint32 without a range rule in Kuma; Envoy binds it on 127.0.0.1 (collection rule).
        c.error(path, err)
        return port

    def overlaps(address):
        # dataplane_helpers.go overlap(127.0.0.1, net.ParseIP(address))
        return is_unspecified(address) or is_loopback_v4(address)

    for i, inbound in enumerate(inbounds):
        dp_ip = inbound.get("address") or dp_address
        workload_ip = inbound.get("serviceAddress") or dp_ip
        workload_port = inbound.get("servicePort") or inbound.get("port")
        if (port == inbound.get("port") and overlaps(dp_ip)) or (port == workload_port and overlaps(workload_ip)):
            c.error(path, "%r: must differ from inbound (inbounds[%d] uses it on 127.0.0.1)" % (port, i))
    for i, outbound in enumerate(outbounds):
        if port == outbound.get("port") and overlaps(outbound.get("address") or OUTBOUND_DEFAULT_ADDRESS):
            c.error(path, "%r: must differ from outbound (outbounds[%d])" % (port, i))
    if port in redirect_ports:
        c.error(path, "%r is a redirect port of the transparent proxy, where kuma-dp listens (collection rule)" % (port,))
    return port


def _direct_access_services(c, services):
    path = "transparent_proxying.direct_access_services"
    services = _list_or_error(c, path, services)
    if not services:
        return []
    out = []
    for i, service in enumerate(services):
        ipath = "%s[%d]" % (path, i)
        service = c.plain(ipath, service)
        if service is None:
            continue
        # direct_access_proxy_generator.go: '*' or a service name (collection rule: tag value syntax).
        if service == "":
            c.error(ipath, "cannot be empty")
        elif service != "*" and not _full(_TAG_VALUE, service):
            c.error(ipath, "%r: must be '*' or a service name of alphanumeric characters, dots, dashes, colons "
                    "and underscores" % (service,))
        out.append(service)
    if "*" in out and len(out) > 1:
        c.warnings.append("%s: '*' already makes every service directly accessible; the other entries add nothing" % path)
    return out


def _url_path(c, path, value, required=True):
    """net/url ParseRequestURI as Kuma uses it for probe paths, plus: starts with '/', no whitespace (collection rule)."""
    if value is None:
        if required:
            c.error(path, "should be a valid URL Path")
        return None
    value = c.plain(path, value)
    if value is None:
        return None
    if not value.startswith("/") or _BAD_PERCENT.search(value.split("?", 1)[0]) or re.search(r"\s", value):
        c.error(path, "%r: should be a valid URL Path (starting with '/', no spaces)" % (value,))
    return value


def _probes(c, probes):
    """Dataplane.probes (2.x; validateProbes)."""
    probes = _dict_or_error(c, "probes", probes)
    if probes is None:
        return None
    if c.major == 3:
        _removed_in_3(c, "probes", probes, "probes (virtual probes)")
        return None
    out = {}
    err = _port_error(probes.get("port"))
    if err:
        c.error("probes.port", err)
    out["port"] = probes.get("port")
    endpoints = _list_or_error(c, "probes.endpoints", probes.get("endpoints")) or []
    items = []
    for i, endpoint in enumerate(endpoints):
        epath = "probes.endpoints[%d]" % i
        if not isinstance(endpoint, dict):
            c.error(epath, "%r must be a dictionary" % (endpoint,))
            continue
        err = _port_error(endpoint.get("inbound_port"))
        if err:
            c.error(epath + ".inbound_port", err)
        items.append(
            dict(
                inboundPort=endpoint.get("inbound_port"),
                inboundPath=_url_path(c, epath + ".inbound_path", endpoint.get("inbound_path")),
                path=_url_path(c, epath + ".path", endpoint.get("path")),
            )
        )
    if items:
        out["endpoints"] = items
    return out


def _go_regexp_error(value):
    """Whether Go's regexp (RE2) would compile ``value``, as far as Python can tell: None or why not."""
    if re.search(r"\(\?[=!]|\(\?<[=!]|\\[1-9]|\(\?P=|\(\?[#(>]", value):
        return "lookarounds, back-references, atomic groups and comments are not RE2 syntax"
    try:
        re.compile(value)
    except (re.error, RecursionError, OverflowError, ValueError) as e:
        return to_native(e)
    return None


def _metrics(c, metrics):
    """Dataplane.metrics (2.x; validateMetricsBackend, mesh_validator.go validatePrometheusConfig)."""
    metrics = _dict_or_error(c, "metrics", metrics)
    if metrics is None:
        return None
    if c.major == 3:
        _removed_in_3(c, "metrics", metrics, "Dataplane metrics (use the MeshMetric policy)")
        return None
    out = {}
    name = c.plain("metrics.name", metrics.get("name"))
    if name:
        if not _full(_TAG_VALUE, name):
            c.error("metrics.name", "%r: must consist of alphanumeric characters, dots, dashes, colons and "
                    "underscores (collection rule)" % (name,))
        out["name"] = name
    mtype = metrics.get("type", "prometheus")
    if mtype is None:
        mtype = "prometheus"
    if mtype != "prometheus":
        c.error("metrics.type", '%r: unknown backend type. Available backends: "prometheus"' % (mtype,))
    out["type"] = mtype
    conf = _dict_or_error(c, "metrics.conf", metrics.get("conf"))
    if conf is not None:
        out["conf"] = _prometheus_conf(c, "metrics.conf", conf)
    return out


def _prometheus_conf(c, path, conf):
    out = {}
    port = conf.get("port")
    if port is not None:
        err = _port_error(port)
        if err:
            c.error(path + ".port", err + " (collection rule)")
        out["port"] = port
    mpath = _url_path(c, path + ".path", conf.get("path"), required=False)
    if mpath is not None:
        out["path"] = mpath
    tags = c.string_map(path + ".tags", conf.get("tags"))
    if tags:
        _tags_syntax(c, path + ".tags", tags)
        out["tags"] = tags
    skip = conf.get("skip_mtls")
    if skip is not None:
        if not isinstance(skip, bool):
            c.error(path + ".skip_mtls", "%r must be true or false" % (skip,))
        out["skipMTLS"] = skip
    tls = _dict_or_error(c, path + ".tls", conf.get("tls"))
    if tls is not None:
        mode = tls.get("mode", "activeMTLSBackend")
        if mode is None:
            mode = "activeMTLSBackend"
        if mode not in PROMETHEUS_TLS_MODES:
            c.error(path + ".tls.mode", "%r: must be one of %s" % (mode, ", ".join(PROMETHEUS_TLS_MODES)))
        out["tls"] = dict(mode=mode)
        if skip is not None and not ((skip is False and mode == "activeMTLSBackend") or (skip is True and mode == "disabled")):
            c.error(path, "skipMTLS and tls configuration cannot be defined together")
    envoy = _dict_or_error(c, path + ".envoy", conf.get("envoy"))
    if envoy is not None:
        eout = {}
        regex = c.plain(path + ".envoy.filter_regex", envoy.get("filter_regex"))
        if regex is not None:
            why = _go_regexp_error(regex)
            if why:
                c.error(path + ".envoy.filter_regex", "%r: provided regexp isn't correct: %s" % (regex, why))
            eout["filterRegex"] = regex
        used_only = envoy.get("used_only")
        if used_only is not None:
            if not isinstance(used_only, bool):
                c.error(path + ".envoy.used_only", "%r must be true or false" % (used_only,))
            eout["usedOnly"] = used_only
        out["envoy"] = eout
    aggregate = _list_or_error(c, path + ".aggregate", conf.get("aggregate")) or []
    items = []
    names = {}
    for i, agg in enumerate(aggregate):
        apath = "%s.aggregate[%d]" % (path, i)
        if not isinstance(agg, dict):
            c.error(apath, "%r must be a dictionary" % (agg,))
            continue
        item = {}
        name = c.plain(apath + ".name", agg.get("name"))
        if name is None or name == "":
            c.error(apath + ".name", "cannot be empty (collection rule)")
        else:
            if name in names:
                c.error(apath + ".name", "duplicate entry: %s, values have to be unique" % (name,))
            names.setdefault(name, i)
            if not _full(_TAG_VALUE, name):
                c.error(apath + ".name", "%r: must consist of alphanumeric characters, dots, dashes, colons and "
                        "underscores (collection rule)" % (name,))
            item["name"] = name
        aport = agg.get("port")
        err = _port_error(aport)
        if err:
            c.error(apath + ".port", err + " (collection rule)")
        item["port"] = aport
        apath_value = _url_path(c, apath + ".path", agg.get("path"), required=False)
        if apath_value is not None:
            item["path"] = apath_value
        enabled = agg.get("enabled")
        if enabled is not None:
            if not isinstance(enabled, bool):
                c.error(apath + ".enabled", "%r must be true or false" % (enabled,))
            item["enabled"] = enabled
        address = c.plain(apath + ".address", agg.get("address"))
        if address:
            if not is_ip(address):
                c.error(apath + ".address", "%r: has to be valid IP address (collection rule)" % (address,))
            item["address"] = address
        items.append(item)
    if items:
        out["aggregate"] = items
    return out


# -- YAML -----------------------------------------------------------------------------
# Strings that stay plain: start with a letter, then letters, digits and . _ / -,
# and are none of YAML 1.1's booleans and nulls. Everything else is written as a
# JSON string, which is a valid YAML double-quoted scalar.
_PLAIN = re.compile(r"[A-Za-z][A-Za-z0-9_./-]*")
_YAML_SPECIAL = frozenset(("y", "n", "yes", "no", "on", "off", "true", "false", "null"))

HEADER = "# Kuma Dataplane for kuma-dp run --dataplane-file. Managed by Ansible (kuma.mesh.kuma_dataplane).\n"


def _scalar(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if _is_int(value):
        return str(value)
    if value is None:
        return "null"
    value = to_text(value)
    if _full(_PLAIN, value) and value.lower() not in _YAML_SPECIAL:
        return value
    # JSON's escapes are YAML's, except that JSON writes a character beyond the
    # BMP as two surrogate escapes, which YAML readers (Go's, PyYAML) take as two
    # characters: such characters stay literal (the file is UTF-8), and whatever
    # YAML does not allow unescaped gets its own \u or \U escape.
    return "".join(c if _yaml_printable(c) else ("\\u%04x" % ord(c) if ord(c) < 0x10000 else "\\U%08x" % ord(c))
                   for c in json.dumps(value, ensure_ascii=False))


def _yaml_printable(char):
    code = ord(char)
    # not NEL, LS and PS (line breaks to YAML 1.1) nor the BOM
    return (0x20 <= code <= 0x7E or (0xA0 <= code <= 0xD7FF and code not in (0x2028, 0x2029))
            or (0xE000 <= code <= 0xFFFD and code != 0xFEFF) or 0x10000 <= code <= 0x10FFFF)


def _emit(value, indent, lines):
    pad = "  " * indent
    if isinstance(value, dict):
        for key, item in value.items():
            key = _scalar(key)
            if isinstance(item, dict) and item:
                lines.append("%s%s:" % (pad, key))
                _emit(item, indent + 1, lines)
            elif isinstance(item, list) and item:
                lines.append("%s%s:" % (pad, key))
                _emit(item, indent + 1, lines)
            elif isinstance(item, (dict, list)):
                lines.append("%s%s: %s" % (pad, key, "{}" if isinstance(item, dict) else "[]"))
            else:
                lines.append("%s%s: %s" % (pad, key, _scalar(item)))
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict) and item:
                sub = []
                _emit(item, indent + 1, sub)
                # "- " takes the place of the first line's indentation.
                first = sub[0][len(pad) + 2:]
                lines.append("%s- %s" % (pad, first))
                lines.extend(sub[1:])
            elif isinstance(item, (dict, list)):
                if item:
                    raise ValueError("nested lists are not rendered")
                lines.append("%s- %s" % (pad, "{}" if isinstance(item, dict) else "[]"))
            else:
                lines.append("%s- %s" % (pad, _scalar(item)))
    else:
        raise ValueError("not a mapping or a list: %r" % (value,))


def render(resource):
    """The Dataplane as the YAML text kuma-dp reads (deterministic, ends with a newline)."""
    lines = []
    _emit(resource, 0, lines)
    return HEADER + "\n".join(lines) + "\n"


# -- the module's run --------------------------------------------------------------
def _read(b_path):
    try:
        with open(b_path, "rb") as f:
            return f.read()
    except (IOError, OSError):
        return None


_MODE_OCTAL = re.compile(r"\A0?[0-7]{3,4}\Z")
_MODE_SYMBOLIC = re.compile(r"\A[ugoa]*[-+=][rwxXst]*(,[ugoa]*[-+=][rwxXst]*)*\Z")


def mode_problem(mode):
    """Why ``mode`` is not a file mode, or None: an octal string (``0640``, ``640``),
    a symbolic mode (``u=rw,g=r``) or an int from 0 to 0o7777 (taken as the number)."""
    if mode is None:
        return None
    if isinstance(mode, bool):
        return "is not a file mode"
    if isinstance(mode, int):
        return None if 0 <= mode <= 0o7777 else "is not a file mode (0 to 0o7777)"
    if isinstance(mode, str) and (_MODE_OCTAL.match(mode) or _MODE_SYMBOLIC.match(mode)):
        return None
    return "is not a file mode (octal such as '0640', or symbolic such as 'u=rw,g=r')"


def target_errors(path, mode):
    """The errors of ``path`` and ``mode``, before anything is read or written: the
    collection's path grammar, and an existing target must be a regular file (never a
    device, a directory, a FIFO...: writing or removing it would damage the host)."""
    errors = []
    problem = path_problem(path)
    if problem:
        errors.append("path: %s %s" % (show(path), problem))
    else:
        try:
            st = os.stat(path)
        except OSError:
            st = None
        if st is not None and stat.S_ISDIR(st.st_mode):
            errors.append("path: %s is a directory" % show(path))
        elif st is not None and not stat.S_ISREG(st.st_mode):
            errors.append("path: %s exists and is not a regular file" % show(path))
    problem = mode_problem(mode)
    if problem:
        errors.append("mode: %s %s" % (show(mode), problem))
    return errors


def run(module):
    """Validate, then write (or remove) the file; returns the result for exit_json."""
    params = module.params
    path = params["path"]
    result = dict(changed=False, path=path)
    errors = target_errors(path, params.get("mode"))
    if errors:
        result["errors"] = errors
        module.fail_json(msg="invalid options: " + "; ".join(errors), **result)
    b_path = to_bytes(path, errors="surrogate_or_strict")

    if params["state"] == "absent":
        before = _read(b_path)
        if os.path.lexists(b_path):
            result["changed"] = True
            if module._diff:
                result["diff"] = dict(
                    before=to_text(before or b"", errors="surrogate_or_replace"),
                    after="",
                    before_header=path,
                    after_header=path,
                )
            if not module.check_mode:
                try:
                    os.unlink(b_path)
                except OSError as e:
                    module.fail_json(msg="path: cannot remove %r: %s" % (path, to_native(e)), **result)
        return result

    built = build(params)
    for warning in built.warnings:
        module.warn(warning)
    if built.errors:
        result["errors"] = built.errors
        module.fail_json(msg="invalid Dataplane: " + "; ".join(built.errors), **result)

    content = render(built.resource)
    b_content = to_bytes(content, errors="surrogate_or_strict")
    result["dataplane"] = built.resource
    result["content"] = content
    result["kuma_major"] = built.major

    directory = os.path.dirname(b_path) or b"."
    if not os.path.isdir(directory):
        module.fail_json(msg="path: directory %r does not exist" % to_native(directory), **result)

    before = _read(b_path)
    diffs = []
    if before != b_content:
        result["changed"] = True
        diffs.append(
            dict(
                before=to_text(before or b"", errors="surrogate_or_replace"),
                after=content,
                before_header=path if before is not None else "%s (absent)" % path,
                after_header=path,
            )
        )
        if not module.check_mode:
            _write(module, b_path, directory, b_content, result)

    file_args = module.load_file_common_arguments(params, path=path)
    attr_diff = dict(before={}, after={})
    result["changed"] = module.set_fs_attributes_if_different(file_args, result["changed"], diff=attr_diff)
    if attr_diff["before"] or attr_diff["after"]:
        attr_diff["before_header"] = attr_diff["after_header"] = "%s (attributes)" % path
        diffs.append(attr_diff)
    if module._diff and diffs:
        result["diff"] = diffs
    return result


def _write(module, b_path, b_directory, b_content, result):
    """Write to a temporary file beside the target, then rename it over the target."""
    fd, tmp = tempfile.mkstemp(prefix=b".ansible_kuma_dataplane.", dir=b_directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(b_content)
            f.flush()
            os.fsync(f.fileno())
        module.atomic_move(tmp, to_native(b_path), unsafe_writes=False)
    except Exception as e:  # pylint: disable=broad-except
        try:
            os.unlink(tmp)
        except OSError:
            pass
        module.fail_json(msg="path: cannot write %r: %s" % (to_native(b_path), to_native(e)), **result)
