"""Property tests: generated option sets (valid, hostile and absurd) against the input side.

* validate / effective_params / family_config / build never raise;
* every option set validate accepts builds transactions (both families, with and
  without comments) that pass the payload gate, and firewalld entries that pass it too;
* every string option holding a control character is refused.
"""

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_config as config
from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_firewalld as fwd
from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_gate as gate
from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_rules as rules

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

CONTROL = st.sampled_from(["\n", "\r", "\t", "\x00", "\x1b", "\x7f", "\x85", "\u2028"])
hostile_text = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40),
    st.builds(lambda a, c, b: a + c + b, st.text(max_size=10), CONTROL, st.text(max_size=10)),
    st.sampled_from(["", ",,", "-j", "!docker0", "a\n-F DOCKER\n#", '"', "\\", "+", "..", "root", "0", "*", ":"]),
)
ipv4 = st.builds(lambda *o: ".".join(str(x) for x in o), *[st.integers(0, 255)] * 4)
ipv6 = st.sampled_from(["fe80::1", "fd00::", "2001:db8::53", "::1", "a81b:a033:6399:73c7:72b6:aa8c:6f22:7098"])
cidr4 = st.builds(lambda a, p: "%s/%d" % (a, p), ipv4, st.integers(0, 32))
cidr6 = st.builds(lambda a, p: "%s/%d" % (a, p), ipv6, st.integers(0, 128))
address = st.one_of(ipv4, ipv6, cidr4, cidr6)
iface = st.from_regex(r"\A[a-z][a-z0-9_.-]{0,10}\+?\Z")
port = st.integers(1, 65535)
any_number = st.one_of(
    st.integers(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.just(float("nan")), st.just(1e308), st.booleans(),
)
junk = st.one_of(st.none(), any_number, hostile_text, st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
uid_entry = st.one_of(
    st.builds(lambda p, a, b, u: "%s:%d-%d:%d" % (p, a, a + b, u), st.sampled_from(["tcp", "udp", "*", ""]),
              st.integers(1, 30000), st.integers(0, 30000), st.integers(0, 65535)),
    st.builds(str, st.integers(0, 65535)),
    hostile_text,
)


def maybe(strategy):
    """Not set (None), a value of the strategy, or junk."""
    return st.one_of(st.none(), strategy, strategy, junk)


def flow():
    return st.fixed_dictionaries({}, optional={
        "enabled": maybe(st.booleans()),
        "port": maybe(port),
        "include_ports": maybe(st.lists(maybe(port), max_size=4)),
        "exclude_ports": maybe(st.lists(maybe(port), max_size=6)),
        "exclude_ips": maybe(st.lists(st.one_of(address, st.builds(",".join, st.lists(address, max_size=3)), hostile_text), max_size=4)),
        "exclude_ports_for_uids": maybe(st.lists(uid_entry, max_size=3)),
        "insert_instead_of_append": maybe(st.booleans()),
    })


vnet_entry = st.one_of(st.builds(lambda i, c: "%s:%s" % (i, c), iface, st.one_of(cidr4, cidr6)), hostile_text)
options = st.fixed_dictionaries({}, optional={
    "kuma_dp_user": maybe(st.one_of(st.sampled_from(["kuma-dp", "5678", ""]), hostile_text)),
    "ip_family_mode": maybe(st.sampled_from(["dualstack", "ipv4"])),
    "redirect": maybe(st.fixed_dictionaries({}, optional={
        "inbound": maybe(flow()),
        "outbound": maybe(flow()),
        "dns": maybe(st.fixed_dictionaries({}, optional={
            "enabled": maybe(st.booleans()),
            "capture_all": maybe(st.booleans()),
            "port": maybe(port),
            "skip_conntrack_zone_split": maybe(st.booleans()),
            "resolv_conf": maybe(st.one_of(st.just("/etc/resolv.conf"), hostile_text)),
        })),
        "vnet": maybe(st.fixed_dictionaries({}, optional={"networks": maybe(st.lists(vnet_entry, max_size=3))})),
    })),
    "drop_invalid_packets": maybe(st.booleans()),
    "log": maybe(st.fixed_dictionaries({}, optional={"enabled": maybe(st.booleans()), "level": maybe(st.integers(-1, 9))})),
    "comments": maybe(st.fixed_dictionaries({}, optional={"disabled": maybe(st.booleans())})),
    "wait": maybe(st.integers(-1, 4000)),
    "wait_interval": maybe(st.integers(-1, 10**6)),
    "retry": maybe(st.fixed_dictionaries({}, optional={
        "max_retries": maybe(st.integers(-1, 200)),
        "sleep_between_retries": maybe(st.floats(allow_nan=True, allow_infinity=True)),
    })),
})
kumactl_config = st.one_of(
    st.none(), hostile_text,
    st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8)),
        lambda children: st.one_of(
            st.lists(children, max_size=3),
            st.dictionaries(st.sampled_from(["redirect", "inbound", "outbound", "dns", "port", "excludePorts", "captureAll",
                                             "enabled", "retry", "sleepBetweenRetries", "kumaDPUser", "x", "ebpf", "verbose"]),
                            children, max_size=4),
        ),
        max_leaves=10,
    ),
)


def transactions_pass_the_gate(params):
    rulesets = []
    for ipv6 in (False, True):
        cfg = config.family_config(params, ipv6=ipv6, uid="5678", dns_servers=["127.0.0.53", "2001:db8::53"],
                                   extra_inbound_exclude=[22])
        ruleset = rules.build(cfg)
        rulesets.append(ruleset)
        text = ruleset.restore_text()
        claimed = None if ruleset.comments else gate.claims_for([ruleset])
        assert gate.check_restore(text, claimed=claimed) == [], text
        chains, entries = fwd.wanted_entries(ruleset)
        assert gate.check_direct_rules(entries, chains, claimed=fwd.claims_of([ruleset])) == []


@SETTINGS
@given(options)
def test_validate_never_raises_and_accepted_sets_pass_the_gate(params):
    errors = config.validate(params)
    assert isinstance(errors, list) and all(isinstance(e, str) for e in errors)
    if not errors:
        transactions_pass_the_gate(params)


@SETTINGS
@given(options, kumactl_config, st.one_of(st.none(), hostile_text, kumactl_config.map(str)))
def test_effective_params_never_raises(params, conf, file_text):
    params = dict(params, config=conf, config_file="/etc/kuma/tp.yaml" if file_text is not None else None)
    effective, errors = config.effective_params(params, file_text)
    assert isinstance(errors, list) and isinstance(effective, dict)
    problems = config.validate(effective)
    if not errors and not problems:
        transactions_pass_the_gate(effective)


def leaves_with_control_characters():
    """(option path, params) where one string option holds a control character."""
    bad = st.builds(lambda a, c, b: a + c + b, st.text(max_size=6), CONTROL, st.text(max_size=6))
    return st.one_of(
        bad.map(lambda s: {"kuma_dp_user": s}),
        bad.map(lambda s: {"redirect": {"inbound": {"exclude_ips": ["10.0.0.1", s]}}}),
        bad.map(lambda s: {"redirect": {"outbound": {"exclude_ips": [s]}}}),
        bad.map(lambda s: {"redirect": {"outbound": {"exclude_ports_for_uids": [s]}}}),
        bad.map(lambda s: {"redirect": {"vnet": {"networks": [s]}}}),
        bad.map(lambda s: {"redirect": {"vnet": {"networks": ["br0:" + s]}}}),
        bad.map(lambda s: {"redirect": {"vnet": {"networks": [s + ":10.0.0.0/8"]}}}),
        bad.map(lambda s: {"redirect": {"dns": {"resolv_conf": "/etc/" + s}}}),
        bad.map(lambda s: {"iptables_executables": {"iptables": "/a" + s, "iptables_save": "/b", "iptables_restore": "/c"}}),
        bad.map(lambda s: {"config": {"redirect": {"vnet": {"networks": ["br0" + s + ":10.0.0.0/8"]}}}}),
    )


@SETTINGS
@given(leaves_with_control_characters())
def test_every_string_with_a_control_character_is_refused(params):
    effective, errors = config.effective_params(params)
    assert errors or config.validate(effective)


@SETTINGS
@given(st.floats(allow_nan=True, allow_infinity=True))
def test_sleep_between_retries_is_finite_and_bounded_when_accepted(value):
    errors = config.validate({"retry": {"sleep_between_retries": value}})
    if not errors:
        assert math.isfinite(value) and 0 <= value <= config.MAX_SLEEP_BETWEEN_RETRIES


def valid_flow(inbound):
    return st.fixed_dictionaries({
        "enabled": st.booleans(),
        "port": st.sampled_from([15006, 15001, 12345]) if inbound else st.sampled_from([15001, 23456]),
        "include_ports": st.one_of(st.just([]), st.lists(port, max_size=4)),
        "exclude_ports": st.lists(port, max_size=6),
        "exclude_ips": st.lists(st.one_of(address, st.builds(",".join, st.lists(address, min_size=1, max_size=3))), max_size=4),
        "exclude_ports_for_uids": st.just([]) if inbound else st.lists(uid_entry.filter(lambda s: "\x00" not in s), max_size=3),
        "insert_instead_of_append": st.booleans(),
    })


valid_options = st.fixed_dictionaries({
    "kuma_dp_user": st.sampled_from(["kuma-dp", "5678", ""]),
    "redirect": st.fixed_dictionaries({
        "inbound": valid_flow(True),
        "outbound": valid_flow(False),
        "dns": st.fixed_dictionaries({
            "enabled": st.booleans(), "capture_all": st.booleans(), "port": st.sampled_from([15053, 5353]),
            "skip_conntrack_zone_split": st.booleans(),
        }),
        "vnet": st.fixed_dictionaries({"networks": st.lists(st.builds(lambda i, c: "%s:%s" % (i, c), iface, st.one_of(cidr4, cidr6)), max_size=3)}),
    }),
    "drop_invalid_packets": st.booleans(),
    "log": st.fixed_dictionaries({"enabled": st.booleans(), "level": st.integers(0, 7)}),
    "comments": st.fixed_dictionaries({"disabled": st.booleans()}),
})


@SETTINGS
@given(valid_options, st.booleans())
def test_well_typed_option_sets_build_gated_transactions(params, docker_output):
    errors = config.validate(params)
    if errors:
        return
    for ipv6 in (False, True):
        cfg = config.family_config(params, ipv6=ipv6, uid="5678", dns_servers=["127.0.0.53", "::1"], docker_output=docker_output)
        ruleset = rules.build(cfg)
        claimed = None if ruleset.comments else gate.claims_for([ruleset])
        assert gate.check_restore(ruleset.restore_text(), claimed=claimed) == []
