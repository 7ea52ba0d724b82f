"""Real traffic through the rules kuma_tproxy writes, in throwaway namespaces."""

import os

import pytest

from netns import (
    HOST_V4,
    HOST_V6,
    KUMA_DP_UID,
    PEER_V4,
    PEER_V6,
    connect,
    run_module,
)


@pytest.mark.parametrize("family", ["4", "6"])
def test_outbound_inbound_and_kuma_dp_traffic(pair, servers, family):
    host_addr, peer_addr = (HOST_V4, PEER_V4) if family == "4" else (HOST_V6, PEER_V6)
    result = run_module(
        pair.host,
        {"kuma_dp_user": "kuma-dp", "redirect": {"outbound": {"exclude_ports": [8081]}, "inbound": {"exclude_ports": [9091]}}},
    )
    assert result["changed"], result
    assert "ipv6" in result["families"]

    # kuma-dp's proxies, as the kuma-dp user, on the redirect ports
    servers.start(pair.host, "origdst", [family, 15001, "tcp"], uid=KUMA_DP_UID)
    servers.start(pair.host, "origdst", [family, 15006, "tcp"], uid=KUMA_DP_UID)
    # real services: on the peer (8080, 8081) and on the host (9091)
    servers.start(pair.peer, "serve", [family, 8080, "peer"])
    servers.start(pair.peer, "serve", [family, 8081, "peer"])
    servers.start(pair.host, "serve", [family, 9091, "host"])
    bracket = "[%s]" % peer_addr if family == "6" else peer_addr
    host_bracket = "[%s]" % host_addr if family == "6" else host_addr

    # an application's outbound TCP reaches 15001 with its original destination
    assert connect(pair.host, peer_addr, 8080, uid=0) == "proxy:15001 orig=%s:8080" % bracket
    assert connect(pair.host, peer_addr, 8080, uid=1000) == "proxy:15001 orig=%s:8080" % bracket
    # the kuma-dp user's traffic is not redirected
    assert connect(pair.host, peer_addr, 8080, uid=KUMA_DP_UID) == "peer:8080"
    # an excluded outbound port passes
    assert connect(pair.host, peer_addr, 8081, uid=0) == "peer:8081"
    # inbound TCP from the peer reaches 15006 with its original destination
    assert connect(pair.peer, host_addr, 9090) == "proxy:15006 orig=%s:9090" % host_bracket
    # an excluded inbound port reaches the service itself
    assert connect(pair.peer, host_addr, 9091) == "host:9091"


def test_dns_to_the_resolver_reaches_15053(pair, servers):
    resolv = os.path.join(pair.tmp, "resolv.conf")
    with open(resolv, "w") as f:
        f.write("nameserver %s\nnameserver %s\n" % (PEER_V4, PEER_V6))
    result = run_module(pair.host, {"redirect": {"dns": {"enabled": True, "resolv_conf": resolv}}})
    assert result["changed"], result
    servers.start(pair.host, "origdst", ["4", 15053, "udp"], uid=KUMA_DP_UID)
    servers.start(pair.host, "origdst", ["6", 15053, "udp"], uid=KUMA_DP_UID)
    assert connect(pair.host, PEER_V4, 53, proto="udp", uid=0) == "dns-proxy:query"
    assert connect(pair.host, PEER_V6, 53, proto="udp", uid=0) == "dns-proxy:query"
    # DNS to a server not in resolv.conf is not redirected (nothing answers there)
    assert connect(pair.host, "192.0.2.99", 53, proto="udp", uid=0).startswith("error")


def test_without_rules_nothing_is_redirected(pair, servers):
    """The control for the tests above: the same connections with no rules go straight through."""
    servers.start(pair.peer, "serve", ["4", 8080, "peer"])
    servers.start(pair.host, "origdst", ["4", 15001, "tcp"], uid=KUMA_DP_UID)
    assert connect(pair.host, PEER_V4, 8080, uid=0) == "peer:8080"
