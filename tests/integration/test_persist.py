"""kuma_tproxy's boot_persistence against real iptables in a network namespace: the
files it writes are exactly the rules it applied, a second run writes nothing and
starts no process but the reads, a failure after the writes puts files and rules
back, and state=absent leaves no trace.

systemd does not run on the test machine (the molecule scenarios tproxy-reboot and
tproxy-uninstall boot real systemd): a systemctl stand-in in front of PATH records
the calls and answers ``show`` from a state file. The unit file goes to
/etc/systemd/system under a name of its own, removed after each test."""

import json
import os
import stat
import uuid

import pytest

from netns import SYSTEM_PYTHON, run_module

from test_lifecycle import all_rules, with_foreign_rules

SYSTEMCTL = r'''#!%(python)s
import json, os, sys
state_path = os.environ["KM_SYSTEMCTL_STATE"]
args = sys.argv[1:]
with open(state_path + ".log", "a") as f:
    f.write(" ".join(args) + "\n")
try:
    with open(state_path) as f:
        state = json.load(f)
except (IOError, ValueError):
    state = {"ActiveState": "inactive", "UnitFileState": "disabled", "LoadState": "loaded", "NeedDaemonReload": "no"}
verb = args[0]
if verb == os.environ.get("KM_SYSTEMCTL_FAIL"):
    sys.stderr.write("injected %%s failure\n" %% verb)
    sys.exit(1)
if verb == "show":
    for key in ("LoadState", "ActiveState", "UnitFileState", "NeedDaemonReload"):
        print("%%s=%%s" %% (key, state[key]))
    sys.exit(0)
if verb == "enable":
    state["UnitFileState"] = "enabled"
if verb == "disable":
    state["UnitFileState"] = "disabled"
if verb == "start" or (verb in ("enable",) and "--now" in args):
    state["ActiveState"] = "active"
if verb == "stop" or (verb == "disable" and "--now" in args):
    state["ActiveState"] = "inactive"
if verb == "daemon-reload":
    state["NeedDaemonReload"] = "no"
with open(state_path, "w") as f:
    json.dump(state, f)
'''


class Systemd(object):
    def __init__(self, tmp):
        self.bindir = os.path.join(tmp, "sbin")
        os.makedirs(self.bindir, exist_ok=True)
        path = os.path.join(self.bindir, "systemctl")
        with open(path, "w") as f:
            f.write(SYSTEMCTL % dict(python=SYSTEM_PYTHON))
        os.chmod(path, stat.S_IRWXU)
        self.state = os.path.join(tmp, "systemd-state.json")
        self.env = {"KM_SYSTEMCTL_STATE": self.state}

    def calls(self):
        try:
            with open(self.state + ".log") as f:
                return [line.strip() for line in f]
        except IOError:
            return []

    def reset_calls(self):
        if os.path.exists(self.state + ".log"):
            os.unlink(self.state + ".log")

    def unit(self):
        with open(self.state) as f:
            return json.load(f)


@pytest.fixture
def setup(pair):
    systemd = Systemd(pair.tmp)
    unit = "kuma-mesh-it-%s.service" % uuid.uuid4().hex[:8]
    root = os.path.join(pair.tmp, "kuma-mesh")
    boot = {"state": "present", "dir": os.path.join(root, "transparent-proxy"),
            "script": os.path.join(pair.tmp, "bin", "kuma-mesh-tproxy-restore"), "unit": unit}
    yield pair, systemd, boot
    for path in ("/etc/systemd/system/" + unit,):
        if os.path.lexists(path):
            os.unlink(path)


def run(pair, systemd, args, **kwargs):
    kwargs.setdefault("env", systemd.env)
    kwargs.setdefault("path_prepend", systemd.bindir)
    return run_module(pair.host, args, **kwargs)


def files(boot):
    out = {}
    for path in [boot["script"], "/etc/systemd/system/" + boot["unit"]] + [
            os.path.join(boot["dir"], n) for n in ("ipv4.rules", "ipv6.rules", "iptables-mode")]:
        if os.path.exists(path):
            st = os.stat(path)
            with open(path) as f:
                out[path] = (f.read(), stat.S_IMODE(st.st_mode), st.st_uid, st.st_mtime_ns)
    return out


def test_present_writes_the_rules_it_applied_then_nothing(setup):
    pair, systemd, boot = setup
    args = {"kuma_dp_user": "kuma-dp", "boot_persistence": boot}
    first = run(pair, systemd, args)
    assert first["changed"] and first["families"] == ["ipv4", "ipv6"], first
    written = files(boot)
    for family in ("ipv4", "ipv6"):
        content, mode, uid, _mtime = written[os.path.join(boot["dir"], family + ".rules")]
        assert content.startswith("# Managed by kuma.mesh\n") and content.endswith(first["rules"][family])
        assert (mode, uid) == (0o640, 0)
    assert written[os.path.join(boot["dir"], "iptables-mode")][:2] == ("nft\n", 0o640)
    assert written[boot["script"]][1] == 0o755
    assert written["/etc/systemd/system/" + boot["unit"]][1] == 0o644
    assert stat.S_IMODE(os.stat(boot["dir"]).st_mode) == 0o750
    assert systemd.calls() == ["show -p LoadState,ActiveState,UnitFileState,NeedDaemonReload %s" % boot["unit"],
                               "daemon-reload", "enable --now %s" % boot["unit"]]
    assert systemd.unit()["UnitFileState"] == "enabled" and systemd.unit()["ActiveState"] == "active"
    # the restore script restores exactly these files into an empty namespace
    systemd.reset_calls()
    second = run(pair, systemd, args)
    assert not second["changed"], second
    assert files(boot) == written  # not even rewritten (mtimes)
    assert systemd.calls() == ["show -p LoadState,ActiveState,UnitFileState,NeedDaemonReload %s" % boot["unit"]]
    assert all(c.endswith("-save") or " show " in c for c in second["commands"]), second["commands"]
    assert second["boot_persistence"]["files_changed"] == [] and second["boot_persistence"]["systemctl"] == []


def test_the_restore_script_restores_the_written_rules(setup):
    pair, systemd, boot = setup
    first = run(pair, systemd, {"kuma_dp_user": "kuma-dp", "boot_persistence": boot})
    applied = all_rules(pair.host)
    pair.host.run("iptables-nft", "-t", "nat", "-F")
    pair.host.run("ip6tables-nft", "-t", "nat", "-F")
    for chain in ("KUMA_MESH_INBOUND", "KUMA_MESH_OUTBOUND", "KUMA_MESH_INBOUND_REDIRECT", "KUMA_MESH_OUTBOUND_REDIRECT"):
        pair.host.run("iptables-nft", "-t", "nat", "-X", chain, check=False)
        pair.host.run("ip6tables-nft", "-t", "nat", "-X", chain, check=False)
    for table in ("raw", "mangle"):
        pair.host.run("nft", "delete", "table", "ip", table, check=False)
        pair.host.run("nft", "delete", "table", "ip6", table, check=False)
    out = pair.host.run(boot["script"]).stdout
    assert "ipv4: Kuma's rules restored" in out and "ipv6: Kuma's rules restored" in out, out
    assert all_rules(pair.host) == applied
    assert "Kuma's rules are in place" in pair.host.run(boot["script"]).stdout
    assert first["changed"]


def test_families_no_longer_installed_lose_their_file(setup):
    pair, systemd, boot = setup
    run(pair, systemd, {"kuma_dp_user": "kuma-dp", "boot_persistence": boot})
    ipv4_only = run(pair, systemd, {"kuma_dp_user": "kuma-dp", "ip_family_mode": "ipv4", "boot_persistence": boot})
    assert ipv4_only["changed"] and ipv4_only["families"] == ["ipv4"]
    assert not os.path.exists(os.path.join(boot["dir"], "ipv6.rules"))
    assert os.path.exists(os.path.join(boot["dir"], "ipv4.rules"))
    assert os.path.join(boot["dir"], "ipv6.rules") in ipv4_only["boot_persistence"]["files_changed"]


def test_check_and_diff_mode_write_nothing_and_show_the_files(setup):
    pair, systemd, boot = setup
    before = all_rules(pair.host)
    checked = run(pair, systemd, {"kuma_dp_user": "kuma-dp", "boot_persistence": boot}, check=True, diff=True)
    assert checked["changed"]
    assert files(boot) == {} and not os.path.exists(boot["dir"]) and all_rules(pair.host) == before
    assert systemd.calls() == ["show -p LoadState,ActiveState,UnitFileState,NeedDaemonReload %s" % boot["unit"]]
    assert checked["boot_persistence"]["systemctl"] == ["daemon-reload", "enable --now %s" % boot["unit"]]
    headers = [d["after_header"] for d in checked["diff"]]
    assert "%s/ipv4.rules (wanted)" % boot["dir"] in headers
    assert "/etc/systemd/system/%s (wanted)" % boot["unit"] in headers


def test_a_failure_after_the_writes_puts_files_and_rules_back(setup):
    pair, systemd, boot = setup
    with_foreign_rules(pair.host)
    run(pair, systemd, {"kuma_dp_user": "kuma-dp", "boot_persistence": boot})
    before_rules, before_files = all_rules(pair.host), files(boot)
    failing = dict(systemd.env, KM_SYSTEMCTL_FAIL="daemon-reload")
    # new rules (inbound port) and a new unit file (another script path) -> daemon-reload fails
    args = {"kuma_dp_user": "kuma-dp", "redirect": {"inbound": {"port": 15007}},
            "boot_persistence": dict(boot, script=boot["script"] + "-2")}
    result = run(pair, systemd, args, env=failing)
    assert result.get("failed") and "injected daemon-reload failure" in result["msg"], result
    assert all_rules(pair.host) == before_rules
    now = files(boot)
    assert dict((k, v[:3]) for k, v in now.items()) == dict((k, v[:3]) for k, v in before_files.items())
    assert not os.path.exists(boot["script"] + "-2")
    assert any("put back" in r for r in result["rolled_back"]), result["rolled_back"]
    assert result["changed"] is False


def test_absent_removes_unit_files_and_the_empty_kuma_mesh_dir(setup):
    pair, systemd, boot = setup
    before = all_rules(pair.host)
    run(pair, systemd, {"kuma_dp_user": "kuma-dp", "boot_persistence": boot})
    systemd.reset_calls()
    gone = run(pair, systemd, {"state": "absent", "backend": "auto", "boot_persistence": dict(boot, state="absent")})
    assert gone["changed"]
    assert files(boot) == {} and not os.path.exists(os.path.dirname(boot["dir"]))
    assert systemd.calls()[1:] == ["disable --now %s" % boot["unit"], "daemon-reload"]
    assert all_rules(pair.host) == before
    systemd.reset_calls()
    again = run(pair, systemd, {"state": "absent", "backend": "auto", "boot_persistence": dict(boot, state="absent")})
    assert not again["changed"] and systemd.calls() == [], again


def test_boot_persistence_absent_with_the_rules_present(setup):
    pair, systemd, boot = setup
    run(pair, systemd, {"kuma_dp_user": "kuma-dp", "boot_persistence": boot})
    rules = all_rules(pair.host)
    none = run(pair, systemd, {"kuma_dp_user": "kuma-dp", "boot_persistence": dict(boot, state="absent")})
    assert none["changed"] and files(boot) == {}
    assert all_rules(pair.host) == rules
    assert "stores_changed" in none and none["stores_changed"] == []
