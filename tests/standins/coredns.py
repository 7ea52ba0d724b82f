"""Stand-in for CoreDNS as kuma-dp 2.x runs it (tests only; Kuma 3.x has no CoreDNS).

Command line: Go flag package shape. kuma-dp 2.x runs `coredns -conf FILE -quiet`
and reads `coredns --version` (app/kuma-dp/pkg/dataplane/dnsserver). Accepted:
-conf, -dns.port, -pidfile, -plugins, -quiet, -version, -help (one or two
dashes, `-flag value` or `-flag=value`); anything else fails like Go's flag
package (message, usage, exit 2).

Serving: UDP DNS on the port of the first server block of the Corefile
(`.:15053 {` in Kuma's template), on every address (0.0.0.0 and ::, as CoreDNS
listens on ":port" when the block has no `bind`; Kuma's template has none, so
kuma-dp 2.x's CoreDNS is reachable from other hosts whatever the
transparent-proxy flags say), or on the addresses of a `bind` directive. Names under `mesh.` get an A record from 240.0.0.0/4 (the
range Kuma hands virtual IPs from), KUMA_STANDIN_DNS_RECORDS="name=ip,..."
overrides names, anything else is forwarded to KUMA_STANDIN_DNS_UPSTREAM
(ip[:port],...) if set and answered REFUSED otherwise. The Corefile's own
`forward`/`alternate` lines (Envoy's DNS filter on 15054, /etc/resolv.conf) are
not followed. A `log` directive logs each query to stdout.

Standard library only; runs with /usr/bin/python3 (Debian 12 and 13). build_archive.py
installs this file as bin/coredns with `#!/usr/bin/python3` as first line.
"""

COREDNS_VERSION = "1.14.6"  # replaced by build_archive.py
BUILD_PLATFORM = ""  # replaced by build_archive.py, e.g. "linux/amd64"

import hashlib
import os
import platform
import re
import signal
import socket
import struct
import sys
import threading
import time
import zlib


def check_platform():
    """A binary built for another OS or architecture does not run (exit 126, like the shell's ENOEXEC)."""
    if not BUILD_PLATFORM or os.environ.get("KUMA_STANDIN_IGNORE_PLATFORM") == "1":
        return
    machine = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine().lower(), platform.machine().lower())
    here = "%s/%s" % ("darwin" if sys.platform == "darwin" else sys.platform, machine)
    if here != BUILD_PLATFORM:
        sys.stderr.write("%s: cannot execute binary file: Exec format error (built for %s, this is %s)\n"
                         % (sys.argv[0], BUILD_PLATFORM, here))
        sys.exit(126)


FLAGS = {  # name: (takes a value, default, help)
    "conf": (True, "Corefile", "Corefile to load (default \"Corefile\")"),
    "dns.port": (True, "53", "Default port (default \"53\")"),
    "pidfile": (True, "", "Path to write pid file"),
    "plugins": (False, False, "List installed plugins"),
    "quiet": (False, False, "Quiet mode (no initialization output)"),
    "version": (False, False, "Show version"),
}


# --- DNS wire format: shared by the coredns and kuma-dp stand-ins; keep the two copies identical ---
DNS_RECORDS_ENV = "KUMA_STANDIN_DNS_RECORDS"
DNS_UPSTREAM_ENV = "KUMA_STANDIN_DNS_UPSTREAM"
QTYPE_A, QTYPE_AAAA, QTYPE_ANY = 1, 28, 255
RCODE_NOERROR, RCODE_FORMERR, RCODE_NOTIMP, RCODE_REFUSED = 0, 1, 4, 5


def dns_static_records():
    records = {}
    for item in os.environ.get(DNS_RECORDS_ENV, "").split(","):
        name, sep, address = item.strip().partition("=")
        if sep:
            records[name.strip().lower().rstrip(".")] = address.strip()
    return records


def dns_upstreams():
    upstreams = []
    for item in os.environ.get(DNS_UPSTREAM_ENV, "").split(","):
        item = item.strip()
        if not item:
            continue
        if item.startswith("["):
            host, dummy, port = item[1:].partition("]")
            port = port.lstrip(":") or "53"
        elif item.count(":") == 1:
            host, port = item.split(":")
        else:
            host, port = item, "53"
        upstreams.append((host, int(port)))
    return upstreams


def dns_vip(name):
    """A stable address in 240.0.0.0/4 for a mesh name."""
    n = 0xF0000000 + 1 + zlib.crc32(name.encode()) % 0x0FFFFFFE
    return socket.inet_ntoa(struct.pack("!I", n))


def dns_parse_question(data):
    """(id, flags, name, qtype, question bytes); raises ValueError on malformed input."""
    if len(data) < 12:
        raise ValueError("short message")
    qid, flags, qdcount = struct.unpack("!HHH", data[:6])
    if qdcount != 1:
        raise ValueError("expected one question")
    pos, labels = 12, []
    while True:
        if pos >= len(data):
            raise ValueError("truncated name")
        length = data[pos]
        pos += 1
        if length == 0:
            break
        if length & 0xC0:
            raise ValueError("compressed question")
        labels.append(data[pos:pos + length].decode("ascii", "replace"))
        pos += length
    if pos + 4 > len(data):
        raise ValueError("truncated question")
    qtype = struct.unpack("!H", data[pos:pos + 2])[0]
    return qid, flags, ".".join(labels).lower(), qtype, data[12:pos + 4]


def dns_response(qid, flags, question, rcode, answers=(), authoritative=False):
    opcode = (flags >> 11) & 0xF
    out_flags = 0x8000 | (opcode << 11) | (flags & 0x0100) | 0x0080 | (rcode & 0xF)
    if authoritative:
        out_flags |= 0x0400
    msg = struct.pack("!HHHHHH", qid, out_flags, 1 if question else 0, len(answers), 0, 0) + question
    for rtype, rdata in answers:
        msg += struct.pack("!HHHIH", 0xC00C, rtype, 1, 60, len(rdata)) + rdata
    return msg


def dns_answer(data, forward=None):
    """Reply bytes for a query (None: drop it). forward(data) -> reply bytes or None."""
    try:
        qid, flags, name, qtype, question = dns_parse_question(data)
    except ValueError:
        if len(data) >= 4:
            qid, flags = struct.unpack("!HH", data[:4])
            return dns_response(qid, flags, b"", RCODE_FORMERR)
        return None
    if flags & 0x8000:
        return None
    if (flags >> 11) & 0xF != 0:
        return dns_response(qid, flags, question, RCODE_NOTIMP)
    name = name.rstrip(".")
    records = dns_static_records()
    address = records.get(name)
    if address is None and (name == "mesh" or name.endswith(".mesh")):
        address = dns_vip(name)
    if address is not None:
        answers = []
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        if qtype in (QTYPE_A, QTYPE_ANY) and family == socket.AF_INET:
            answers.append((QTYPE_A, socket.inet_pton(family, address)))
        if qtype in (QTYPE_AAAA, QTYPE_ANY) and family == socket.AF_INET6:
            answers.append((QTYPE_AAAA, socket.inet_pton(family, address)))
        return dns_response(qid, flags, question, RCODE_NOERROR, answers, authoritative=True)
    if forward is not None:
        reply = forward(data)
        if reply is not None:
            return reply
    return dns_response(qid, flags, question, RCODE_REFUSED)


def dns_forward(data, timeout=2.0):
    for host, port in dns_upstreams():
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        s = socket.socket(family, socket.SOCK_DGRAM)
        try:
            s.settimeout(timeout)
            s.sendto(data, (host, port))
            reply = s.recvfrom(65535)[0]
            if reply[:2] == data[:2]:
                return reply
        except OSError:
            continue
        finally:
            s.close()
    return None


class DNSServer(object):
    """UDP DNS on the given (host, port) pairs, one thread per socket."""

    def __init__(self, addresses, on_query=None):
        self.sockets = []
        self.on_query = on_query
        for host, port in addresses:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            s = socket.socket(family, socket.SOCK_DGRAM)
            if family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                s.bind((host, port))
            except OSError as e:
                s.close()
                self.close()
                raise OSError(e.errno, "listen udp %s: bind: %s"
                              % ("[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port), e.strerror))
            self.sockets.append(s)

    def bound(self):
        return [s.getsockname()[:2] for s in self.sockets]

    def start(self):
        for s in self.sockets:
            threading.Thread(target=self.serve, args=(s,), daemon=True).start()

    def serve(self, s):
        while True:
            try:
                data, peer = s.recvfrom(65535)
            except OSError:
                return
            threading.Thread(target=self.reply, args=(s, data, peer), daemon=True).start()

    def reply(self, s, data, peer):
        started = time.time()
        reply = dns_answer(data, dns_forward)
        if reply is None:
            return
        try:
            s.sendto(reply, peer)
        except OSError:
            return
        if self.on_query is not None:
            self.on_query(peer, data, reply, time.time() - started)

    def close(self):
        for s in self.sockets:
            try:
                s.close()
            except OSError:
                pass
# --- end of shared DNS section ---


def version_text():
    commit = hashlib.sha1(("kuma-standin-coredns-" + COREDNS_VERSION).encode()).hexdigest()[:7]
    machine = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    return "CoreDNS-%s\nlinux/%s, go1.24.6, %s\n" % (COREDNS_VERSION, machine, commit)


def usage(out):
    out.write("Usage of coredns:\n")
    for name in sorted(FLAGS):
        takes_value, text = FLAGS[name][0], FLAGS[name][2]
        out.write("  -%s%s\n    \t%s\n" % (name, " string" if takes_value else "", text))


def parse_args(argv):
    values = {name: spec[1] for name, spec in FLAGS.items()}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            break
        if not arg.startswith("-") or arg == "-":
            break  # Go's flag package stops at the first non-flag argument
        name = arg.lstrip("-") if arg.startswith("--") else arg[1:]
        if arg.startswith("---"):
            sys.stderr.write("bad flag syntax: %s\n" % arg)
            usage(sys.stderr)
            sys.exit(2)
        name, has_value, value = name.partition("=")
        if name in ("h", "help"):
            usage(sys.stderr)
            sys.exit(0)
        if name not in FLAGS:
            sys.stderr.write("flag provided but not defined: -%s\n" % name)
            usage(sys.stderr)
            sys.exit(2)
        takes_value = FLAGS[name][0]
        if takes_value:
            if not has_value:
                if i + 1 >= len(argv):
                    sys.stderr.write("flag needs an argument: -%s\n" % name)
                    usage(sys.stderr)
                    sys.exit(2)
                i += 1
                value = argv[i]
            values[name] = value
        else:
            if has_value:
                if value.lower() not in ("1", "t", "true", "0", "f", "false"):
                    sys.stderr.write('invalid boolean value "%s" for -%s: parse error\n' % (value, name))
                    usage(sys.stderr)
                    sys.exit(2)
                values[name] = value.lower() in ("1", "t", "true")
            else:
                values[name] = True
        i += 1
    return values


def strip_comments(text):
    return "\n".join(line.split("#", 1)[0] for line in text.splitlines())


def corefile_addresses(text, default_port):
    """Listen addresses for the first server block: ports from its keys, hosts from `bind`."""
    text = strip_comments(text)
    match = re.search(r"^\s*([^{}\n]+?)\s*\{", text, re.M)
    if not match:
        raise ValueError("no server block found")
    ports = []
    for key in match.group(1).split():
        key = re.sub(r"^(dns|udp)://", "", key.rstrip(","))
        port = key.rpartition(":")[2] if ":" in key else default_port
        if not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError("invalid port in server block key %r" % key)
        if int(port) not in ports:
            ports.append(int(port))
    block = text[match.end():]
    depth, end = 1, 0
    for end, ch in enumerate(block):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth == 0:
            break
    body = block[:end]
    hosts = []
    for line in body.splitlines():
        words = line.split()
        if words and words[0] == "bind":
            hosts.extend(words[1:])
    if not hosts:  # CoreDNS without `bind` listens on every address of both families (Go's ":port")
        hosts = ["0.0.0.0"] + (["::"] if has_ipv6_loopback() else [])
    logging = any(line.split()[:1] == ["log"] for line in body.splitlines())
    return [(h, p) for p in ports for h in hosts], logging


def has_ipv6_loopback():
    if not socket.has_ipv6:
        return False
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        try:
            s.bind(("::1", 0))
            return True
        finally:
            s.close()
    except OSError:
        return False


def main(argv):
    check_platform()
    opts = parse_args(argv)
    if opts["version"]:
        sys.stdout.write(version_text())
        return 0
    if opts["plugins"]:
        sys.stdout.write("Server types:\n  dns\n\nCaddyfile loaders:\n  flag\n  default\n\nOther plugins:\n"
                         "  dns.alternate\n  dns.bind\n  dns.errors\n  dns.forward\n  dns.log\n  dns.prometheus\n")
        return 0
    try:
        with open(opts["conf"]) as f:
            corefile = f.read()
    except OSError as e:
        sys.stderr.write("%s\n" % ("Corefile: open %s: %s" % (opts["conf"], e.strerror)))
        return 1
    try:
        addresses, logging = corefile_addresses(corefile, opts["dns.port"])
    except ValueError as e:
        sys.stderr.write("%s:1 - Error during parsing: %s\n" % (opts["conf"], e))
        return 1
    lock = threading.Lock()

    def on_query(peer, query, reply, elapsed):
        try:
            name, qtype = dns_parse_question(query)[2:4]
        except ValueError:
            return
        rcode = {0: "NOERROR", 1: "FORMERR", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}.get(reply[3] & 0xF, "?")
        qname = {1: "A", 28: "AAAA", 255: "ANY"}.get(qtype, str(qtype))
        host, port = peer[0], peer[1]
        with lock:
            sys.stdout.write('[INFO] %s:%d - %d "%s IN %s. udp %d false 512" %s qr,rd %d %.6fs\n'
                             % (host, port, struct.unpack("!H", query[:2])[0], qname, name, len(query), rcode,
                                len(reply), elapsed))
            sys.stdout.flush()

    try:
        server = DNSServer(addresses, on_query if logging else None)
    except OSError as e:
        sys.stderr.write("%s\n" % e.strerror)
        return 1
    if opts["pidfile"]:
        with open(opts["pidfile"], "w") as f:
            f.write("%d\n" % os.getpid())
    if not opts["quiet"]:
        for port in sorted({address[1] for address in addresses}):
            sys.stdout.write(".:%d\n" % port)
        sys.stdout.write(version_text())
        sys.stdout.flush()

    def on_signal(signum, _frame):
        sys.stdout.write("[INFO] %s: Shutting down servers then terminating\n"
                         % ("SIGTERM" if signum == signal.SIGTERM else "SIGINT"))
        sys.stdout.flush()
        server.close()
        os._exit(0)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # CoreDNS reloads on SIGUSR1 / SIGHUP; nothing to reload
    server.start()
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
