#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kuma.mesh maintainers
# Apache License 2.0 (see LICENSE)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: kuma_dataplane
short_description: Write the Kuma Dataplane file kuma-dp reads, validated the way Kuma validates it
version_added: "0.1.0"
description:
  - Renders the Dataplane resource of a Universal-mode host running Kuma's transparent proxy, as the
    YAML file that C(kuma-dp run --dataplane-file) reads, from structured options.
  - Before anything is written the resource is validated with Kuma's own rules for the Kuma version
    given in O(kuma_version) (2.x or 3.x) - name and mesh, address, inbound ports, addresses, tags and
    protocols, service probes, outbounds, the admin port, labels, C(reachableServices),
    C(reachableBackends) and, on 2.x, C(metrics) and C(probes) - plus a few checks of the collection
    that catch values Kuma accepts but cannot use. Every problem is reported, each naming the option
    path and the value; the file is left untouched.
  - An option whose Dataplane field does not exist in the chosen Kuma version (for example
    O(advertised_address), O(metrics) or O(probes) with Kuma 3.x) is refused with an error naming the
    option, the value and the version, rather than written and silently dropped by kuma-dp.
  - The resource always has C(networking.transparentProxying) (redirect ports, C(ipFamilyMode),
    reachable services or backends, direct access services). C(networking.outbound) (O(outbounds)) is
    optional; Kuma's Dataplane validator accepts it with transparent proxying, but the control plane
    refuses it at bootstrap when kuma-dp itself runs with a transparent-proxy configuration (see
    O(kuma_dp_transparent_proxy)).
  - Every string that reaches the file is validated (no control characters, Kuma's syntax for tags,
    names and addresses), and the file is written in Kuma's own camelCase field names.
  - The redirect ports must agree with the transparent proxy's (O(expected_redirect_ports)); when
    they are not given they are taken from there, else Kuma's defaults 15006 and 15001.
  - The file is written atomically (temporary file and rename) with O(owner), O(group) and O(mode).
    When the rendered bytes equal the file's, the file is not rewritten and only its attributes are
    corrected.
  - "Values must be plain: kuma-dp renders the file as a mustache template (C(--dataplane-var)) before
    parsing it, so no value may contain C({{)."
author:
  - kuma.mesh maintainers (@kuma-mesh)
requirements:
  - Python 3.8 or newer on the target, standard library only (addresses are parsed with C(ipaddress) as
    Go's C(net.ParseIP) parses them)
attributes:
  check_mode:
    support: full
    description: Validates, renders and reports whether the file would change; nothing is written.
  diff_mode:
    support: full
    description: Shows the file's text before and after, and owner, group and mode changes.
  platform:
    platforms: posix
    support: full
    description: Any POSIX host; the file is for kuma-dp on Linux.
options:
  state:
    description:
      - V(present) writes the Dataplane file; V(absent) removes it (and needs only O(path)).
    type: str
    choices: [present, absent]
    default: present
  path:
    description:
      - The Dataplane file, passed to C(kuma-dp run --dataplane-file). Its directory must exist.
      - An absolute path of printable ASCII letters, digits and C(_./+@%=,~-), without a C(..) component. It must
        not exist or be a regular file (a device, a directory or a FIFO is refused, with nothing changed).
    type: path
    required: true
  owner:
    description:
      - Owner of the file (name or uid). Default is the user the module runs as, or the existing file's owner.
    type: str
  group:
    description:
      - Group of the file (name or gid), for example the group kuma-dp runs as.
    type: str
  mode:
    description:
      - Permissions of the file, as an octal string such as V('0640') or symbolic modes such as V(u=rw,g=r,o=).
      - An octal string is 3 or 4 octal digits with an optional leading V(0); a symbolic mode is comma-separated
        C([ugoa]*[-+=][rwxXst]*) clauses; an int is taken as the number (0 to 0o7777). Anything else is refused.
    type: raw
    default: '0640'
  kuma_version:
    description:
      - Version of Kuma the Dataplane is for, for example V(2.14.3) or V(3.0.0) (a leading V(v) and a
        pre-release suffix are accepted).
      - The major version decides the rules. Kuma 2.x - inbounds have O(inbounds[].tags) with
        C(kuma.io/service); O(transparent_proxying.reachable_services) is available. Kuma 3.x - inbounds have
        no tags (use O(inbounds[].name), O(inbounds[].protocol) and O(labels)); only
        O(transparent_proxying.reachable_backends) selects reachable services; C(kafka) is no protocol.
      - Other 2.x releases than 2.14 are validated with 2.14's rules, with a warning.
      - Required when O(state=present).
    type: str
  name:
    description:
      - Name of the Dataplane, unique in the zone; a lowercase RFC 1123 subdomain of at most 253 characters.
      - Required when O(state=present).
    type: str
  mesh:
    description:
      - Mesh the Dataplane belongs to (numbers, lowercase letters, V(-), V(_) and V(.)). The mesh must exist.
    type: str
    default: default
  address:
    description:
      - C(networking.address) - the IP address (or DNS name) other proxies reach this host at.
      - Not V(0.0.0.0) or V(::). An IP is parsed as Go's C(net.ParseIP) parses it - IPv4 as four decimal
        fields without leading zeros, IPv6 with an optional dotted IPv4 tail, no zone (V(%eth0)).
      - Required when O(state=present).
    type: str
  labels:
    description:
      - Labels of the Dataplane (Kubernetes label syntax for keys and values).
      - A C(kuma.io/mesh) label must equal O(mesh).
      - With Kuma 3.x, service identity comes from labels; a C(kuma.io/workload) label (a DNS-1035
        label) makes Kuma generate the MeshService of this workload, and the module warns when it is missing.
      - Integer values are written as strings; other non-string values are refused (quote them).
    type: dict
    default: {}
  inbounds:
    description:
      - C(networking.inbound) - the services of the application on this host.
      - Each O(inbounds[].port) with O(inbounds[].address) (or O(address)) must be unique, names must be
        unique, and neither port may be one of the redirect ports.
    type: list
    elements: dict
    default: []
    suboptions:
      port:
        description:
          - The port the application listens on (with transparent proxying Envoy does not bind it), 1-65535.
        type: int
        required: true
      service_port:
        description:
          - C(servicePort), the port requests are forwarded to; defaults in Kuma to O(inbounds[].port).
        type: int
      service_address:
        description:
          - C(serviceAddress), the IP requests are forwarded to; defaults in Kuma to the inbound's address.
          - With O(inbounds[].service_port) unset or equal to O(inbounds[].port) it must differ from
            O(address) and O(inbounds[].address).
        type: str
      address:
        description:
          - C(address) of the inbound listener, an IP; defaults in Kuma to O(address).
        type: str
      tags:
        description:
          - "Kuma 2.x only - tags of the inbound. C(kuma.io/service) is required; keys are letters, digits
            and C(. - _ : /), values letters, digits and C(. - _ :). C(kuma.io/protocol) must be a protocol
            Kuma knows."
          - Refused with Kuma 3.x, which removed inbound tags.
        type: dict
      name:
        description:
          - C(name) of the inbound port, used by MeshService port references (C(sectionName)).
        type: str
      protocol:
        description:
          - C(protocol) of the inbound - V(tcp), V(http), V(http2), V(grpc) (also V(tls), V(mysql), and
            V(kafka) with Kuma 2.x), case-insensitive.
        type: str
      service_probe:
        description:
          - C(serviceProbe) (Kuma 2.x and 3.x) - Envoy health-checks the application behind this inbound
            over TCP and reports the result to the control plane (Universal health checking). Written with
            an empty C(tcp) checker, the only one.
          - The control plane marks an inbound with a service probe C(NotReady) until the first healthy check.
          - Unset suboptions take the control plane's defaults.
        type: dict
        suboptions:
          interval:
            description:
              - C(interval) between checks, a positive duration in seconds as Kuma's YAML spells it,
                for example V(10s) or V(0.5s) (up to 9 decimals).
            type: str
          timeout:
            description:
              - C(timeout) of one check, a positive duration in seconds such as V(2s).
            type: str
          healthy_threshold:
            description:
              - C(healthyThreshold), consecutive healthy checks before the inbound is healthy, 1-4294967295.
            type: int
          unhealthy_threshold:
            description:
              - C(unhealthyThreshold), consecutive failed checks before the inbound is unhealthy, 1-4294967295.
            type: int
      health:
        description:
          - C(health) (Kuma 2.x and 3.x) - the inbound's health as set by an external health checker; unset
            means healthy. Kept for control planes of Kuma 2.5 and older; newer ones read O(inbounds[].state).
        type: dict
        suboptions:
          ready:
            description: C(ready), whether the inbound serves traffic.
            type: bool
            required: true
      state:
        description:
          - C(state) (Kuma 2.x and 3.x) - V(Ready) serves traffic, V(NotReady) is excluded from load
            balancing (graceful joining), V(Ignored) creates no listener but the proxy still gets the
            identity of the inbound. Written as given (Kuma's enum names).
        type: str
        choices: [Ready, NotReady, Ignored]
  outbounds:
    description:
      - C(networking.outbound) (Kuma 2.x and 3.x) - services this host consumes on a fixed local
        address and port.
      - Kuma's Dataplane validator accepts outbounds together with transparent proxying; the control
        plane refuses them at bootstrap (C(outbound - should be empty since dataplane is in Transparent
        Proxying mode)) only when kuma-dp runs with C(--transparent-proxy) or
        C(--transparent-proxy-config). Set O(kuma_dp_transparent_proxy) to say how kuma-dp runs.
      - Each outbound has O(outbounds[].tags) (Kuma 2.x only) or O(outbounds[].backend_ref), not both.
      - Two outbounds may not share address and port (collection rule).
    type: list
    elements: dict
    suboptions:
      address:
        description:
          - C(address), the IP the service is reachable at from this host; Kuma's default is V(127.0.0.1).
        type: str
      port:
        description: C(port) the service is reachable at from this host, 1-65535.
        type: int
        required: true
      tags:
        description:
          - "Kuma 2.x only - C(tags) selecting the service; C(kuma.io/service) is required, keys are letters,
            digits and C(. - _ : /), values letters, digits and C(. - _ :)."
          - Refused with Kuma 3.x, which removed outbound tags.
        type: dict
      backend_ref:
        description:
          - C(backendRef) (Kuma 2.x and 3.x; the only form in 3.x) - the MeshService, MeshExternalService or
            MeshMultiZoneService consumed.
        type: dict
        suboptions:
          kind:
            description: C(kind) of the backend.
            type: str
            required: true
            choices: [MeshService, MeshExternalService, MeshMultiZoneService]
          name:
            description:
              - C(name) of the backend (a lowercase RFC 1123 subdomain). A name or O(outbounds[].backend_ref.labels)
                is required.
            type: str
          port:
            description:
              - C(port) of the backend, 1-65535. Required unless O(outbounds[].backend_ref.kind=MeshExternalService)
                (whose port comes from its endpoints).
            type: int
          labels:
            description:
              - C(labels) selecting one backend (Kubernetes label syntax); the oldest matching one is used.
            type: dict
  kuma_dp_transparent_proxy:
    description:
      - Whether kuma-dp runs with a transparent-proxy configuration (C(--transparent-proxy) or
        C(--transparent-proxy-config)). Only used to check O(outbounds).
      - V(true) refuses O(outbounds), as Kuma's control plane does at bootstrap; V(false) accepts them.
      - Unset, O(outbounds) are accepted with a warning that says when the control plane refuses them.
    type: bool
  admin_port:
    description:
      - C(networking.admin.port) (Kuma 2.x and 3.x) - the port of Envoy's admin API on 127.0.0.1, instead
        of kuma-dp's default 9901 (for example when an application already uses 9901). 1-65535.
      - Kuma refuses a port an inbound or outbound uses on 127.0.0.1 (or on V(0.0.0.0)/V(::)); the module
        also refuses the redirect ports (collection rule). An application bound to all addresses on the
        same port as the admin API still collides with it, which Kuma cannot see.
    type: int
  advertised_address:
    description:
      - Kuma 2.x only - C(networking.advertisedAddress), the address other proxies use to reach this host
        when O(address) is not reachable from them (for example behind NAT). An IP or a DNS name, not
        V(0.0.0.0) or V(::).
      - Refused with Kuma 3.x, which removed the field.
    type: str
  metrics:
    description:
      - Kuma 2.x only - C(metrics), this proxy's Prometheus metrics backend, overriding the mesh's.
      - Refused with Kuma 3.x, which removed the field (metrics are configured with the MeshMetric policy).
    type: dict
    suboptions:
      name:
        description: C(name) of the backend.
        type: str
      type:
        description: C(type) of the backend; Kuma knows only V(prometheus).
        type: str
        choices: [prometheus]
        default: prometheus
      conf:
        description: C(conf), the Prometheus backend's configuration.
        type: dict
        suboptions:
          port:
            description: C(port) kuma-dp exposes metrics on, 1-65535.
            type: int
          path:
            description: C(path) of the metrics endpoint, starting with V(/).
            type: str
          tags:
            description: C(tags) added to the scraped target (Kuma tag syntax).
            type: dict
          skip_mtls:
            description:
              - C(skipMTLS). Together with O(metrics.conf.tls) only when both say the same (V(false) with
                V(activeMTLSBackend), V(true) with V(disabled)).
            type: bool
          tls:
            description: C(tls) of the metrics endpoint.
            type: dict
            suboptions:
              mode:
                description: C(mode).
                type: str
                choices: [activeMTLSBackend, providedTLS, disabled]
                default: activeMTLSBackend
          envoy:
            description: C(envoy), which of Envoy's metrics are exposed.
            type: dict
            suboptions:
              filter_regex:
                description:
                  - C(filterRegex), a Go (RE2) regular expression; the module refuses what Python cannot compile
                    and RE2's missing features (lookarounds, back-references).
                type: str
              used_only:
                description: C(usedOnly), only metrics that were updated.
                type: bool
          aggregate:
            description: C(aggregate), the application's own metrics endpoints merged into the proxy's.
            type: list
            elements: dict
            suboptions:
              name:
                description: C(name), unique among the entries.
                type: str
                required: true
              port:
                description: C(port) of the application's endpoint, 1-65535.
                type: int
                required: true
              path:
                description: C(path) of the application's endpoint, starting with V(/).
                type: str
              enabled:
                description: C(enabled).
                type: bool
              address:
                description: C(address) of the application's endpoint, an IP.
                type: str
  probes:
    description:
      - Kuma 2.x only - C(probes), virtual probes - kuma-dp serves the application's HTTP health endpoints
        on one port that is not intercepted, so a checker outside the mesh can reach them.
      - Refused with Kuma 3.x, which removed the field.
    type: dict
    suboptions:
      port:
        description: C(port) the virtual probes listen on, 1-65535.
        type: int
        required: true
      endpoints:
        description: C(endpoints).
        type: list
        elements: dict
        suboptions:
          inbound_port:
            description: C(inboundPort), the application's port, 1-65535.
            type: int
            required: true
          inbound_path:
            description: C(inboundPath), the application's health path, starting with V(/).
            type: str
            required: true
          path:
            description: C(path) on O(probes.port) that serves it, starting with V(/).
            type: str
            required: true
  transparent_proxying:
    description:
      - C(networking.transparentProxying). Always written.
    type: dict
    default: {}
    suboptions:
      redirect_port_inbound:
        description:
          - C(redirectPortInbound), 0-65535, 0 disables inbound redirection.
          - Default O(expected_redirect_ports.inbound), else 15006.
        type: int
      redirect_port_outbound:
        description:
          - C(redirectPortOutbound), 0-65535, 0 disables outbound redirection.
          - Default O(expected_redirect_ports.outbound), else 15001.
        type: int
      ip_family_mode:
        description:
          - C(ipFamilyMode) - V(dualstack) (written C(DualStack)) or V(ipv4) (written C(IPv4)).
          - V(ipv4) needs an IPv4 O(address); Kuma disables transparent proxying otherwise.
        type: str
        choices: [dualstack, ipv4]
        default: dualstack
      reachable_services:
        description:
          - Kuma 2.x only - C(reachableServices), the C(kuma.io/service) values this host reaches through
            the proxy. Empty or unset means every service. Refused with Kuma 3.x.
        type: list
        elements: str
      direct_access_services:
        description:
          - C(directAccessServices) (Kuma 2.x and 3.x) - services this host reaches directly on their
            C(IP:PORT), bypassing the mesh's virtual IPs; V(*) means every service (costly, use only when needed).
          - Entries are V(*) or service names (letters, digits and C(. - _ :)).
        type: list
        elements: str
      reachable_backends:
        description:
          - C(reachableBackends.refs), the MeshServices, MeshExternalServices and MeshMultiZoneServices
            this host reaches. Unset means every backend; an empty list means none.
          - Each ref has O(transparent_proxying.reachable_backends[].name) or
            O(transparent_proxying.reachable_backends[].labels), not both; a namespace needs a name.
        type: list
        elements: dict
        suboptions:
          kind:
            description: Kind of the backend.
            type: str
            required: true
            choices: [MeshService, MeshExternalService, MeshMultiZoneService]
          name:
            description: Name of the backend (a lowercase RFC 1123 subdomain).
            type: str
          namespace:
            description: Namespace of the backend (Kubernetes zones); needs a name.
            type: str
          port:
            description: Port of the backend, 1-65535.
            type: int
          labels:
            description: Labels selecting backends, instead of a name.
            type: dict
  expected_redirect_ports:
    description:
      - The redirect ports of the transparent proxy installed on the host (M(kuma.mesh.kuma_tproxy)'s
        O(kuma.mesh.kuma_tproxy#module:redirect.inbound.port) and O(kuma.mesh.kuma_tproxy#module:redirect.outbound.port),
        0 when that direction is disabled).
      - When given, the Dataplane's redirect ports must be equal to them.
    type: dict
    default: {}
    suboptions:
      inbound:
        description: The transparent proxy's inbound redirect port.
        type: int
      outbound:
        description: The transparent proxy's outbound redirect port.
        type: int
notes:
  - "Every option is checked against its type before anything else, and refused naming the option's full
    path and the value: a whole number is an int or a string of ASCII digits with an optional leading C(-)
    (not C(' 80 '), C(80.0), C(1e3) or non-ASCII digits); a list is a list (a comma-separated string is
    refused); a dictionary is a dictionary; a boolean is one of Ansible's boolean words."
  - Kuma itself requires C(kuma.io/service) on 2.x inbounds only when an inbound has tags (inbounds
    without tags need the control plane's experimental C(inboundTagsDisabled)); this module always requires it for 2.x.
  - The validation is done on the target with the options alone; whether the mesh or the referenced
    backends exist is checked by the control plane when kuma-dp connects.
seealso:
  - module: kuma.mesh.kuma_tproxy
  - name: Kuma Dataplane specification
    description: The Dataplane resource in Kuma's documentation.
    link: https://kuma.io/docs/latest/reference/dataplane-specification/
"""

EXAMPLES = r"""
- name: Dataplane of a Kuma 2.x host (the redirect ports are the transparent proxy's)
  kuma.mesh.kuma_dataplane:
    path: /etc/kuma/dataplane.yaml
    group: kuma-dp
    kuma_version: 2.14.3
    name: web-01
    address: 10.0.0.10
    inbounds:
      - port: 8080
        tags:
          kuma.io/service: web
          kuma.io/protocol: http
    transparent_proxying:
      reachable_services: [backend, redis]
    expected_redirect_ports:
      inbound: 15006
      outbound: 15001

- name: Dataplane of a Kuma 3.x host, IPv4 only, reaching two MeshServices
  kuma.mesh.kuma_dataplane:
    path: /etc/kuma/dataplane.yaml
    group: kuma-dp
    kuma_version: 3.0.0
    name: web-01
    mesh: default
    address: 10.0.0.10
    labels:
      kuma.io/workload: web
      version: v2
    inbounds:
      - port: 8080
        name: http
        protocol: http
    transparent_proxying:
      ip_family_mode: ipv4
      reachable_backends:
        - kind: MeshService
          name: backend
          port: 8080
        - kind: MeshService
          labels:
            kuma.io/display-name: redis

- name: Kuma 2.x - health checking, an outbound by tags, admin port, advertised address, metrics, probes
  kuma.mesh.kuma_dataplane:
    path: /etc/kuma/dataplane.yaml
    group: kuma-dp
    kuma_version: 2.14.3
    name: web-01
    address: 10.0.0.10
    advertised_address: 203.0.113.10
    admin_port: 9902            # an application already uses 9901
    inbounds:
      - port: 8080
        tags:
          kuma.io/service: web
          kuma.io/protocol: http
        service_probe:
          interval: 10s
          timeout: 2s
          healthy_threshold: 1
          unhealthy_threshold: 3
    outbounds:                  # kuma-dp runs without --transparent-proxy here
      - port: 10001
        tags:
          kuma.io/service: billing
    kuma_dp_transparent_proxy: false
    transparent_proxying:
      direct_access_services: [legacy-db]
    metrics:
      conf:
        port: 5670
        path: /metrics
        envoy:
          used_only: true
    probes:
      port: 9000
      endpoints:
        - inbound_port: 8080
          inbound_path: /healthz
          path: /8080/healthz

- name: Kuma 3.x - graceful joining (NotReady until the probe passes), an outbound by backendRef
  kuma.mesh.kuma_dataplane:
    path: /etc/kuma/dataplane.yaml
    group: kuma-dp
    kuma_version: 3.0.0
    name: web-01
    address: 10.0.0.10
    admin_port: 9902
    labels:
      kuma.io/workload: web
    inbounds:
      - port: 8080
        name: http
        protocol: http
        state: NotReady
        service_probe:
          interval: 5s
    outbounds:
      - address: 127.0.0.1
        port: 10001
        backend_ref:
          kind: MeshService
          name: billing
          port: 8080
    kuma_dp_transparent_proxy: false

- name: Remove the Dataplane file
  kuma.mesh.kuma_dataplane:
    path: /etc/kuma/dataplane.yaml
    state: absent
"""

RETURN = r"""
path:
  description: The Dataplane file.
  returned: always
  type: str
  sample: /etc/kuma/dataplane.yaml
dataplane:
  description: The Dataplane resource written, as a dictionary with Kuma's field names.
  returned: when O(state=present) and the options are valid
  type: dict
  sample:
    type: Dataplane
    mesh: default
    name: web-01
    networking:
      address: 10.0.0.10
      inbound:
        - port: 8080
          tags:
            kuma.io/service: web
          serviceProbe:
            interval: 10s
            tcp: {}
      outbound:
        - port: 10001
          tags:
            kuma.io/service: billing
      transparentProxying:
        redirectPortInbound: 15006
        redirectPortOutbound: 15001
        ipFamilyMode: DualStack
      admin:
        port: 9902
content:
  description: The text of the file.
  returned: when O(state=present) and the options are valid
  type: str
  sample: "type: Dataplane\nmesh: default\nname: web-01\n..."
warnings:
  description:
    - Ansible's warnings; the module warns when O(outbounds) are given and O(kuma_dp_transparent_proxy)
      is unset, when a Kuma 3.x Dataplane with inbounds has no C(kuma.io/workload) label, and for 2.x
      releases older than 2.14.
  returned: when there are any
  type: list
  elements: str
  sample: ["labels: no 'kuma.io/workload' label; Kuma 3.x generates no MeshService for this Dataplane's inbounds without it"]
kuma_major:
  description: The major Kuma version whose rules were applied.
  returned: when O(state=present) and the options are valid
  type: int
  sample: 2
errors:
  description: Every problem found in the options, each naming the option path and the value.
  returned: when the options are invalid
  type: list
  elements: str
  sample: ["inbounds[0].tags: 'kuma.io/service' is required for Kuma 2.x"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kuma.mesh.plugins.module_utils.strict_args import strict_module

from ansible_collections.kuma.mesh.plugins.module_utils.dataplane import run

ARGUMENT_SPEC = dict(
    state=dict(type="str", choices=["present", "absent"], default="present"),
    path=dict(type="path", required=True),
    owner=dict(type="str"),
    group=dict(type="str"),
    mode=dict(type="raw", default="0640"),
    kuma_version=dict(type="str"),
    name=dict(type="str"),
    mesh=dict(type="str", default="default"),
    address=dict(type="str"),
    labels=dict(type="dict", default={}),
    inbounds=dict(
        type="list",
        elements="dict",
        default=[],
        options=dict(
            port=dict(type="int", required=True),
            service_port=dict(type="int"),
            service_address=dict(type="str"),
            address=dict(type="str"),
            tags=dict(type="dict"),
            name=dict(type="str"),
            protocol=dict(type="str"),
            service_probe=dict(
                type="dict",
                options=dict(
                    interval=dict(type="str"),
                    timeout=dict(type="str"),
                    healthy_threshold=dict(type="int"),
                    unhealthy_threshold=dict(type="int"),
                ),
            ),
            health=dict(type="dict", options=dict(ready=dict(type="bool", required=True))),
            state=dict(type="str", choices=["Ready", "NotReady", "Ignored"]),
        ),
    ),
    outbounds=dict(
        type="list",
        elements="dict",
        options=dict(
            address=dict(type="str"),
            port=dict(type="int", required=True),
            tags=dict(type="dict"),
            backend_ref=dict(
                type="dict",
                options=dict(
                    kind=dict(
                        type="str",
                        required=True,
                        choices=["MeshService", "MeshExternalService", "MeshMultiZoneService"],
                    ),
                    name=dict(type="str"),
                    port=dict(type="int"),
                    labels=dict(type="dict"),
                ),
            ),
        ),
    ),
    kuma_dp_transparent_proxy=dict(type="bool"),
    admin_port=dict(type="int"),
    advertised_address=dict(type="str"),
    metrics=dict(
        type="dict",
        options=dict(
            name=dict(type="str"),
            type=dict(type="str", choices=["prometheus"], default="prometheus"),
            conf=dict(
                type="dict",
                options=dict(
                    port=dict(type="int"),
                    path=dict(type="str"),
                    tags=dict(type="dict"),
                    skip_mtls=dict(type="bool"),
                    tls=dict(
                        type="dict",
                        options=dict(
                            mode=dict(
                                type="str",
                                choices=["activeMTLSBackend", "providedTLS", "disabled"],
                                default="activeMTLSBackend",
                            ),
                        ),
                    ),
                    envoy=dict(
                        type="dict",
                        options=dict(filter_regex=dict(type="str"), used_only=dict(type="bool")),
                    ),
                    aggregate=dict(
                        type="list",
                        elements="dict",
                        options=dict(
                            name=dict(type="str", required=True),
                            port=dict(type="int", required=True),
                            path=dict(type="str"),
                            enabled=dict(type="bool"),
                            address=dict(type="str"),
                        ),
                    ),
                ),
            ),
        ),
    ),
    probes=dict(
        type="dict",
        options=dict(
            port=dict(type="int", required=True),
            endpoints=dict(
                type="list",
                elements="dict",
                options=dict(
                    inbound_port=dict(type="int", required=True),
                    inbound_path=dict(type="str", required=True),
                    path=dict(type="str", required=True),
                ),
            ),
        ),
    ),
    transparent_proxying=dict(
        type="dict",
        default={},
        options=dict(
            redirect_port_inbound=dict(type="int"),
            redirect_port_outbound=dict(type="int"),
            ip_family_mode=dict(type="str", choices=["dualstack", "ipv4"], default="dualstack"),
            reachable_services=dict(type="list", elements="str"),
            direct_access_services=dict(type="list", elements="str"),
            reachable_backends=dict(
                type="list",
                elements="dict",
                options=dict(
                    kind=dict(
                        type="str",
                        required=True,
                        choices=["MeshService", "MeshExternalService", "MeshMultiZoneService"],
                    ),
                    name=dict(type="str"),
                    namespace=dict(type="str"),
                    port=dict(type="int"),
                    labels=dict(type="dict"),
                ),
            ),
        ),
    ),
    expected_redirect_ports=dict(
        type="dict",
        default={},
        options=dict(inbound=dict(type="int"), outbound=dict(type="int")),
    ),
)


def main():
    module = strict_module(
        AnsibleModule,
        ARGUMENT_SPEC,
        required_if=[("state", "present", ("kuma_version", "name", "address"))],
        supports_check_mode=True,
    )
    module.exit_json(**run(module))


if __name__ == "__main__":
    main()
