"""The payload gate: Kuma's own transactions pass, anything touching other rules does not."""

import os

import pytest

from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_config as config
from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_gate as gate
from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_iptables as ipt
from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_rules as rules

from ansible_collections.kuma.mesh.tests.unit.paths import GOLDEN

needs_golden = pytest.mark.skipif(not os.path.isdir(GOLDEN), reason="Kuma's golden files are not beside this checkout")

FULL = {
    "redirect": {
        "dns": {"capture_all": True},
        "vnet": {"networks": ["docker0:172.17.0.0/16", "br+:172.18.0.0/16", "iface:::1/64"]},
        "outbound": {
            "exclude_ports_for_uids": ["53,3000-5000:106-108"],
            "exclude_ips": ["10.0.0.1,192.168.0.0/24,fe80::1", "fd00::/8"],
            "exclude_ports": [1, 22, 333],
            "include_ports": [80, 443],
        },
        "inbound": {"exclude_ports": [4444, 55555], "exclude_ips": ["192.168.0.1,172.32.16.8/16,fe80::/10"]},
    },
    "log": {"enabled": True, "level": 4},
    "drop_invalid_packets": True,
}


def ruleset(overrides=None, ipv6=False, **kwargs):
    params = config.with_defaults(overrides)
    return rules.build(config.family_config(params, ipv6=ipv6, uid="5678", **kwargs))


@pytest.mark.parametrize("ipv6", [False, True])
@pytest.mark.parametrize(
    "overrides",
    [
        {},
        FULL,
        {"redirect": {"dns": {"enabled": True}}},
        {"comments": {"disabled": False}, "redirect": {"inbound": {"include_ports": [8080], "insert_instead_of_append": True}}},
    ],
)
def test_kumas_own_rule_sets_pass(overrides, ipv6):
    rs = ruleset(overrides, ipv6=ipv6, dns_servers=["127.0.0.53", "::1"], docker_output=True)
    assert gate.check_restore(rs.restore_text()) == []


def test_uncommented_rules_pass_only_when_claimed():
    rs = ruleset(dict(FULL, comments={"disabled": True}))
    violations = gate.check_restore(rs.restore_text())
    assert violations and all("not Kuma's" in v for v in violations)
    assert gate.check_restore(rs.restore_text(), claimed=gate.claims_for([rs])) == []


def saved_tables(text):
    return ipt.parse_save(text)


@needs_golden
@pytest.mark.parametrize(
    "name",
    [
        "ubuntu-24-04-with-multiple-flags.iptables.golden",
        "ubuntu-24-04-with-multiple-config-flags.ip6tables.golden",
        "v2.13.10__ubuntu-24-04-with-multiple-flags.iptables.golden",
        "rhel-8-with-multiple-flags.iptables.golden",
    ],
)
def test_engine_transactions_over_kumactl_rules_pass(name):
    """Replacing and removing what kumactl wrote (iptables-save goldens). The engine's
    rollback is no transaction: it restores the whole tables of its snapshot (foreign
    rules and policies included), which the gate is not for."""
    with open(os.path.join(GOLDEN, "e2e-iptables-save", name)) as f:
        current = saved_tables(f.read())
    install = ipt.transaction(current, ipt.target_for(ruleset(FULL)))
    remove = ipt.transaction(current, {})
    for text in (install, remove):
        assert text and gate.check_restore(text) == [], text


@needs_golden
def test_kumactl_dry_run_goldens_pass():
    folder = os.path.join(GOLDEN, "kumactl-dry-run")
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name)) as f:
            text = f.read().replace("ifPlaceholder", "lo").replace("dnsJumpTargetPlaceholder", "RETURN")
        if "subnetPlaceholder" in text:  # the stale dns golden (SOURCES.md)
            continue
        text = "\n".join(line for line in text.splitlines() if not line.startswith("###"))
        claimed = {t: set(text.splitlines()) for t in ("raw", "nat", "mangle")}
        assert gate.check_restore(text, claimed=claimed) == [], name


def test_tokenizer_is_iptables_restores():
    assert gate.tokenize('-A X -m comment --comment "a \\"b\\" c" -j RETURN') == [
        "-A", "X", "-m", "comment", "--comment", 'a "b" c', "-j", "RETURN"]
    assert gate.tokenize('"ab"cd') == ["ab", "cd"]  # a closing quote ends the token
    assert gate.tokenize('x ""') == ["x", ""]
    assert gate.tokenize("a\\ b") == ["a\\", "b"]  # no escapes outside quotes
    with pytest.raises(gate.GateError):
        gate.tokenize('"open')


KUMA = '-A OUTPUT -m comment --comment "kuma/mesh/transparent/proxy/x" -p tcp -j KUMA_MESH_OUTBOUND'


@pytest.mark.parametrize(
    "text,reason",
    [
        ("*nat\n-A KUMA_MESH_INBOUND -i a\n-F DOCKER\n# -j RETURN\nCOMMIT\n", "-F only of one Kuma chain"),
        ("*nat\n-F DOCKER\nCOMMIT\n", "-F only of one Kuma chain"),
        ("*nat\n-X DOCKER\nCOMMIT\n", "-X only of one Kuma chain"),
        ("*nat\n-F\nCOMMIT\n", "-F only of one Kuma chain"),
        ("*nat\n-N DOCKER\nCOMMIT\n", "-N only of one Kuma chain"),
        ("*filter\n" + KUMA.replace("OUTPUT", "INPUT") + "\nCOMMIT\n", "only the raw, nat and mangle"),
        ("*security\nCOMMIT\n", "only the raw, nat and mangle"),
        ("*nat\n:OUTPUT DROP [0:0]\nCOMMIT\n", "only Kuma's chains may be declared"),
        ("*nat\n:DOCKER - [0:0]\nCOMMIT\n", "only Kuma's chains may be declared"),
        ("*nat\n-P OUTPUT DROP\nCOMMIT\n", "command '-P'"),
        ("*nat\n-A DOCKER -j RETURN\nCOMMIT\n", "neither Kuma's nor a built-in"),
        ("*nat\n-D DOCKER -i docker0 -j RETURN\nCOMMIT\n", "neither Kuma's nor a built-in"),
        ("*nat\n-A OUTPUT -p tcp -j RETURN\nCOMMIT\n", "not Kuma's"),
        ("*nat\n-D OUTPUT -o docker0 -j DOCKER\nCOMMIT\n", "target 'DOCKER'"),
        ("*nat\n-A OUTPUT -m comment --comment \"kuma/mesh/transparent/proxy/x\" -j ACCEPT\nCOMMIT\n", "target 'ACCEPT'"),
        ("*nat\n-A OUTPUT -m comment --comment \"kuma/mesh/transparent/proxy/x\" -j DNAT --to 1.2.3.4\nCOMMIT\n", "DNAT"),
        ("*nat\n-A KUMA_MESH_INBOUND -j DOCKER\nCOMMIT\n", "target 'DOCKER'"),
        ("*nat\n" + KUMA + " -t filter\nCOMMIT\n", "unexpected token '-t'"),
        ("*nat\n" + KUMA + " extra\nCOMMIT\n", "unexpected token 'extra'"),
        ("*nat\n-A KUMA_MESH_INBOUND -i \"-j\" -j RETURN\nCOMMIT\n", "not a safe token"),
        ("*nat\n-A KUMA_MESH_INBOUND -i a\rb -j RETURN\nCOMMIT\n", "control or non-ASCII"),
        ("*nat\n-A KUMA_MESH_INBOUND -i a\x00 -j RETURN\nCOMMIT\n", "control or non-ASCII"),
        ("*nat\n-A KUMA_MESH_INBOUND -m comment --comment \"x -j RETURN\nCOMMIT\n", "unterminated quote"),
        ("*nat\n-A KUMA_MESH_INBOUND -j RETURN -j REDIRECT\nCOMMIT\n", "more than one target"),
        ("*nat\n-A KUMA_MESH_INBOUND -p tcp\nCOMMIT\n", "no target"),
        ("*nat\n-A KUMA_MESH_INBOUND -m set --match-set x src -j RETURN\nCOMMIT\n", "match 'set'"),
        ("-A KUMA_MESH_INBOUND -j RETURN\n", "outside a table"),
        ("*nat\n-A KUMA_MESH_INBOUND -j RETURN\n", "has no COMMIT"),
        ("*nat\n*raw\nCOMMIT\n", "table header inside"),
        ("*nat\n -F DOCKER\nCOMMIT\n", "-F only of one Kuma chain"),
        ("*nat\n[0:0] -A KUMA_MESH_INBOUND -j RETURN\nCOMMIT\n", "command '[0:0]'"),
        ("*nat\n-A KUMA_MESH_INBOUND " + "-p tcp " * 200 + "-j RETURN\nCOMMIT\n", "too many tokens"),
        ("*nat\n-A KUMA_MESH_INBOUND -s " + "1" * 9000 + " -j RETURN\nCOMMIT\n", "longer than"),
        ("*nat\n-Z\nCOMMIT\n", "command '-Z'"),
        ("*nat\n-E KUMA_MESH_INBOUND DOCKER\nCOMMIT\n", "command '-E'"),
        ("*nat\n-R OUTPUT 1 -j RETURN\nCOMMIT\n", "command '-R'"),
        ("*nat\n-A OUTPUT -m comment --comment \"other/kuma/mesh/transparent/proxy/\" -j RETURN\nCOMMIT\n", "not Kuma's"),
    ],
)
def test_hostile_payloads_are_refused(text, reason):
    violations = gate.check_restore(text)
    assert any(reason in v for v in violations), violations


def test_injection_through_an_option_never_reaches_the_payload():
    """The issue's case: a newline in a vnet interface. Refused by validate; and even if a
    RuleSet held it, the renderer refuses to write it, and the gate refuses the text."""
    params = config.with_defaults({"redirect": {"vnet": {"networks": ["a\n-FDOCKER\n#:172.18.0.0/16"]}}})
    assert config.validate(params)
    cfg = config.family_config(config.with_defaults(), ipv6=False, uid="5678")
    cfg.vnet = {"a\n-FDOCKER\n#": "172.18.0.0/16"}
    with pytest.raises(rules.UnsafeRule):
        rules.build(cfg).restore_text()
    text = "*nat\n-I PREROUTING 1 -i a\n-FDOCKER\n# -j RETURN\nCOMMIT\n"
    assert gate.check_restore(text)


def test_check_restore_never_raises():
    for junk in (None, b"*nat", "\x00", '"', "*", ":", "COMMIT\nCOMMIT", "*nat\n-I OUTPUT 99999999999999 -j RETURN\nCOMMIT"):
        assert isinstance(gate.check_restore(junk), list)


def test_direct_rules():
    from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_firewalld as fwd

    sets = [ruleset(FULL), ruleset(FULL, ipv6=True)]
    for rs in sets:
        chains, entries = fwd.wanted_entries(rs)
        assert gate.check_direct_rules(entries, chains) == []
    plain = [rules.RuleSet(rs.family, rs.tables, comments=False) for rs in sets]
    chains, entries = fwd.wanted_entries(plain[0])
    assert gate.check_direct_rules(entries, chains)
    assert gate.check_direct_rules(entries, chains, claimed=fwd.claims_of(plain)) == []
    bad = [
        ("ipv4", "filter", "INPUT", 0, ["-m", "comment", "--comment", "kuma/mesh/transparent/proxy/x", "-j", "ACCEPT"]),
        ("ipv4", "nat", "DOCKER", 0, ["-j", "RETURN"]),
        ("ipv4", "nat", "OUTPUT", 0, ["-p", "tcp", "-j", "RETURN"]),
        ("ipv4", "nat", "OUTPUT", 0, ["-i", "a\n-F", "-j", "KUMA_MESH_OUTBOUND"]),
        ("ipv4", "nat", "OUTPUT", "0", ["-j", "KUMA_MESH_OUTBOUND"]),
        ("ipv4", "nat"),
    ]
    for entry in bad:
        assert gate.check_direct_rules([entry]), entry
    assert gate.check_direct_rules([], [("ipv4", "nat", "DOCKER")])
    assert gate.check_direct_rules([], [], [("ipv4", ["-t", "filter", "-F"])])
