"""kuma_tproxy_check's logic: input, the probes' parts on the loopback. The proof against real rules is
tests/integration/test_tproxy_check_netns.py (root, network namespaces)."""

import os
import pwd
import socket
import subprocess
from collections import namedtuple

import pytest

from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_check as tc

Entry = namedtuple("Entry", ["pw_name", "pw_uid", "pw_gid"])


class Users(object):
    def __init__(self, *entries):
        self.entries = [Entry(*e) for e in entries]

    def getpwnam(self, name):
        for e in self.entries:
            if e.pw_name == name:
                return e
        raise KeyError(name)

    def getpwuid(self, uid):
        for e in self.entries:
            if e.pw_uid == uid:
                return e
        raise KeyError(uid)


USERS = Users(("root", 0, 0), ("kuma-dp", 5678, 5678), ("nobody", 65534, 65534), ("app", 1000, 100))
DEFAULTS = {"kuma_dp_user": "", "test_user": "nobody", "families": None, "checks": ["outbound", "inbound"],
            "listener": "auto", "outbound_port": 15001, "inbound_port": 15006, "dns_port": 15053,
            "target_ipv4": "203.0.113.1", "target_ipv6": "2001:db8:ffff::1", "target_port": 0, "dns_servers": None,
            "resolv_conf": "/nonexistent", "dns_name": None, "timeout": 1.0}


def params(**kwargs):
    return dict(DEFAULTS, **kwargs)


def test_parse_params_defaults_follow_kuma():
    s = tc.parse_params(params(), users=USERS, ipv6=True, resolv={"ipv4": ["10.0.0.2"], "ipv6": []})
    assert (s.kuma_dp_user, s.kuma_dp_uid, s.kuma_dp_gid) == ("kuma-dp", 5678, 5678)
    assert (s.test_user, s.test_uid) == ("nobody", 65534)
    assert s.families == ["ipv4", "ipv6"] and s.checks == ["outbound", "inbound"]
    assert s.dns_servers == {"ipv4": ["10.0.0.2"], "ipv6": []}
    assert tc.parse_params(params(), users=USERS, ipv6=False, resolv={}).families == ["ipv4"]


def test_kuma_dp_user_empty_is_uid_5678_then_the_name_kuma_dp():
    assert tc.resolve_kuma_dp_user("", Users(("kuma-dp", 999, 999))) == tc.User("kuma-dp", 999, 999)
    assert tc.resolve_kuma_dp_user("", Users(("dp", 5678, 5678), ("kuma-dp", 999, 999))).uid == 5678
    assert tc.resolve_kuma_dp_user("4242", Users()) == tc.User("4242", 4242, 4242)
    with pytest.raises(tc.CheckInputError, match="neither uid 5678 nor a user named kuma-dp"):
        tc.resolve_kuma_dp_user("", Users())


@pytest.mark.parametrize("override,message", [
    ({"test_user": "kuma-dp"}, "test_user: kuma-dp has kuma-dp's uid 5678"),
    ({"test_user": "5678"}, "test_user: 5678 has kuma-dp's uid 5678"),
    ({"kuma_dp_user": "ghost"}, "kuma_dp_user: no user named 'ghost'"),
    ({"families": ["ipv5"]}, "families: 'ipv5' is not one of ipv4, ipv6"),
    ({"families": []}, "families: empty"),
    ({"checks": ["tcp"]}, "checks: 'tcp' is not one of outbound, inbound, dns"),
    ({"listener": "both"}, "listener: 'both'"),
    ({"outbound_port": 0}, "outbound_port: 0 is not a port (1-65535)"),
    ({"dns_port": 70000}, "dns_port: 70000 is not a port"),
    ({"target_port": -1}, "target_port: -1 is not a port (0-65535)"),
    ({"target_ipv4": "2001:db8::1"}, "target_ipv4: 2001:db8::1 is not an IPv4 address"),
    ({"target_ipv4": "localhost"}, "target_ipv4: 'localhost' is not an IP address"),
    ({"target_ipv6": "::1"}, "target_ipv6: ::1 must be a unicast address off the host"),
    ({"dns_servers": ["10.0.0.300"]}, "dns_servers: '10.0.0.300' is not an IP address"),
    ({"dns_name": "a..b"}, "dns_name: 'a..b' is not a DNS name"),
    ({"timeout": 0}, "timeout: 0 is not a number of seconds"),
    ({"timeout": True}, "timeout: True"),
])
def test_bad_input_names_the_option_and_the_value(override, message):
    with pytest.raises(tc.CheckInputError) as e:
        tc.parse_params(params(**override), users=USERS, ipv6=True, resolv={})
    assert message in str(e.value)


def test_resolv_conf_nameservers_per_family(tmp_path):
    path = tmp_path / "resolv.conf"
    path.write_text("# comment\nsearch example\nnameserver 10.0.0.2  # first\nnameserver fe80::1%eth0\n"
                    "nameserver bogus\nnameserver 2001:db8::53\noptions ndots:5\n")
    assert tc.resolv_conf_servers(str(path)) == {"ipv4": ["10.0.0.2"], "ipv6": ["fe80::1", "2001:db8::53"]}
    assert tc.resolv_conf_servers(str(tmp_path / "missing")) == {"ipv4": [], "ipv6": []}
    s = tc.parse_params(params(dns_servers=["2001:db8::53", "192.0.2.53"]), users=USERS, ipv6=True)
    assert s.dns_servers == {"ipv4": ["192.0.2.53"], "ipv6": ["2001:db8::53"]}


def test_host_has_ipv6_ignores_the_loopback(tmp_path):
    path = tmp_path / "if_inet6"
    path.write_text("00000000000000000000000000000001 01 80 10 80       lo\n")
    assert not tc.host_has_ipv6(str(path))
    path.write_text(path.read_text() + "fe800000000000000000000000000001 02 40 20 80     eth0\n")
    assert tc.host_has_ipv6(str(path))
    assert not tc.host_has_ipv6(str(tmp_path / "missing"))


def test_dns_marker_reply_answers_the_query():
    query = tc.dns_query_packet("abc.kuma-tproxy-check.invalid", 0x4242)
    reply = tc.dns_marker_reply(query)
    assert tc.dns_parse_answer(reply, 0x4242) == (0, [tc.DNS_MARKER["ipv4"]])
    assert tc.dns_parse_answer(reply, 0x4243) is None  # not our query
    assert tc.dns_marker_reply(reply) is None  # a response is not answered
    assert tc.dns_marker_reply(b"\x00") is None


def test_probes_in_a_forked_child_reach_an_own_listener_on_the_loopback():
    """Without rules nothing is redirected: connecting straight to the listener shows the token comes back and
    that a connection the rules did not redirect has no original destination."""
    port = free_port()
    me = os.geteuid(), os.getegid()
    listener = tc.OwnListener("ipv4", port, "tcp", "token-1")
    try:
        result = tc.as_user(me[0], me[1], tc.tcp_probe("ipv4", "127.0.0.1", port, 2.0), 2.0)
        assert result["connected"] and result["reply"] == "token-1", result
        assert listener.seen and listener.seen[0]["peer"] == "127.0.0.1"
    finally:
        listener.close()
    refused = tc.as_user(me[0], me[1], tc.tcp_probe("ipv4", "127.0.0.1", port, 2.0), 2.0)
    assert refused == dict(refused, connected=False) and "ECONNREFUSED" in refused["error"]


def test_dns_probe_gets_the_own_listener_answer():
    port = free_port(socket.SOCK_DGRAM)
    listener = tc.OwnListener("ipv4", port, "udp", "unused")
    try:
        result = tc.dns_probe("ipv4", "127.0.0.1", "x.kuma-tproxy-check.invalid", 2.0, port=port)()
        assert result["answered"] and result["addresses"] == [tc.DNS_MARKER["ipv4"]], result
    finally:
        listener.close()


def test_as_user_reports_a_failing_probe():
    def probe():
        raise RuntimeError("boom")
    result = tc.as_user(os.geteuid(), os.getegid(), probe, 2.0)
    assert result == {"error": "RuntimeError: boom"}


def test_own_listener_refuses_a_taken_port_unless_auto():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        settings = tc.parse_params(params(listener="auto"), users=USERS, ipv6=False, resolv={})
        assert tc.open_listener(settings, "ipv4", port, "tcp", "t", []) is None  # the running proxy is tested
        with pytest.raises(tc.CheckFailed, match="cannot listen on TCP port %d" % port):
            tc.open_listener(settings._replace(listener="own"), "ipv4", port, "tcp", "t", [])


@pytest.mark.skipif(os.geteuid() == 0, reason="the refusal is for users other than root")
def test_run_checks_needs_root():
    settings = tc.parse_params(params(), users=USERS, ipv6=False, resolv={})
    with pytest.raises(tc.CheckFailed, match="must run as root"):
        tc.run_checks(settings)


def test_module_runs_on_python_3_8():
    python38 = os.path.expanduser("~/.pyenv/versions/3.8.18/bin/python")
    if not os.access(python38, os.X_OK):
        pytest.skip("python3.8 not installed")
    source = os.path.join(os.path.dirname(tc.__file__), "tproxy_check.py")
    proc = subprocess.run([python38, "-c", "import ast,sys; ast.parse(open(sys.argv[1]).read(), feature_version=(3, 8))"
                           "; exec(compile(open(sys.argv[1]).read(), 'tproxy_check', 'exec'), {'__name__': 'x'})",
                           source], stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, check=False)
    assert proc.returncode == 0, proc.stderr


def free_port(kind=socket.SOCK_STREAM):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


assert pwd  # the real user database is what the module uses by default
