"""What the module reads of the host: which IPv6 addresses mean "this host has IPv6"."""

from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_host as host

LO = "00000000000000000000000000000001 01 80 10 80       lo\n"
PASSTHROUGH = "00000000000000000000000000000006 01 80 00 80       lo\n"
LINK_LOCAL = "fe80000000000000a8c1abfffe123456 02 40 20 80     eth0\n"
GLOBAL = "20010db8000000000000000000000001 02 40 00 80     eth0\n"


def if_inet6(tmp_path, *lines):
    path = tmp_path / "if_inet6"
    path.write_text("".join(lines))
    return str(path)


def test_loopback_only_is_no_ipv6(tmp_path):
    assert host.has_local_ipv6(if_inet6(tmp_path, LO)) is False


def test_kumas_own_passthrough_address_is_no_ipv6(tmp_path):
    """kuma-dp.service or an earlier run put ::6 on lo; it must not turn IPv6 on."""
    path = if_inet6(tmp_path, LO, PASSTHROUGH)
    assert host.has_local_ipv6(path) is False
    assert host.has_inbound_passthrough_ipv6(path) is True


def test_link_local_or_global_address_is_ipv6(tmp_path):
    """As Kuma's HasLocalIPv6: any address but loopback, link-local included."""
    assert host.has_local_ipv6(if_inet6(tmp_path, LO, LINK_LOCAL)) is True
    assert host.has_local_ipv6(if_inet6(tmp_path, LO, PASSTHROUGH, GLOBAL)) is True


def test_no_ipv6_at_all(tmp_path):
    assert host.has_local_ipv6(str(tmp_path / "missing")) is False
