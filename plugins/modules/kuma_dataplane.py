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
    protocols, labels, C(reachableServices) and C(reachableBackends) - plus a few checks of the
    collection that catch values Kuma accepts but cannot use. Every problem is reported, each naming
    the option path and the value; the file is left untouched.
  - The resource has C(networking.transparentProxying) (redirect ports, C(ipFamilyMode), reachable
    services or backends) and never a C(networking.outbound) section, which Kuma refuses in
    transparent-proxy mode.
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
  - netaddr (python3-netaddr) on the target, for O(state=present)
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
      - Not V(0.0.0.0) or V(::). An IP is validated with netaddr as Go's C(net.ParseIP) parses it.
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
      transparentProxying:
        redirectPortInbound: 15006
        redirectPortOutbound: 15001
        ipFamilyMode: DualStack
content:
  description: The text of the file.
  returned: when O(state=present) and the options are valid
  type: str
  sample: "type: Dataplane\nmesh: default\nname: web-01\n..."
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
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        required_if=[("state", "present", ("kuma_version", "name", "address"))],
        supports_check_mode=True,
    )
    module.exit_json(**run(module))


if __name__ == "__main__":
    main()
