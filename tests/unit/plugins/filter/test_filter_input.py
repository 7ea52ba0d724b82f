"""The filters' boundary: whatever the input, a filter returns or raises AnsibleFilterError
naming the option and the value; never another exception (properties, then a table of
hand-picked nasty values, most of which raised TypeError, ValueError, AttributeError or
OverflowError before). Values the filters accept are values the modules accept."""

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible.errors import AnsibleFilterError

from ansible_collections.kuma.mesh.plugins.filter import dataplane as f
from ansible_collections.kuma.mesh.plugins.module_utils import strict_args

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
BUG = "bug of kuma.mesh"  # the wrapper's message for an exception past the grammars
GOOD = {
    "kuma_dp_state": "present", "kuma_dp_version": "2.14.3", "kuma_dp_cp_address": "https://cp:5678",
    "kuma_dp_token": False, "kuma_dp_token_src": "", "kuma_dp_ca_cert": False, "kuma_dp_ca_cert_src": "",
    "kuma_dp_checksum": "", "kuma_dp_user": "kuma-dp", "kuma_dp_uid": 5678, "kuma_dp_gid": 5678,
    "kuma_dp_environment": {}, "kuma_dp_extra_args": [], "kuma_dp_tproxy": {}, "kuma_dp_ip_family_mode": "dualstack",
    "kuma_dp_readiness_port": 9902, "kuma_dp_admin_port": None, "kuma_dp_ssh_port": 22,
}
NASTY = ["", " ", "\n", "\x00", "a\nb", "80\n", " 80 ", "+80", "0080", "1e3", "0x10", "\u0668\u0660", "\u00b2",
         "inf", "nan", "-1", "0", "65536", "99999999999999999999", "root", "2.14.3\n", "$(id)", "\ud800", "\u2028",
         -1, 0, 65536, 2 ** 64, True, False, None, 1.5, 80.0, float("inf"), float("nan"),
         [], [1], ["a"], {}, {"a": 1}, [None], [[]], "x" * 100000]
# more digits than str() converts (repr raises ValueError), made lazily: hypothesis reprs its strategies
huge_ints = st.integers(0, 3).map(lambda n: 10 ** (4300 + n))
scalars = st.one_of(st.none(), st.booleans(), st.integers(), huge_ints,
                    st.floats(), st.text(max_size=12), st.sampled_from(NASTY))
KEYS = ["redirect", "inbound", "outbound", "dns", "vnet", "port", "enabled", "capture_all", "exclude_ports",
        "networks", "kuma_dp_user", "ip_family_mode", "bogus", 1]
anything = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(KEYS), inner, max_size=4)),
    max_leaves=10,
)
# kuma_dp_tproxy shapes that reach the ports and lists
flows = st.fixed_dictionaries({}, optional={"port": scalars, "enabled": scalars, "exclude_ports": anything,
                                            "capture_all": scalars, "networks": anything})
tproxies = st.one_of(anything, st.fixed_dictionaries({}, optional={
    "redirect": st.one_of(anything, st.fixed_dictionaries({}, optional={
        "inbound": st.one_of(flows, scalars), "outbound": flows, "dns": flows, "vnet": flows})),
    "kuma_dp_user": scalars, "ip_family_mode": scalars}))


def _call(function, *args):
    """The filter's result, or its AnsibleFilterError (any other exception fails the test)."""
    try:
        return function(*args)
    except AnsibleFilterError as exc:
        message = str(exc)
        assert BUG not in message, message
        assert function.__name__ + ": " in message, message
        return exc


@FAST
@given(changes=st.dictionaries(st.sampled_from(sorted(GOOD)), anything, max_size=4))
def test_dp_input_errors_names_every_variable_and_never_raises(changes):
    v = dict(GOOD, **changes)
    errors = _call(f.dp_input_errors, v)
    assert isinstance(errors, list), errors
    for error in errors:
        assert re.match(r"^(set )?kuma_dp_[a-z_]+", error), error
        assert "\n" not in error
    for name, value in changes.items():
        if any(name in e for e in errors) or name in ("kuma_dp_token", "kuma_dp_ca_cert", "kuma_dp_token_src",
                                                      "kuma_dp_ca_cert_src"):
            continue
        # accepted: in the modules' grammar too
        if name in ("kuma_dp_uid", "kuma_dp_gid", "kuma_dp_readiness_port"):
            assert strict_args.type_problem("int", value) is None and 1 <= int(value) <= 2147483646, (name, value)
        if name in ("kuma_dp_extra_args", "kuma_dp_environment", "kuma_dp_tproxy") and value is not None:
            assert isinstance(value, {"kuma_dp_extra_args": list}.get(name, dict)), (name, value)


@FAST
@given(v=anything)
def test_dp_input_errors_of_something_else_than_a_mapping(v):
    result = _call(f.dp_input_errors, v)
    assert isinstance(result, (list, AnsibleFilterError))
    if not isinstance(v, dict):
        assert isinstance(result, AnsibleFilterError)


@FAST
@given(tproxy=tproxies, user=scalars, mode=st.one_of(scalars, st.sampled_from(["dualstack", "ipv4"])),
       ssh=st.one_of(scalars, st.integers(0, 65535)))
def test_dp_tproxy_options_returns_what_kuma_tproxy_accepts_or_refuses_by_name(tproxy, user, mode, ssh):
    options = _call(f.dp_tproxy_options, tproxy, user, mode, ssh)
    if isinstance(options, AnsibleFilterError):
        return
    assert strict_args.check(f.TPROXY_PASSED, options) == []
    for flow in ("inbound", "outbound", "dns"):
        assert 1 <= int(options["redirect"][flow]["port"]) <= 65535
    config = f.dp_tproxy_kuma_dp_config(options)  # what the first filter returns, the second takes
    assert config["ipFamilyMode"] == mode
    # and what dp_input_errors accepts, dp_tproxy_options accepts
    # (the role asserts the first, then calls the second)


@FAST
@given(tproxy=tproxies, ssh=st.one_of(scalars, st.integers(0, 65535)))
def test_what_dp_input_errors_accepts_the_other_filters_take(tproxy, ssh):
    v = dict(GOOD, kuma_dp_tproxy=tproxy, kuma_dp_ssh_port=ssh)
    if f.dp_input_errors(v):
        return
    options = f.dp_tproxy_options(tproxy, v["kuma_dp_user"], v["kuma_dp_ip_family_mode"], ssh)
    f.dp_tproxy_kuma_dp_config(options)


@FAST
@given(options=tproxies)
def test_dp_tproxy_kuma_dp_config_never_raises_anything_else(options):
    _call(f.dp_tproxy_kuma_dp_config, options)


@FAST
@given(value=anything)
def test_dp_systemd_quote_returns_one_safe_argument_or_refuses(value):
    quoted = _call(f.dp_systemd_quote, value)
    if isinstance(quoted, str):
        assert not re.search(r"[\x00-\x1f\x7f\ud800-\udfff]", quoted)
        assert isinstance(value, str) or strict_args.type_problem("int", value) is None


@FAST
@given(hosts_all=anything, hosts_checked=anything, drift=anything, to_repair=anything)
def test_dp_drift_report_never_raises_anything_else(hosts_all, hosts_checked, drift, to_repair):
    _call(f.dp_drift_report, hosts_all, hosts_checked, drift, to_repair)


@FAST
@given(hosts=st.lists(st.text(max_size=5), max_size=4), data=st.data())
def test_dp_drift_report_of_good_input_has_a_line_per_host(hosts, data):
    checked = data.draw(st.lists(st.sampled_from(hosts), max_size=4)) if hosts else []
    drift = dict((h, data.draw(st.lists(st.text(max_size=3), max_size=2))) for h in checked)
    assert len(f.dp_drift_report(hosts, checked, drift, checked)) == len(hosts) + 1


def errors(**changes):
    return f.dp_input_errors(dict(GOOD, **changes))


@pytest.mark.parametrize("changes, needle", [
    # before: OverflowError, ValueError (int too big for str), AttributeError
    ({"kuma_dp_uid": float("inf")}, "kuma_dp_uid must be 1-2147483646 (the kuma-dp user must not be root): inf is not a"),
    ({"kuma_dp_readiness_port": float("inf")}, "kuma_dp_readiness_port must be a port 1-65535 (got inf)"),
    ({"kuma_dp_user": 10 ** 5000}, "kuma_dp_user: <int that cannot be shown> is not a user name"),
    ({"kuma_dp_environment": {"A": 10 ** 5000}}, "the value of A must be a string or a number"),
    ({"kuma_dp_tproxy": {"redirect": [1]}}, "kuma_dp_tproxy.redirect: [1] is not a dictionary"),
    ({"kuma_dp_tproxy": {"redirect": {"inbound": {"exclude_ports": "22,80"}}}},
     "kuma_dp_tproxy.redirect.inbound.exclude_ports: '22,80' is not a list"),
    ({"kuma_dp_tproxy": {"redirect": {"inbound": {"exclude_ports": ["\u00b2"]}}}},
     "kuma_dp_tproxy.redirect.inbound.exclude_ports[0]: '\u00b2' is not a whole number"),
    ({"kuma_dp_tproxy": {"redirect": {"dns": {"enabled": "maybe"}}}},
     "kuma_dp_tproxy.redirect.dns.enabled: 'maybe' is not a boolean"),
    ({"kuma_dp_tproxy": {"bogus": 1}}, "kuma_dp_tproxy: 'bogus' is not an option"),
    ({"kuma_dp_tproxy": "redirect=x"}, "kuma_dp_tproxy: 'redirect=x' is not a mapping"),
    # before: accepted (int() is lenient), the modules refuse them
    ({"kuma_dp_uid": "\u0665\u0666\u0667\u0668"}, "kuma_dp_uid must be 1-2147483646"),
    ({"kuma_dp_uid": " 5678 "}, "kuma_dp_uid must be 1-2147483646"),
    ({"kuma_dp_uid": True}, "kuma_dp_uid must be 1-2147483646 (the kuma-dp user must not be root): True"),
    ({"kuma_dp_gid": 5678.5}, "kuma_dp_gid must be 1-2147483646"),
    ({"kuma_dp_readiness_port": 9902.5}, "kuma_dp_readiness_port must be a port 1-65535 (got 9902.5)"),
    ({"kuma_dp_readiness_port": "9902\n"}, "kuma_dp_readiness_port must be a port 1-65535 (got '9902\\n')"),
    ({"kuma_dp_ssh_port": "22 "}, "kuma_dp_ssh_port must be a port"),
    ({"kuma_dp_ssh_port": True}, "kuma_dp_ssh_port must be a port"),
    ({"kuma_dp_admin_port": 0}, "kuma_dp_admin_port must be a port 1-65535 (got 0)"),
    ({"kuma_dp_checksum": "a" * 64 + "\n"}, "kuma_dp_checksum must be 64 hex digits"),
    ({"kuma_dp_version": "2.14.3\n"}, "kuma_dp_version must look like 2.14.3"),
    ({"kuma_dp_version": 3}, "kuma_dp_version must look like 2.14.3 or 3.0.0 (got 3)"),
    ({"kuma_dp_cp_address": "https://cp:5678\nExecStartPre=/bin/sh"}, "kuma_dp_cp_address must be the control plane"),
    ({"kuma_dp_cp_address": ["https://cp"]}, "kuma_dp_cp_address must be the control plane URL"),
    ({"kuma_dp_user": "Kuma DP"}, "kuma_dp_user: 'Kuma DP' is not a user name"),
    ({"kuma_dp_user": ["kuma-dp"]}, "kuma_dp_user: ['kuma-dp'] is not a user name"),
    ({"kuma_dp_group": "wheel\n"}, "kuma_dp_group: 'wheel\\n' is not a group name"),
    ({"kuma_dp_state": "presnet"}, "kuma_dp_state must be present or absent (got 'presnet')"),
    ({"kuma_dp_ip_family_mode": "ipv6"}, "kuma_dp_ip_family_mode must be one of dualstack, ipv4 (got 'ipv6')"),
    ({"kuma_dp_environment": "A=1"}, "kuma_dp_environment must be a mapping of names to values (got 'A=1')"),
    ({"kuma_dp_environment": {"A": "\ud800"}}, "the value of A is not valid Unicode text"),
    ({"kuma_dp_environment": {"A": None}}, "the value of A must be a string or a number (got None)"),
    ({"kuma_dp_environment": {"A": float("nan")}}, "the value of A must be a string or a number (got nan)"),
    ({"kuma_dp_extra_args": "--a --b"}, "kuma_dp_extra_args must be a list of arguments (got '--a --b')"),
    ({"kuma_dp_extra_args": ["--ok", {"a": 1}]}, "kuma_dp_extra_args[1]: {'a': 1} is not a string"),
    ({"kuma_dp_extra_args": ["--ok", True]}, "kuma_dp_extra_args[1]: True is not a string"),
    ({"kuma_dp_extra_args": ["--a\x00"]}, "kuma_dp_extra_args[0]: '--a\\x00' has a control character"),
])
def test_bad_variables_are_named_with_their_value(changes, needle):
    found = errors(**changes)
    assert any(needle in e for e in found), found


@pytest.mark.parametrize("changes", [
    {"kuma_dp_uid": "5678", "kuma_dp_gid": "1", "kuma_dp_readiness_port": "9902"},  # as -e or an INI inventory gives them
    {"kuma_dp_ssh_port": 0}, {"kuma_dp_ssh_port": None}, {"kuma_dp_ssh_port": "0"}, {"kuma_dp_ssh_port": "2222"},
    {"kuma_dp_environment": {"A": 1, "B": 1.5, "C": "x y"}, "kuma_dp_extra_args": ["--a=1", 2]},
    {"kuma_dp_tproxy": {"redirect": {"inbound": {"port": "15006", "exclude_ports": ["8080", 22]}, "dns": None}}},
    {"kuma_dp_checksum": "sha256:" + "A" * 64}, {"kuma_dp_environment": None, "kuma_dp_extra_args": None},
    {"kuma_dp_state": "absent", "kuma_dp_cp_address": ""},
])
def test_good_variables_pass(changes):
    assert errors(**changes) == []


@pytest.mark.parametrize("call, needle", [
    (lambda: f.dp_input_errors(None), "dp_input_errors: the input must be a mapping of the dataplane role's variables"),
    (lambda: f.dp_input_errors("kuma_dp_uid=1"), "not 'kuma_dp_uid=1'"),
    (lambda: f.dp_tproxy_options({"redirect": {"inbound": {"exclude_ports": 5}}}, "u", "ipv4", 22),
     "dp_tproxy_options: kuma_dp_tproxy.redirect.inbound.exclude_ports: 5 is not a list"),
    (lambda: f.dp_tproxy_options({"redirect": {"inbound": {"exclude_ports": ["\u00b2"]}}}, "u", "ipv4", 22),
     "exclude_ports[0]: '\u00b2' is not a whole number"),
    (lambda: f.dp_tproxy_options({}, "u", "ipv4", "abc"), "dp_tproxy_options: ssh_port: 'abc' is not a whole number"),
    (lambda: f.dp_tproxy_options({}, "u", "ipv4", 70000), "ssh_port: 70000 is not in the range 0-65535"),
    (lambda: f.dp_tproxy_options({}, None, "ipv4", 22), "dp_tproxy_options: user: None is not a user name"),
    (lambda: f.dp_tproxy_options({}, "u\n", "ipv4", 22), "user: 'u\\n' is not a user name"),
    (lambda: f.dp_tproxy_options({}, "u", "ipv6", 22), "ip_family_mode: 'ipv6' is not one of dualstack, ipv4"),
    (lambda: f.dp_tproxy_options([], "u", "ipv4", 22), "kuma_dp_tproxy: [] is not a mapping of kuma_tproxy options"),
    (lambda: f.dp_tproxy_kuma_dp_config(None), "dp_tproxy_kuma_dp_config: None is not a mapping"),
    (lambda: f.dp_tproxy_kuma_dp_config({"redirect": {"inbound": {"port": "abc"}}}),
     "options.redirect.inbound.port: 'abc' is not a whole number"),
    (lambda: f.dp_tproxy_kuma_dp_config({"redirect": {"inbound": {"port": 0}}}),
     "options.redirect.inbound.port must be a port 1-65535 (got 0)"),
    (lambda: f.dp_tproxy_kuma_dp_config({"ip_family_mode": "ipv6"}), "options.ip_family_mode: 'ipv6' is not one of"),
    (lambda: f.dp_systemd_quote(10 ** 5000), "dp_systemd_quote: <int that cannot be shown> is not a string"),
    (lambda: f.dp_systemd_quote({"a": 1}), "dp_systemd_quote: {'a': 1} is not a string"),
    (lambda: f.dp_systemd_quote(None), "dp_systemd_quote: None is not a string"),
    (lambda: f.dp_systemd_quote(True), "dp_systemd_quote: True is not a string"),
    (lambda: f.dp_systemd_quote("a\ud800"), "is not valid Unicode text"),
    (lambda: f.dp_drift_report(None, [], {}, []), "dp_drift_report: hosts_all: None is not a list of host names"),
    (lambda: f.dp_drift_report(["a"], ["a"], [], []), "drift: [] is not a mapping of hosts to drift labels"),
    (lambda: f.dp_drift_report(["a"], ["a"], {"a": "unit"}, []), "drift['a']: 'unit' is not a list of drift labels"),
    (lambda: f.dp_drift_report(["a", 1], [], {}, []), "hosts_all: 1 is not a host name"),
])
def test_bad_filter_input_raises_a_named_filter_error(call, needle):
    with pytest.raises(AnsibleFilterError) as info:
        call()
    assert needle in str(info.value)
    assert BUG not in str(info.value)


def test_the_safety_net_is_a_filter_error_too():
    def broken(x):
        return x["missing"]
    wrapped = f._filter(broken)
    with pytest.raises(AnsibleFilterError, match="broken: could not be computed from its input .KeyError.; this is a bug"):
        wrapped({})
