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
