"""kuma_tproxy_check against real rules written by kuma_tproxy, in throwaway namespaces (root).

The host namespace gets default routes through the peer, which does not forward: the check's TEST-NET
targets (203.0.113.1, 2001:db8:ffff::1) route nowhere, so only the rules can make a connection to them
succeed.
"""

import os

from netns import KUMA_DP_UID, PEER_V4, PEER_V6, ROOT, SYSTEM_PYTHON, run_module, wait_for


def route_nowhere(pair):
    pair.host.run("ip", "route", "add", "default", "via", PEER_V4)
    pair.host.run("ip", "-6", "route", "add", "default", "via", PEER_V6)


def install(pair, **redirect_dns):
    resolv = os.path.join(pair.tmp, "resolv.conf")
    with open(resolv, "w") as f:
        f.write("nameserver %s\nnameserver %s\n" % (PEER_V4, PEER_V6))
    args = {"kuma_dp_user": "kuma-dp", "redirect": {"dns": dict({"enabled": True, "resolv_conf": resolv}, **redirect_dns)}}
    result = run_module(pair.host, args)
    assert result["changed"] and not result.get("failed"), result
    return resolv


def check(pair, check_mode=False, **args):
    return run_module(pair.host, dict({"timeout": 0.5}, **args), check=check_mode, module="kuma_tproxy_check")


def test_fails_with_the_reason_without_rules(pair):
    route_nowhere(pair)
    result = check(pair, listener="own", checks=["outbound", "inbound", "dns"], dns_servers=[PEER_V4, PEER_V6])
    assert result["failed"] and not result["changed"], result
    msg = result["msg"]
    for family in ("ipv4", "ipv6"):
        assert "%s outbound: a connection to " % family in msg
        assert "%s inbound: a connection from " % family in msg
        assert "%s dns: a DNS query to " % family in msg
        assert result["families"][family]["outbound"]["redirected"] is False
    assert "the rules did not hand it to the outbound redirect port 15001" in msg


def test_proves_outbound_inbound_and_dns_with_its_own_listeners(pair):
    route_nowhere(pair)
    resolv = install(pair)
    result = check(pair, listener="own", checks=["outbound", "inbound", "dns"], resolv_conf=resolv, target_port=24242)
    assert not result.get("failed") and not result["changed"], result
    assert sorted(result["families"]) == ["ipv4", "ipv6"]  # auto: the host has IPv6
    v4, v6 = result["families"]["ipv4"], result["families"]["ipv6"]
    assert v4["outbound"]["redirected"] and v4["outbound"]["listener"] == "own"
    assert v4["outbound"]["as_kuma_dp"]["connected"] is False
    assert v6["outbound"]["target"] == "[2001:db8:ffff::1]:24242"
    assert "original destination read back" in result["proven"]["ipv6"][0]
    assert v4["inbound"]["redirected"] and v6["inbound"]["redirected"]
    assert v4["dns"]["server"] == PEER_V4 and v6["dns"]["server"] == PEER_V6
    assert v4["dns"]["redirected"] and v6["dns"]["redirected"]
    assert result["users"]["kuma_dp"] == {"name": "kuma-dp", "uid": KUMA_DP_UID}
    assert len(result["proven"]["ipv4"]) == 3


def test_proves_the_running_proxy_in_check_mode(pair, servers):
    route_nowhere(pair)
    resolv = install(pair)
    # kuma-dp's stand-ins as the kuma-dp user: a dual-stack proxy on both redirect ports, CoreDNS on 15053
    servers.start(pair.host, "origdst", ["6", 15001, "tcp"], uid=KUMA_DP_UID)
    servers.start(pair.host, "origdst", ["6", 15006, "tcp"], uid=KUMA_DP_UID)
    corefile = os.path.join(pair.tmp, "Corefile")
    with open(corefile, "w") as f:
        f.write(".:15053 {\n    errors\n}\n")
    os.chmod(pair.tmp, 0o755)
    os.chmod(corefile, 0o644)
    coredns = pair.host.popen([SYSTEM_PYTHON, os.path.join(ROOT, "tests", "standins", "coredns.py"), "-conf",
                               corefile, "-quiet"], uid=KUMA_DP_UID)
    servers.procs.append(coredns)
    assert wait_for(lambda: "15053" in pair.host.run("ss", "-Hlun").stdout), coredns.stderr.read()
    # auto: the ports are taken, so the running proxy is tested; backend.mesh is a name only the DNS proxy knows
    result = check(pair, check_mode=True, checks=["outbound", "inbound", "dns"], resolv_conf=resolv,
                   dns_name="backend.mesh")
    assert not result.get("failed") and not result["changed"], result
    for family in ("ipv4", "ipv6"):
        assert result["families"][family]["outbound"]["listener"] == "running"
        assert result["families"][family]["outbound"]["redirected"]
        assert result["families"][family]["inbound"]["redirected"]
        assert result["families"][family]["dns"]["redirected"], result["families"][family]["dns"]
    # without a mesh name: the peer runs no resolver, so kuma-dp's own (unredirected) query gets no answer, and
    # that difference is the proof (tests/integration/test_tproxy_check_onlink.py has a resolver that answers)
    plain = check(pair, families=["ipv4"], checks=["dns"], resolv_conf=resolv)
    assert not plain.get("failed") and plain["families"]["ipv4"]["dns"]["redirected"] is True, plain
    assert "as kuma-dp, never redirected, the same query got no answer" in plain["proven"]["ipv4"][0]
    own = check(pair, listener="own", families=["ipv4"])
    assert own["failed"] and "cannot listen on TCP port 15001" in own["msg"], own


def test_finds_kuma_dp_traffic_redirected(pair):
    """Rules written for another user (here nobody; root is refused) also redirect kuma-dp's traffic: a loop, and the check says so."""
    route_nowhere(pair)
    result = run_module(pair.host, {"kuma_dp_user": "65534"})
    assert result["changed"], result
    result = check(pair, listener="own", families=["ipv4"], checks=["outbound"], kuma_dp_user="kuma-dp")
    assert result["failed"], result
    assert "as kuma-dp's uid %d was accepted by the check's listener: kuma-dp's own traffic is redirected" % KUMA_DP_UID \
        in result["msg"]


def test_refuses_bad_input_without_a_traceback(pair):
    for args, message in (({"test_user": "kuma-dp"}, "test_user: kuma-dp has kuma-dp's uid"),
                          ({"target_ipv4": "127.0.0.9"}, "target_ipv4: 127.0.0.9 must be a unicast address"),
                          ({"outbound_port": 0}, "outbound_port: 0 is not a port"),
                          ({"test_user": "no-such-user-here"}, "test_user: no user named 'no-such-user-here'")):
        result = check(pair, **args)
        assert result["failed"] and message in result["msg"], result
        assert "Traceback" not in result.get("module_stderr", "")
