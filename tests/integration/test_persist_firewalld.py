"""kuma_tproxy's backend auto, other_backend, firewalld_ipv6_redirect and boot_persistence
with real systemd and a real firewalld (booted Debian 12 and 13 containers, as
test_firewalld.py): a switch from firewalld to the systemd unit and back, firewalld
1.3's RFC3964_IPv4 turned off (or refused) and put back, and an uninstall that
leaves no trace."""

import pytest

import test_firewalld

host = test_firewalld.host  # the fixture: the session's container of each Debian release, put back as booted

UNIT = "kuma-mesh-tproxy.service"
BASE = {"kuma_dp_user": "kuma-dp", "redirect": {"inbound": {"exclude_ports": [22]}}}
ROLE_LIKE = dict(BASE, other_backend="remove", firewalld_ipv6_redirect="allow", boot_persistence={"state": "present"})
ABSENT = {"state": "absent", "backend": "auto", "firewalld_ipv6_redirect": "allow", "boot_persistence": {"state": "absent"}}


def rfc3964(h):
    return h.sh("grep -E '^RFC3964_IPv4=' /etc/firewalld/firewalld.conf; "
                "cat /etc/kuma-mesh/firewalld-rfc3964-ipv4.orig 2>/dev/null || echo none").stdout.split()


def nat(h):
    return h.sh("iptables-save -t nat | grep -v '^#' | sed 's/ \\[[0-9]*:[0-9]*\\]$//'").stdout


def kuma_direct(h):
    return [r for r in h.runtime_rules() if "kuma/mesh/transparent/proxy/" in r]


def unit_state(h):
    return h.sh("systemctl is-enabled %s 2>/dev/null; systemctl is-active %s 2>/dev/null; true" % (UNIT, UNIT)).stdout.split()


def test_refuse_then_allow_then_switch_to_the_unit_and_uninstall(host):
    old = host.tag.startswith("12")  # firewalld 1.3: the RFC3964_IPv4 filter rejects redirected IPv6
    # refuse: nothing changes on an affected host
    refused = host.module(dict(ROLE_LIKE, backend="auto", firewalld_ipv6_redirect="refuse"))
    if old:
        assert refused.get("failed") and refused["firewalld_ipv6_refused"]["line"] == "RFC3964_IPv4=yes", refused
        assert "firewalld_ipv6_redirect: allow" in refused["msg"] and refused["changed"] is False
        assert rfc3964(host) == ["RFC3964_IPv4=yes", "none"] and kuma_direct(host) == []
    else:
        assert not refused.get("failed") and refused["firewalld_ipv6"]["blocks"] is False, refused
        host.module(ABSENT)

    # auto: firewalld is enabled in the image, so its direct rules keep the rules
    first = host.module(dict(ROLE_LIKE, backend="auto"))
    assert not first.get("failed") and first["backend"] == "firewalld" and first["changed"], first
    assert kuma_direct(host)
    assert rfc3964(host) == (["RFC3964_IPv4=no", "RFC3964_IPv4=yes"] if old else ["RFC3964_IPv4=yes", "none"])
    assert any(c.endswith("systemctl reload firewalld.service") for c in first["commands"]) is old
    again = host.module(dict(ROLE_LIKE, backend="auto"))
    assert not again["changed"], again
    # RFC3964_IPv4=no now (or firewalld 2.x): firewalld's chain is not read again
    assert [c.split()[0].rsplit("/", 1)[-1] for c in again["commands"]] == ["iptables-nft-save", "ip6tables-nft-save"] \
        or not old, again["commands"]

    # the systemd unit instead (kuma_tproxy_persistence: systemd): firewalld's entries go, the unit comes
    switched = host.module(dict(ROLE_LIKE, backend="iptables"))
    assert switched["changed"] and switched["backend"] == "iptables", switched
    assert kuma_direct(host) == [] and "kuma/mesh/transparent/proxy/" not in host.direct_xml()
    assert "KUMA_MESH_OUTBOUND" in host.sh("iptables-save -t nat").stdout
    assert unit_state(host) == ["enabled", "active"]
    assert host.sh("cat /etc/kuma-mesh/transparent-proxy/iptables-mode").stdout == switched["iptables_mode"] + "\n"
    steady = host.module(dict(ROLE_LIKE, backend="iptables"))
    assert not steady["changed"], steady
    # a no-change run starts no process but the reads and one systemctl show (and, where
    # RFC3964_IPv4 is still on - firewalld 2.x - the read of firewalld's output chain)
    assert [c.split()[0].rsplit("/", 1)[-1] for c in steady["commands"]] == \
        ["iptables-nft-save", "ip6tables-nft-save"] + ([] if old else ["nft"]) + ["systemctl"], steady["commands"]

    # and back to firewalld: the unit and its files go, the plain rules become direct rules
    back = host.module(dict(ROLE_LIKE, backend="firewalld"))
    assert back["changed"] and back["boot_persistence"]["systemctl"] == ["disable --now %s" % UNIT, "daemon-reload"]
    assert kuma_direct(host) and host.sh("ls /etc/kuma-mesh/transparent-proxy", check=False).returncode != 0
    assert host.sh("systemctl cat %s" % UNIT, check=False).returncode != 0

    # uninstall: rules from both backends, RFC3964_IPv4 put back, no file left
    gone = host.module(ABSENT)
    assert gone["changed"] and not gone.get("failed"), gone
    assert kuma_direct(host) == [] and "KUMA_MESH" not in host.sh("iptables-save; ip6tables-save").stdout
    assert rfc3964(host) == ["RFC3964_IPv4=yes", "none"]
    assert host.sh("ls -A /etc/kuma-mesh", check=False).returncode != 0
    assert not host.module(ABSENT)["changed"]


@pytest.mark.parametrize("host", ["12-firewalld"], indirect=True)
def test_check_mode_switch_changes_nothing(host):
    host.module(dict(ROLE_LIKE, backend="firewalld"))
    before = (host.direct_xml(), host.runtime_rules(), rfc3964(host), nat(host))
    checked = host.module(dict(ROLE_LIKE, backend="iptables"), check=True, diff=True)
    assert checked["changed"] and not checked.get("failed"), checked
    assert (host.direct_xml(), host.runtime_rules(), rfc3964(host), nat(host)) == before
    assert host.sh("systemctl cat %s" % UNIT, check=False).returncode != 0
    assert checked["boot_persistence"]["systemctl"] == ["daemon-reload", "enable --now %s" % UNIT]
