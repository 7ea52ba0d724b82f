"""Property-based tests (hypothesis) of the real module in network namespaces:
generated foreign rule sets survive install and uninstall byte-identical, a
second run writes nothing, and generated bad input changes nothing and never
ends in a traceback. Bounded (a few dozen examples, no deadline) so the file
runs in about a minute or two."""

import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netns import Namespace, run_module

BOUNDED = settings(max_examples=6, deadline=None, database=None, derandomize=True,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
SETTINGS = {"kuma_dp_user": "kuma-dp", "redirect": {"dns": {"capture_all": True}, "inbound": {"exclude_ports": [4444]}},
            "drop_invalid_packets": True}

CHAINS = {
    "raw": ["PREROUTING", "OUTPUT"],
    "nat": ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"],
    "mangle": ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"],
    "filter": ["INPUT", "FORWARD", "OUTPUT"],
}
TARGETS = {"raw": ["ACCEPT", "RETURN", "NOTRACK"], "nat": ["ACCEPT", "RETURN"], "mangle": ["ACCEPT", "RETURN"],
           "filter": ["ACCEPT", "RETURN", "DROP"]}
COMMENT = st.text(alphabet="abcdefghijklmnopqrstuvwxyz KUMA_/-.0123456789", min_size=1, max_size=30).map(str.strip).filter(bool)


@st.composite
def foreign_rule(draw, family):
    table = draw(st.sampled_from(sorted(CHAINS)))
    chain = draw(st.sampled_from(CHAINS[table]))
    words = ["-A", chain]
    if draw(st.booleans()):
        if family == "ipv4":
            words += ["-d", "198.51.100.%d/32" % draw(st.integers(1, 254))]
        else:
            words += ["-d", "2001:db8:%x::1/128" % draw(st.integers(1, 0xffff))]
    if draw(st.booleans()):
        proto = draw(st.sampled_from(["tcp", "udp"]))
        words += ["-p", proto, "-m", proto, "--dport", str(draw(st.integers(1, 65535)))]
    if draw(st.booleans()):
        comment = draw(COMMENT)
        if table == "filter" and draw(st.booleans()):
            comment = "kuma/mesh/transparent/proxy/" + comment  # an operator's rule with Kuma's prefix
        words += ["-m", "comment", "--comment", '"%s"' % comment]
    words += ["-j", draw(st.sampled_from(TARGETS[table]))]
    return table, " ".join(words)


def restore_text(rules_):
    out = []
    for table in ("raw", "nat", "mangle", "filter"):
        lines = [line for t, line in rules_ if t == table]
        if lines:
            out.append("*%s\n%s\nCOMMIT\n" % (table, "\n".join(lines)))
    return "".join(out)


def everything(ns):
    return ns.save("ipv4"), ns.save("ipv6")


@BOUNDED
@given(v4=st.lists(foreign_rule("ipv4"), max_size=8), v6=st.lists(foreign_rule("ipv6"), max_size=4),
       top=st.booleans())
def test_generated_foreign_rules_survive_install_and_uninstall(kuma_dp_user, v4, v6, top):
    ns = Namespace("kmq-" + uuid.uuid4().hex[:6])
    try:
        ns.run("ip", "link", "add", "d0", "type", "veth", "peer", "name", "d1")
        ns.run("ip", "-6", "addr", "add", "2001:db8::1/64", "dev", "d0", "nodad")
        if top:  # foreign rules first, Kuma's after them
            ns.restore(restore_text(v4), "ipv4")
            ns.restore(restore_text(v6), "ipv6")
        first = run_module(ns, SETTINGS)
        assert not first.get("failed"), first
        if not top:  # Kuma's first, foreign rules added after it
            ns.restore(restore_text(v4), "ipv4")
            ns.restore(restore_text(v6), "ipv6")
            before = None
        installed = everything(ns)
        second = run_module(ns, SETTINGS)
        assert second["changed"] is False and not [c for c in second["commands"] if "-restore" in c], second
        assert everything(ns) == installed
        removed = run_module(ns, dict(SETTINGS, state="absent"))
        assert not removed.get("failed"), removed
        after = everything(ns)
        # what is left is exactly the foreign rules, in order, on a host that had them alone
        ref = Namespace("kmr-" + uuid.uuid4().hex[:6])
        try:
            ref.restore(restore_text(v4), "ipv4")
            ref.restore(restore_text(v6), "ipv6")
            before = everything(ref)
        finally:
            ref.delete()
        for got, want in zip(after, before):
            assert [l for l in got.splitlines() if l.startswith("-A")] == [l for l in want.splitlines() if l.startswith("-A")]
        assert run_module(ns, dict(SETTINGS, state="absent"))["changed"] is False
    finally:
        ns.delete()


BAD_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=12)
BAD = st.one_of(
    st.builds(lambda v: {"redirect": {"inbound": {"port": v}}}, st.one_of(st.integers(-5, 0), st.integers(65536, 10 ** 12))),
    st.builds(lambda v: {"redirect": {"outbound": {"exclude_ports": [v]}}}, st.integers(65536, 10 ** 9)),
    st.builds(lambda v: {"redirect": {"outbound": {"exclude_ips": [v]}}}, BAD_TEXT.filter(lambda t: "." not in t and ":" not in t)),
    st.builds(lambda v: {"redirect": {"vnet": {"networks": [v]}}}, BAD_TEXT.map(lambda t: t + "\n-F DOCKER")),
    st.builds(lambda v: {"redirect": {"outbound": {"exclude_ports_for_uids": [v]}}}, BAD_TEXT.map(lambda t: "tcp:" + t + ":x")),
    st.builds(lambda v: {"kuma_dp_user": v}, st.sampled_from(["root", "0", "no-such-user-kmq", "a\nb"])),
    st.builds(lambda v: {"retry": {"sleep_between_retries": v}}, st.sampled_from([float("nan"), float("inf"), 1e308, -1.0])),
)


@BOUNDED
@given(bad=BAD)
def test_bad_input_changes_nothing_and_never_ends_in_a_traceback(pair, bad):
    host = pair.host
    base = {"kuma_dp_user": "kuma-dp"}
    assert not run_module(host, base).get("failed")
    installed = everything(host)
    result = run_module(host, dict(base, **bad))
    assert everything(host) == installed
    if result.get("failed"):
        assert result["changed"] is False
        assert "Traceback" not in str(result) and "internal error" not in result["msg"], result["msg"]
    else:  # accepted (e.g. a retry setting only used on failure): then it was a no-op or a valid change
        assert result["changed"] is False or not result.get("failed")
