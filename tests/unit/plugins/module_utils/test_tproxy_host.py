"""What the module reads of the host: which IPv6 addresses mean "this host has IPv6"."""

import pytest

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


def test_resolv_conf_as_glibc_reads_it():
    text = ("# c\n; c\nnameserver 192.0.2.53/24\nnameserver\n  nameserver 192.0.2.54\nnameserver 192.0.2.55 x\n"
            "nameserver\t2001:db8::53\nnameserver fe80::1%eth0\nnameservers 192.0.2.56\nnameserver 1\n")
    servers, ignored = host.parse_resolv_conf(text)
    assert servers == ["192.0.2.55", "2001:db8::53", "fe80::1"]
    assert ignored == ["nameserver 192.0.2.53/24", "nameserver", "nameserver 1"]


def test_kuma_dp_user_uid_0_is_refused_and_empty_is_kumas_default(monkeypatch):
    import pwd as pwd_mod
    from collections import namedtuple

    Entry = namedtuple("Entry", "pw_name pw_uid")
    users = {"root": 0, "kuma-dp": 5678, "app": 1000}

    def getpwnam(name):
        if name not in users:
            raise KeyError(name)
        return Entry(name, users[name])

    def getpwuid(uid):
        for name, u in users.items():
            if u == uid:
                return Entry(name, uid)
        raise KeyError(uid)

    monkeypatch.setattr(pwd_mod, "getpwnam", getpwnam)
    monkeypatch.setattr(pwd_mod, "getpwuid", getpwuid)
    for user in ("root", "0", " 0 "):
        result = host.resolve_kuma_dp_user(user)
        assert result.uid is None and "uid 0" in result.error
    assert host.resolve_kuma_dp_user("").uid == "5678"
    assert host.resolve_kuma_dp_user("app").uid == "1000"
    assert host.resolve_kuma_dp_user("1000").uid == "1000"
    assert "does not refer" in host.resolve_kuma_dp_user("nobody-here").error
    assert "does not refer" in host.resolve_kuma_dp_user("a\x00b").error
    del users["kuma-dp"]
    users["kuma-dp"] = 7000
    assert host.resolve_kuma_dp_user("").uid == "7000"
    del users["kuma-dp"]
    assert "neither uid 5678" in host.resolve_kuma_dp_user("").error


def _fake_host(monkeypatch, chain, fds, sockets, listeners=None):
    """A process tree with sshd session processes ``chain`` holding ``fds`` ({pid: inodes})."""
    monkeypatch.setattr(host, "_sshd_chain", lambda pid: list(chain))
    monkeypatch.setattr(host, "_socket_inodes", lambda pid: set(fds.get(pid, ())))
    monkeypatch.setattr(host, "tcp_sockets", lambda tables=None: list(sockets))
    monkeypatch.setattr(host, "_sshd_listen_ports", lambda socks, ch: set(listeners if listeners is not None else [22]))


def test_ssh_session_port_is_the_sessions_own_socket_not_a_forwarded_one(monkeypatch):
    sockets = [
        host.TcpSocket(22, 0, "0A", "100"),  # sshd's listener
        host.TcpSocket(40000, 8080, "01", "201"),  # ssh -L: sshd connects out from an ephemeral port
        host.TcpSocket(22, 50000, "01", "202"),  # the session's own connection
        host.TcpSocket(9000, 0, "0A", "203"),  # ssh -R: the session's own listener
        host.TcpSocket(9000, 41000, "01", "204"),  # a connection accepted on it
    ]
    _fake_host(monkeypatch, [300, 299], {300: ["201", "202", "203", "204"], 299: ["202"]}, sockets)
    session = host.ssh_session(environ={})
    assert session.port == 22 and session.how == "sshd socket" and session.under_sshd


def test_ssh_connection_wins_and_no_session_is_said(monkeypatch):
    _fake_host(monkeypatch, [], {}, [], listeners=[])
    monkeypatch.setattr(host, "_sshd_config_ports", lambda path=None: [22])
    monkeypatch.setattr(host, "tcp_sockets", lambda tables=None: pytest.fail("no socket scan without sshd"))
    session = host.ssh_session(environ={"SSH_CONNECTION": "192.0.2.2 50000 192.0.2.1 2022"})
    assert session.port == 2022 and session.how == "SSH_CONNECTION" and 2022 in session.sshd_ports
    session = host.ssh_session(environ={})
    assert session.port is None and not session.under_sshd and session.sshd_ports == (22,)


def test_ambiguous_sshd_sockets_give_no_port_but_say_sshd_is_there(monkeypatch):
    sockets = [host.TcpSocket(22, 50000, "01", "1"), host.TcpSocket(2222, 50001, "01", "2")]
    _fake_host(monkeypatch, [300], {300: ["1", "2"]}, sockets, listeners=[22, 2222])
    session = host.ssh_session(environ={})
    assert session.port is None and session.under_sshd
