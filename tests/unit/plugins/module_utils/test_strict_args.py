"""The boundary: every module's raw options checked against its argument spec (strict_args),
as properties from the complement of each type's grammar and as a table of nasty values
run through the real modules' main() (refused before anything is read or changed)."""

import json
import os
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible.module_utils import _internal as ansible_internal
from ansible.module_utils.testing import patch_module_args

from ansible_collections.kuma.mesh.plugins.module_utils import dataplane, strict_args
from ansible_collections.kuma.mesh.plugins.module_utils import tproxy as tproxy_engine
from ansible_collections.kuma.mesh.plugins.modules import kuma_dataplane, kuma_dp_host, kuma_tproxy, kuma_tproxy_check

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SPEC = dict(
    port=dict(type="int"),
    ratio=dict(type="float"),
    flag=dict(type="bool"),
    name=dict(type="str", choices=["a", "b"]),
    ports=dict(type="list", elements="int"),
    outer=dict(type="dict", options=dict(inner=dict(type="dict", options=dict(port=dict(type="int"))))),
    items=dict(type="list", elements="dict", options=dict(port=dict(type="int", required=True))),
    secret=dict(type="str", no_log=True),
)
DECIMAL = re.compile(r"\A-?(0|[1-9][0-9]*)\Z")
anything = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    max_leaves=8,
)
not_an_int = st.one_of(
    st.text(max_size=12).filter(lambda t: not DECIMAL.match(t)),
    st.floats(), st.booleans(), st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
    st.sampled_from([" 80 ", "80\n", "+80", "0080", "1e3", "0x10", "\u0668\u0660", "inf", "nan", "1e100000", "80.0", ""]),
)


@FAST
@given(params=st.dictionaries(st.sampled_from(sorted(SPEC) + ["bogus", "_ansible_check_mode"]), anything, max_size=6))
def test_check_never_raises_and_every_error_names_an_option(params):
    errors = strict_args.check(SPEC, params)
    assert isinstance(errors, list)
    for error in errors:
        assert re.match(r"^(options|[a-z_]+(\[[0-9]+\])?(\.[a-z_]+(\[[0-9]+\])?)*): ", error), error
        assert "\n" not in error


@FAST
@given(value=not_an_int, where=st.sampled_from(["port", "ports", "outer", "items"]))
def test_values_outside_the_int_grammar_are_refused_with_the_dotted_path(value, where):
    params = {"port": value, "ports": [value], "outer": {"inner": {"port": value}}, "items": [{"port": value}]}
    params = {where: params[where]}
    path = {"port": "port", "ports": "ports[0]", "outer": "outer.inner.port", "items": "items[0].port"}[where]
    errors = strict_args.check(SPEC, params)
    assert len(errors) == 1 and errors[0].startswith(path + ": "), errors
    assert strict_args.show(value) in errors[0] or "cannot be shown" in errors[0]


@FAST
@given(value=st.one_of(st.integers(-(10 ** 6), 10 ** 6), st.integers(-(10 ** 6), 10 ** 6).map(str)))
def test_ints_and_decimal_strings_pass(value):
    assert strict_args.check(SPEC, {"port": value, "ports": [value], "items": [{"port": value}]}) == []


@pytest.mark.parametrize("params, expected", [
    ({"outer": [1]}, "outer: [1] is not a dictionary"),
    ({"outer": "x=1"}, "outer: 'x=1' is not a dictionary"),
    ({"outer": {"inner": {"port": 1, "bogus": 2}}}, "outer.inner: 'bogus' is not an option (known: port)"),
    ({"ports": "80,81"}, "ports: '80,81' is not a list"),
    ({"ports": [None]}, "ports[0]: is null"),
    ({"items": [{}]}, "items[0].port: is required"),
    ({"flag": "maybe"}, "flag: 'maybe' is not a boolean"),
    ({"flag": 2}, "flag: 2 is not a boolean"),
    ({"ratio": float("nan")}, "ratio: nan is not a finite number"),
    ({"ratio": "1e400"}, "ratio: '1e400' is not a number"),
    ({"name": "A"}, "name: 'A' is not one of a, b"),
    ({"name": 2.5}, "name: 2.5 is not a string"),
    ({"secret": {"token": "s3cr3t"}}, "secret: <hidden: no_log option> is not a string"),
])
def test_table(params, expected):
    errors = strict_args.check(SPEC, params)
    assert any(e.startswith(expected) for e in errors), errors
    assert "s3cr3t" not in str(errors)


def test_show_never_raises_and_escapes():
    assert strict_args.show("a\nb\x00") == "'a\\nb\\x00'"
    assert "cannot be shown" in strict_args.show(10 ** 5000)
    assert len(strict_args.show("x" * 10000)) < 210


# -- through the modules' main(): refused at the boundary, nothing run ----------------------

@pytest.fixture(autouse=True)
def module_side(monkeypatch):
    monkeypatch.setattr(ansible_internal, "is_controller", False)


def _accepted(*_args, **_kwargs):
    raise AssertionError("bad input reached the module's work")


def run_main(module, args, capsys):
    with patch_module_args(dict(args)):
        with pytest.raises(SystemExit) as exc:
            module.main()
    result = json.loads(capsys.readouterr().out)
    assert exc.value.code == 1, result
    return result


TPROXY = {"kuma_dp_user": "kuma-dp"}
DP = dict(path="/nonexistent-kuma-mesh/dp.yaml", kuma_version="2.14.3", name="web-01", address="10.0.0.10",
          inbounds=[dict(port=8080, tags={"kuma.io/service": "web"})])
HOST = dict(user="kuma-dp", group="kuma-dp", uid=5678, gid=5678, config_dir="/etc/kuma", install_dir="/opt/kuma",
            version="2.14.3", binaries=["kuma-dp"], archive_top="kuma-2.14.3")
NASTY = [
    (kuma_tproxy, TPROXY, {"redirect": {"inbound": {"port": " 80 "}}}, "redirect.inbound.port: ' 80 '"),
    (kuma_tproxy, TPROXY, {"redirect": {"inbound": {"port": "\u0668\u0660"}}}, "redirect.inbound.port: '\u0668\u0660'"),
    (kuma_tproxy, TPROXY, {"redirect": {"inbound": {"port": "1e3"}}}, "redirect.inbound.port: '1e3'"),
    (kuma_tproxy, TPROXY, {"redirect": {"inbound": {"port": 80.0}}}, "redirect.inbound.port: 80.0"),
    (kuma_tproxy, TPROXY, {"redirect": {"outbound": {"exclude_ports": ["80\n"]}}}, "redirect.outbound.exclude_ports[0]: '80\\n'"),
    (kuma_tproxy, TPROXY, {"redirect": {"outbound": {"exclude_ports": "22"}}}, "redirect.outbound.exclude_ports: '22' is not a list"),
    (kuma_tproxy, TPROXY, {"redirect": {"inbound": "x"}}, "redirect.inbound: 'x' is not a dictionary"),
    (kuma_tproxy, TPROXY, {"log": [1]}, "log: [1] is not a dictionary"),
    (kuma_tproxy, TPROXY, {"wait": "inf"}, "wait: 'inf'"),
    (kuma_tproxy, TPROXY, {"retry": {"sleep_between_retries": "nan"}}, "retry.sleep_between_retries: 'nan'"),
    (kuma_tproxy, TPROXY, {"boot_persistence": {"state": "on"}}, "boot_persistence.state: 'on' is not one of"),
    (kuma_tproxy, TPROXY, {"boot_persistence": {"unit": "kuma.service\n"}}, "boot_persistence.unit: 'kuma.service\\n'"),
    (kuma_tproxy, TPROXY, {"config_file": "/etc/kuma/../shadow"}, "config_file: '/etc/kuma/../shadow' has a '..' component"),
    (kuma_dataplane, DP, {"inbounds": [{"port": "inf"}]}, "inbounds[0].port: 'inf'"),
    (kuma_dataplane, DP, {"inbounds": [{"port": 8080, "service_probe": [1]}]}, "inbounds[0].service_probe: [1] is not a dictionary"),
    (kuma_dataplane, DP, {"metrics": [1]}, "metrics: [1] is not a dictionary"),
    (kuma_dataplane, DP, {"path": "/dev/null"}, "path: '/dev/null' exists and is not a regular file"),
    (kuma_dataplane, DP, {"path": "relative.yaml"}, "path: 'relative.yaml' is not an absolute path"),
    (kuma_dataplane, DP, {"path": "/tmp/../etc/x"}, "path: '/tmp/../etc/x' has a '..' component"),
    (kuma_dataplane, DP, {"mode": "0640\n"}, "mode: '0640\\n' is not a file mode"),
    (kuma_dataplane, DP, {"kuma_version": 2.14}, "kuma_version: 2.14 is not a string"),
    (kuma_dp_host, HOST, {"uid": "5678\n"}, "uid: '5678\\n'"),
    (kuma_dp_host, HOST, {"uid": 0}, "uid: 0 is refused"),
    (kuma_dp_host, HOST, {"environment": {"A\n": "x"}}, "environment: the name 'A\\n' is not a variable name"),
    (kuma_dp_host, HOST, {"unit_name": "ssh.service"}, "unit_path: '/etc/systemd/system/kuma-dp.service' is not a file named after"),
    (kuma_dp_host, HOST, {"readiness_url": "http://a b:9902/ready"}, "readiness_url: 'http://a b:9902/ready' is not an http"),
    (kuma_dp_host, HOST, {"readiness_url": "x"}, "readiness_url: 'x' is not an http"),
    (kuma_dp_host, HOST, {"archive_top": "../x"}, "archive_top: '../x' is not a directory name"),
    (kuma_dp_host, HOST, {"app_users": [10 ** 30]}, "app_users[0]: 1000000000000000000000000000000 is not a user name or a uid"),
    (kuma_dp_host, HOST, {"token": {"t": "s3cr3t"}}, "token: <hidden: no_log option> is not a string"),
    (kuma_dp_host, HOST, {"archive": {"name": "x", "path": "/tmp/x", "timeout": "inf"}}, "archive.timeout: 'inf'"),
    (kuma_tproxy_check, {}, {"timeout": "nan"}, "timeout: 'nan'"),
    (kuma_tproxy_check, {}, {"families": ["ipv5"]}, "families[0]: 'ipv5' is not one of ipv4, ipv6"),
    (kuma_tproxy_check, {}, {"outbound_port": "\u0661"}, "outbound_port: '\u0661'"),
]


@pytest.mark.parametrize("module, base, bad, expected", NASTY, ids=[repr(n[2])[:60] for n in NASTY])
def test_nasty_values_fail_at_the_boundary_naming_option_and_value(monkeypatch, capsys, module, base, bad, expected):
    # what comes after the checks is replaced: an input wrongly accepted fails the test, harmlessly
    monkeypatch.setattr(tproxy_engine.HostLock, "acquire", _accepted)
    monkeypatch.setattr(dataplane, "_write", _accepted)
    for name in ("gather", "run_checks"):
        if hasattr(module, name):
            monkeypatch.setattr(module, name, _accepted)
    result = run_main(module, dict(base, **bad), capsys)
    assert result["failed"] is True and result["changed"] is False, result
    assert expected in result["msg"], result["msg"]
    assert "exception" not in result and "Traceback" not in json.dumps(result)
    assert "s3cr3t" not in json.dumps(result)


def test_every_module_builds_its_ansiblemodule_through_strict_module():
    """A new module gets the boundary check too: none may call AnsibleModule(...) itself."""
    modules = os.path.join(os.path.dirname(os.path.dirname(strict_args.__file__)), "modules")
    names = sorted(n for n in os.listdir(modules) if n.endswith(".py") and not n.startswith("_"))
    assert len(names) >= 5, names
    for name in names:
        with open(os.path.join(modules, name)) as f:
            source = f.read()
        assert re.search(r"strict_module\(\s*AnsibleModule,", source), name
        assert "AnsibleModule(" not in source, name


def test_choices_take_subclasses_of_str_as_the_controller_templates_them():
    """ansible-core 2.19+ hands filters tagged str/int subclasses: a choice must still match them
    (the dataplane role's filters check kuma_dp_tproxy with this module on the controller)."""

    class TaggedStr(str):
        pass

    class TaggedInt(int):
        pass

    spec = {"mode": {"type": "str", "choices": ["dualstack", "ipv4"]}, "n": {"type": "int", "choices": [1, 2]}}
    assert strict_args.check(spec, {"mode": TaggedStr("dualstack"), "n": TaggedInt(2)}) == []
    assert strict_args.check(spec, {"n": True}) != []
