"""The rule builder against Kuma's own expected outputs.

Kuma's golden files (copied as data into ../shared/kuma-golden, see its
SOURCES.md) are read where they lie; none is copied into this repository.
Two angles, both exact:
* e2e-iptables-save: what iptables-save shows after kumactl installed the
  rules on a real host, compared with RuleSet.saved_lines();
* kumactl-dry-run: the iptables-restore input kumactl prints, compared with
  RuleSet.restore_text().
"""

import os

import pytest

from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_config as config
from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_rules as rules

from ansible_collections.kuma.mesh.tests.unit.paths import GOLDEN

if not os.path.isdir(GOLDEN):  # pragma: no cover
    if os.environ.get("CI"):
        raise RuntimeError("Kuma's golden files are missing: expected %s" % os.path.abspath(GOLDEN))
    pytest.skip("Kuma's golden files (../shared/kuma-golden) are not beside this checkout", allow_module_level=True)


def golden(*parts):
    with open(os.path.join(GOLDEN, *parts)) as f:
        return f.read()


def saved_golden(name):
    """Kuma's e2e file as {table: [rule and user-chain lines]}, as our saved_lines() gives them."""
    tables, current = {}, None
    for line in golden("e2e-iptables-save", name).splitlines():
        if line.startswith("*"):
            current = tables.setdefault(line[1:], [])
        elif line.startswith(":KUMA_MESH"):
            current.append(line + " [0:0]")
        elif line.startswith("-A"):
            current.append(line)
    return tables


def saved_lines(params, ipv6, uid="5678", dns_servers=None):
    cfg = config.family_config(params, ipv6=ipv6, uid=uid, dns_servers=dns_servers, loopback="ifPlaceholder")
    return rules.build(cfg).saved_lines()


WITH_MULTIPLE_FLAGS = config.with_defaults(
    {
        "redirect": {
            "dns": {"capture_all": True},
            "vnet": {"networks": ["docker0:172.17.0.0/16", "br+:172.18.0.0/16", "iface:::1/64"]},
            "outbound": {
                "exclude_ports_for_uids": ["53,3000-5000:106-108"],
                "exclude_ips": ["10.0.0.1,192.168.0.0/24,fe80::1", "fd00::/8"],
                "exclude_ports": [1, 22, 333],
            },
            "inbound": {
                "exclude_ports": [4444, 55555],
                "exclude_ips": ["192.168.0.1,172.32.16.8/16,fe80::/10", "a81b:a033:6399:73c7:72b6:aa8c:6f22:7098"],
            },
        }
    }
)

# /1.yaml, /2.yaml and stdin of Kuma's "with-multiple-config-flags" case, merged
# the way kumactl merges them (later values win, lists are replaced).
WITH_MULTIPLE_CONFIG_FLAGS = config.with_defaults(
    {
        "redirect": {
            "vnet": {
                "networks": ["docker2:10.0.0.0/8", "docker0:172.17.0.0/16", "br+:172.18.0.0/16", "iface:::1/64"]
            },
            "dns": {"enabled": True, "capture_all": True, "port": 8888},
            "inbound": {
                "enabled": True,
                "exclude_ports": [4444, 55555],
                "exclude_ips": ["192.168.0.1,172.32.16.8/16,fe80::/10", "a81b:a033:6399:73c7:72b6:aa8c:6f22:7098"],
            },
            "outbound": {
                "enabled": True,
                "exclude_ports_for_uids": ["1", "2-3:4-5"],
                "exclude_ports": [6, 77, 888],
                "exclude_ips": ["10.0.0.1,192.168.0.0/24,fe80::1", "fd00::/8"],
            },
        }
    }
)


@pytest.mark.parametrize(
    "golden_name,params,ipv6",
    [
        ("ubuntu-24-04-default.iptables.golden", config.with_defaults(), False),
        ("ubuntu-24-04-default.ip6tables.golden", config.with_defaults(), True),
        ("ubuntu-24-04-with-multiple-flags.iptables.golden", WITH_MULTIPLE_FLAGS, False),
        ("ubuntu-24-04-with-multiple-flags.ip6tables.golden", WITH_MULTIPLE_FLAGS, True),
        ("ubuntu-24-04-with-multiple-config-flags.iptables.golden", WITH_MULTIPLE_CONFIG_FLAGS, False),
        ("ubuntu-24-04-with-multiple-config-flags.ip6tables.golden", WITH_MULTIPLE_CONFIG_FLAGS, True),
        ("fedora-41-with-multiple-flags.iptables-legacy.golden", WITH_MULTIPLE_FLAGS, False),
    ],
)
def test_saved_rules_match_kuma_e2e(golden_name, params, ipv6):
    expected = {t: lines for t, lines in saved_golden(golden_name).items() if lines}
    assert saved_lines(params, ipv6) == expected


def test_rhel_golden_holds_the_same_rules_in_another_order():
    """RHEL 8's iptables-save orders chains differently; the rules are the same."""
    expected = saved_golden("rhel-8-with-multiple-flags.iptables.golden")
    ours = saved_lines(WITH_MULTIPLE_FLAGS, False)
    for table, lines in ours.items():
        assert sorted(lines) == sorted(expected[table])


def dry_run_golden(name):
    """kumactl's dry-run file without its '### IPv4 ###' header."""
    text = golden("kumactl-dry-run", name)
    return text.split("\n", 2)[2].strip() + "\n"


def dry_run(overrides, uid="0", dns_servers=None):
    params = config.with_defaults(overrides)
    params["comments"]["disabled"] = True  # kumactl's unit tests run without the comment module
    cfg = config.family_config(params, ipv6=False, uid=uid, dns_servers=dns_servers, loopback="ifPlaceholder")
    return rules.build(cfg).restore_text()


@pytest.mark.parametrize(
    "name,overrides",
    [
        ("install-transparent-proxy.defaults.golden.txt", {}),
        (
            "install-transparent-proxy.overrides.golden.txt",
            {
                "redirect": {
                    "outbound": {"port": 12345, "exclude_ports": [2000, 2001]},
                    "inbound": {"port": 12346, "exclude_ports": [1000, 1001]},
                }
            },
        ),
        (
            "install-transparent-proxy.excludedports.txt",
            {
                "redirect": {
                    "outbound": {
                        "exclude_ports_for_uids": [
                            "tcp:1900,1902,1000-2000:106-108",
                            "tcp:2900,2902,3000-5000:203",
                            "udp:3900,3902,4000-6000:303",
                        ]
                    }
                }
            },
        ),
        ("install-transparent-proxy.excludedports_wildcards.txt", {"redirect": {"outbound": {"exclude_ports_for_uids": ["*:*:0"]}}}),
        ("install-transparent-proxy.excludedports_allprotos.txt", {"redirect": {"outbound": {"exclude_ports_for_uids": ["tcp:*:0"]}}}),
        ("install-transparent-proxy.excludedports_onlyuid.txt", {"redirect": {"outbound": {"exclude_ports_for_uids": ["123"]}}}),
    ],
)
def test_restore_input_matches_kumactl_dry_run(name, overrides):
    assert dry_run(overrides) == dry_run_golden(name)


def test_dns_without_conntrack_matches_kumactl_dry_run():
    """kumactl drops the zone split when conntrack is missing; here that is skip_conntrack_zone_split."""
    text = dry_run({"redirect": {"dns": {"capture_all": True, "port": 12345, "skip_conntrack_zone_split": True}}})
    expected = dry_run_golden("install-transparent-proxy.dns.no-conntrack.golden.txt")
    assert text == expected.replace("dnsJumpTargetPlaceholder", "RETURN")


def test_dns_raw_table_matches_kumactl_dry_run():
    """Only the raw-table part of this golden is current (see SOURCES.md)."""
    text = dry_run({"redirect": {"dns": {"capture_all": True, "port": 12345}}})
    raw = text.split("COMMIT", maxsplit=1)[0]
    assert raw == dry_run_golden("install-transparent-proxy.dns.golden.txt").split("COMMIT", maxsplit=1)[0]


def test_docker_output_chain_becomes_the_dns_jump_target():
    params = config.with_defaults({"redirect": {"dns": {"capture_all": True}}})
    cfg = config.family_config(params, ipv6=False, uid="5678", docker_output=True)
    text = rules.build(cfg).restore_text()
    assert (
        '-I OUTPUT 1 -m comment --comment "kuma/mesh/transparent/proxy/redirect DNS traffic from kuma-dp to the '
        'DOCKER_OUTPUT chain" -p udp --dport 53 -m owner --uid-owner 5678 -j DOCKER_OUTPUT'
    ) in text
    # Kuma: no conntrack zone split when all DNS is captured inside Docker.
    assert "* raw" not in text


def test_restore_lines_tokenise_as_written():
    """Every line we write splits, as iptables-restore splits it, into exactly the
    tokens the builder meant (args()), and matches kumactl's golden token for token."""
    from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_gate as gate

    for params in (config.with_defaults(), WITH_MULTIPLE_FLAGS, WITH_MULTIPLE_CONFIG_FLAGS):
        for ipv6 in (False, True):
            cfg = config.family_config(params, ipv6=ipv6, uid="5678", dns_servers=["127.0.0.53", "::1"])
            ruleset = rules.build(cfg)
            for table in ruleset.tables:
                for chain in table.chains:
                    for rule in chain.rules:
                        tokens = gate.tokenize(rule.restore())
                        assert tokens == rule.head_words() + rule.args(), rule.restore()
    ours = [gate.tokenize(line) for line in dry_run({}).splitlines()]
    kumas = [gate.tokenize(line) for line in dry_run_golden("install-transparent-proxy.defaults.golden.txt").splitlines()]
    assert ours == kumas


def test_unsafe_values_cannot_be_rendered():
    for bad in ("a\n-F DOCKER", "-j", "!x", 'a"b', "a b", ""):
        rule = rules.Rule("nat", "KUMA_MESH_INBOUND", [rules.in_iface(bad), rules.RETURN])
        with pytest.raises(rules.UnsafeRule):
            rule.restore()
        with pytest.raises(rules.UnsafeRule):
            rule.args()
    rule = rules.Rule("nat", "KUMA_MESH_INBOUND", [rules.RETURN], comment="line\nbreak")
    with pytest.raises(rules.UnsafeRule):
        rule.restore()


CONFIG_2_YAML = """
redirect:
  dns:
    enabled: true
    port: 8888
  outbound:
    excludePortsForIPs:
    - 10.11.12.13
    - 172.14.15.16/32
  inbound:
    excludePorts:
    - 10000
    - 20000
"""
CONFIG_STDIN_YAML = """
redirect:
  vnet:
    networks:
    - docker2:10.0.0.0/8
    - docker0:172.17.0.0/16
    - br+:172.18.0.0/16
    - iface:::1/64
  dns:
    enabled: true
    captureAll: true
  inbound:
    enabled: true
    excludePorts:
    - 4444
    - 55555
    excludePortsForIPs:
    - 192.168.0.1,172.32.16.8/16,fe80::/10
    - a81b:a033:6399:73c7:72b6:aa8c:6f22:7098
  outbound:
    enabled: true
    excludePortsForUIDs:
    - 1
    - 2-3:4-5
    excludePorts:
    - 6
    - 77
    - 888
    excludePortsForIPs:
    - 10.0.0.1,192.168.0.0/24,fe80::1
    - fd00::/8
"""


@pytest.mark.parametrize("ipv6", [False, True])
def test_kumactl_configuration_gives_kumas_e2e_rules(ipv6):
    """Kuma's with-multiple-config-flags case from its own YAML: /2.yaml as config_file
    (it overrides all of /1.yaml), STDIN as config; kumactl's precedence."""
    params = dict((k, None) for k in config.ARGUMENT_SPEC)
    params.update(config_file="/etc/kuma/tproxy.yaml", config=CONFIG_STDIN_YAML)
    effective, errors = config.effective_params(params, config_file_text=CONFIG_2_YAML)
    assert errors == [] and config.validate(effective) == []
    assert effective["redirect"]["dns"]["port"] == 8888
    name = "ubuntu-24-04-with-multiple-config-flags.%s.golden" % ("ip6tables" if ipv6 else "iptables")
    expected = {t: lines for t, lines in saved_golden(name).items() if lines}
    assert saved_lines(effective, ipv6) == expected
