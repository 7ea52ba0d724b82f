# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kuma.mesh maintainers
# Apache License 2.0 (see LICENSE)
"""Proof on the host that Kuma's transparent-proxy rules redirect traffic (kuma_tproxy_check).

Like Kuma's ``kumactl install transparent-proxy-validator``
(pkg/transparentproxy/validate): connections are made from forked children
that drop to another user's uid, and only the rules can make them succeed:

* outbound: a TCP connection, as a user other than kuma-dp, to an address
  that routes nowhere is accepted at once only when the rules hand it to the
  outbound redirect port; the same connection as kuma-dp's uid must not be
  (that would be a redirect loop). The address is a TEST-NET one when the host
  routes it off the host (a default route is enough); on a host without such a
  route (no default route: the connection would fail with ENETUNREACH before
  the rules see it) it is a free address of a subnet the host is connected to,
  one no neighbour answers for (IPv4: none of the host's own addresses and no
  complete ARP entry, counted down from the top of the subnet; IPv6: a random
  interface identifier in the subnet);
* inbound: Kuma's own validator check, a TCP connection as kuma-dp's uid from
  127.0.0.1 to 127.0.0.6 (::1 to ::6) on a random port, which the rules send to
  the inbound redirect port (kuma-dp's traffic to the loopback but not to
  127.0.0.1 is an application calling itself through the mesh);
* dns: a UDP query to the resolver is answered by the DNS redirect port;
  the same query as kuma-dp's uid is not redirected. A resolver the host has
  no route to is skipped with that reason (no application reaches it either).

With our own listeners (port free, e.g. before kuma-dp starts) every answer
carries a token and the listener reads the original destination, so the proof
is exact. With the running proxy an accepted connection to an address that
routes nowhere is the proof; DNS then counts as proven when the answer differs
in a way only the redirect explains: the same query as kuma-dp (never
redirected) gets no answer, or gets no address for a name only the DNS proxy
knows (a ``.mesh`` name) while the application's query does.

Standard library only, Python 3.8+. Nothing on the host changes: the module
only binds loopback ports for the duration of the check.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import ipaddress
import json
import os
import pwd
import random
import select
import socket
import struct
import threading
import time
from collections import namedtuple

KUMA_DP_DEFAULT_UID = 5678
KUMA_DP_DEFAULT_NAME = "kuma-dp"
FAMILIES = ("ipv4", "ipv6")
CHECKS = ("outbound", "inbound", "dns")
LISTENERS = ("auto", "own", "running")
SO_ORIGINAL_DST = 80  # netfilter's SO_ORIGINAL_DST and IP6T_SO_ORIGINAL_DST
LOOPBACK = {"ipv4": "127.0.0.1", "ipv6": "::1"}
INBOUND_TARGET = {"ipv4": "127.0.0.6", "ipv6": "::6"}  # Kuma's validator's ClientConnectIP
AF = {"ipv4": socket.AF_INET, "ipv6": socket.AF_INET6}
DNS_MARKER = {"ipv4": "198.51.100.53"}  # what our own DNS listener answers (TEST-NET-2)
TEST_NET = {"ipv4": "203.0.113.1", "ipv6": "2001:db8:ffff::1"}  # TEST-NET-3, the documentation prefix
PROC_NET = "/proc/net"
RTF_UP, RTF_GATEWAY, RTF_REJECT = 0x1, 0x2, 0x200
ATF_COM = 0x2  # a complete ARP entry: a neighbour answers for the address
ONLINK_TRIES = 64

Settings = namedtuple("Settings", [
    "kuma_dp_uid", "kuma_dp_gid", "kuma_dp_user", "test_uid", "test_gid", "test_user", "families", "checks", "listener",
    "outbound_port", "inbound_port", "dns_port", "targets", "target_port", "dns_servers", "dns_name", "timeout",
])
User = namedtuple("User", ["name", "uid", "gid"])
# An address the outbound probe connects to, and why it routes nowhere.
Target = namedtuple("Target", ["address", "how"])
# A subnet the host is connected to (no gateway), on an interface other than the loopback.
Subnet = namedtuple("Subnet", ["network", "interface"])


class CheckInputError(ValueError):
    """Bad module input: names the option and the value."""


class CheckFailed(Exception):
    """The transparent proxy was not proven to work; carries the per-family details."""

    def __init__(self, msg, families):
        Exception.__init__(self, msg)
        self.msg = msg
        self.families = families


# ----------------------------------------------------------------------------------------------- input --

def resolve_user(value, option, users=pwd):
    """A user name or a numeric uid; the uid and primary gid."""
    text = str(value).strip()
    if text.isdigit():
        uid = int(text)
        try:
            entry = users.getpwuid(uid)
            return User(entry.pw_name, uid, entry.pw_gid)
        except KeyError:
            return User(text, uid, uid)
    try:
        entry = users.getpwnam(text)
    except KeyError:
        raise CheckInputError("%s: no user named '%s' on the host" % (option, text))
    return User(entry.pw_name, entry.pw_uid, entry.pw_gid)


def resolve_kuma_dp_user(value, users=pwd):
    """Kuma's rule when kuma_dp_user is empty: uid 5678 if it exists, else the user named kuma-dp."""
    if str(value or "").strip():
        return resolve_user(value, "kuma_dp_user", users)
    try:
        entry = users.getpwuid(KUMA_DP_DEFAULT_UID)
        return User(entry.pw_name, entry.pw_uid, entry.pw_gid)
    except KeyError:
        pass
    try:
        entry = users.getpwnam(KUMA_DP_DEFAULT_NAME)
        return User(entry.pw_name, entry.pw_uid, entry.pw_gid)
    except KeyError:
        raise CheckInputError("kuma_dp_user: empty, and the host has neither uid %d nor a user named %s (Kuma's "
                              "defaults)" % (KUMA_DP_DEFAULT_UID, KUMA_DP_DEFAULT_NAME))


def _port(params, option, allow_zero=False):
    value = params.get(option)
    if isinstance(value, bool) or not isinstance(value, int) or not (0 if allow_zero else 1) <= value <= 65535:
        raise CheckInputError("%s: %r is not a port (%s-65535)" % (option, value, 0 if allow_zero else 1))
    return value


def _address(value, option, family):
    try:
        address = ipaddress.ip_address(str(value).strip())
    except ValueError:
        raise CheckInputError("%s: %r is not an IP address" % (option, value))
    if address.version != (4 if family == "ipv4" else 6):
        raise CheckInputError("%s: %s is not an %s address" % (option, value, "IPv4" if family == "ipv4" else "IPv6"))
    if address.is_loopback or address.is_unspecified or address.is_multicast:
        raise CheckInputError("%s: %s must be a unicast address off the host (one that routes nowhere, e.g. "
                              "TEST-NET)" % (option, value))
    return str(address)


def host_has_ipv6(if_inet6="/proc/net/if_inet6"):
    """Kuma's HasLocalIPv6: an IPv6 address on an interface other than the loopback."""
    try:
        with open(if_inet6) as f:
            lines = f.read().splitlines()
    except (IOError, OSError):
        return False
    return any(line.split()[0] != "0" * 31 + "1" for line in lines if line.split())


def route_source(family, address):
    """The source address the kernel picks for ``address`` (a UDP connect sends nothing), or None when the host
    has no route to it (ENETUNREACH and the like: a connection fails before the rules see it)."""
    s = socket.socket(AF[family], socket.SOCK_DGRAM)
    try:
        s.connect((address, 9))
        return s.getsockname()[0]
    except OSError:
        return None
    finally:
        s.close()


def connected_subnets(family, proc_net=PROC_NET):
    """The subnets the host reaches without a gateway, on interfaces other than the loopback (the main routing
    table as /proc/net/route and /proc/net/ipv6_route show it), widest prefix last."""
    subnets = []
    try:
        with open(os.path.join(proc_net, "route" if family == "ipv4" else "ipv6_route")) as f:
            lines = f.read().splitlines()
    except (IOError, OSError):
        return subnets
    for line in lines:
        fields = line.split()
        try:
            if family == "ipv4":
                if len(fields) < 8 or fields[0] == "Iface":
                    continue
                iface, flags = fields[0], int(fields[3], 16)
                dest = socket.inet_ntoa(struct.pack("=I", int(fields[1], 16)))
                mask = socket.inet_ntoa(struct.pack("=I", int(fields[7], 16)))
                network = ipaddress.ip_network("%s/%s" % (dest, mask), strict=False)
                gateway = int(fields[2], 16)
                usable = network.prefixlen <= 30
            else:
                if len(fields) < 10:
                    continue
                iface, flags = fields[9], int(fields[8], 16)
                network = ipaddress.ip_network("%s/%d" % (ipaddress.ip_address(int(fields[0], 16)), int(fields[1], 16)),
                                               strict=False)
                gateway = int(fields[4], 16)
                usable = 0 < network.prefixlen <= 120 and not network.is_link_local and not network.is_multicast
        except (ValueError, struct.error, OSError):
            continue
        if iface == "lo" or gateway or not flags & RTF_UP or flags & (RTF_GATEWAY | RTF_REJECT) or not usable:
            continue
        if network.prefixlen == 0 or network.is_loopback:
            continue
        subnet = Subnet(network, iface)
        if subnet not in subnets:
            subnets.append(subnet)
    return sorted(subnets, key=lambda n: -n.network.prefixlen)


def arp_neighbours(proc_net=PROC_NET):
    """IPv4 addresses a neighbour answered for (complete ARP entries); incomplete ones are nobody's."""
    found = set()
    try:
        with open(os.path.join(proc_net, "arp")) as f:
            lines = f.read().splitlines()[1:]
    except (IOError, OSError):
        return found
    for line in lines:
        fields = line.split()
        try:
            if len(fields) >= 3 and int(fields[2], 16) & ATF_COM:
                found.add(fields[0])
        except ValueError:
            continue
    return found


def onlink_candidates(family, subnet, rng=random):
    """Addresses of ``subnet`` to try, in order: IPv4 from the top (broadcast - 1) down, where DHCP servers and
    container networks seldom hand out addresses; IPv6 random interface identifiers."""
    network = subnet.network
    if family == "ipv4":
        top = int(network.broadcast_address) - 1
        return [ipaddress.ip_address(top - i) for i in range(min(ONLINK_TRIES, network.num_addresses - 2))]
    host_bits = 128 - network.prefixlen
    return [ipaddress.ip_address(int(network.network_address) | rng.randrange(1 << (host_bits - 1), 1 << host_bits))
            for dummy in range(4)]


def choose_target(family, given, proc_net=PROC_NET, route=route_source, rng=random):
    """Where the outbound probe connects: ``given`` (target_ipv4/6) when set; else the TEST-NET address when
    the host routes it off the host; else a free address of a connected subnet. Without any of them, CheckFailed
    with the reason (a connection with no route fails before the rules see it)."""
    if given:
        source = route(family, given)
        if source is None:
            raise CheckFailed("no route to %s (target_%s): a connection to it fails before the rules see it; "
                              "give an address of a subnet the host is on" % (given, family), {})
        return Target(given, "given (target_%s)" % family)
    source = route(family, TEST_NET[family])
    if source is not None and not ipaddress.ip_address(source).is_loopback and source != TEST_NET[family]:
        return Target(TEST_NET[family], "TEST-NET address, routed off the host (source %s)" % source)
    neighbours = arp_neighbours(proc_net) if family == "ipv4" else set()
    subnets = connected_subnets(family, proc_net)
    for subnet in subnets:
        for candidate in onlink_candidates(family, subnet, rng):
            text = str(candidate)
            if text in neighbours:
                continue
            source = route(family, text)
            # our own address would be routed through the loopback (source == the address itself)
            if source is None or source == text or ipaddress.ip_address(source).is_loopback:
                continue
            return Target(text, "free address of the connected subnet %s on %s (no route to %s; no neighbour has "
                                "answered for it)" % (subnet.network, subnet.interface, TEST_NET[family]))
    raise CheckFailed("no route to %s and no free address on a connected subnet (%s): %s; give target_%s or "
                      "leave %s out of families" % (
                          TEST_NET[family], ", ".join(str(n.network) for n in subnets) or "none",
                          "every address tried is the host's or a neighbour's" if subnets else
                          "the host has no %s network besides the loopback, so nothing leaves it to redirect"
                          % ("IPv4" if family == "ipv4" else "IPv6"), family, family), {})


def resolv_conf_servers(path):
    """The nameservers of resolv.conf, per family (Kuma redirects DNS to these unless capture_all)."""
    servers = {"ipv4": [], "ipv6": []}
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except (IOError, OSError):
        return servers
    for line in lines:
        parts = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            try:
                address = ipaddress.ip_address(parts[1].split("%", 1)[0])
            except ValueError:
                continue
            servers["ipv4" if address.version == 4 else "ipv6"].append(str(address))
    return servers


def parse_params(params, users=pwd, ipv6=None, resolv=None):
    """Validated Settings from the module's parameters, or CheckInputError naming the option."""
    kuma_dp = resolve_kuma_dp_user(params.get("kuma_dp_user"), users)
    test = resolve_user(params.get("test_user") or "nobody", "test_user", users)
    if test.uid == kuma_dp.uid:
        raise CheckInputError("test_user: %s has kuma-dp's uid %d; its traffic is never redirected, pick another "
                              "user" % (params.get("test_user"), kuma_dp.uid))
    families = params.get("families")
    if families is None:
        families = ["ipv4"] + (["ipv6"] if (host_has_ipv6() if ipv6 is None else ipv6) else [])
    families = list(families)
    for family in families:
        if family not in FAMILIES:
            raise CheckInputError("families: %r is not one of %s" % (family, ", ".join(FAMILIES)))
    if not families:
        raise CheckInputError("families: empty; give ipv4, ipv6 or both (or leave it unset)")
    checks = list(params.get("checks") or ["outbound", "inbound"])
    for check in checks:
        if check not in CHECKS:
            raise CheckInputError("checks: %r is not one of %s" % (check, ", ".join(CHECKS)))
    listener = params.get("listener") or "auto"
    if listener not in LISTENERS:
        raise CheckInputError("listener: %r is not one of %s" % (listener, ", ".join(LISTENERS)))
    timeout = params.get("timeout", 1.0)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 60:
        raise CheckInputError("timeout: %r is not a number of seconds in (0, 60]" % (timeout,))
    # empty: chosen on the host when the check runs (choose_target)
    targets = {family: (_address(params["target_" + family], "target_" + family, family)
                        if str(params.get("target_" + family) or "").strip() else None) for family in FAMILIES}
    dns_servers = {"ipv4": [], "ipv6": []}
    if params.get("dns_servers"):
        for server in params["dns_servers"]:
            try:
                version = ipaddress.ip_address(str(server).strip()).version
            except ValueError:
                raise CheckInputError("dns_servers: %r is not an IP address" % (server,))
            dns_servers["ipv4" if version == 4 else "ipv6"].append(str(ipaddress.ip_address(str(server).strip())))
    else:
        dns_servers = resolv if resolv is not None else resolv_conf_servers(params.get("resolv_conf")
                                                                            or "/etc/resolv.conf")
    dns_name = params.get("dns_name") or ""
    if dns_name and (len(dns_name) > 253 or any(not 0 < len(label) < 64 for label in dns_name.rstrip(".").split("."))):
        raise CheckInputError("dns_name: %r is not a DNS name" % (dns_name,))
    return Settings(kuma_dp_uid=kuma_dp.uid, kuma_dp_gid=kuma_dp.gid, kuma_dp_user=kuma_dp.name, test_uid=test.uid, test_gid=test.gid,
                    test_user=test.name, families=families, checks=checks, listener=listener,
                    outbound_port=_port(params, "outbound_port"), inbound_port=_port(params, "inbound_port"),
                    dns_port=_port(params, "dns_port"), targets=targets,
                    target_port=_port(params, "target_port", allow_zero=True), dns_servers=dns_servers,
                    dns_name=dns_name, timeout=float(timeout))


# --------------------------------------------------------------------------------------------- probes --

def as_user(uid, gid, probe, timeout):
    """Run ``probe()`` (returns a JSON-able dict) in a forked child with the given uid and gid."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            os.close(read_fd)
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            result = probe()
        except BaseException as e:  # report everything to the parent, never raise in the child
            result = {"error": "%s: %s" % (type(e).__name__, e)}
            code = 1
        try:
            os.write(write_fd, json.dumps(result).encode())
        finally:
            os._exit(code)
    os.close(write_fd)
    chunks = []
    deadline = time.time() + timeout + 5
    try:
        while True:
            left = deadline - time.time()
            if left <= 0 or not select.select([read_fd], [], [], left)[0]:
                os.kill(pid, 9)
                chunks = [json.dumps({"error": "the probe did not finish in time"}).encode()]
                break
            chunk = os.read(read_fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_fd)
        os.waitpid(pid, 0)
    try:
        return json.loads(b"".join(chunks).decode() or "{}")
    except ValueError:
        return {"error": "the probe returned nothing readable"}


def _error_text(e):
    if isinstance(e, socket.timeout):
        return "timed out after the timeout"
    name = errno.errorcode.get(getattr(e, "errno", None) or 0, "")
    return "%s%s" % (name + " " if name else "", getattr(e, "strerror", None) or e)


def tcp_probe(family, address, port, timeout, source=None, read_reply=True):
    """The child's side: connect, and read what the far end says first (our listener's token) when
    ``read_reply``; the running proxy says nothing first, so it is not waited for."""
    def probe():
        started = time.time()
        s = socket.socket(AF[family], socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            if source:
                s.bind((source, 0))
            s.connect((address, port))
            elapsed = time.time() - started
            data = b""
            if read_reply:
                try:
                    data = s.recv(256)
                except (socket.timeout, OSError):
                    pass
            return {"connected": True, "elapsed": round(elapsed, 4), "reply": data.decode("ascii", "replace")}
        except (socket.timeout, OSError) as e:
            return {"connected": False, "elapsed": round(time.time() - started, 4), "error": _error_text(e)}
        finally:
            s.close()
    return probe


def dns_query_packet(name, qid):
    labels = b"".join(struct.pack("!B", len(label)) + label.encode("ascii") for label in name.rstrip(".").split("."))
    return struct.pack("!6H", qid, 0x0100, 1, 0, 0, 0) + labels + b"\x00" + struct.pack("!2H", 1, 1)


def dns_parse_answer(data, qid):
    """(rcode, [IPv4 addresses of A records]) of a reply to our query, or None when it is not one."""
    if len(data) < 12:
        return None
    rid, flags, qdcount, ancount = struct.unpack("!4H", data[:8])
    if rid != qid or not flags & 0x8000:
        return None
    i = 12
    for _question in range(qdcount):
        i = _skip_name(data, i) + 4
    addresses = []
    for _answer in range(ancount):
        i = _skip_name(data, i)
        rtype, _rclass, _ttl, rdlength = struct.unpack("!2HIH", data[i:i + 10])
        i += 10
        if rtype == 1 and rdlength == 4:
            addresses.append(socket.inet_ntoa(data[i:i + 4]))
        i += rdlength
    return flags & 0xF, addresses


def _skip_name(data, i):
    while True:
        length = data[i]
        if length & 0xC0 == 0xC0:
            return i + 2
        if length == 0:
            return i + 1
        i += length + 1


def dns_probe(family, server, name, timeout, port=53):
    def probe():
        qid = random.randint(1, 0xFFFF)
        started = time.time()
        s = socket.socket(AF[family], socket.SOCK_DGRAM)
        s.settimeout(timeout)
        try:
            s.sendto(dns_query_packet(name, qid), (server, port))
            while True:
                data = s.recv(4096)
                parsed = dns_parse_answer(data, qid)
                if parsed is not None:
                    return {"answered": True, "rcode": parsed[0], "addresses": parsed[1],
                            "elapsed": round(time.time() - started, 4)}
        except (socket.timeout, OSError, IndexError, struct.error) as e:
            return {"answered": False, "error": _error_text(e), "elapsed": round(time.time() - started, 4)}
        finally:
            s.close()
    return probe


# ------------------------------------------------------------------------------------------ listeners --

def original_destination(conn, family):
    """netfilter's record of where a redirected connection was going (SO_ORIGINAL_DST)."""
    try:
        if family == "ipv4":
            raw = conn.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
            port, packed = struct.unpack("!2xH4s8x", raw)
            return "%s:%d" % (socket.inet_ntop(socket.AF_INET, packed), port)
        raw = conn.getsockopt(socket.IPPROTO_IPV6, SO_ORIGINAL_DST, 28)
        port, packed = struct.unpack("!2xH4x16s4x", raw)
        return "[%s]:%d" % (socket.inet_ntop(socket.AF_INET6, packed), port)
    except OSError:
        return None


class OwnListener(object):
    """A TCP or UDP listener of our own on a redirect port (loopback of one family), like Kuma's validator's
    server: TCP connections get a token and their original destination is recorded; DNS queries get an A
    record with DNS_MARKER."""

    def __init__(self, family, port, kind, token):
        self.family, self.port, self.kind, self.token = family, port, kind, token
        self.seen = []
        self._stop = False
        sock_type = socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM
        self.sock = socket.socket(AF[family], sock_type)
        if kind == "tcp":
            # as Go's listeners (Kuma's validator): the port is free again while connections the stopped proxy
            # accepted there linger in TIME_WAIT; a socket that listens still makes bind fail (EADDRINUSE)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == "ipv6":
            self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            self.sock.bind((LOOPBACK[family], port))
            if kind == "tcp":
                self.sock.listen(16)
        except OSError:
            self.sock.close()
            raise
        self.sock.settimeout(0.2)
        self.thread = threading.Thread(target=self._serve)
        self.thread.daemon = True
        self.thread.start()

    def _serve(self):
        while not self._stop:
            try:
                if self.kind == "tcp":
                    conn, peer = self.sock.accept()
                    self.seen.append({"peer": peer[0], "original_destination": original_destination(conn, self.family)})
                    try:
                        conn.sendall(self.token.encode())
                    except OSError:
                        pass
                    conn.close()
                else:
                    data, peer = self.sock.recvfrom(4096)
                    reply = dns_marker_reply(data)
                    if reply:
                        self.seen.append({"peer": peer[0]})
                        self.sock.sendto(reply, peer)
            except socket.timeout:
                continue
            except OSError:
                return

    def close(self):
        self._stop = True
        self.thread.join(2)
        self.sock.close()


def dns_marker_reply(query):
    """An answer to an A query with DNS_MARKER, TTL 0; None for anything that is not a query."""
    if len(query) < 12:
        return None
    qid, flags, qdcount = struct.unpack("!3H", query[:6])
    if flags & 0x8000 or qdcount != 1:
        return None
    try:
        end = _skip_name(query, 12) + 4
    except IndexError:
        return None
    question = query[12:end]
    answer = b"\xc0\x0c" + struct.pack("!2HIH", 1, 1, 0, 4) + socket.inet_aton(DNS_MARKER["ipv4"])
    return struct.pack("!6H", qid, 0x8180, 1, 1, 0, 0) + question + answer


def open_listener(settings, family, port, kind, token, listeners):
    """Our own listener when the settings ask for one or allow one and the port is free; None: the running
    proxy is tested. listeners collects what to close."""
    if settings.listener == "running":
        return None
    try:
        listener = OwnListener(family, port, kind, token)
    except OSError as e:
        if settings.listener == "own" or e.errno != errno.EADDRINUSE:
            raise CheckFailed("%s: cannot listen on %s port %d for the check: %s"
                              % (family, kind.upper(), port, _error_text(e)), {})
        return None
    listeners.append(listener)
    return listener


# ------------------------------------------------------------------------------------------------ run --

def _random_port(settings):
    return settings.target_port or 20000 + random.randrange(10000)  # as Kuma's validator client


def check_outbound(settings, family, token, listeners):
    port = _random_port(settings)
    target = choose_target(family, settings.targets.get(family))
    where = "%s:%d" % (target.address, port) if family == "ipv4" else "[%s]:%d" % (target.address, port)
    listener = open_listener(settings, family, settings.outbound_port, "tcp", token, listeners)
    as_test = as_user(settings.test_uid, settings.test_gid,
                      tcp_probe(family, target.address, port, settings.timeout, read_reply=listener is not None),
                      settings.timeout)
    seen = list(listener.seen) if listener else []
    if listener is not None:
        listener.seen[:] = []
    as_dp = as_user(settings.kuma_dp_uid, settings.kuma_dp_gid,
                    tcp_probe(family, target.address, port, settings.timeout, read_reply=listener is not None),
                    settings.timeout)
    dp_seen = list(listener.seen) if listener else []
    result = {"target": where, "target_chosen": target.how, "listener": "own" if listener else "running",
              "test_user": settings.test_user, "as_test_user": as_test, "as_kuma_dp": as_dp}
    problems = []
    if not as_test.get("connected"):
        problems.append("a connection to %s as %s (uid %d) was not accepted (%s): the rules did not hand it to "
                        "the outbound redirect port %d%s"
                        % (where, settings.test_user, settings.test_uid, as_test.get("error"), settings.outbound_port,
                           "" if listener else " (or nothing listens there)"))
    elif listener is not None and (as_test.get("reply") != token or
                                   not any(s["original_destination"] == where for s in seen)):
        problems.append("a connection to %s as %s reached something other than the check's listener on port %d "
                        "(reply %r, original destinations %s)" % (where, settings.test_user, settings.outbound_port,
                                                                  as_test.get("reply"), seen))
    # With our listener, only what it saw counts (an address someone owns may answer kuma-dp directly).
    if dp_seen or (listener is None and as_dp.get("connected")):
        problems.append("a connection to %s as kuma-dp's uid %d was accepted%s: kuma-dp's own traffic is redirected "
                        "(a loop); the rules exclude another uid"
                        % (where, settings.kuma_dp_uid, " by the check's listener" if dp_seen else ""))
    result["redirected"] = not problems
    if not problems:
        result["proven"] = ("TCP to %s (%s) as %s is redirected to port %d%s; as kuma-dp (uid %d) it is not"
                            % (where, target.how.split(" (")[0], settings.test_user, settings.outbound_port,
                               " (original destination read back)" if listener else "", settings.kuma_dp_uid))
    return result, problems


def check_inbound(settings, family, token, listeners):
    port = 20000 + random.randrange(10000)
    target = INBOUND_TARGET[family]
    where = "%s:%d" % (target, port) if family == "ipv4" else "[%s]:%d" % (target, port)
    listener = open_listener(settings, family, settings.inbound_port, "tcp", token, listeners)
    # Kuma's rules send kuma-dp's own traffic to the loopback (but not to 127.0.0.1 / ::1) to the inbound
    # redirect port: an application calling itself through the mesh. Kuma's validator runs as kuma-dp's uid.
    probe = as_user(settings.kuma_dp_uid, settings.kuma_dp_gid,
                    tcp_probe(family, target, port, settings.timeout, source=LOOPBACK[family]), settings.timeout)
    result = {"target": where, "listener": "own" if listener else "running", "as_kuma_dp": probe}
    problems = []
    if not probe.get("connected"):
        problems.append("a connection from %s to %s as kuma-dp's uid %d was not accepted (%s): the rules did not "
                        "hand it to the inbound redirect port %d (Kuma's validator check)"
                        % (LOOPBACK[family], where, settings.kuma_dp_uid, probe.get("error"), settings.inbound_port))
    elif listener is not None and probe.get("reply") != token:
        problems.append("a connection to %s reached something other than the check's listener on port %d"
                        % (where, settings.inbound_port))
    result["redirected"] = not problems
    if not problems:
        result["proven"] = "TCP from %s to %s is redirected to the inbound port %d" % (
            LOOPBACK[family], where, settings.inbound_port)
    return result, problems


def check_dns(settings, family, token, listeners):
    servers = settings.dns_servers.get(family) or []
    if not servers:
        return {"skipped": "no %s nameserver in resolv.conf or dns_servers" % family}, []
    server = servers[0]
    if route_source(family, server) is None:
        return {"server": server, "skipped": "no route to the resolver %s: no application on the host reaches it "
                                             "either, so there is no DNS to redirect" % server}, []
    listener = open_listener(settings, family, settings.dns_port, "udp", token, listeners)
    name = settings.dns_name or "%s.kuma-tproxy-check.invalid" % token
    probe = as_user(settings.test_uid, settings.test_gid, dns_probe(family, server, name, settings.timeout),
                    settings.timeout)
    seen = list(listener.seen) if listener else []
    if listener is not None:
        listener.seen[:] = []
    # kuma-dp's own queries (its DNS proxy's upstream ones) are never redirected: the difference is the proof
    as_dp = as_user(settings.kuma_dp_uid, settings.kuma_dp_gid, dns_probe(family, server, name, settings.timeout),
                    settings.timeout)
    dp_seen = list(listener.seen) if listener else []
    result = {"server": server, "name": name, "listener": "own" if listener else "running", "as_test_user": probe,
              "as_kuma_dp": as_dp}
    problems, how = [], None
    if not probe.get("answered"):
        problems.append("a DNS query to %s for %s as %s got no answer (%s): the rules did not hand it to the DNS "
                        "port %d%s" % (server, name, settings.test_user, probe.get("error"), settings.dns_port,
                                       "" if listener else " (or the DNS proxy there did not answer)"))
    elif listener is not None:
        if DNS_MARKER["ipv4"] not in probe.get("addresses", []) or not seen:
            problems.append("a DNS query to %s was answered by something other than the check's listener on port "
                            "%d: DNS is not redirected" % (server, settings.dns_port))
        else:
            how = "the check's listener answered"
    elif not as_dp.get("answered"):
        how = "as kuma-dp, never redirected, the same query got no answer (%s)" % as_dp.get("error")
    elif probe.get("addresses") and not as_dp.get("addresses"):
        how = "only the DNS proxy knows %s (addresses %s; as kuma-dp: none)" % (name, ", ".join(probe["addresses"]))
    if dp_seen or (listener is not None and DNS_MARKER["ipv4"] in as_dp.get("addresses", [])):
        problems.append("a DNS query to %s as kuma-dp's uid %d reached the check's listener: kuma-dp's own DNS is "
                        "redirected (a loop)" % (server, settings.kuma_dp_uid))
    result["redirected"] = False if problems else (True if how else None)
    if not problems and how:
        result["proven"] = "DNS to %s as %s is answered by port %d (%s)" % (
            server, settings.test_user, settings.dns_port, how)
    elif not problems:
        result["note"] = ("DNS to %s is answered, but the resolver gives kuma-dp the same answer: not told apart "
                          "from the resolver (give dns_name, a name only the DNS proxy knows)" % server)
    return result, problems


CHECK_FUNCTIONS = {"outbound": check_outbound, "inbound": check_inbound, "dns": check_dns}


def run_checks(settings):
    """Every check for every family; the per-family results, or CheckFailed with all the reasons."""
    if os.geteuid() != 0:
        raise CheckFailed("the check must run as root (become: true): it tests as other users' uids", {})
    families, problems = {}, []
    for family in settings.families:
        results = {}
        for check in CHECKS:
            if check not in settings.checks:
                continue
            token = "kuma-tproxy-check-%016x" % random.getrandbits(64)
            listeners = []
            try:
                result, found = CHECK_FUNCTIONS[check](settings, family, token, listeners)
            except CheckFailed as e:
                result, found = {"error": e.msg}, [e.msg]
            finally:
                for listener in listeners:
                    listener.close()
            results[check] = result
            problems.extend("%s %s: %s" % (family, check, p) for p in found)
        families[family] = results
    if problems:
        raise CheckFailed("the transparent proxy is not proven to work: " + "; ".join(problems), families)
    return families


def proven_summary(families):
    return {family: [r["proven"] for r in checks.values() if "proven" in r] for family, checks in families.items()}


def summary_msg(families):
    """One line: per family, what was proven, and what was skipped or left open and why."""
    parts = []
    for family, checks in families.items():
        proven = [c for c, r in checks.items() if "proven" in r]
        other = ["%s not proven (%s)" % (c, r.get("skipped") or r["note"]) for c, r in checks.items()
                 if "proven" not in r and (r.get("skipped") or r.get("note"))]
        parts.append("%s: %s%s" % (family, ", ".join(proven) + " proven" if proven else "nothing proven",
                                   "; " + "; ".join(other) if other else ""))
    return "transparent proxy checked - " + " | ".join(parts)
