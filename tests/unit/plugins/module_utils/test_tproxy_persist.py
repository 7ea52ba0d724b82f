"""tproxy_persist's pure parts: its options, firewalld's unit read from unit files,
firewalld.conf's RFC3964_IPv4 line, systemctl show, and the files it writes.
The writes themselves run against real iptables in tests/integration/test_persist.py."""

import os

import pytest

from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_persist as persist
from ansible_collections.kuma.mesh.plugins.module_utils.tproxy import ARGUMENT_SPEC, run
from ansible_collections.kuma.mesh.plugins.module_utils.tproxy_config import ARGUMENT_SPEC as RULES_SPEC


def no_commands(args, **kwargs):
    """The run_command of a run that must fail (or stop) before any process is started."""
    raise AssertionError("started %r" % (args,))


def test_the_module_spec_is_the_rules_and_the_persistence_options():
    assert set(ARGUMENT_SPEC) == set(RULES_SPEC) | set(persist.ARGUMENT_SPEC)
    assert ARGUMENT_SPEC["backend"]["choices"] == ["auto", "iptables", "firewalld"]


def test_split_defaults_and_leaves_the_rule_options():
    options, rest, errors = persist.split({"kuma_dp_user": "kuma-dp", "backend": "auto"})
    assert errors == []
    assert options == persist.Options("auto", "keep", "ignore", persist.DEFAULT_RFC3964_BACKUP, None)
    assert rest == {"kuma_dp_user": "kuma-dp", "backend": "iptables"}
    options, rest, errors = persist.split({"backend": "firewalld", "boot_persistence": {"state": "absent"}})
    assert rest["backend"] == "firewalld"
    assert options.boot == persist.Boot("absent", persist.DEFAULT_DIR, persist.DEFAULT_SCRIPT, persist.DEFAULT_UNIT)


@pytest.mark.parametrize(
    "given, expected",
    [
        ({"backend": "nft"}, "backend: 'nft' is not one of auto, iptables, firewalld"),
        ({"other_backend": "drop"}, "other_backend: 'drop' is not one of keep, remove"),
        ({"firewalld_ipv6_redirect": True}, "firewalld_ipv6_redirect: True is not one of ignore, allow, refuse"),
        ({"firewalld_rfc3964_backup": "rel/path"}, "firewalld_rfc3964_backup: 'rel/path' is not an absolute path"),
        ({"boot_persistence": {"dir": "/etc"}}, "boot_persistence.dir: '/etc' is not a path of its own"),
        ({"boot_persistence": {"dir": "/etc/kuma/../x"}}, "boot_persistence.dir: '/etc/kuma/../x' has a '..' component"),
        ({"boot_persistence": {"script": "/usr/local/sbin/a b"}}, "boot_persistence.script: '/usr/local/sbin/a b' contains"),
        ({"boot_persistence": {"unit": "x.timer"}}, "boot_persistence.unit: 'x.timer' is not a systemd service name"),
        ({"boot_persistence": {"unit": "../x.service"}}, "boot_persistence.unit: '../x.service' is not"),
        ({"boot_persistence": {"state": "on"}}, "boot_persistence.state: 'on' is not one of present, absent"),
        ({"boot_persistence": "yes"}, "boot_persistence: 'yes' is not a dictionary"),
        ({"boot_persistence": {"units": "x"}}, "boot_persistence: unknown option(s) units"),
    ],
)
def test_bad_options_are_named_and_nothing_is_touched(given, expected):
    _options, _rest, errors = persist.split(given)
    assert any(e.startswith(expected) for e in errors), errors
    # through the engine: refused before the lock or any read, never a traceback
    outcome = run(dict(given, kuma_dp_user="kuma-dp"), no_commands)
    assert outcome.failed and expected in outcome.failed, outcome.failed
    assert outcome.result["changed"] is False and outcome.result["commands"] == []


def unit_tree(tmp_path, where="usr", enabled=False, masked=False):
    etc, usr = tmp_path / "etc", tmp_path / "usr"
    etc.mkdir()
    usr.mkdir()
    (usr if where == "usr" else etc).joinpath("firewalld.service").write_text("[Unit]\n")
    if enabled:
        (etc / "multi-user.target.wants").mkdir()
        os.symlink(str(usr / "firewalld.service"), str(etc / "multi-user.target.wants" / "firewalld.service"))
    if masked:
        os.unlink(str(etc / "firewalld.service")) if (etc / "firewalld.service").exists() else None
        os.symlink("/dev/null", str(etc / "firewalld.service"))
    return (str(etc), str(usr))


def test_firewalld_unit_from_unit_files(tmp_path):
    assert persist.firewalld_unit((str(tmp_path / "a"), str(tmp_path / "b"))) == persist.FirewalldUnit(False, False)


@pytest.mark.parametrize("enabled, masked, expected", [
    (False, False, (True, False)),
    (True, False, (True, True)),
    (True, True, (True, False)),
])
def test_firewalld_unit_enabled_and_masked(tmp_path, enabled, masked, expected):
    unit = persist.firewalld_unit(unit_tree(tmp_path, enabled=enabled, masked=masked))
    assert tuple(unit) == expected
    assert persist.resolve_backend("auto", unit) == ("firewalld" if expected == (True, True) else "iptables")
    assert persist.resolve_backend("iptables", unit) == "iptables"


@pytest.mark.parametrize("text, line, off", [
    ("", "", False),
    ("# RFC3964_IPv4=no\nFOO=1\n", "", False),
    ("RFC3964_IPv4=yes\n", "RFC3964_IPv4=yes", False),
    ("RFC3964_IPv4=yes\n  RFC3964_IPv4 = No \n", "RFC3964_IPv4 = No", True),
    ('RFC3964_IPv4="false"\n', 'RFC3964_IPv4="false"', True),
    ("RFC3964_IPv4=0", "RFC3964_IPv4=0", True),
])
def test_rfc3964_line_and_whether_it_is_off(text, line, off):
    assert persist.rfc3964_line(text) == line
    assert persist.rfc3964_off(persist.rfc3964_line(text)) is off


def test_set_line_as_lineinfile():
    assert persist.set_line("A=1\nRFC3964_IPv4=yes\nB=2\n", "RFC3964_IPv4=no") == "A=1\nRFC3964_IPv4=no\nB=2\n"
    assert persist.set_line("A=1", "RFC3964_IPv4=no") == "A=1\nRFC3964_IPv4=no\n"
    assert persist.set_line("A=1\nRFC3964_IPv4=no\n", "") == "A=1\n"
    # the saved line put back gives the file firewalld had
    original = "# comment\nRFC3964_IPv4=yes\nIPv6_rpfilter=yes\n"
    changed = persist.set_line(original, "RFC3964_IPv4=no")
    assert persist.set_line(changed, persist.rfc3964_line(original)) == original


def test_parse_show():
    state = persist.parse_show("LoadState=loaded\nActiveState=inactive\nUnitFileState=disabled\nNeedDaemonReload=yes\n")
    assert state == persist.UnitState("loaded", "inactive", "disabled", True)
    assert persist.parse_show("") == persist.UnitState("", "", "", False)


def test_the_files_are_the_role_templates_with_the_new_header():
    boot = persist.Boot("present", "/etc/kuma-mesh/transparent-proxy", "/usr/local/sbin/kuma-mesh-tproxy-restore",
                        "kuma-mesh-tproxy.service")
    unit = persist.unit_file(boot).decode()
    assert unit.startswith("# Managed by kuma.mesh\n[Unit]\n")
    assert "ConditionPathExists=/etc/kuma-mesh/transparent-proxy/iptables-mode\n" in unit
    assert "ExecStart=/usr/local/sbin/kuma-mesh-tproxy-restore\n" in unit
    assert "Before=network-pre.target kuma-dp.service shutdown.target\n" in unit
    script = persist.script_file(boot).decode()
    assert script.startswith("#!/bin/sh\n# Managed by kuma.mesh\n")
    assert "dir=/etc/kuma-mesh/transparent-proxy\n" in script
    assert persist.script_file(boot._replace(dir="/etc/~kuma")).decode().count("dir='/etc/~kuma'\n") == 1
    rules = persist.rules_file("ipv6", "kuma-mesh-tproxy.service", "* nat\nCOMMIT\n").decode()
    assert rules == (
        "# Managed by kuma.mesh\n# Kuma's transparent-proxy rules for ipv6, as kuma.mesh.kuma_tproxy last\n"
        "# applied them: iptables-restore --noflush input, restored at boot by\n# kuma-mesh-tproxy.service.\n"
        "* nat\nCOMMIT\n"
    )


def test_files_planned_per_family():
    boot = persist.Boot("present", "/d/x", "/s/restore", "u.service")
    bp = persist.BootPersistence(boot, None, None, unit_dir="/units")
    wanted, remove = bp.files({"ipv4": "R4"}, "legacy")
    assert sorted(wanted) == ["/d/x/iptables-mode", "/d/x/ipv4.rules", "/s/restore", "/units/u.service"]
    assert wanted["/d/x/iptables-mode"] == (b"legacy\n", 0o640)
    assert wanted["/s/restore"][1] == 0o755 and wanted["/units/u.service"][1] == 0o644
    assert remove == ["/d/x/ipv6.rules"]


# -- missing commands (the engine's check before anything is touched) ------------------

def engine_with(executables, ip="/usr/sbin/ip", has_ipv6=True, passthrough=False, **options):
    from ansible_collections.kuma.mesh.plugins.module_utils import tproxy
    from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_config as config
    from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_facts as facts
    from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_host as host

    engine = tproxy.Engine(dict(options), no_commands)
    engine.params = config.effective_params(dict(dict((k, None) for k in config.ARGUMENT_SPEC), **options))[0]
    engine.present = engine.params["state"] == "present"
    engine.facts = facts.Facts(
        uid="5678", uid_error=None, dns_servers=(), dns_ignored=(), resolv_conf_exists=True, kuma_backup=None,
        loopback="lo", ssh=host.SshSession(), has_local_ipv6=has_ipv6, passthrough_ipv6=passthrough,
        executables=dict((k, facts.Binaries("/x/save", "/x/restore")) for k in executables),
        legacy_in_use={"ipv4": False, "ipv6": False}, default_mode="nft", ip=ip, nft=None, executable_errors=(), features={})
    return engine


BOTH = [("nft", "ipv4"), ("nft", "ipv6")]


@pytest.mark.parametrize("executables, ip, options, missing", [
    (BOTH, "/usr/sbin/ip", {}, None),
    ([], "/usr/sbin/ip", {}, ["iptables-save", "iptables-restore", "ip6tables-save", "ip6tables-restore"]),
    ([("nft", "ipv4")], "/usr/sbin/ip", {}, ["ip6tables-save", "ip6tables-restore"]),
    ([("nft", "ipv4")], "/usr/sbin/ip", {"ip_family_mode": "ipv4"}, None),
    (BOTH, None, {}, ["ip"]),
    (BOTH, None, {"ip_family_mode": "ipv4"}, None),
    (BOTH, "/usr/sbin/ip", {"iptables_mode": "legacy"},
     ["iptables-legacy-save", "iptables-legacy-restore", "ip6tables-legacy-save", "ip6tables-legacy-restore"]),
    ([], None, {"state": "absent"}, None),
])
def test_missing_commands_fail_before_anything_is_touched(executables, ip, options, missing):
    from ansible_collections.kuma.mesh.plugins.module_utils.tproxy_undo import TproxyFailure

    engine = engine_with(executables, ip=ip, **options)
    if missing is None:
        engine.check_commands()
        return
    with pytest.raises(TproxyFailure) as err:
        engine.check_commands()
    assert err.value.fields["missing_commands"] == missing
    assert err.value.msg.startswith("missing commands: " + ", ".join(missing))
    assert len(engine.undo) == 0 and engine.commands == []


def test_no_ip_needed_when_the_passthrough_address_is_there():
    engine_with(BOTH, ip=None, passthrough=True).check_commands()
