"""Degrading where Kuma degrades: the rules without a feature the host lacks, and how
the lack is found. Kuma's own outputs of a host without the comment module and
without conntrack (kumactl's dry-run goldens, ../shared/kuma-golden) are the reference:
the degraded rules must be those, byte for byte. The probes run against a recording
runner here; tests/integration/test_tproxy_degrade_netns.py runs them for real."""

import os

import pytest

from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_config as config
from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_facts as facts
from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_iptables as ipt
from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_rules as rules

from ansible_collections.kuma.mesh.tests.unit.paths import GOLDEN as KUMA_GOLDEN

GOLDEN = os.path.join(KUMA_GOLDEN, "kumactl-dry-run")


def cfg_of(overrides, ipv6=False, uid="0", dns_servers=None):
    params = config.with_defaults(overrides)
    return config.family_config(params, ipv6=ipv6, uid=uid, dns_servers=dns_servers, loopback="ifPlaceholder")


def missing(*features):
    return facts.Features(tuple((f, "%s: refused by the kernel" % f) for f in features), "netns")


def dry_run_golden(name):
    path = os.path.join(GOLDEN, name)
    if not os.path.isfile(path):  # pragma: no cover
        if os.environ.get("CI"):
            raise RuntimeError("Kuma's golden file is missing: %s" % path)
        pytest.skip("Kuma's golden files are not beside this checkout")
    with open(path) as f:
        return f.read().split("\n", 2)[2].strip() + "\n"


# -- rendering ------------------------------------------------------------------------


def test_without_the_comment_module_the_rules_are_kumactls_uncommented_ones():
    """kumactl's dry-run goldens come from a host without the comment module."""
    degraded = rules.degrade(cfg_of({}), missing("comment"))
    assert rules.build(degraded.cfg).restore_text() == dry_run_golden("install-transparent-proxy.defaults.golden.txt")
    assert degraded.left_out == (rules.LeftOut("comment", "comments", "comment: refused by the kernel"),)


def test_without_conntrack_zones_the_rules_are_kumactls_no_conntrack_ones():
    """Kuma's no-conntrack golden: DNS still redirected, no raw table."""
    cfg = cfg_of({"redirect": {"dns": {"capture_all": True, "port": 12345}}})
    assert cfg.conntrack_zone_split
    degraded = rules.degrade(cfg, missing("comment", "conntrack_zone"))
    expected = dry_run_golden("install-transparent-proxy.dns.no-conntrack.golden.txt")
    assert rules.build(degraded.cfg).restore_text() == expected.replace("dnsJumpTargetPlaceholder", "RETURN")
    assert [i.feature for i in degraded.left_out] == ["comment", "conntrack_zone"]


def test_without_the_mangle_table_only_the_drop_rule_goes():
    cfg = cfg_of({"drop_invalid_packets": True})
    whole = rules.build(cfg)
    degraded = rules.degrade(cfg, missing("mangle"))
    ruleset = rules.build(degraded.cfg)
    assert [t.name for t in whole.tables] == ["nat", "mangle"] and [t.name for t in ruleset.tables] == ["nat"]
    assert ruleset.restore_text() == whole.restore_text().split("* mangle", maxsplit=1)[0]
    assert ruleset.comments  # the rest as it was


def test_degrade_changes_nothing_it_need_not_and_never_its_input():
    cfg = cfg_of({"redirect": {"dns": {"capture_all": True}}, "drop_invalid_packets": True})
    before = rules.build(cfg).restore_text()
    for features in (None, facts.ALL, facts.Features((), "rules")):
        same = rules.degrade(cfg, features)
        assert same.cfg is cfg and same.left_out == ()
    # a feature the rules do not use is not "left out"
    plain = cfg_of({"comments": {"disabled": True}})
    assert rules.degrade(plain, missing("comment", "conntrack_zone", "mangle")).left_out == ()
    rules.degrade(cfg, missing("comment", "conntrack_zone", "mangle"))
    assert rules.build(cfg).restore_text() == before


def test_degraded_rules_are_found_again_by_their_content():
    """Uncommented rules carry no mark: the engine claims them by equality (as with
    comments.disabled), so a converge of the degraded host is in sync."""
    cfg = rules.degrade(cfg_of({"redirect": {"dns": {"capture_all": True}}}, uid="5678"), missing("comment")).cfg
    ruleset = rules.build(cfg)
    saved = "\n".join("*%s\n%s\nCOMMIT" % (t, "\n".join(lines)) for t, lines in ruleset.saved_lines().items())
    tables = ipt.parse_save(saved)
    assert not ipt.in_sync(tables, ruleset)  # without claims the built-in chains' rules are nobody's
    assert ipt.in_sync(tables, ruleset, ipt.uncommented(ruleset))


def test_the_warning_names_what_and_why():
    text = rules.left_out_message("ipv6", "mangle", "ip6tables-nft-restore: line 2: RULE_APPEND failed")
    assert text.startswith("ipv6: drop_invalid_packets is left out")
    assert text.endswith("(ip6tables-nft-restore: line 2: RULE_APPEND failed)")
    assert "'conntrack' iptables module" in rules.left_out_message("ipv4", "conntrack_zone", "x")  # Kuma's words
    assert "comment module" in rules.left_out_message("ipv4", "comment", "x")


# -- detection --------------------------------------------------------------------------


class Recorder(object):
    """Stands in for the iptables runner's probe (the process): refuses what
    ``refuse`` names, as a kernel without it does; records every call."""

    def __init__(self, refuse=(), no_namespace=False):
        self.refuse = refuse
        self.no_namespace = no_namespace
        self.calls = []

    def probe(self, text, prefix=None):
        self.calls.append((text, prefix))
        if prefix and self.no_namespace:
            return 1, "unshare: unshare failed: Operation not permitted"
        for word in self.refuse:
            if word in text:
                return 4, "iptables-nft-restore v1.8.9 (nf_tables): \nline 2: RULE_APPEND failed (%s)\n" % word
        return 0, ""


ALL_FEATURES = ["conntrack_zone", "comment", "mangle"]


def test_one_probe_when_everything_is_there():
    runner = Recorder()
    found = facts.probe(runner, ALL_FEATURES, "/usr/bin/unshare")
    assert found == facts.Features((), "netns") and all(found.has(f) for f in facts.FEATURES)
    assert len(runner.calls) == 1
    text, prefix = runner.calls[0]
    assert prefix == ["/usr/bin/unshare", "--net", "--"]
    assert text.index("*raw") < text.index("*nat") < text.index("*mangle") and text.count("COMMIT") == 3


def test_a_failed_probe_is_split_to_name_the_missing_feature():
    runner = Recorder(refuse=["--zone"])
    found = facts.probe(runner, ALL_FEATURES, "/usr/bin/unshare")
    assert [f for f, _r in found.missing] == ["conntrack_zone"]
    assert found.reason("conntrack_zone") == "iptables-nft-restore v1.8.9 (nf_tables): line 2: RULE_APPEND failed (--zone)"
    assert found.has("comment") and found.has("mangle")
    assert len(runner.calls) == 5  # all, the control (no feature), each alone


def test_a_probe_that_fails_for_another_reason_leaves_nothing_out():
    """The xtables lock held, no permission: the control restore fails too, so the
    rules are written whole, as before (a real problem then fails the apply)."""
    runner = Recorder(refuse=["COMMIT"])
    found = facts.probe(runner, ALL_FEATURES, "/usr/bin/unshare")
    assert found == facts.Features((), "netns, inconclusive") and len(runner.calls) == 2


def test_without_a_namespace_the_probe_is_a_test_restore():
    """No unshare, or not permitted (a container): ``--test`` in place, which checks
    what userspace can, as far as Kuma's own check goes."""
    runner = Recorder(no_namespace=True)
    found = facts.probe(runner, ["comment"], "/usr/bin/unshare")
    assert found == facts.Features((), "test") and [p for _t, p in runner.calls] == [["/usr/bin/unshare", "--net", "--"], None]
    runner = Recorder(refuse=["-m comment"])
    found = facts.probe(runner, ["comment"], None)
    assert found.how == "test" and not found.has("comment") and [p for _t, p in runner.calls] == [None, None]


def params(**overrides):
    return config.with_defaults(overrides)


FACTS = facts.Facts(*([None] * len(facts.Facts._fields)))._replace(dns_servers=("192.0.2.53",), has_local_ipv6=True)


def test_only_features_the_rules_would_use_are_wanted():
    dns = {"redirect": {"dns": {"enabled": True}}}
    assert facts.wanted_features(params(), True, "ipv4", FACTS, {}) == ["comment"]
    assert facts.wanted_features(params(**dns), True, "ipv4", FACTS, {}) == ["comment", "conntrack_zone"]
    assert facts.wanted_features(params(**dns), True, "ipv6", FACTS, {}) == ["comment"]  # no IPv6 resolver
    skip = {"redirect": {"dns": {"enabled": True, "skip_conntrack_zone_split": True}}, "comments": {"disabled": True}}
    assert facts.wanted_features(params(**skip), True, "ipv4", FACTS, {}) == []
    assert facts.wanted_features(params(drop_invalid_packets=True), True, "ipv6", FACTS, {}) == ["comment", "mangle"]
    # removing: the comment module only matters when Kuma's chains are there to find
    assert facts.wanted_features(params(drop_invalid_packets=True), False, "ipv4", FACTS, {}) == []
    kuma = ipt.parse_save("*nat\n:KUMA_MESH_OUTBOUND - [0:0]\nCOMMIT\n")
    assert facts.wanted_features(params(), False, "ipv4", FACTS, kuma) == ["comment"]


class Store(object):
    def __init__(self, saved, runner):
        self.saved = saved
        self.runner = runner

    def tables(self):
        return ipt.parse_save(self.saved)


def test_the_saved_rules_prove_features_without_a_probe():
    """A converge of a host with Kuma's rules starts no probe: they show every feature."""
    wanted = params(redirect={"dns": {"capture_all": True}}, drop_invalid_packets=True)
    cfg = config.family_config(wanted, ipv6=False, uid="5678")
    ruleset = rules.build(cfg)
    saved = "\n".join("*%s\n%s\nCOMMIT" % (t, "\n".join(lines)) for t, lines in ruleset.saved_lines().items()) + "\n"
    runner = Recorder()
    found = facts.with_features(FACTS, wanted, True, {"ipv4": Store(saved, runner), "ipv6": None})
    assert found.features == {"ipv4": facts.Features((), "rules")} and runner.calls == []
    assert FACTS.features is None  # facts are a value: with_features made a new one
    # an empty host: one probe
    found = facts.with_features(FACTS, wanted, True, {"ipv4": Store("", runner), "ipv6": None})
    assert found.features["ipv4"].how in ("netns", "test") and len(runner.calls) == 1
    # the firewalld backend writes its rules through firewalld: nothing probed
    assert facts.with_features(FACTS, dict(wanted, backend="firewalld"), True, {"ipv4": Store("", runner)}) is FACTS


def test_ipv6_is_not_probed_when_it_gets_no_rules():
    runner = Recorder()
    only4 = facts.with_features(FACTS, params(ip_family_mode="ipv4"), True,
                                {"ipv4": Store("", runner), "ipv6": Store("", runner)})
    assert list(only4.features) == ["ipv4"] and len(runner.calls) == 1
