"""The Dataplane builder and validator of kuma_dataplane (module_utils/dataplane.py): pure, no I/O.

Cases marked "Kuma:" are Kuma's own, from pkg/core/resources/apis/mesh/dataplane_validator_test.go.
"""

import copy

import pytest
import yaml

from ansible_collections.kuma.mesh.plugins.module_utils import dataplane as dp


def params2(**overrides):
    p = dict(
        kuma_version="2.14.3",
        name="web-01",
        mesh="default",
        address="10.0.0.10",
        labels={},
        inbounds=[dict(port=8080, tags={"kuma.io/service": "web", "kuma.io/protocol": "http"})],
        transparent_proxying=dict(ip_family_mode="dualstack"),
        expected_redirect_ports={},
    )
    p.update(overrides)
    return p


def params3(**overrides):
    p = dict(
        kuma_version="3.0.0",
        name="web-01",
        mesh="default",
        address="10.0.0.10",
        labels={"kuma.io/workload": "web"},
        inbounds=[dict(port=8080, name="http", protocol="http")],
        transparent_proxying=dict(ip_family_mode="dualstack"),
        expected_redirect_ports={},
    )
    p.update(overrides)
    return p


def errors(p):
    return dp.build(p).errors


def assert_one_error(p, expected):
    errs = errors(p)
    assert len(errs) == 1, errs
    assert expected in errs[0], errs


# -- valid resources ---------------------------------------------------------------------
def test_valid_2x_resource_and_text():
    p = params2(
        labels={"app": "web", "version": 2},
        inbounds=[
            dict(port=8080, service_port=18080, service_address="127.0.0.1", tags={"kuma.io/service": "web", "version": "v1"}),
            dict(port=9090, address="10.0.0.11", name="metrics", protocol="tcp", tags={"kuma.io/service": "web-metrics"}),
        ],
        transparent_proxying=dict(ip_family_mode="ipv4", reachable_services=["backend", "redis_db_svc_6379"]),
        expected_redirect_ports=dict(inbound=15006, outbound=15001),
    )
    result = dp.build(p)
    assert result.errors == [] and result.warnings == [] and result.major == 2
    assert result.resource == {
        "type": "Dataplane",
        "mesh": "default",
        "name": "web-01",
        "labels": {"app": "web", "version": "2"},
        "networking": {
            "address": "10.0.0.10",
            "inbound": [
                {
                    "port": 8080,
                    "servicePort": 18080,
                    "serviceAddress": "127.0.0.1",
                    "tags": {"kuma.io/service": "web", "version": "v1"},
                },
                {
                    "port": 9090,
                    "address": "10.0.0.11",
                    "name": "metrics",
                    "protocol": "tcp",
                    "tags": {"kuma.io/service": "web-metrics"},
                },
            ],
            "transparentProxying": {
                "redirectPortInbound": 15006,
                "redirectPortOutbound": 15001,
                "ipFamilyMode": "IPv4",
                "reachableServices": ["backend", "redis_db_svc_6379"],
            },
        },
    }
    assert dp.render(result.resource) == (
        dp.HEADER + "type: Dataplane\n"
        "mesh: default\n"
        "name: web-01\n"
        "labels:\n"
        "  app: web\n"
        '  version: "2"\n'
        "networking:\n"
        '  address: "10.0.0.10"\n'
        "  inbound:\n"
        "    - port: 8080\n"
        "      servicePort: 18080\n"
        '      serviceAddress: "127.0.0.1"\n'
        "      tags:\n"
        "        kuma.io/service: web\n"
        "        version: v1\n"
        "    - port: 9090\n"
        '      address: "10.0.0.11"\n'
        "      name: metrics\n"
        "      protocol: tcp\n"
        "      tags:\n"
        "        kuma.io/service: web-metrics\n"
        "  transparentProxying:\n"
        "    redirectPortInbound: 15006\n"
        "    redirectPortOutbound: 15001\n"
        "    ipFamilyMode: IPv4\n"
        "    reachableServices:\n"
        "      - backend\n"
        "      - redis_db_svc_6379\n"
    )


def test_valid_3x_resource():
    p = params3(
        address="fd00::10",
        labels={"kuma.io/workload": "web", "team": "core"},
        inbounds=[dict(port=8080, name="http", protocol="HTTP"), dict(port=5432, protocol="tcp")],
        transparent_proxying=dict(
            ip_family_mode="dualstack",
            reachable_backends=[
                dict(kind="MeshService", name="backend", port=8080),
                dict(kind="MeshService", name="redis", namespace="redis-system"),
                dict(kind="MeshExternalService", labels={"kuma.io/display-name": "httpbin"}),
                dict(kind="MeshMultiZoneService", name="global-db"),
            ],
        ),
    )
    result = dp.build(p)
    assert result.errors == [] and result.warnings == [] and result.major == 3
    net = result.resource["networking"]
    assert net["inbound"] == [{"port": 8080, "name": "http", "protocol": "HTTP"}, {"port": 5432, "protocol": "tcp"}]
    assert net["transparentProxying"] == {
        "redirectPortInbound": 15006,
        "redirectPortOutbound": 15001,
        "ipFamilyMode": "DualStack",
        "reachableBackends": {
            "refs": [
                {"kind": "MeshService", "name": "backend", "port": 8080},
                {"kind": "MeshService", "name": "redis", "namespace": "redis-system"},
                {"kind": "MeshExternalService", "labels": {"kuma.io/display-name": "httpbin"}},
                {"kind": "MeshMultiZoneService", "name": "global-db"},
            ]
        },
    }
    assert "outbound" not in net
    assert yaml.safe_load(dp.render(result.resource)) == result.resource


def test_dns_name_address_and_no_inbounds_are_valid():
    result = dp.build(params3(address="web-01.internal.example.com", inbounds=[]))
    assert result.errors == []
    assert "inbound" not in result.resource["networking"]


def test_version_spellings():
    for version, major in (("v2.14.3", 2), ("2.14", 2), ("3.0.0-rc1", 3), ("3.1.0+build.1", 3)):
        p = params2(kuma_version=version) if major == 2 else params3(kuma_version=version)
        result = dp.build(p)
        assert result.errors == [] and result.major == major, version


def test_older_2x_warns():
    result = dp.build(params2(kuma_version="2.13.0"))
    assert result.errors == []
    assert result.warnings == ["kuma_version 2.13.0: the Dataplane is validated with Kuma 2.14's rules; older 2.x releases may differ"]


def test_3x_without_workload_label_warns():
    result = dp.build(params3(labels={}))
    assert result.errors == []
    assert len(result.warnings) == 1 and "kuma.io/workload" in result.warnings[0]
    assert dp.build(params3(labels={}, inbounds=[])).warnings == []


def test_redirect_ports_default_to_kumas_then_to_expected():
    tp = dp.build(params2()).resource["networking"]["transparentProxying"]
    assert (tp["redirectPortInbound"], tp["redirectPortOutbound"]) == (15006, 15001)
    p = params2(expected_redirect_ports=dict(inbound=16006, outbound=16001))
    tp = dp.build(p).resource["networking"]["transparentProxying"]
    assert (tp["redirectPortInbound"], tp["redirectPortOutbound"]) == (16006, 16001)
    p = params2(transparent_proxying=dict(redirect_port_inbound=16006, redirect_port_outbound=0), expected_redirect_ports=dict(inbound=16006))
    tp = dp.build(p).resource["networking"]["transparentProxying"]
    assert (tp["redirectPortInbound"], tp["redirectPortOutbound"]) == (16006, 0)


def test_reachable_backends_empty_list_is_written_unset_is_not():
    tp = dp.build(params3(transparent_proxying=dict(reachable_backends=[]))).resource["networking"]["transparentProxying"]
    assert tp["reachableBackends"] == {"refs": []}
    assert "reachableBackends: {}" not in dp.render(dp.build(params3(transparent_proxying=dict(reachable_backends=[]))).resource)
    assert yaml.safe_load(dp.render(dp.build(params3(transparent_proxying=dict(reachable_backends=[]))).resource))[
        "networking"
    ]["transparentProxying"]["reachableBackends"] == {"refs": []}
    tp = dp.build(params3()).resource["networking"]["transparentProxying"]
    assert "reachableBackends" not in tp and "reachableServices" not in tp


def test_2x_accepts_reachable_backends_and_kafka():
    # Kuma 2.14's proto has reachable_backends and its ParseProtocol knows kafka.
    p = params2(
        inbounds=[dict(port=9092, protocol="kafka", tags={"kuma.io/service": "kafka", "kuma.io/protocol": "kafka"})],
        transparent_proxying=dict(reachable_backends=[dict(kind="MeshService", name="backend", port=80)]),
    )
    assert errors(p) == []


def test_build_does_not_modify_params():
    p = params2(labels={"version": 1})
    before = copy.deepcopy(p)
    dp.build(p)
    assert p == before


# -- errors ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "version", ["", None, "latest", "1.8.0", "4.0.0", "2", "2.x"],
)
def test_unknown_versions(version):
    errs = errors(params2(kuma_version=version))
    assert len(errs) == 1 and errs[0].startswith("kuma_version: %r is not a Kuma version" % (version,))


@pytest.mark.parametrize(
    "overrides,expected",
    [
        (dict(name=None), "name: cannot be empty"),
        (dict(name=""), "name: cannot be empty"),
        (dict(name="Web_01"), "name: 'Web_01': invalid characters. A lowercase RFC 1123 subdomain"),
        (dict(name="web-"), "name: 'web-': invalid characters"),
        (dict(name="a" * 254), "name: '%s': value length must less or equal 253" % ("a" * 254)),
        (dict(mesh=""), "mesh: cannot be empty"),
        (dict(mesh="Mesh"), "mesh: 'Mesh': invalid characters. Valid characters are numbers, lowercase latin letters"),
        (dict(address=None), "address: address can't be empty"),
        (dict(address=""), "address: address can't be empty"),
        (dict(address="0.0.0.0"), "address: '0.0.0.0' must not be 0.0.0.0 or ::"),
        (dict(address="::"), "address: '::' must not be 0.0.0.0 or ::"),
        (dict(address="not an address"), "address: 'not an address': address has to be valid IP address or domain name"),
        (dict(address="fe80::1%eth0"), "address: 'fe80::1%eth0': address has to be valid IP address or domain name"),
        (dict(address="10.0.0.256"), "address: '10.0.0.256' is not a valid IP address"),
        (dict(address="10.0.1"), "address: '10.0.1' is not a valid IP address"),
        (dict(address="{{ address }}"), "address: '{{ address }}' contains '{{': kuma-dp renders the Dataplane file as a mustache"),
        (dict(labels={"bad key!": "v"}), "labels['bad key!']: key 'bad key!': name part must consist of alphanumeric"),
        (dict(labels={"Example.com/app": "v"}), "prefix part must be a lowercase RFC 1123 subdomain"),
        (dict(labels={"a/b/c": "v"}), "labels['a/b/c']: key 'a/b/c': a qualified name must consist"),
        (dict(labels={"app": "a" * 64}), "must be no more than 63 characters"),
        (dict(labels={"app": "web app"}), "labels['app']: 'web app': a valid label must be an empty string"),
        (dict(labels={"app": True}), "labels['app']: True must be a string (quote it)"),
        (dict(labels={"version": 1.1}), "labels['version']: 1.1 must be a string (quote it)"),
        (dict(labels={"app": "{{ app }}"}), "labels['app']: '{{ app }}' contains '{{'"),
        (
            dict(labels={"kuma.io/mesh": "other"}),
            "labels['kuma.io/mesh']: 'other': kuma.io/mesh label must not differ from mesh set on resource ('default')",
        ),
    ],
)
def test_meta_errors(overrides, expected):
    assert_one_error(params2(**overrides), expected)


@pytest.mark.parametrize(
    "inbound,expected",
    [
        (dict(port=0), "inbounds[0].port: 0: port must be in the range [1, 65535]"),
        (dict(port=65536), "inbounds[0].port: 65536: port must be in the range [1, 65535]"),
        (dict(port=None), "inbounds[0].port: None: port must be in the range [1, 65535]"),
        (dict(port=80, service_port=70000), "inbounds[0].service_port: 70000: port must be in the range [1, 65535]"),
        (dict(port=80, service_address="localhost"), "inbounds[0].service_address: 'localhost': serviceAddress has to be valid IP address"),
        (
            dict(port=80, service_address="10.0.0.10"),
            "inbounds[0].service_address: '10.0.0.10': serviceAddress and servicePort has to differ from address and port",
        ),
        (
            dict(port=80, service_port=80, service_address="10.0.0.10"),
            "serviceAddress and servicePort has to differ from address and port",
        ),
        (dict(port=80, address="web.local"), "inbounds[0].address: 'web.local': address has to be valid IP address"),
        (
            dict(port=80, address="10.0.0.11", service_address="10.0.0.11"),
            "inbounds[0].service_address: '10.0.0.11': serviceAddress and servicePort has to differ from address and port",
        ),
        (dict(port=80, protocol="udp"), "inbounds[0].protocol: has an invalid value 'udp'. Allowed values: grpc, http, http2, tcp"),
        (dict(port=15006), "inbounds[0].port: 15006 is transparent_proxying.redirect_port_inbound, where kuma-dp listens"),
        (dict(port=80, service_port=15001), "inbounds[0].service_port: 15001 is transparent_proxying.redirect_port_outbound"),
        (dict(port=80, name="{{ name }}"), "inbounds[0].name: '{{ name }}' contains '{{'"),
        (dict(port=80, tags={"kuma.io/service": "web"}), "inbounds[0].tags: {'kuma.io/service': 'web'}: Kuma 3.x Dataplane inbounds have no tags"),
    ],
)
def test_inbound_errors_3x(inbound, expected):
    assert_one_error(params3(inbounds=[inbound]), expected)


def test_inbound_service_address_may_equal_address_on_another_port():
    # Kuma: the same address is fine when servicePort differs from port.
    assert errors(params3(inbounds=[dict(port=80, service_port=8080, service_address="10.0.0.10")])) == []
    assert errors(params3(inbounds=[dict(port=80, address="10.0.0.11", service_port=81, service_address="10.0.0.11")])) == []


@pytest.mark.parametrize(
    "tags,expected",
    [
        ({}, "inbounds[0].tags: 'kuma.io/service' is required for Kuma 2.x"),
        (None, "inbounds[0].tags: 'kuma.io/service' is required for Kuma 2.x"),
        ({"app": "web"}, "inbounds[0].tags: 'kuma.io/service' is required for Kuma 2.x"),
        ({"kuma.io/service": ""}, "inbounds[0].tags['kuma.io/service']: tag value must be non-empty"),
        ({"kuma.io/service": "web/api"}, "inbounds[0].tags['kuma.io/service']: 'web/api': tag value must consist of alphanumeric"),
        ({"kuma.io/service": "web", "team name": "a"}, "inbounds[0].tags['team name']: tag name must consist of alphanumeric"),
        (
            {"kuma.io/service": "web", "kuma.io/protocol": "udp"},
            "inbounds[0].tags['kuma.io/protocol']: tag 'kuma.io/protocol' has an invalid value 'udp'. "
            "Allowed values: grpc, http, http2, kafka, tcp",
        ),
        ({"kuma.io/service": "web", "version": False}, "inbounds[0].tags['version']: False must be a string"),
        ({"kuma.io/service": "{{ svc }}"}, "inbounds[0].tags['kuma.io/service']: '{{ svc }}' contains '{{'"),
    ],
)
def test_tag_errors_2x(tags, expected):
    assert_one_error(params2(inbounds=[dict(port=8080, tags=tags)]), expected)


def test_tag_integer_values_are_strings():
    result = dp.build(params2(inbounds=[dict(port=8080, tags={"kuma.io/service": "web", "version": 2})]))
    assert result.errors == []
    assert result.resource["networking"]["inbound"][0]["tags"]["version"] == "2"


def test_kuma_validator_reachable_backends_case():
    # Kuma: "reachable backends" entry of dataplane_validator_test.go, violation for violation.
    refs = [
        dict(kind="Something", name="first", labels={"kuma.io/test": "test"}),
        dict(kind="MeshService", name="second", namespace="not-valid", labels={"kuma.io/test": "test"}),
        dict(kind="MeshService", name="third", labels={"kuma.io/test": "test"}),
        dict(kind="MeshService", name="first$-.kuma"),
        dict(kind="MeshService"),
        dict(kind="MeshService", namespace="xyz"),
    ]
    p = params3(transparent_proxying=dict(reachable_backends=refs))
    prefix = "transparent_proxying.reachable_backends"
    assert errors(p) == [
        prefix + "[0].kind: 'Something': invalid value. Available values are: MeshExternalService,MeshMultiZoneService,MeshService",
        prefix + "[0].labels: labels cannot be defined when name is specified",
        prefix + "[1].labels: labels cannot be defined when name is specified",
        prefix + "[2].labels: labels cannot be defined when name is specified",
        prefix + "[3].name: 'first$-.kuma': " + dp.IDENTIFIER_MSG,
        prefix + "[4].name: name or labels are required",
        prefix + "[5].name: name is required, when namespace is defined",
    ]


@pytest.mark.parametrize(
    "tp,expected",
    [
        (dict(reachable_backends=[dict(kind="MeshService", name="a", port=0)]), "reachable_backends[0].port: 0: port must be in the range"),
        (dict(reachable_backends=[dict(kind="MeshService", namespace="{{ ns }}", name="a")]), "reachable_backends[0].namespace: '{{ ns }}' contains"),
        (dict(reachable_services=["backend"]), "transparent_proxying.reachable_services: ['backend'] was removed in Kuma 3.x"),
        (dict(ip_family_mode="ipv6"), "transparent_proxying.ip_family_mode: 'ipv6': must be one of dualstack, ipv4"),
        (dict(redirect_port_inbound=70000), "transparent_proxying.redirect_port_inbound: 70000: port must be in the range [0, 65535]"),
        (dict(redirect_port_outbound=-1), "transparent_proxying.redirect_port_outbound: -1: port must be in the range [0, 65535]"),
        (dict(redirect_port_inbound=15001), "transparent_proxying.redirect_port_inbound: 15001: the inbound and outbound redirect ports must differ"),
        (dict(redirect_port_inbound=0, redirect_port_outbound=0), "transparent_proxying: redirect_port_inbound and redirect_port_outbound are both 0"),
    ],
)
def test_transparent_proxying_errors_3x(tp, expected):
    assert_one_error(params3(transparent_proxying=tp), expected)


def test_ipv4_mode_needs_an_ipv4_address():
    for address in ("fd00::10", "web-01.example.com"):
        assert_one_error(
            params3(address=address, transparent_proxying=dict(ip_family_mode="ipv4")),
            "transparent_proxying.ip_family_mode: 'ipv4' needs an IPv4 address: Kuma disables transparent proxying for address %r"
            % address,
        )


@pytest.mark.parametrize(
    "tp,expected,message",
    [
        (dict(redirect_port_inbound=15007), dict(inbound=15006), "transparent_proxying.redirect_port_inbound: 15007 does not agree with "
         "the transparent proxy's inbound redirect port 15006 (expected_redirect_ports.inbound)"),
        (dict(redirect_port_outbound=15001), dict(outbound=0), "transparent_proxying.redirect_port_outbound: 15001 does not agree with "
         "the transparent proxy's outbound redirect port 0 (expected_redirect_ports.outbound)"),
        (dict(), dict(inbound=65536), "expected_redirect_ports.inbound: 65536: port must be in the range [0, 65535]"),
    ],
)
def test_redirect_ports_must_agree(tp, expected, message):
    assert_one_error(params2(transparent_proxying=tp, expected_redirect_ports=expected), message)


@pytest.mark.parametrize(
    "services,expected",
    [
        ([""], "transparent_proxying.reachable_services[0]: cannot be empty"),
        (["ok", "web api"], "transparent_proxying.reachable_services[1]: 'web api': a kuma.io/service value must consist"),
        (["{{ svc }}"], "transparent_proxying.reachable_services[0]: '{{ svc }}' contains '{{'"),
    ],
)
def test_reachable_services_errors_2x(services, expected):
    assert_one_error(params2(transparent_proxying=dict(reachable_services=services)), expected)


def test_3x_workload_label_must_be_a_dns1035_label():
    assert_one_error(params3(labels={"kuma.io/workload": "9web"}), "labels['kuma.io/workload']: '9web': Kuma 3.x generates the MeshService")
    assert errors(params2(labels={"kuma.io/workload": "9web"})) == []


def test_namespace_with_labels_is_refused_too():
    p = params3(transparent_proxying=dict(reachable_backends=[dict(kind="MeshService", namespace="ns", labels={"a": "b"})]))
    assert errors(p) == [
        "transparent_proxying.reachable_backends[0].name: name is required, when namespace is defined",
        "transparent_proxying.reachable_backends[0].labels: labels cannot be defined when name is specified",
    ]


def test_duplicate_inbounds():
    p = params3(inbounds=[dict(port=80, name="http"), dict(port=80, name="http"), dict(port=80, address="10.0.0.11")])
    assert errors(p) == [
        "inbounds[1].port: 80 is already used by inbounds[0] on the same address",
        "inbounds[1].name: 'http' is already the name of inbounds[0]",
    ]


def test_every_problem_is_reported_at_once():
    p = params3(
        name="Web",
        address="0.0.0.0",
        inbounds=[dict(port=0, protocol="kafka", tags={"a": "b"})],
        transparent_proxying=dict(reachable_services=["x"], reachable_backends=[dict(kind="Foo", name="a")]),
    )
    fields = [e.split(":", 1)[0] for e in errors(p)]
    assert fields == [
        "name",
        "address",
        "inbounds[0].port",
        "inbounds[0].protocol",
        "inbounds[0].tags",
        "transparent_proxying.reachable_services",
        "transparent_proxying.reachable_backends[0].kind",
    ]


# -- YAML ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "value",
    ["yes", "No", "on", "OFF", "y", "n", "true", "null", "~", "1.0", "0x1F", "1e3", "1_000", ".inf", "12:30",
     "a: b", "#x", "- x", "*x", "&x", "!x", "@x", "%x", "'x'", '"x"', "x #y", "", " x", "x ", "é", "a\nb",
     "kuma.io/service", "DualStack", "fd00::1", "[x]", "{x}", "|", ">"],
)
def test_yaml_scalars_read_back_as_the_same_string(value):
    text = dp.render({"labels": {value: value}, "list": [value]})
    assert yaml.safe_load(text) == {"labels": {value: value}, "list": [value]}


def test_yaml_plain_words_stay_plain():
    assert dp.render({"a": "kuma.io/service", "b": "web-01", "c": 8080, "d": "10.0.0.1"}) == (
        dp.HEADER + 'a: kuma.io/service\nb: web-01\nc: 8080\nd: "10.0.0.1"\n'
    )


def test_rendered_resources_read_back_equal():
    for p in (params2(), params3(), params3(transparent_proxying=dict(reachable_backends=[]))):
        resource = dp.build(p).resource
        assert yaml.safe_load(dp.render(resource)) == resource


# -- Go's net.ParseIP without netaddr ----------------------------------------------------
@pytest.mark.parametrize(
    "value",
    [
        "10.0.0.1",
        "0.0.0.0",
        "255.255.255.255",
        "::",
        "::1",
        "fe80::1",
        "2001:db8::8a2e:370:7334",
        "2001:DB8::1",
        "::ffff:10.0.0.1",
        "::10.0.0.1",
        "1:2:3:4:5:6:7::",
        "1:2:3:4:5:6:1.2.3.4",
        "0001:2:3:4:5:6:7:8",
    ],
)
def test_parse_ip_accepts_what_go_accepts(value):
    assert dp.is_ip(value)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "10.0.0.01",  # Go 1.17+: leading zeros refused
        "010.0.0.1",
        "10.0.0.256",
        "10.0.0",
        "10.0.0.1.",
        " 10.0.0.1",
        "10.0.0.1\n",
        "1e1.0.0.1",
        "0x0a.0.0.1",
        "fe80::1%eth0",  # zones are refused by net.ParseIP
        "fe80::1%1",
        "[::1]",
        "::1/128",
        "1:2:3:4:5:6:7:8::",  # "::" must stand for at least one group
        "1:2:3:4:5:6:7:8:9",
        "12345::1",
        "::ffff:010.0.0.1",  # the embedded IPv4 follows the IPv4 rules
        "::ffff:10.0.0.256",
        "1.2.3.4::",
        "::1.2.3.4:5",
        "١٠.0.0.1",  # non-ASCII digits
        "::١",
    ],
)
def test_parse_ip_refuses_what_go_refuses(value):
    assert not dp.is_ip(value)


def test_ipv4_mapped_addresses_compare_as_go_compares_them():
    assert dp.parse_ip("::ffff:10.0.0.1") == dp.parse_ip("10.0.0.1")
    assert dp.is_unspecified("::ffff:0.0.0.0") and dp.is_unspecified("0:0::0") and dp.is_unspecified("0.0.0.0")
    assert dp.is_loopback_v4("::ffff:127.0.0.1") and not dp.is_loopback_v4("::1")
    # govalidator.IsIPv4, which Kuma's ipFamilyMode check uses: ParseIP accepts it and it has a dot.
    assert dp.is_ipv4("::ffff:10.0.0.1") and not dp.is_ipv4("fe80::1")


def test_ipv4_mode_accepts_an_ipv4_mapped_address_as_kuma_does():
    p = params3(address="::ffff:10.0.0.10", transparent_proxying=dict(ip_family_mode="ipv4"))
    assert errors(p) == []


def test_no_netaddr_on_the_target():
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(dp))
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert "netaddr" not in imported
    # standard library, ansible-core and the collection's own (pure, standard-library) module_utils
    assert imported <= {"__future__", "ipaddress", "json", "os", "re", "stat", "tempfile", "ansible", "ansible_collections"}


# -- Universal fields: inbound health, outbounds, admin, 2.x extras ---------------------
FULL_2X_TEXT = """\
# Kuma Dataplane for kuma-dp run --dataplane-file. Managed by Ansible (kuma.mesh.kuma_dataplane).
type: Dataplane
mesh: default
name: web-01
networking:
  address: "10.0.0.10"
  advertisedAddress: "203.0.113.10"
  inbound:
    - port: 8080
      tags:
        kuma.io/protocol: http
        kuma.io/service: web
      serviceProbe:
        interval: "10s"
        timeout: "0.5s"
        unhealthyThreshold: 3
        healthyThreshold: 1
        tcp: {}
      health:
        ready: false
      state: NotReady
  outbound:
    - port: 10001
      tags:
        kuma.io/service: billing
    - address: "127.0.0.2"
      port: 10002
      backendRef:
        kind: MeshExternalService
        name: payments
  transparentProxying:
    redirectPortInbound: 15006
    redirectPortOutbound: 15001
    ipFamilyMode: DualStack
    directAccessServices:
      - legacy-db
      - "*"
  admin:
    port: 9902
metrics:
  name: prom-1
  type: prometheus
  conf:
    port: 5670
    path: "/metrics"
    tags:
      team: web
    skipMTLS: true
    tls:
      mode: disabled
    envoy:
      filterRegex: "^cluster\\\\..*"
      usedOnly: true
    aggregate:
      - name: app
        port: 8081
        path: "/stats"
        enabled: true
        address: "127.0.0.1"
probes:
  port: 9000
  endpoints:
    - inboundPort: 8080
      inboundPath: "/healthz"
      path: "/8080/healthz"
"""


def full_2x(**overrides):
    inbound = dict(
        port=8080,
        tags={"kuma.io/service": "web", "kuma.io/protocol": "http"},
        service_probe=dict(interval="10s", timeout="0.5s", healthy_threshold=1, unhealthy_threshold=3),
        health=dict(ready=False),
        state="NotReady",
    )
    return params2(
        advertised_address="203.0.113.10",
        admin_port=9902,
        inbounds=[inbound],
        outbounds=[
            dict(port=10001, tags={"kuma.io/service": "billing"}),
            dict(address="127.0.0.2", port=10002, backend_ref=dict(kind="MeshExternalService", name="payments")),
        ],
        kuma_dp_transparent_proxy=False,
        transparent_proxying=dict(ip_family_mode="dualstack", direct_access_services=["legacy-db", "*"]),
        metrics=dict(
            name="prom-1",
            type="prometheus",
            conf=dict(
                port=5670,
                path="/metrics",
                tags={"team": "web"},
                skip_mtls=True,
                tls=dict(mode="disabled"),
                envoy=dict(filter_regex="^cluster\\..*", used_only=True),
                aggregate=[dict(name="app", port=8081, path="/stats", enabled=True, address="127.0.0.1")],
            ),
        ),
        probes=dict(port=9000, endpoints=[dict(inbound_port=8080, inbound_path="/healthz", path="/8080/healthz")]),
        **overrides
    )


def test_full_2x_resource_text():
    result = dp.build(full_2x())
    assert result.errors == []
    assert result.warnings == ["transparent_proxying.direct_access_services: '*' already makes every service "
                               "directly accessible; the other entries add nothing"]
    text = dp.render(result.resource)
    assert text == FULL_2X_TEXT
    assert yaml.safe_load(text) == result.resource


FULL_3X_TEXT = """\
# Kuma Dataplane for kuma-dp run --dataplane-file. Managed by Ansible (kuma.mesh.kuma_dataplane).
type: Dataplane
mesh: default
name: web-01
labels:
  kuma.io/workload: web
networking:
  address: "10.0.0.10"
  inbound:
    - port: 8080
      name: http
      protocol: http
      serviceProbe:
        interval: "5s"
        tcp: {}
      state: Ignored
  outbound:
    - address: "127.0.0.1"
      port: 10001
      backendRef:
        kind: MeshService
        name: billing
        port: 8080
    - port: 10002
      backendRef:
        kind: MeshMultiZoneService
        port: 80
        labels:
          kuma.io/display-name: billing
  transparentProxying:
    redirectPortInbound: 15006
    redirectPortOutbound: 15001
    ipFamilyMode: DualStack
    directAccessServices:
      - billing
  admin:
    port: 9902
"""


def full_3x(**overrides):
    return params3(
        admin_port=9902,
        inbounds=[dict(port=8080, name="http", protocol="http", service_probe=dict(interval="5s"), state="Ignored")],
        outbounds=[
            dict(address="127.0.0.1", port=10001, backend_ref=dict(kind="MeshService", name="billing", port=8080)),
            dict(port=10002, backend_ref=dict(kind="MeshMultiZoneService", port=80,
                                              labels={"kuma.io/display-name": "billing"})),
        ],
        kuma_dp_transparent_proxy=False,
        transparent_proxying=dict(ip_family_mode="dualstack", direct_access_services=["billing"]),
        **overrides
    )


def test_full_3x_resource_text():
    result = dp.build(full_3x())
    assert result.errors == [] and result.warnings == []
    text = dp.render(result.resource)
    assert text == FULL_3X_TEXT
    assert yaml.safe_load(text) == result.resource


@pytest.mark.parametrize(
    "overrides, option",
    [
        (dict(advertised_address="203.0.113.10"), "advertised_address"),
        (dict(metrics=dict(type="prometheus")), "metrics"),
        (dict(probes=dict(port=9000)), "probes"),
        (dict(outbounds=[dict(port=10001, tags={"kuma.io/service": "billing"})]), "outbounds[0].tags"),
    ],
)
def test_fields_kuma_3x_removed_are_refused_naming_option_value_and_version(overrides, option):
    errs = errors(params3(kuma_dp_transparent_proxy=False, **overrides))
    assert len(errs) == 1, errs
    assert errs[0].startswith(option + ": ") and "Kuma 3.x" in errs[0]
    value = list(overrides.values())[0]
    shown = value[0]["tags"] if option.startswith("outbounds") else value
    assert repr(shown) in errs[0]


def test_outbounds_and_kuma_dp_transparent_proxy():
    outbounds = [dict(port=10001, tags={"kuma.io/service": "billing"})]
    # Kuma's Dataplane validator accepts outbounds with transparentProxying ...
    assert errors(params2(outbounds=outbounds, kuma_dp_transparent_proxy=False)) == []
    # ... the bootstrap refuses them when kuma-dp runs with a transparent-proxy configuration ...
    assert_one_error(params2(outbounds=outbounds, kuma_dp_transparent_proxy=True),
                     "should be empty since dataplane is in Transparent Proxying mode")
    # ... and unset, the module says so.
    result = dp.build(params2(outbounds=outbounds))
    assert result.errors == [] and "--transparent-proxy" in result.warnings[0]
    assert dp.build(params2()).warnings == []


@pytest.mark.parametrize(
    "outbound, expected",
    [
        # Kuma: "networking.outbound: empty service tag" / "port out of the range" / "invalid address"
        (dict(port=3333, tags={}), ['outbounds[0].tags: mandatory tag "kuma.io/service" is missing']),
        (dict(port=3333, tags={"version": "1"}), ['outbounds[0].tags: mandatory tag "kuma.io/service" is missing']),
        (dict(port=3333, tags={"kuma.io/service": ""}), ["tag value must be non-empty"]),
        (dict(port=0, tags={"kuma.io/service": "redis"}), ["outbounds[0].port: 0: port must be in the range [1, 65535]"]),
        (dict(port=65536, tags={"kuma.io/service": "redis"}), ["port must be in the range [1, 65535]"]),
        (dict(port=3333, address="invalid", tags={"kuma.io/service": "redis"}),
         ["outbounds[0].address: 'invalid': address has to be valid IP address"]),
        (dict(port=3333, address="10.0.0.01", tags={"kuma.io/service": "redis"}), ["address has to be valid IP address"]),
        (dict(port=3333, tags={"kuma.io/service": "a b"}), ["tag value must consist of"]),
        (dict(port=3333, tags={"kuma io": "x", "kuma.io/service": "redis"}), ["tag name must consist of"]),
        # Kuma: "dataplane with empty backend ref"
        (dict(port=3333, backend_ref=dict(kind="")), [
            "outbounds[0].backend_ref.kind: '': invalid value. Available values are: "
            "MeshExternalService,MeshMultiZoneService,MeshService",
            "outbounds[0].backend_ref: either 'name' or 'labels' should be specified",
            "outbounds[0].backend_ref.port: None: port must be in the range [1, 65535]",
        ]),
        # Kuma: "backend ref clashes with tags or service and missing port"
        (dict(port=3333, tags={"kuma.io/service": "xyz"}, backend_ref=dict(kind="MeshService", name="xyz", port=8080)),
         ["outbounds[0].backend_ref: both backendRef and tags/service cannot be defined"]),
        (dict(port=3333, backend_ref=dict(kind="MeshService", name="xyz")), ["backend_ref.port: None: port must be"]),
        (dict(port=3333, backend_ref=dict(kind="MeshService", name="Xyz", port=80)), ["invalid characters"]),
        (dict(port=3333, backend_ref=dict(kind="MeshService", labels={"a/b/c": "x"}, port=80)), ["qualified name"]),
        (dict(port=3333, backend_ref=dict(kind="MeshExternalService", name="x", port=70000)), ["port must be"]),
    ],
)
def test_outbound_errors_2x(outbound, expected):
    errs = errors(params2(outbounds=[outbound], kuma_dp_transparent_proxy=False))
    assert len(errs) == len(expected), errs
    for err, want in zip(errs, expected):
        assert want in err, errs


def test_outbound_3x_needs_a_backend_ref():
    assert_one_error(params3(outbounds=[dict(port=3333)], kuma_dp_transparent_proxy=False),
                     "outbounds[0].backend_ref: must be defined")


def test_duplicate_outbounds_are_refused():
    outbounds = [dict(port=3333, tags={"kuma.io/service": "a"}),
                 dict(port=3333, address="::ffff:127.0.0.1", tags={"kuma.io/service": "b"})]
    assert_one_error(params2(outbounds=outbounds, kuma_dp_transparent_proxy=False),
                     "outbounds[1].port: 3333 is already used by outbounds[0]")


@pytest.mark.parametrize(
    "inbound, outbound, admin, expected",
    [
        # Kuma: "dataplane with admin port equal to inbound" / "... to outbound"
        (dict(port=8080, service_port=7777, address="127.0.0.1"), dict(port=3333, address="127.0.0.1"), 8080,
         "admin_port: 8080: must differ from inbound"),
        (dict(port=8080, service_port=7777, address="127.0.0.1"), dict(port=3333, address="127.0.0.1"), 3333,
         "admin_port: 3333: must differ from outbound"),
        (dict(port=8080, service_port=7777, service_address="127.0.0.1"), dict(port=3333, address="10.0.0.5"), 7777,
         "must differ from inbound"),
        (dict(port=8080), dict(port=3333), 3333, "must differ from outbound"),  # outbound default 127.0.0.1
        # Kuma: "... equal to inbound and outbound but different network interfaces" is valid
        (dict(port=8080, service_port=7777, address="10.0.0.10"), dict(port=3333, address="10.0.0.10"), 8080, None),
        (dict(port=8080), dict(port=3333, address="10.0.0.10"), 15001, "redirect port"),
        (dict(port=8080), dict(port=3333, address="10.0.0.10"), 0, "port must be in the range [1, 65535]"),
    ],
)
def test_admin_port(inbound, outbound, admin, expected):
    inbound = dict(inbound, tags={"kuma.io/service": "web"})
    outbound = dict(outbound, tags={"kuma.io/service": "redis"})
    p = params2(inbounds=[inbound], outbounds=[outbound], admin_port=admin, kuma_dp_transparent_proxy=False)
    if expected is None:
        assert errors(p) == []
    else:
        assert_one_error(p, expected)


@pytest.mark.parametrize(
    "probe, expected",
    [
        # Kuma: "dataplane with service probe"
        (dict(timeout="1s", interval="0s", healthy_threshold=5, unhealthy_threshold=0),
         ["inbounds[0].service_probe.interval: '0s': must have a positive value",
          "inbounds[0].service_probe.unhealthy_threshold: 0: must have a positive value"]),
        (dict(interval="0.000000000s"), ["must have a positive value"]),
        (dict(interval="10"), ["must be a duration in seconds"]),
        (dict(interval="10m"), ["must be a duration in seconds"]),
        (dict(interval="-1s"), ["must be a duration in seconds"]),
        (dict(interval="1.0000000001s"), ["must be a duration in seconds"]),
        (dict(timeout="315576000001s"), ["must have a valid value"]),
        (dict(healthy_threshold=2 ** 32), ["must be an integer from 1 to 4294967295"]),
        (dict(interval="1s\n"), ["control character"]),
        (dict(), []),
    ],
)
def test_service_probe_errors(probe, expected):
    for params in (params2, params3):
        inbound = dict(params()["inbounds"][0], service_probe=probe)
        errs = errors(params(inbounds=[inbound]))
        assert len(errs) == len(expected), errs
        for err, want in zip(errs, expected):
            assert want in err, errs


def test_health_and_state():
    inbound = dict(params3()["inbounds"][0], health=dict(ready=True), state="Ready")
    result = dp.build(params3(inbounds=[inbound]))
    assert result.errors == []
    assert result.resource["networking"]["inbound"][0]["health"] == {"ready": True}
    assert result.resource["networking"]["inbound"][0]["state"] == "Ready"
    inbound = dict(params3()["inbounds"][0], health=dict(ready="yes"), state="ready")
    assert errors(params3(inbounds=[inbound])) == [
        "inbounds[0].health.ready: 'yes' must be true or false",
        "inbounds[0].state: 'ready': must be one of Ready, NotReady, Ignored",
    ]


def test_kuma_virtual_probe_case():
    # Kuma: "dataplane with virtual probe" (2.14)
    probes = dict(
        port=0,
        endpoints=[
            dict(inbound_port=8088, inbound_path="/healthz", path="/8080/healthz"),
            dict(inbound_port=99999999, inbound_path="healthz", path="8080/healthz"),
            dict(inbound_port=1000, inbound_path=None, path=None),
        ],
    )
    errs = errors(params2(probes=probes))
    assert [e.split(":")[0] for e in errs] == [
        "probes.port",
        "probes.endpoints[1].inbound_port",
        "probes.endpoints[1].inbound_path",
        "probes.endpoints[1].path",
        "probes.endpoints[2].inbound_path",
        "probes.endpoints[2].path",
    ]
    assert all("should be a valid URL Path" in e for e in errs[2:])


@pytest.mark.parametrize("value", ["/a%zz", "/a b", "/a\tb", "/%"])
def test_probe_paths_as_go_parses_them(value):
    errs = errors(params2(probes=dict(port=9000, endpoints=[dict(inbound_port=8080, inbound_path=value, path="/x")])))
    assert len(errs) == 1 and errs[0].startswith("probes.endpoints[0].inbound_path"), errs


def test_kuma_metrics_cases():
    # Kuma: "dataplane with duplicate metrics entry"
    aggregate = [dict(name="app", port=123, path="/stats"), dict(name="app", port=999, path="/metrics"),
                 dict(name="duplicate-app", port=12366, path="/duplicate"),
                 dict(name="duplicate-app", port=12345, path="/other")]
    assert errors(params2(metrics=dict(type="prometheus", conf=dict(aggregate=aggregate)))) == [
        "metrics.conf.aggregate[1].name: duplicate entry: app, values have to be unique",
        "metrics.conf.aggregate[3].name: duplicate entry: duplicate-app, values have to be unique",
    ]
    # Kuma: "dataplane with not supported metrics type"
    assert errors(params2(metrics=dict(type="custom-backend"))) == [
        "metrics.type: 'custom-backend': unknown backend type. Available backends: \"prometheus\""
    ]


@pytest.mark.parametrize(
    "conf, expected",
    [
        (dict(skip_mtls=True, tls=dict(mode="activeMTLSBackend")), "skipMTLS and tls configuration cannot be defined together"),
        (dict(skip_mtls=False, tls=dict(mode="providedTLS")), "skipMTLS and tls configuration cannot be defined together"),
        (dict(envoy=dict(filter_regex="(")), "provided regexp isn't correct"),
        (dict(envoy=dict(filter_regex="(?=x)")), "provided regexp isn't correct"),
        (dict(path="metrics"), "should be a valid URL Path"),
        (dict(tags={"a": "b c"}), "tag value must consist of"),
        (dict(aggregate=[dict(name="app", port=80, address="localhost")]), "has to be valid IP address"),
    ],
)
def test_metrics_conf_errors(conf, expected):
    assert_one_error(params2(metrics=dict(type="prometheus", conf=conf)), expected)


def test_direct_access_services_errors():
    tp = dict(ip_family_mode="dualstack", direct_access_services=["ok", "", "a b"])
    errs = errors(params3(transparent_proxying=tp))
    assert errs[0].startswith("transparent_proxying.direct_access_services[1]: cannot be empty")
    assert errs[1].startswith("transparent_proxying.direct_access_services[2]: 'a b'")
    assert len(errs) == 2


def test_advertised_address_errors_2x():
    assert_one_error(params2(advertised_address="0.0.0.0"), "must not be 0.0.0.0 or ::")
    assert_one_error(params2(advertised_address="10.0.0.300"), "has to be valid IP address or domain name")
    assert errors(params2(advertised_address="edge.example.com")) == []


@pytest.mark.parametrize("char", ["\x00", "\n", "\r", "\t", "\x1b", "\x7f", "\x85", "\u2028", "\ufeff", "\ud800"])
def test_control_characters_never_reach_the_file(char):
    for p in (
        params2(inbounds=[dict(port=8080, name="a" + char, tags={"kuma.io/service": "web"})]),
        params3(labels={"kuma.io/workload": "web", "x": "a" + char}),
        params3(transparent_proxying=dict(reachable_backends=[dict(kind="MeshService", name="x", namespace="n" + char)])),
        params3(outbounds=[dict(port=1, backend_ref=dict(kind="MeshService", name="x", port=1, labels={"k": char}))],
                kuma_dp_transparent_proxy=False),
    ):
        errs = errors(p)
        assert errs and any("control character" in e for e in errs), errs


# -- property tests: any option set of the argument spec's types -------------------------
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator  # noqa: E402

from ansible_collections.kuma.mesh.plugins.modules import kuma_dataplane  # noqa: E402

# Values that pass Kuma's checks, mixed with arbitrary text, so that both valid resources
# and every kind of error are reached.
_WORDS = [
    "", "web", "kuma.io/service", "kuma.io/workload", "kuma.io/protocol", "kuma.io/mesh", "http", "tcp", "kafka",
    "10.0.0.10", "127.0.0.1", "::1", "::ffff:10.0.0.1", "0.0.0.0", "fe80::1%eth0", "10.0.0.01", "example.com",
    "MeshService", "MeshExternalService", "default", "*", "/healthz", "10s", "0.5s", "0s", "Ready", "NotReady",
    "prometheus", "disabled", "^a.*", "(?=x)", "{{ x }}", "a b", "a\nb", "\x00", "\ud800", "\u2028",
]
_TEXT = st.one_of(st.sampled_from(_WORDS), st.text(max_size=12))
_INT = st.one_of(st.sampled_from([0, 1, 80, 8080, 9901, 15001, 15006, 65535, 65536, -1, 2 ** 32]), st.integers())
_SCALAR = st.one_of(_TEXT, _INT, st.booleans(), st.floats(allow_nan=True), st.none())

_SKIP = {"state", "path", "owner", "group", "mode"}


def _strategy(spec):
    """Values of an option's type (as a playbook could give them), its suboptions recursively."""
    kind = spec.get("type", "str")
    choices = spec.get("choices")
    if kind == "str":
        base = st.one_of(st.sampled_from(choices), _TEXT) if choices else _TEXT
    elif kind == "int":
        base = _INT
    elif kind == "bool":
        base = st.booleans()
    elif kind == "list":
        if spec.get("options"):
            base = st.lists(_options(spec["options"]), max_size=3)
        else:
            base = st.lists(_TEXT, max_size=3)
    elif kind == "dict":
        if spec.get("options"):
            base = _options(spec["options"])
        else:
            base = st.dictionaries(_TEXT, _SCALAR, max_size=3)
    else:
        base = _SCALAR
    return base


def _options(options):
    fields = {}
    for name, spec in options.items():
        if name in _SKIP and options is kuma_dataplane.ARGUMENT_SPEC:
            continue
        value = _strategy(spec)
        fields[name] = value if spec.get("required") else st.one_of(st.none(), value)
    return st.fixed_dictionaries({}, optional=fields)


_VERSIONS = st.one_of(st.sampled_from(["2.14.3", "3.0.0", "2.9.0", "v3.0.0-rc1"]), _TEXT)
_OPTION_SETS = st.builds(
    lambda opts, version: dict(opts, kuma_version=version),
    _options(kuma_dataplane.ARGUMENT_SPEC),
    _VERSIONS,
)
_PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))


def _check_outcome(result):
    assert isinstance(result.errors, list) and all(isinstance(e, str) for e in result.errors)
    assert isinstance(result.warnings, list) and all(isinstance(w, str) for w in result.warnings)
    if result.errors:
        return
    text = dp.render(result.resource)
    # Only newlines are control characters in the file, and it reads back as the resource.
    assert not dp._FORBIDDEN_CHAR.search(text.replace("\n", ""))
    assert yaml.safe_load(text) == result.resource
    text.encode("utf-8")


@_PROPERTY
@given(_OPTION_SETS)
def test_property_validated_options_never_raise_and_render_what_they_build(raw):
    """Through Ansible's own argument validation (as the module gets them), then build and render."""
    validated = ArgumentSpecValidator(kuma_dataplane.ARGUMENT_SPEC).validate(
        dict(raw, path="/tmp/dataplane.yaml", state="present")
    )
    if validated.error_messages:
        return  # AnsibleModule fails with these before the module's code runs
    _check_outcome(dp.build(validated.validated_parameters))


@_PROPERTY
@given(_OPTION_SETS)
def test_property_raw_options_never_raise(raw):
    """The same option sets straight to build(), without Ansible's conversion and defaults."""
    _check_outcome(dp.build(raw))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=45))
def test_property_parse_ip_agrees_with_ipaddress_on_plain_forms(value):
    """Whatever parse_ip accepts, ipaddress reads as the same address; no input raises."""
    import ipaddress

    packed = dp.parse_ip(value)
    if packed is None:
        return
    assert "%" not in value and value.isascii()
    parsed = ipaddress.ip_address(value)
    if parsed.version == 4:
        assert packed == b"\x00" * 10 + b"\xff\xff" + parsed.packed
    else:
        assert packed == parsed.packed


@settings(max_examples=200, deadline=None)
@given(st.tuples(st.integers(0, 300), st.integers(0, 300), st.integers(0, 300), st.integers(0, 300)),
       st.booleans())
def test_property_ipv4_like_go(fields, zero_pad):
    text = ".".join(("0%d" % f) if zero_pad and i == 0 else str(f) for i, f in enumerate(fields))
    expected = all(f <= 255 for f in fields) and not zero_pad
    assert dp.is_ip(text) is expected


def _mutations():
    """A valid 2.x or 3.x option set with one or two options, and one suboption, replaced by generated values."""
    spec = kuma_dataplane.ARGUMENT_SPEC
    top = sorted(k for k in spec if k not in _SKIP)
    nested = [
        ("inbounds", spec["inbounds"]["options"]),
        ("outbounds", spec["outbounds"]["options"]),
        ("transparent_proxying", spec["transparent_proxying"]["options"]),
    ]

    @st.composite
    def build(draw):
        params = copy.deepcopy(draw(st.sampled_from([full_2x(), full_3x()])))
        for key in draw(st.lists(st.sampled_from(top), max_size=2, unique=True)):
            params[key] = draw(st.one_of(st.none(), _strategy(spec[key])))
        where, options = draw(st.sampled_from(nested))
        sub = draw(st.sampled_from(sorted(options)))
        target = params.get(where)
        if isinstance(target, list) and target and isinstance(target[0], dict):
            target[0][sub] = draw(st.one_of(st.none(), _strategy(options[sub])))
        elif isinstance(target, dict):
            target[sub] = draw(st.one_of(st.none(), _strategy(options[sub])))
        return params

    return build()


@_PROPERTY
@given(_mutations())
def test_property_mutated_valid_options_never_raise(raw):
    validated = ArgumentSpecValidator(kuma_dataplane.ARGUMENT_SPEC).validate(
        dict(raw, path="/tmp/dataplane.yaml", state="present")
    )
    if not validated.error_messages:
        _check_outcome(dp.build(validated.validated_parameters))
    _check_outcome(dp.build(raw))


def test_kuma_ipv6_inbounds_and_outbounds_case():
    # Kuma: "dataplane with full inbounds and outbounds ipv6" (2.14)
    p = params2(
        address="0:0:0:0:0:FFFF:C0A8:0001",
        inbounds=[dict(port=8080, service_port=7777, address="::1", tags={"kuma.io/service": "backend", "version": "1"})],
        outbounds=[dict(port=3333, address="::1", tags={"kuma.io/service": "redis"})],
        kuma_dp_transparent_proxy=False,
    )
    assert errors(p) == []
    assert dp.parse_ip("0:0:0:0:0:FFFF:C0A8:0001") == dp.parse_ip("192.168.0.1")


@pytest.mark.parametrize("text", ["\U00010000", "caf\u00e9 \U0001f600", "a\u2028b", "x\x85y", "\ufeffbom", "tab\there"])
def test_strings_beyond_ascii_read_back_as_written(text):
    """JSON writes a character beyond the BMP as two surrogate escapes, which YAML
    readers take as two characters (found by the property test); YAML 1.1 line
    breaks and the BOM are escaped."""
    line = "name: " + dp._scalar(text)
    assert yaml.safe_load(line) == {"name": text}
    assert "\u2028" not in line and "\x85" not in line and "\ufeff" not in line
