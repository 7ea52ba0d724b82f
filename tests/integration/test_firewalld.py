"""backend: firewalld against a real firewalld, in systemd containers (Debian 12 and 13).

The tests run the real module inside a booted container from
localhost/kuma-mesh-debian:<tag>-firewalld the way Ansible does (an args file, JSON
out). One container per Debian release serves every test of the session
(fwhost.py, the session fixture ``firewalld_hosts`` in conftest.py); before each test
it is put back in the state it had right after its first boot, proven by comparing
that state, or replaced by a freshly booted container.

Containers are always removed. Without podman or the images the tests are
skipped, or fail when CI=true.
"""

import json
import os

import pytest

from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_config as config
from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_firewalld as fwd
from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_iptables as ipt
from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_rules as rules
from fwhost import ROOT, TAGS, podman

GOLDEN = os.path.join(os.path.dirname(ROOT), "shared", "kuma-golden", "firewalld")

SETTINGS = {
    "kuma_dp_user": "kuma-dp",
    "backend": "firewalld",
    "redirect": {
        "dns": {"capture_all": True},
        "outbound": {"exclude_ips": ["192.0.2.10", "2001:db8::10"]},
        "inbound": {"exclude_ports": [2222]},
    },
    "drop_invalid_packets": True,
}
FOREIGN_RULE = ["ipv4", "filter", "INPUT", "0", "-p", "tcp", "--dport", "9999", "-j", "ACCEPT"]
FOREIGN_SAVED = "-A INPUT -p tcp -m tcp --dport 9999 -j ACCEPT"


@pytest.fixture(params=TAGS)
def host(request, firewalld_hosts):
    """The session's container of this Debian release, as it was right after its first boot."""
    reason = firewalld_hosts.unavailable(request.param)
    if reason:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("firewalld integration tests cannot run in CI: " + reason)
        pytest.skip(reason)
    return firewalld_hosts.clean(request.param)


def wanted(settings=None, family="ipv4"):
    params = config.with_defaults(dict((k, v) for k, v in (settings or SETTINGS).items() if k != "backend"))
    return rules.build(config.family_config(params, ipv6=family == "ipv6", uid="5678"))


def kuma_in_iptables(tables, extra=None):
    """{(table, chain): [Kuma's lines in order]} as iptables-save shows them (``extra``: Kuma's
    uncommented lines, claimed by equality)."""
    out = {}
    for name, part in ipt.owned_part(tables, extra).items():
        for chain, entries in part.builtin.items():
            out[(name, chain)] = [line for _i, line in entries]
        for chain, lines in part.custom.items():
            out[(name, chain)] = list(lines)
    return out


def expected_in_iptables(ruleset):
    out = {}
    for table in ruleset.tables:
        for chain in table.builtin + table.custom:
            lines = [r.saved(ruleset.comments) for r in chain.head + chain.tail]
            if lines or chain in table.custom:
                out[(table.name, chain.name)] = lines
    return out


def assert_installed(h, settings=None):
    """Kuma's rules are in direct.xml, in firewalld's runtime and in the kernel, in Kuma's order."""
    rulesets = [wanted(settings, family) for family in fwd.FAMILIES]
    detector = fwd.Detector(fwd.claims_of(rulesets), any_priority=not rulesets[0].comments)
    chains, found = [], []
    for rs in rulesets:
        family = rs.family
        c, r = fwd.wanted_entries(rs)
        chains += c
        found += r
        assert kuma_in_iptables(h.save(family), ipt.uncommented(rs)) == expected_in_iptables(rs), family
    assert detector.part(h.permanent()) == (set(chains), set(found))
    assert set(fwd.rule_text(r) for r in found) <= set(h.runtime_rules())
    assert set(fwd.chain_text(c) for c in chains) <= set(h.runtime_chains())


def assert_no_kuma(h):
    assert "KUMA" not in h.direct_xml()
    assert not [line for line in h.runtime_rules() + h.runtime_chains() if "KUMA" in line or "kuma/mesh" in line]
    for family in fwd.FAMILIES:
        assert ipt.owned_part(h.save(family)) == {}, family


def test_install_idempotence_reload_restart_reboot_uninstall(host):
    host.sh("firewall-cmd -q --permanent --direct --add-rule %s && firewall-cmd -q --direct --add-rule %s"
            % (" ".join(FOREIGN_RULE), " ".join(FOREIGN_RULE)))

    first = host.module(SETTINGS, diff=True)
    assert first.get("failed") is not True, first.get("msg")
    assert first["changed"] and first["firewalld"]["running"]
    assert first["firewalld"]["permanent_changed"] and first["firewalld"]["runtime_changed"]
    assert first["families"] == ["ipv4", "ipv6"]
    assert [d["after_header"] for d in first["diff"]][:2] == [
        "firewalld permanent direct ipv4 (Kuma's entries wanted)",
        "firewalld permanent direct ipv6 (Kuma's entries wanted)",
    ]
    assert_installed(host)
    assert "inet6 ::6/128" in host.sh("ip -6 addr show dev lo").stdout

    second = host.module(SETTINGS)
    assert not second["changed"] and second["firewalld"]["calls"] == []

    # check mode: reports the change, writes nothing
    before = host.direct_xml()
    other = dict(SETTINGS, redirect=dict(SETTINGS["redirect"], outbound=dict(SETTINGS["redirect"]["outbound"], port=15002)))
    checked = host.module(other, check=True)
    assert checked["changed"] and checked["firewalld"]["calls"] == []
    assert host.direct_xml() == before
    assert_installed(host)

    host.sh("firewall-cmd -q --reload")
    host.wait_firewalld()
    assert_installed(host)
    host.sh("systemctl restart firewalld")
    host.wait_firewalld()
    assert_installed(host)
    podman("restart", "-t", "5", host.name)  # a fresh network namespace: a reboot for iptables
    host.boot()
    assert_installed(host)
    rebooted = host.module(SETTINGS)  # ::6/128 is runtime only: the run after a reboot adds it again
    assert rebooted["changed"] and rebooted["firewalld"]["calls"] == []
    assert "inet6 ::6/128" in host.sh("ip -6 addr show dev lo").stdout
    assert not host.module(SETTINGS)["changed"]

    # a changed setting replaces only what differs
    changed = host.module(other)
    assert changed["changed"]
    assert len(changed["firewalld"]["calls"]) == 5  # 2 x (remove, add) + config.direct.update
    assert_installed(host, other)

    gone = host.module({"state": "absent", "backend": "firewalld"})
    assert gone["changed"]
    assert_no_kuma(host)
    assert "inet6 ::6/128" not in host.sh("ip -6 addr show dev lo").stdout
    # the foreign direct rule survived install, change and uninstall, permanent and runtime
    assert fwd.rule_text(fwd.normal_rule(FOREIGN_RULE[:3] + [0, FOREIGN_RULE[4:]])) in host.runtime_rules()
    assert '<rule ipv="ipv4" table="filter" chain="INPUT" priority="0">-p tcp --dport 9999 -j ACCEPT</rule>' in host.direct_xml()
    assert FOREIGN_SAVED in host.save("ipv4")["filter"].rules["INPUT"]
    assert not host.module({"state": "absent", "backend": "firewalld"})["changed"]


def test_offline_install_takes_effect_when_firewalld_starts(host):
    foreign = ('<?xml version="1.0" encoding="utf-8"?>\n<direct>\n'
               '  <rule ipv="ipv4"  table="filter" chain="INPUT" priority="0">-p tcp --dport 9999 -j ACCEPT</rule>\n'
               '</direct>\n')
    host.sh("systemctl stop firewalld && cat > /etc/firewalld/direct.xml", stdin=foreign)
    result = host.module(SETTINGS)
    assert result.get("failed") is not True, result.get("msg")
    assert result["changed"] and not result["firewalld"]["running"]
    assert "firewalld is not running" in json.dumps(result.get("warnings"))  # ansible-core 2.19: dicts
    text = host.direct_xml()
    assert text.startswith(foreign.partition("</direct>")[0])  # the foreign entry kept byte for byte
    for family in fwd.FAMILIES:
        assert ipt.owned_part(host.save(family)) == {}
    assert not host.module(SETTINGS)["changed"]

    host.sh("systemctl start firewalld")
    host.wait_firewalld()
    assert_installed(host)
    assert FOREIGN_SAVED in host.save("ipv4")["filter"].rules["INPUT"]
    assert not host.module(SETTINGS)["changed"]

    host.sh("systemctl stop firewalld")
    assert host.module({"state": "absent", "backend": "firewalld"})["changed"]
    assert host.direct_xml() == foreign


def test_plain_iptables_rules_give_way_to_firewalld(host):
    """Rules the iptables backend wrote would redirect a second time next to firewalld's."""
    plain = host.module(dict(SETTINGS, backend="iptables"))
    assert plain.get("failed") is not True, plain.get("msg")
    assert ipt.owned_part(host.save("ipv4"))
    result = host.module(SETTINGS)
    assert result.get("failed") is not True, result.get("msg")
    assert sorted(result["firewalld"]["iptables_removed"]) == ["nft ipv4", "nft ipv6"]
    assert_installed(host)  # exactly once: the counts and order of Kuma's lines are compared


def test_kumactl_store_firewalld_entries_are_removed(host):
    """What kumactl install transparent-proxy --store-firewalld writes (Kuma's own golden file:
    ipv4, priority 3, DNS rules without any mark) is uninstalled, permanent and runtime."""
    path = os.path.join(GOLDEN, "full_direct.golden.xml")
    if not os.path.isfile(path):
        pytest.skip("Kuma's golden files (../shared/kuma-golden) are not beside this checkout")
    with open(path) as f:
        host.sh("cat > /etc/firewalld/direct.xml && firewall-cmd -q --reload", stdin=f.read())
    host.wait_firewalld()
    assert len([r for r in host.runtime_rules() if " 3 " in r]) == 14
    dns = {"kuma_dp_user": "kuma-dp", "backend": "firewalld", "redirect": {"dns": {"capture_all": True}}}
    result = host.module(dict(dns, state="absent"))
    assert result.get("failed") is not True, result.get("msg")
    assert result["changed"]
    assert_no_kuma(host)
    assert "<rule" not in host.direct_xml()
    assert host.runtime_rules() == []


def test_firewalld_iptables_backend_uses_direct_chains(host):
    """With FirewallBackend=iptables firewalld puts direct rules of built-in chains in <CHAIN>_direct,
    jumped to from the top of the chain; the module's iptables backend then refuses to touch them."""
    host.sh("sed -i 's/^FirewallBackend=.*/FirewallBackend=iptables/' /etc/firewalld/firewalld.conf"
            " && systemctl restart firewalld")
    host.wait_firewalld()
    result = host.module(SETTINGS)
    assert result.get("failed") is not True, result.get("msg")
    assert result["changed"]
    for family in fwd.FAMILIES:
        rs = wanted(SETTINGS, family)
        expected = {}
        for (table, chain), lines in expected_in_iptables(rs).items():
            if fwd.is_builtin(table, chain):
                lines = [line.replace("-A %s " % chain, "-A %s_direct " % chain, 1) for line in lines]
                chain += "_direct"
            expected[(table, chain)] = lines
        tables = host.save(family)
        assert kuma_in_iptables(tables) == expected, family
        assert tables["nat"].rules["OUTPUT"][0] == "-A OUTPUT -j OUTPUT_direct"
    assert not host.module(SETTINGS)["changed"]
    refused = host.module(dict(SETTINGS, backend="iptables"))
    assert refused.get("failed") and "firewalld direct rules" in refused["msg"]
    assert host.module({"state": "absent", "backend": "firewalld"})["changed"]
    assert_no_kuma(host)


def test_comments_disabled(host):
    """Without comments Kuma's rules in built-in chains carry no mark: they are found by equality."""
    settings = dict(SETTINGS, comments={"disabled": True})
    first = host.module(settings)
    assert first.get("failed") is not True, first.get("msg")
    assert first["changed"]
    assert "kuma/mesh" not in host.direct_xml()
    assert_installed(host, settings)
    assert not host.module(settings)["changed"]
    gone = host.module(dict(settings, state="absent"))
    assert gone.get("failed") is not True, gone.get("msg")
    assert "KUMA" not in host.direct_xml() and "<rule" not in host.direct_xml()
    assert host.runtime_rules() == []
    for family in fwd.FAMILIES:
        tables = host.save(family)
        assert sum(len(r) for name in ("raw", "nat", "mangle") if name in tables for r in tables[name].rules.values()) == 0


def test_failure_rolls_back_runtime_and_iptables(host):
    """The permanent update fails (direct.xml is a directory, firewalld cannot back it up): the runtime
    changes already made are undone and Kuma's plain iptables rules removed before are put back."""
    assert not host.module(dict(SETTINGS, backend="iptables")).get("failed")
    plain_before = dict((f, kuma_in_iptables(host.save(f))) for f in fwd.FAMILIES)
    assert plain_before["ipv4"]
    host.sh("rm -f /etc/firewalld/direct.xml && mkdir /etc/firewalld/direct.xml")
    result = host.module(SETTINGS)
    assert result.get("failed"), result
    assert "updating the permanent direct configuration failed" in result["msg"]
    assert "were put back as they were" in result["msg"]
    calls = result["firewalld"]["calls"]
    update = calls.index("config.direct.update")
    undo = calls[update + 1:]
    assert len(undo) == update and all(c.startswith("direct.remove") for c in undo)  # every add undone
    assert host.runtime_rules() == [] and host.runtime_chains() == []
    for family in fwd.FAMILIES:
        assert kuma_in_iptables(host.save(family)) == plain_before[family], family
