"""kuma_tproxy_check: where the outbound probe goes on a host without a default route, and the result's message.
The probes against real rules are tests/integration/test_tproxy_check_onlink.py."""

import random
import socket

import pytest

from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_check as tc

# /proc/net/route of a host with a connected /24 on eth0, a /32 route, a gateway route and the loopback
ROUTE = """Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
eth0\t0000000A\t010200C0\t0003\t0\t0\t0\t000000FF\t0\t0\t0
eth1\t0100A8C0\t00000000\t0005\t0\t0\t0\tFFFFFFFF\t0\t0\t0
lo\t0000007F\t00000000\t0001\t0\t0\t0\t000000FF\t0\t0\t0
"""
# /proc/net/ipv6_route: 2001:db8::/64 on eth0, fe80::/64, a local /128, a gateway route and a reject route
IPV6_ROUTE = """\
20010db8000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0
fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0
20010db8000000000000000000000001 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000002 00000000 80200001     eth0
fd000000000000000000000000000000 08 00000000000000000000000000000000 00 20010db8000000000000000000000002 00000400 00000001 00000000 00000003     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo
"""
ARP = """IP address       HW type     Flags       HW address            Mask     Device
192.0.2.254      0x1         0x2         aa:bb:cc:dd:ee:ff     *        eth0
192.0.2.253      0x1         0x0         00:00:00:00:00:00     *        eth0
"""


@pytest.fixture
def proc_net(tmp_path):
    (tmp_path / "route").write_text(ROUTE)
    (tmp_path / "ipv6_route").write_text(IPV6_ROUTE)
    (tmp_path / "arp").write_text(ARP)
    return str(tmp_path)


def no_default_route(own=("192.0.2.1", "2001:db8::1")):
    """A route lookup on the host above: connected subnets only; an own address is routed to itself."""
    import ipaddress

    def route(family, address):
        ip = ipaddress.ip_address(address)
        if str(ip) in own:
            return str(ip)
        for subnet in ("192.0.2.0/24", "2001:db8::/64"):
            if ip in ipaddress.ip_network(subnet):
                return [a for a in own if ipaddress.ip_address(a) in ipaddress.ip_network(subnet)][0]
        return None
    return route


def test_connected_subnets_skip_gateways_host_routes_link_local_and_the_loopback(proc_net):
    assert tc.connected_subnets("ipv4", proc_net) == [tc.Subnet(tc.ipaddress.ip_network("192.0.2.0/24"), "eth0")]
    assert tc.connected_subnets("ipv6", proc_net) == [tc.Subnet(tc.ipaddress.ip_network("2001:db8::/64"), "eth0")]
    assert tc.connected_subnets("ipv4", proc_net + "/missing") == []


def test_arp_neighbours_are_the_complete_entries_only(proc_net):
    assert tc.arp_neighbours(proc_net) == {"192.0.2.254"}


def test_without_a_default_route_ipv4_counts_down_from_the_top_skipping_answered_neighbours(proc_net):
    target = tc.choose_target("ipv4", None, proc_net, route=no_default_route())
    # .254 answered ARP (someone owns it); .253 only has an incomplete entry: nobody answered
    assert target.address == "192.0.2.253"
    assert "connected subnet 192.0.2.0/24 on eth0" in target.how and "no route to 203.0.113.1" in target.how


def test_without_a_default_route_ipv6_takes_a_random_address_of_the_subnet(proc_net):
    target = tc.choose_target("ipv6", None, proc_net, route=no_default_route(), rng=random.Random(7))
    address = tc.ipaddress.ip_address(target.address)
    assert address in tc.ipaddress.ip_network("2001:db8::/64") and int(address) & (1 << 63)
    assert "connected subnet 2001:db8::/64 on eth0" in target.how


def test_the_hosts_own_address_is_never_the_target(proc_net, tmp_path):
    (tmp_path / "route").write_text(ROUTE.replace("00FFFFFF", "FCFFFFFF"))  # 192.0.2.0/30: .1 and .2
    target = tc.choose_target("ipv4", None, proc_net, route=no_default_route(own=("192.0.2.2",)))
    assert target.address == "192.0.2.1"
    with pytest.raises(tc.CheckFailed, match=r"no route to 203\.0\.113\.1 and no free address on a connected subnet "
                                             r"\(192\.0\.2\.0/30\): every address tried is the host's or a neighbour's"):
        tc.choose_target("ipv4", None, proc_net, route=no_default_route(own=("192.0.2.1", "192.0.2.2")))


def test_a_routed_test_net_address_is_kept(proc_net):
    target = tc.choose_target("ipv4", None, proc_net, route=lambda family, address: "10.0.0.5")
    assert target == tc.Target("203.0.113.1", "TEST-NET address, routed off the host (source 10.0.0.5)")
    # routed through the loopback (an address of the host): not off the host, so the connected subnet is used
    onlink = no_default_route()
    target = tc.choose_target("ipv4", None, proc_net,
                              route=lambda family, address: "127.0.0.1" if address == "203.0.113.1" else onlink(family, address))
    assert target.address == "192.0.2.253"


def test_a_given_target_needs_a_route(proc_net):
    assert tc.choose_target("ipv4", "192.0.2.77", proc_net, route=no_default_route()).how == "given (target_ipv4)"
    with pytest.raises(tc.CheckFailed, match=r"no route to 198\.51\.100\.7 \(target_ipv4\)"):
        tc.choose_target("ipv4", "198.51.100.7", proc_net, route=no_default_route())


def test_empty_targets_are_chosen_on_the_host():
    from ansible_collections.kuma.mesh.tests.unit.plugins.module_utils.test_tproxy_check import USERS, params
    settings = tc.parse_params(params(target_ipv4="", target_ipv6=None), users=USERS, ipv6=True, resolv={})
    assert settings.targets == {"ipv4": None, "ipv6": None}
    with pytest.raises(tc.CheckInputError, match="target_ipv6: '192.0.2.9' is not an IPv6|is not an IPv6"):
        tc.parse_params(params(target_ipv6="192.0.2.9"), users=USERS, ipv6=True, resolv={})


def test_summary_says_per_family_what_was_proven_and_what_was_not():
    families = {
        "ipv4": {"outbound": {"proven": "x"}, "inbound": {"proven": "y"},
                 "dns": {"note": "DNS to 10.0.0.2 is answered, but not told apart"}},
        "ipv6": {"outbound": {"proven": "x"}, "dns": {"skipped": "no ipv6 nameserver in resolv.conf or dns_servers"}},
    }
    assert tc.summary_msg(families) == (
        "transparent proxy checked - ipv4: outbound, inbound proven; dns not proven (DNS to 10.0.0.2 is answered, "
        "but not told apart) | ipv6: outbound proven; dns not proven (no ipv6 nameserver in resolv.conf or "
        "dns_servers)")
    assert tc.proven_summary(families)["ipv6"] == ["x"]


def test_own_listener_takes_a_port_left_in_time_wait_by_a_stopped_proxy_but_not_a_listening_one():
    """kuma-dp stopped (kuma.mesh.remediate on a host whose kuma-dp is down): the connections Envoy accepted on
    15001 linger in TIME_WAIT, and the check must still listen there itself."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    conn, _peer = server.accept()
    conn.close()  # the proxy's side closes first: its socket on the port goes to TIME_WAIT
    client.close()
    server.close()
    listener = tc.OwnListener("ipv4", port, "tcp", "t")
    try:
        with pytest.raises(OSError):
            tc.OwnListener("ipv4", port, "tcp", "t")  # a live listener still refuses a second one
    finally:
        listener.close()
