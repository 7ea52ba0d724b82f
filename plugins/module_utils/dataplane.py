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

import json
import os
import re
import tempfile

from ansible.module_utils.basic import missing_required_lib
from ansible.module_utils.common.text.converters import to_bytes, to_native, to_text

try:
    import netaddr

    HAS_NETADDR = True
except ImportError:  # pragma: no cover - reported by the module
    HAS_NETADDR = False

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
# k8s.io/apimachinery/pkg/api/validation: NameIsDNS1035Label
_DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")

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
def is_ip(value):
    """Go's net.ParseIP(value) != nil: dotted-quad IPv4 (no leading zeros) or IPv6, no zone."""
    return bool(value) and (netaddr.valid_ipv4(value, flags=netaddr.INET_PTON) or netaddr.valid_ipv6(value))


def is_ipv4(value):
    return bool(value) and netaddr.valid_ipv4(value, flags=netaddr.INET_PTON)


def is_dns_name(value):
    """govalidator.IsDNSName."""
    if not value or len(value.replace(".", "")) > 255:
        return False
    return not is_ip(value) and _full(_DNS_NAME, value)


def _same_ip(a, b):
    """Kuma compares addresses as strings; two spellings of one IP are the same address too."""
    if a == b:
        return True
    if is_ip(a) and is_ip(b):
        return netaddr.IPAddress(a) == netaddr.IPAddress(b)
    return False


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


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

    tp = dict(
        redirectPortInbound=redirect_in,
        redirectPortOutbound=redirect_out,
        ipFamilyMode=IP_FAMILY_MODES.get(ip_family_mode, ip_family_mode),
    )
    services = _reachable_services(c, tp_params.get("reachable_services"))
    if services:
        tp["reachableServices"] = services
    refs = _reachable_backends(c, tp_params.get("reachable_backends"))
    if refs is not None:
        tp["reachableBackends"] = dict(refs=refs)

    networking = dict(address=address)
    if inbounds:
        networking["inbound"] = inbounds
    networking["transparentProxying"] = tp

    resource = dict(type="Dataplane", mesh=mesh, name=name)
    if labels:
        resource["labels"] = labels
    resource["networking"] = networking
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
    if is_ip(address) and netaddr.IPAddress(address).value == 0:
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
    return item


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
    return json.dumps(value)


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


def run(module):
    """Validate, then write (or remove) the file; returns the result for exit_json."""
    params = module.params
    path = params["path"]
    b_path = to_bytes(path, errors="surrogate_or_strict")
    result = dict(changed=False, path=path)

    if os.path.isdir(b_path):
        module.fail_json(msg="path: %r is a directory" % path, **result)

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

    if not HAS_NETADDR:
        module.fail_json(msg=missing_required_lib("netaddr"), **result)

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
