"""kuma_tproxy_check on hosts without a default route, as the Molecule hosts are (root, network namespaces).

The host namespace reaches only its connected subnets (192.0.2.0/24 and 2001:db8::/64, the peer at .2 / ::2):
a connection to TEST-NET fails with ENETUNREACH before the rules see it, so the check picks a free address of a
connected subnet, which nobody answers for. The resolvers are such addresses too (192.0.2.53, 2001:db8::53):
only the rules can get a DNS query to them answered.
"""

import os

from netns import KUMA_DP_UID, PEER_V4, ROOT, SYSTEM_PYTHON, Namespace, run_module, wait_for

RESOLVERS = ("192.0.2.53", "2001:db8::53")


def install(pair, resolvers=RESOLVERS):
    resolv = os.path.join(pair.tmp, "resolv.conf")
    with open(resolv, "w") as f:
        f.write("".join("nameserver %s\n" % r for r in resolvers))
    result = run_module(pair.host, {"kuma_dp_user": "kuma-dp",
                                    "redirect": {"dns": {"enabled": True, "resolv_conf": resolv}}})
    assert result["changed"] and not result.get("failed"), result
    return resolv


def check(ns, check_mode=False, **args):
    return run_module(ns, dict({"timeout": 0.5}, **args), check=check_mode, module="kuma_tproxy_check")


def start_coredns(pair, servers, ns, port, uid=None):
    corefile = os.path.join(pair.tmp, "Corefile-%d" % port)
    with open(corefile, "w") as f:
        f.write(".:%d {\n    errors\n}\n" % port)
    os.chmod(pair.tmp, 0o755)
    os.chmod(corefile, 0o644)
    proc = ns.popen([SYSTEM_PYTHON, os.path.join(ROOT, "tests", "standins", "coredns.py"), "-conf", corefile,
                     "-quiet"], uid=uid)
    servers.procs.append(proc)
    assert wait_for(lambda: ":%d " % port in ns.run("ss", "-Hlun").stdout), proc.stderr.read()


def test_without_a_default_route_the_target_is_a_free_address_of_a_connected_subnet(pair):
    assert "default" not in pair.host.run("ip", "route").stdout
    resolv = install(pair)
    result = check(pair.host, listener="own", checks=["outbound", "inbound", "dns"], resolv_conf=resolv)
    assert not result.get("failed"), result
    v4, v6 = result["families"]["ipv4"], result["families"]["ipv6"]
    # IPv4 from the top of the subnet: .254 (the host is .1, the peer .2)
    assert v4["outbound"]["target"].startswith("192.0.2.254:"), v4["outbound"]
    assert "connected subnet 192.0.2.0/24" in v4["outbound"]["target_chosen"]
    assert v6["outbound"]["target"].startswith("[2001:db8::"), v6["outbound"]
    assert "connected subnet 2001:db8::/64" in v6["outbound"]["target_chosen"]
    for family in ("ipv4", "ipv6"):
        checks = result["families"][family]
        assert checks["outbound"]["redirected"] and checks["inbound"]["redirected"], checks
        assert checks["outbound"]["as_kuma_dp"]["connected"] is False, checks["outbound"]
        assert checks["dns"]["redirected"] and checks["dns"]["as_kuma_dp"]["answered"] is False, checks["dns"]
        assert len(result["proven"][family]) == 3
    assert result["msg"] == ("transparent proxy checked - ipv4: outbound, inbound, dns proven | "
                             "ipv6: outbound, inbound, dns proven"), result["msg"]


def test_without_rules_it_fails_with_the_reason_per_family(pair):
    result = check(pair.host, listener="own", checks=["outbound", "dns"], dns_servers=list(RESOLVERS))
    assert result["failed"], result
    for family in ("ipv4", "ipv6"):
        assert "%s outbound: a connection to " % family in result["msg"]
        assert "the rules did not hand it to the outbound redirect port 15001" in result["msg"]
        assert "%s dns: a DNS query to %s" % (family, RESOLVERS[0 if family == "ipv4" else 1]) in result["msg"]
        assert result["families"][family]["outbound"]["redirected"] is False


def test_a_host_with_only_the_loopback_says_why_nothing_can_be_proven():
    ns = Namespace("kmlo-%d" % os.getpid())
    try:
        result = check(ns, listener="own", families=["ipv4"], checks=["outbound"])
        assert result["failed"], result
        assert ("ipv4 outbound: no route to 203.0.113.1 and no free address on a connected subnet (none)"
                in result["msg"]), result["msg"]
        given = check(ns, listener="own", families=["ipv4"], checks=["outbound"], target_ipv4="198.51.100.7")
        assert "no route to 198.51.100.7 (target_ipv4)" in given["msg"], given
    finally:
        ns.delete()


def test_an_unreachable_resolver_is_skipped_with_the_reason(pair):
    resolv = install(pair, resolvers=("10.255.255.53",))
    result = check(pair.host, listener="own", families=["ipv4"], checks=["outbound", "dns"], resolv_conf=resolv)
    assert not result.get("failed"), result
    dns = result["families"]["ipv4"]["dns"]
    assert dns["skipped"].startswith("no route to the resolver 10.255.255.53"), dns
    assert result["msg"].startswith("transparent proxy checked - ipv4: outbound proven; dns not proven (no route "
                                    "to the resolver 10.255.255.53"), result["msg"]


def test_the_running_proxy_on_a_host_without_a_default_route(pair, servers):
    resolv = install(pair, resolvers=(PEER_V4,))
    servers.start(pair.host, "origdst", ["6", 15001, "tcp"], uid=KUMA_DP_UID)
    servers.start(pair.host, "origdst", ["6", 15006, "tcp"], uid=KUMA_DP_UID)
    start_coredns(pair, servers, pair.host, 15053, uid=KUMA_DP_UID)
    # the peer is a resolver too: kuma-dp's own query is answered, so only a name the DNS proxy alone knows proves it
    start_coredns(pair, servers, pair.peer, 53)
    plain = check(pair.host, check_mode=True, families=["ipv4"], checks=["outbound", "dns"], resolv_conf=resolv)
    assert not plain.get("failed"), plain
    assert plain["families"]["ipv4"]["outbound"]["listener"] == "running"
    assert plain["families"]["ipv4"]["outbound"]["redirected"], plain
    assert plain["families"]["ipv4"]["dns"]["redirected"] is None, plain
    assert "not told apart from the resolver" in plain["families"]["ipv4"]["dns"]["note"]
    assert "dns not proven (DNS to 192.0.2.2 is answered, but the resolver gives kuma-dp the same" in plain["msg"]
