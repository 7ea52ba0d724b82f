"""The firewalld backend's pure part: Kuma's rules as direct entries (priorities,
order, families, comments), which direct entries are Kuma's (held to Kuma's own
``--store-firewalld`` golden files), the runtime plan and its undo, and direct.xml
edited in place with every foreign byte kept. Plus the offline run end to end on
a temporary direct.xml."""

import os
import re
import xml.etree.ElementTree as ET

from types import SimpleNamespace

import pytest

from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_config as config
from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_firewalld as fwd
from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_rules as rules
from ansible_collections.kuma.mesh.plugins.module_utils.tproxy_undo import TproxyFailure

from ansible_collections.kuma.mesh.tests.unit.paths import GOLDEN as KUMA_GOLDEN

GOLDEN = os.path.join(KUMA_GOLDEN, "firewalld")

FOREIGN_XML = """<?xml version="1.0" encoding="utf-8"?>
<!-- kept: a comment, odd spacing, a passthrough and rules of other tools -->
<direct>
    <chain ipv="ipv4" table="filter" chain="MY_CHAIN"/>
  <rule ipv="ipv4" table="filter" chain="INPUT" priority="0">-p tcp --dport 9999 -j ACCEPT</rule>
  <!-- <rule ipv="ipv4" table="nat" chain="KUMA_MESH_OUTBOUND" priority="1">-j RETURN</rule> -->
  <rule priority="-5" chain="OUTPUT" table="nat" ipv="ipv6">-d 2001:db8::9 -j RETURN</rule>
  <passthrough ipv="ipv4">-t filter -A MY_CHAIN -j ACCEPT</passthrough>
</direct>
"""


def golden(name):
    path = os.path.join(GOLDEN, name)
    if not os.path.isfile(path):  # pragma: no cover
        if os.environ.get("CI"):
            raise RuntimeError("Kuma's golden files are missing: expected %s" % os.path.abspath(path))
        pytest.skip("Kuma's golden files (../shared/kuma-golden) are not beside this checkout")
    with open(path) as f:
        return f.read()


def ruleset(overrides=None, ipv6=False, **kwargs):
    cfg = config.family_config(config.with_defaults(overrides), ipv6=ipv6, uid="5678", **kwargs)
    return rules.build(cfg)


ALL_INSERTS = {
    "redirect": {
        "dns": {"capture_all": True},
        "outbound": {"exclude_ips": ["10.0.0.1", "192.168.0.0/24", "fd00::/8"], "exclude_ports_for_uids": ["udp:53:106-108"]},
        "inbound": {"exclude_ports": [22], "insert_instead_of_append": True},
        "vnet": {"networks": ["docker0:172.17.0.0/16"]},
    },
    "log": {"enabled": True},
    "drop_invalid_packets": True,
}


# -- translation ------------------------------------------------------------------


def by_chain(rules_):
    out = {}
    for entry in sorted(rules_, key=lambda r: r[3]):
        out.setdefault((entry[1], entry[2]), []).append(entry)
    return out


def test_priorities_give_kumas_final_order_in_every_chain():
    rs = ruleset(ALL_INSERTS)
    chains, found = fwd.wanted_entries(rs)
    grouped = by_chain(found)
    checked = 0
    for table in rs.tables:
        for chain in table.builtin + table.custom:
            entries = grouped.get((table.name, chain.name), [])
            expected = [tuple(r.args(True)) for r in chain.head + chain.tail]
            assert [e[4] for e in entries] == expected, (table.name, chain.name)
            priorities = [e[3] for e in entries]
            assert len(set(priorities)) == len(priorities)
            assert priorities == sorted(priorities)
            heads = priorities[: len(chain.head)]
            assert heads == list(range(fwd.INSERT_BASE, fwd.INSERT_BASE + len(chain.head)))
            assert priorities[len(chain.head):] == list(range(fwd.APPEND_BASE, fwd.APPEND_BASE + len(chain.tail)))
            checked += len(entries)
    assert checked == len(found) > 20
    nat_output = rs.table("nat").chain("OUTPUT")
    assert nat_output.head and nat_output.tail  # both kinds were checked
    assert chains == [("ipv4", "nat", c.name) for c in rs.table("nat").custom]


def test_inserted_rules_before_appended_ones_and_foreign_priorities():
    rs = ruleset({"redirect": {"dns": {"enabled": True}}}, dns_servers=["192.0.2.53"])
    _chains, found = fwd.wanted_entries(rs)
    output = [e for e in found if e[1:3] == ("nat", "OUTPUT")]
    inserted = [e for e in output if e[3] < 0]
    appended = [e for e in output if e[3] > 0]
    assert inserted and appended
    # a foreign direct rule at a usual priority (0, 1, ...) sits between Kuma's inserted and
    # appended rules, as it would in iptables between kumactl's -I and -A rules
    assert max(e[3] for e in inserted) < 0 < 100 < min(e[3] for e in appended)


def test_families_and_comments():
    v4, v6 = fwd.wanted_entries(ruleset()), fwd.wanted_entries(ruleset(ipv6=True))
    assert {c[0] for c in v4[0]} == {"ipv4"} and {r[0] for r in v4[1]} == {"ipv4"}
    assert {c[0] for c in v6[0]} == {"ipv6"} and {r[0] for r in v6[1]} == {"ipv6"}
    assert any("::6/128" in r[4] for r in v6[1]) and not any("::6/128" in r[4] for r in v4[1])
    # the comment is one argument, unquoted, with Kuma's prefix
    comment = [r[4][r[4].index("--comment") + 1] for r in v4[1]]
    assert all(c.startswith(config.COMMENT_PREFIX + "/") and '"' not in c for c in comment)
    assert "kuma/mesh/transparent/proxy/redirect TCP traffic to envoy (port 15001)" in comment
    plain = fwd.wanted_entries(ruleset({"comments": {"disabled": True}}))[1]
    assert not any("comment" in r[4] for r in plain)
    assert len(plain) == len(v4[1])
    assert fwd.wanted_entries(None) == ([], [])


def test_rule_text_and_direct_xml_round_trip_quotes():
    rs = ruleset(ALL_INSERTS)
    chains, found = fwd.wanted_entries(rs)
    text = fwd.render(fwd.Direct(chains, found))
    doc = fwd.DirectXml(text)
    assert doc.in_place
    assert doc.direct.chains == chains and doc.direct.rules == found
    line = fwd.rule_text(found[0])
    assert line.startswith("ipv4 raw PREROUTING 10000 -m comment --comment 'kuma/mesh/transparent/proxy/assign ")
    assert "'!'" in fwd.rule_text([r for r in found if "!" in r[4]][0])


# -- Kuma's entries -------------------------------------------------------------------


def test_kumactl_store_firewalld_golden_is_recognised_with_claims():
    """Kuma's own --store-firewalld output: ipv4, priority 3, no comments. The KUMA_MESH chains and
    jumps are Kuma's by kumactl's test; its two uncommented DNS rules in OUTPUT only by equality
    with Kuma's rules of the same settings at kumactl's priority."""
    doc = fwd.DirectXml(golden("full_direct.golden.xml"))
    assert len(doc.direct.chains) == 4 and len(doc.direct.rules) == 14
    marked = fwd.Detector()
    chains, found = marked.part(doc.direct)
    assert chains == set(doc.direct.chains)
    unmarked = [r for r in doc.direct.rules if r not in found]
    assert [(r[2], r[4]) for r in unmarked] == [
        ("OUTPUT", ("-p", "udp", "--dport", "53", "-m", "owner", "--uid-owner", "5678", "-j", "RETURN")),
        ("OUTPUT", ("-p", "udp", "--dport", "53", "-j", "REDIRECT", "--to-ports", "15053")),
    ]
    claimed = fwd.Detector(fwd.claims_of([ruleset({"redirect": {"dns": {"capture_all": True}}})]))
    assert claimed.part(doc.direct) == (set(doc.direct.chains), set(doc.direct.rules))
    # the same rule at another priority is not kumactl's (comments on) ...
    moved = fwd.Direct(rules_=[(r[0], r[1], r[2], 0, r[4]) for r in unmarked])
    assert claimed.part(moved) == (set(), set())
    # ... but is Kuma's when comments are disabled (equality is then the only mark)
    assert fwd.Detector(claimed.claims, any_priority=True).part(moved)[1] == set(moved.rules)


def test_kumactl_verbose_golden_long_options():
    doc = fwd.DirectXml(golden("full_direct_verbose.golden.xml"))
    _chains, found = fwd.Detector().part(doc.direct)
    jumps = [r for r in doc.direct.rules if r[2] in ("PREROUTING", "OUTPUT") and "--jump" in r[4] and r[4][-1].startswith("KUMA_MESH")]
    assert len(jumps) == 2 and set(jumps) <= found
    assert all(r in found for r in doc.direct.rules if r[2].startswith("KUMA_MESH"))


def test_kumactl_no_duplicates_golden_is_not_kumas():
    """Chains KUMA_INBOUND/KUMA_OUTPUT lack the KUMA_MESH prefix: kumactl's uninstall test would not
    touch them either, so they are foreign and kept byte for byte."""
    text = golden("no_duplicates_direct.golden.xml")
    doc = fwd.DirectXml(text)
    assert len(doc.direct.rules) == 5
    assert fwd.Detector().part(doc.direct) == (set(), set())
    assert doc.edited(fwd.Detector(), [], []) == text


def test_kuma_rule_test_is_kumactls():
    assert fwd.is_kuma_rule("OUTPUT", ["-m", "comment", "--comment", "kuma/mesh/transparent/proxy/x", "-j", "RETURN"])
    assert fwd.is_kuma_rule("KUMA_MESH_OUTBOUND", ["-j", "RETURN"])
    assert fwd.is_kuma_rule("OUTPUT", ["-p", "tcp", "-j", "KUMA_MESH_OUTBOUND"])
    assert fwd.is_kuma_rule("OUTPUT", ["-p", "tcp", "--goto", "KUMA_MESH_OUTBOUND"])
    assert not fwd.is_kuma_rule("OUTPUT", ["-m", "comment", "--comment", "see KUMA_MESH docs", "-j", "RETURN"])
    assert not fwd.is_kuma_rule("OUTPUT", ["-p", "tcp", "-j", "KUMA_OUTPUT"])
    detector = fwd.Detector()
    assert not detector.chain(("eb", "nat", "KUMA_MESH_X"))
    assert detector.passthrough(("ipv4", ("-t", "nat", "-A", "OUTPUT", "-j", "KUMA_MESH_OUTBOUND")))


# -- direct.xml edited in place ---------------------------------------------------------


def test_install_into_foreign_direct_xml_keeps_every_foreign_byte():
    rs = ruleset()
    chains, found = fwd.wanted_entries(rs)
    doc = fwd.DirectXml(FOREIGN_XML)
    assert doc.in_place
    assert doc.direct.chains == [("ipv4", "filter", "MY_CHAIN")]
    assert [r[2] for r in doc.direct.rules] == ["INPUT", "OUTPUT"]  # the commented-out rule is no entry
    assert doc.direct.passthroughs == [("ipv4", ("-t", "filter", "-A", "MY_CHAIN", "-j", "ACCEPT"))]
    detector = fwd.Detector()
    assert detector.part(doc.direct) == (set(), set())
    text = doc.edited(detector, chains, found)
    assert text != FOREIGN_XML
    # what was there is still there, byte for byte, in order, with Kuma's block before </direct>
    added = re.findall(r"^  <(?:chain|rule) [^\n]*KUMA_MESH[^\n]*\n", text, re.M)
    assert len(added) == len(chains) + len([r for r in found if "KUMA_MESH" in " ".join(r[4]) or r[2].startswith("KUMA")])
    block = "".join("  %s\n" % e for e in [fwd.chain_element(c) for c in chains] + [fwd.rule_element(r) for r in found])
    assert text == FOREIGN_XML.replace("</direct>\n", block + "</direct>\n")
    again = fwd.DirectXml(text)
    assert detector.part(again.direct) == (set(chains), set(found))
    ET.fromstring(text.encode("utf-8"))

    # uninstall gives the original file back
    assert again.edited(detector, [], []) == FOREIGN_XML
    # a changed setting replaces only Kuma's entries
    chains2, found2 = fwd.wanted_entries(ruleset({"redirect": {"outbound": {"port": 15002}}}))
    changed = fwd.DirectXml(again.edited(detector, chains2, found2))
    assert detector.part(changed.direct) == (set(chains2), set(found2))
    assert detector.foreign(changed.direct).rules == doc.direct.rules


def test_uninstall_removes_kumactl_entries_from_its_golden_file():
    doc = fwd.DirectXml(golden("full_direct.golden.xml"))
    claimed = fwd.Detector(fwd.claims_of([ruleset({"redirect": {"dns": {"capture_all": True}}})]))
    text = doc.edited(claimed, [], [])
    assert "KUMA" not in text and "<rule" not in text
    assert fwd.DirectXml(text).direct.empty()
    # without the claims only the two uncommented DNS rules stay (they carry no mark)
    left = fwd.DirectXml(doc.edited(fwd.Detector(), [], [])).direct
    assert [r[2] for r in left.rules] == ["OUTPUT", "OUTPUT"] and not left.chains


def test_missing_empty_and_self_closed_files():
    chains, found = fwd.wanted_entries(ruleset())
    detector = fwd.Detector()
    for text in (None, "", "   \n"):
        doc = fwd.DirectXml(text)
        assert doc.direct.empty()
        assert doc.edited(detector, chains, found) == fwd.render(fwd.Direct(chains, found))
    closed = '<?xml version="1.0"?>\n<direct/>\n'
    out = fwd.DirectXml(closed).edited(detector, chains, found)
    assert detector.part(fwd.DirectXml(out).direct) == (set(chains), set(found))
    assert fwd.DirectXml(closed).edited(detector, [], []) == closed


def test_bad_files_fail_or_are_rewritten_whole():
    with pytest.raises(fwd.FirewalldError):
        fwd.DirectXml("<direct><rule></direct>")
    with pytest.raises(fwd.FirewalldError):
        fwd.DirectXml("<zone/>")
    # an entry where firewalld would not look (nested): the text is not edited in place
    odd = '<direct><x><rule ipv="ipv4" table="nat" chain="OUTPUT" priority="1">-j KUMA_MESH_X</rule></x></direct>'
    doc = fwd.DirectXml(odd)
    assert not doc.in_place and doc.direct.empty()


# -- runtime plan and its undo ------------------------------------------------------------


def test_runtime_ops_order_and_only_the_difference():
    old_chains, old_rules = fwd.wanted_entries(ruleset())
    new_chains, new_rules = fwd.wanted_entries(ruleset({"redirect": {"inbound": {"enabled": False}}}))
    assert fwd.runtime_ops(old_chains, old_rules, old_chains, old_rules) == []
    install = fwd.runtime_ops([], [], old_chains, old_rules)
    kinds = [k for k, _e in install]
    assert kinds == ["add_chain"] * len(old_chains) + ["add_rule"] * len(old_rules)
    added = [e for k, e in install if k == "add_rule"]
    first_builtin = min(i for i, e in enumerate(added) if not e[2].startswith("KUMA_MESH"))
    assert all(e[2].startswith("KUMA_MESH") for e in added[:first_builtin])
    assert not any(e[2].startswith("KUMA_MESH") for e in added[first_builtin:])

    uninstall = fwd.runtime_ops(old_chains, old_rules, [], [])
    kinds = [k for k, _e in uninstall]
    assert kinds == ["remove_rule"] * len(old_rules) + ["remove_chain"] * len(old_chains)
    assert not uninstall[0][1][2].startswith("KUMA_MESH")  # jumps out of built-in chains go first

    change = fwd.runtime_ops(old_chains, old_rules, new_chains, new_rules)
    touched = set(e for _k, e in change)
    assert touched == (set(old_rules) ^ set(new_rules)) | (set(old_chains) ^ set(new_chains))


class FakeApi(object):
    """firewalld's runtime direct bookkeeping, failing on one call."""

    def __init__(self, chains=(), rules_=(), fail_on=None):
        self.chains, self.rules = set(chains), set(rules_)
        self.fail_on = fail_on

    def apply(self, op):
        if op == self.fail_on:
            raise fwd.FirewalldError("COMMAND_FAILED: iptables-restore failed")
        kind, entry = op
        target = self.chains if kind.endswith("chain") else self.rules
        if kind.startswith("add"):
            assert entry not in target
            target.add(entry)
        else:
            target.remove(entry)


def test_apply_ops_undoes_everything_on_a_failure():
    old_chains, old_rules = fwd.wanted_entries(ruleset())
    new_chains, new_rules = fwd.wanted_entries(ruleset({"redirect": {"outbound": {"port": 15002}}}))
    ops = fwd.runtime_ops(old_chains, old_rules, new_chains, new_rules)
    assert len(ops) == 2
    api = FakeApi(old_chains, old_rules, fail_on=ops[-1])
    calls = []
    with pytest.raises(fwd.FirewalldError) as err:
        fwd.apply_ops(api, ops, calls)
    assert "direct.addRule ipv4 nat KUMA_MESH_OUTBOUND_REDIRECT" in str(err.value) and err.value.undone
    assert (api.chains, api.rules) == (set(old_chains), set(old_rules))
    assert calls[-1].startswith("direct.addRule") and calls[0].startswith("direct.removeRule")

    api = FakeApi(old_chains, old_rules)
    fwd.apply_ops(api, ops, [])
    assert (api.chains, api.rules) == (set(new_chains), set(new_rules))

    class Stuck(FakeApi):
        def apply(self, op):
            if op[0] == "add_rule" and op[1] in old_rules:  # the undo fails too
                raise fwd.FirewalldError("COMMAND_FAILED")
            FakeApi.apply(self, op)

    api = Stuck(old_chains, old_rules, fail_on=ops[-1])
    with pytest.raises(fwd.FirewalldError) as err:
        fwd.apply_ops(api, ops, [])
    assert not err.value.undone and "undoing the earlier calls failed too" in str(err.value)


def test_firewalld_conf_and_process_probe(tmp_path):
    conf = tmp_path / "firewalld.conf"
    conf.write_text("# FirewallBackend=iptables\nFirewallBackend=iptables\n")
    assert fwd.firewalld_backend(str(conf)) == "iptables"
    conf.write_text("DefaultZone=public\n")
    assert fwd.firewalld_backend(str(conf)) == "nftables"
    proc = tmp_path / "proc"

    def process(pid, comm, netns):
        (proc / pid / "ns").mkdir(parents=True)
        (proc / pid / "comm").write_text(comm + "\n")
        os.symlink("net:[%d]" % netns, str(proc / pid / "ns" / "net"))

    process("self", "python3", 1)
    process("12", "sshd", 1)
    assert not fwd.firewalld_process_running(str(proc))
    process("34", "firewalld", 2)  # a container's firewalld: another network namespace
    assert not fwd.firewalld_process_running(str(proc))
    process("56", "firewalld", 1)
    assert fwd.firewalld_process_running(str(proc))


# -- the offline run, end to end on a temporary direct.xml ---------------------------------------


class Failed(Exception):
    pass


class FakeEngine(object):
    """The part of the engine (tproxy.Engine) the firewalld store uses, on a host without iptables."""

    def __init__(self, params, check_mode=False, diff_mode=False):
        self.params = params
        self.check_mode = check_mode
        self.diff_mode = diff_mode
        self.warnings = []
        self.facts = SimpleNamespace(uid="5678", dns_servers=(), loopback="lo", passthrough_ipv6=False)

    def warn(self, msg):
        self.warnings.append(msg)

    def runner(self, mode, family):
        return None

    def tables(self, mode, family):
        return {}

    def remove_kuma(self, mode, family, extra=None):  # pragma: no cover - no iptables here
        raise AssertionError(mode)

    def passthrough(self, action):  # pragma: no cover - not reached without IPv6
        raise AssertionError(action)


@pytest.fixture
def offline(tmp_path, monkeypatch):
    path = tmp_path / "firewalld" / "direct.xml"
    path.parent.mkdir()
    monkeypatch.setattr(fwd, "direct_xml_path", lambda: str(path))
    monkeypatch.setattr(fwd, "connect", lambda: (None, None))
    monkeypatch.setattr(fwd, "firewalld_process_running", lambda: False)

    def run(state="present", check=False, diff=False, overrides=None):
        params = config.with_defaults(dict(overrides or {}, state=state, kuma_dp_user="kuma-dp", backend="firewalld"))
        engine = FakeEngine(params, check, diff)
        wanted = {"ipv4": ruleset(overrides) if state == "present" else None, "ipv6": None}
        try:
            changed, diffs, info = fwd.reconcile(engine, wanted, "nft")
        except TproxyFailure as exc:
            raise Failed(dict(exc.fields, msg=exc.msg))
        return dict(changed=changed, diff=diffs, firewalld=info), engine

    return path, run


def test_offline_install_idempotence_check_mode_and_uninstall(offline):
    path, run = offline
    path.write_text(FOREIGN_XML)
    result, module = run(check=True, diff=True)
    assert result["changed"] and result["firewalld"]["permanent_changed"]
    assert not result["firewalld"]["running"]
    assert path.read_text() == FOREIGN_XML  # check mode writes nothing
    diff = result["diff"][0]
    assert diff["before"] == "" and "ipv4 nat KUMA_MESH_INBOUND\n" in diff["after"]
    assert "firewalld is not running" in module.warnings[0]

    result, _module = run()
    assert result["changed"]
    text = path.read_text()
    assert text.startswith(FOREIGN_XML.partition("</direct>")[0])
    chains, found = fwd.wanted_entries(ruleset())
    assert fwd.Detector().part(fwd.DirectXml(text).direct) == (set(chains), set(found))
    assert result["firewalld"]["direct"]["ipv4"][0] == "ipv4 nat KUMA_MESH_INBOUND"

    result, _module = run()
    assert not result["changed"] and path.read_text() == text

    result, _module = run(state="absent")
    assert result["changed"] and path.read_text() == FOREIGN_XML
    result, _module = run(state="absent")
    assert not result["changed"]


def test_offline_replaces_kumactl_entries(offline):
    path, run = offline
    path.write_text(golden("full_direct.golden.xml"))
    overrides = {"redirect": {"dns": {"capture_all": True}}}
    result, _module = run(overrides=overrides)
    assert result["changed"]
    direct = fwd.DirectXml(path.read_text()).direct
    assert not any(r[3] == fwd.KUMACTL_PRIORITY for r in direct.rules)
    chains, found = fwd.wanted_entries(ruleset(overrides))
    assert (set(direct.chains), set(direct.rules)) == (set(chains), set(found))


def test_offline_without_firewalld_installed(offline, monkeypatch):
    path, run = offline
    os.rmdir(str(path.parent))
    monkeypatch.setattr(fwd.host, "find_executable", lambda name: None)
    with pytest.raises(Failed) as err:
        run()
    assert "firewalld is not installed" in err.value.args[0]["msg"]
    result, _module = run(state="absent")
    assert not result["changed"]


def test_never_edits_direct_xml_under_a_running_firewalld(offline, monkeypatch):
    path, run = offline
    monkeypatch.setattr(fwd, "firewalld_process_running", lambda: True)
    with pytest.raises(Failed) as err:
        run()
    assert "does not answer on D-Bus" in err.value.args[0]["msg"]
    monkeypatch.setattr(fwd, "connect", lambda: (None, ImportError("No module named 'firewall'")))
    with pytest.raises(Failed) as err:
        run()
    assert "python3-firewall" in err.value.args[0]["msg"] and "No module named 'firewall'" in err.value.args[0]["msg"]
    assert not path.exists()


def test_kuma_direct_entries_for_the_iptables_backend(tmp_path):
    path = tmp_path / "direct.xml"
    assert fwd.kuma_direct_entries(str(path)) == []
    path.write_text(FOREIGN_XML)
    assert fwd.kuma_direct_entries(str(path)) == []
    path.write_text(golden("full_direct.golden.xml"))
    found = fwd.kuma_direct_entries(str(path))
    assert len(found) == 16 and found[0] == "ipv4 nat KUMA_MESH_INBOUND"
    path.write_text("<direct>")
    assert fwd.kuma_direct_entries(str(path)) == []
