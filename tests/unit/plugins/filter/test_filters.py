"""The dataplane role's filter plugins (plugins/filter/dataplane.py)."""

import pytest

from ansible_collections.kuma.mesh.plugins.filter import dataplane as f

HEX = "a" * 64
GOOD = {
    "kuma_dp_state": "present", "kuma_dp_version": "2.14.3", "kuma_dp_cp_address": "https://cp:5678",
    "kuma_dp_user": "kuma-dp", "kuma_dp_uid": 5678, "kuma_dp_gid": 5678, "kuma_dp_environment": {},
    "kuma_dp_extra_args": [], "kuma_dp_tproxy": {}, "kuma_dp_ip_family_mode": "dualstack",
    "kuma_dp_readiness_port": 9902, "kuma_dp_ssh_port": 22,
}


def errors(**changes):
    v = dict(GOOD)
    v.update(changes)
    return f.dp_input_errors(v)


def test_good_input_has_no_errors():
    assert errors() == []


@pytest.mark.parametrize("changes, needle", [
    ({"kuma_dp_user": "root"}, "kuma_dp_user: 'root' is refused"),
    ({"kuma_dp_user": "0"}, "kuma_dp_user: '0' is refused"),
    ({"kuma_dp_uid": 0}, "kuma_dp_uid must be 1-2147483646"),
    ({"kuma_dp_version": "v2.14"}, "kuma_dp_version"),
    ({"kuma_dp_cp_address": "cp:5678"}, "kuma_dp_cp_address"),
    ({"kuma_dp_environment": {"A": "x\nExecStartPre=+/bin/sh"}}, "the value of A has a control character"),
    ({"kuma_dp_environment": {"A B": "x"}}, "'A B' is not a variable name"),
    ({"kuma_dp_environment": {"1A": "x"}}, "'1A' is not a variable name"),
    ({"kuma_dp_environment": {"A": {"b": 1}}}, "must be a string or a number"),
    ({"kuma_dp_extra_args": ["--a\nExecStartPre=+/bin/true"]}, "has a control character"),
    ({"kuma_dp_tproxy": {"redirect": {"inbound": {"port": 9902}}}},
     "kuma_dp_tproxy.redirect.inbound.port and kuma_dp_readiness_port are all port 9902"),
    ({"kuma_dp_tproxy": {"redirect": {"dns": {"port": 70000}}}}, "kuma_dp_tproxy.redirect.dns.port must be a port"),
    ({"kuma_dp_tproxy": {"kuma_dp_user": "other"}}, "kuma_dp_tproxy.kuma_dp_user is 'other'"),
    ({"kuma_dp_tproxy": {"ip_family_mode": "ipv4"}}, "kuma_dp_tproxy.ip_family_mode is 'ipv4'"),
    ({"kuma_dp_checksum": "xyz"}, "kuma_dp_checksum"),
    ({"kuma_dp_ssh_port": 99999}, "kuma_dp_ssh_port"),
])
def test_bad_input_is_named(changes, needle):
    found = errors(**changes)
    assert any(needle in e for e in found), found


def test_tproxy_user_may_be_the_uid():
    assert errors(kuma_dp_tproxy={"kuma_dp_user": "5678"}) == []


def test_tproxy_options_fill_the_role_defaults_and_exclude_ssh():
    opts = f.dp_tproxy_options({"redirect": {"outbound": {"exclude_ports": [1]}}}, "kuma-dp", "ipv4", 22)
    assert opts["redirect"]["inbound"] == {"enabled": True, "port": 15006, "exclude_ports": [22]}
    assert opts["redirect"]["outbound"] == {"enabled": True, "port": 15001, "exclude_ports": [1]}
    assert opts["redirect"]["dns"] == {"enabled": True, "port": 15053}
    assert opts["kuma_dp_user"] == "kuma-dp" and opts["ip_family_mode"] == "ipv4"
    # no duplicate when the user already excludes it, nothing with 0
    assert f.dp_tproxy_options({"redirect": {"inbound": {"exclude_ports": [22]}}}, "u", "dualstack", 22)[
        "redirect"]["inbound"]["exclude_ports"] == [22]
    assert "exclude_ports" not in f.dp_tproxy_options({}, "u", "dualstack", 0)["redirect"]["inbound"]


def test_tproxy_options_do_not_change_the_input():
    given = {"redirect": {"inbound": {"exclude_ports": [1]}}}
    f.dp_tproxy_options(given, "u", "dualstack", 22)
    assert given == {"redirect": {"inbound": {"exclude_ports": [1]}}}


def test_kuma_dp_config_is_derived_from_the_rules_options():
    opts = f.dp_tproxy_options({"redirect": {"dns": {"enabled": False, "port": 15054},
                                             "vnet": {"networks": ["docker0:172.17.0.0/16"]}}},
                               "kuma-dp", "dualstack", 22)
    assert f.dp_tproxy_kuma_dp_config(opts) == {
        "ipFamilyMode": "dualstack",
        "redirect": {"inbound": {"enabled": True, "port": 15006}, "outbound": {"enabled": True, "port": 15001},
                     "dns": {"enabled": False, "port": 15054}, "vnet": {"networks": ["docker0:172.17.0.0/16"]}},
    }
    capture = f.dp_tproxy_options({"redirect": {"dns": {"enabled": False, "capture_all": True}}}, "u", "ipv4", 0)
    assert f.dp_tproxy_kuma_dp_config(capture)["redirect"]["dns"]["enabled"] is True


@pytest.mark.parametrize("value, expected", [
    ("--log-level=info", "--log-level=info"),
    ("a b", '"a b"'),
    ('say "hi" 100% $HOME \\', '"say \\"hi\\" 100%% $$HOME \\\\"'),
])
def test_systemd_quote(value, expected):
    assert f.dp_systemd_quote(value) == expected


@pytest.mark.parametrize("value", ["a\nExecStartPre=+/bin/sh", "a\rb", "a\x00b", "\x7f"])
def test_systemd_quote_refuses_control_characters(value):
    with pytest.raises(Exception, match="control character"):
        f.dp_systemd_quote(value)


def test_drift_report():
    lines = f.dp_drift_report(["a", "b", "c", "d"], ["a", "b", "c"],
                              {"a": [], "b": ["rules", "service"], "c": ["unit"]}, ["b"])
    assert lines == [
        "a: in sync",
        "b: drifted: rules, service",
        "c: drifted: unit (report only)",
        "d: not checked (unreachable or failed, see above)",
        "4 hosts: 1 in sync, 2 drifted, 1 not checked; repairing 1",
    ]
    assert f.dp_drift_report(["a"], ["a"], {"a": []}, []) == ["a: in sync", "1 host: 1 in sync"]
    assert f.dp_drift_report(["a"], ["a"], {"a": ["unit"]}, [])[-1] == \
        "1 host: 1 drifted; nothing repaired (kuma_mesh_report_only)"


def test_filters_are_registered():
    assert set(f.FilterModule().filters()) >= {
        "dp_input_errors", "dp_tproxy_options", "dp_tproxy_kuma_dp_config", "dp_systemd_quote",
        "dp_drift_report"}


def test_dp_tproxy_options_capture_all_leaves_dns_enabled_off():
    """kuma_tproxy refuses redirect.dns.enabled with capture_all, as kumactl does."""
    opts = f.dp_tproxy_options({"redirect": {"dns": {"capture_all": True}}}, "kuma-dp", "dualstack", 22)
    assert opts["redirect"]["dns"]["enabled"] is False
    assert opts["redirect"]["dns"]["capture_all"] is True
    assert f.dp_tproxy_kuma_dp_config(opts)["redirect"]["dns"]["enabled"] is True
    given = f.dp_tproxy_options({"redirect": {"dns": {"capture_all": True, "enabled": True}}}, "u", "dualstack", 0)
    assert given["redirect"]["dns"]["enabled"] is True  # the user's own choice reaches the module's check
