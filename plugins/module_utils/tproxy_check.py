# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kuma.mesh maintainers
# Apache License 2.0 (see LICENSE)
"""Proof on the host that Kuma's transparent-proxy rules redirect traffic (kuma_tproxy_check).

Like Kuma's ``kumactl install transparent-proxy-validator``
(pkg/transparentproxy/validate): connections are made from forked children
that drop to another user's uid, and only the rules can make them succeed:

* outbound: a TCP connection, as a user other than kuma-dp, to a TEST-NET
  address that routes nowhere is accepted at once only when the rules hand it
  to the outbound redirect port; the same connection as kuma-dp's uid must not
  be (that would be a redirect loop);
* inbound: Kuma's own validator check, a TCP connection as kuma-dp's uid from
  127.0.0.1 to 127.0.0.6 (::1 to ::6) on a random port, which the rules send to
  the inbound redirect port (kuma-dp's traffic to the loopback but not to
  127.0.0.1 is an application calling itself through the mesh);
* dns: a UDP query to the resolver is answered by the DNS redirect port.

With our own listeners (port free, e.g. before kuma-dp starts) every answer
carries a token and the listener reads the original destination, so the proof
is exact. With the running proxy an accepted connection to a TEST-NET address
is the proof; DNS then counts as proven only when a name the real resolver
cannot know (a ``.mesh`` name) gets an answer.

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

Settings = namedtuple("Settings", [
    "kuma_dp_uid", "kuma_dp_gid", "kuma_dp_user", "test_uid", "test_gid", "test_user", "families", "checks", "listener",
    "outbound_port", "inbound_port", "dns_port", "targets", "target_port", "dns_servers", "dns_name", "timeout",
])
User = namedtuple("User", ["name", "uid", "gid"])


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
    targets = {"ipv4": _address(params.get("target_ipv4") or "203.0.113.1", "target_ipv4", "ipv4"),
               "ipv6": _address(params.get("target_ipv6") or "2001:db8:ffff::1", "target_ipv6", "ipv6")}
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


def tcp_probe(family, address, port, timeout, source=None):
    """The child's side: connect, read what the far end says first (our listener's token)."""
    def probe():
        started = time.time()
        s = socket.socket(AF[family], socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            if source:
                s.bind((source, 0))
            s.connect((address, port))
            elapsed = time.time() - started
            try:
                data = s.recv(256)
            except (socket.timeout, OSError):
                data = b""
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
    target = settings.targets[family]
    where = "%s:%d" % (target, port) if family == "ipv4" else "[%s]:%d" % (target, port)
    listener = open_listener(settings, family, settings.outbound_port, "tcp", token, listeners)
    as_test = as_user(settings.test_uid, settings.test_gid, tcp_probe(family, target, port, settings.timeout),
                      settings.timeout)
    seen = list(listener.seen) if listener else []
    if listener is not None:
        listener.seen[:] = []
    as_dp = as_user(settings.kuma_dp_uid, settings.kuma_dp_gid, tcp_probe(family, target, port, settings.timeout),
                    settings.timeout)
    dp_seen = list(listener.seen) if listener else []
    result = {"target": where, "listener": "own" if listener else "running", "test_user": settings.test_user,
              "as_test_user": as_test, "as_kuma_dp": as_dp}
    problems = []
    if not as_test.get("connected"):
        problems.append("a connection to %s as %s (uid %d) was not accepted (%s): the rules did not hand it to "
                        "the outbound redirect port %d"
                        % (where, settings.test_user, settings.test_uid, as_test.get("error"), settings.outbound_port))
    elif listener is not None and (as_test.get("reply") != token or
                                   not any(s["original_destination"] == where for s in seen)):
        problems.append("a connection to %s as %s reached something other than the check's listener on port %d "
                        "(reply %r, original destinations %s)" % (where, settings.test_user, settings.outbound_port,
                                                                  as_test.get("reply"), seen))
    if as_dp.get("connected") or dp_seen:
        problems.append("a connection to %s as kuma-dp's uid %d was accepted: kuma-dp's own traffic is redirected "
                        "(a loop); the rules exclude another uid" % (where, settings.kuma_dp_uid))
    result["redirected"] = not problems
    if not problems:
        result["proven"] = ("TCP to %s as %s is redirected to port %d%s; as kuma-dp (uid %d) it is not"
                            % (where, settings.test_user, settings.outbound_port,
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
    listener = open_listener(settings, family, settings.dns_port, "udp", token, listeners)
    name = settings.dns_name or "%s.kuma-tproxy-check.invalid" % token
    probe = as_user(settings.test_uid, settings.test_gid, dns_probe(family, server, name, settings.timeout),
                    settings.timeout)
    result = {"server": server, "name": name, "listener": "own" if listener else "running", "as_test_user": probe}
    problems = []
    if not probe.get("answered"):
        problems.append("a DNS query to %s for %s as %s got no answer (%s): the rules did not hand it to the DNS "
                        "port %d" % (server, name, settings.test_user, probe.get("error"), settings.dns_port))
    elif listener is not None:
        if DNS_MARKER["ipv4"] not in probe.get("addresses", []):
            problems.append("a DNS query to %s was answered by something other than the check's listener on port "
                            "%d: DNS is not redirected" % (server, settings.dns_port))
    elif settings.dns_name and not probe.get("addresses"):
        problems.append("a DNS query to %s for %s got no address (rcode %s): the DNS proxy on port %d did not "
                        "answer it" % (server, name, probe.get("rcode"), settings.dns_port))
    result["redirected"] = None if (listener is None and not settings.dns_name) else not problems
    if not problems:
        result["proven"] = ("DNS to %s is answered by port %d" % (server, settings.dns_port) if result["redirected"]
                            else "DNS to %s is answered (by the resolver or the DNS proxy: give dns_name, a .mesh "
                                 "name, to tell them apart)" % server)
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
