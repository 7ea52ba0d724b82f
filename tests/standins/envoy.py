"""Stand-in for Envoy as kuma-dp runs it on a transparent-proxy host (tests only).

Command line: the shape kuma-dp uses (app/kuma-dp/pkg/dataplane/envoy/envoy.go):
    envoy --config-path FILE --drain-time-s N --drain-strategy immediate
          --disable-hot-restart --log-level LEVEL [--component-log-level X]
          [--concurrency N | --cpuset-threads]
plus `--version` in Envoy's format (kuma-dp parses it), `--config-yaml`,
`--base-id`, `--mode validate`. Unknown options fail like Envoy's TCLAP parser.

Bootstrap: JSON (a subset of YAML; Envoy accepts both), camelCase or
snake_case. Read: admin.address.socketAddress and staticResources.listeners
whose useOriginalDst is true. Those listeners are a real TCP transparent
proxy: each accepted connection's original destination is read with
getsockopt(SOL_IP, SO_ORIGINAL_DST) (SOL_IPV6, IP6T_SO_ORIGINAL_DST for IPv6)
and the bytes are relayed to it. Inbound listeners (trafficDirection INBOUND)
relay to the workload of a matching inbound (listener metadata
io.kuma.standin.inbounds) or to the original destination, binding the
upstream socket to 127.0.0.6 / ::6 when the target is not loopback or is no
declared inbound (the passthrough), as Kuma's inbound clusters do. A connection that was not redirected (its "original"
destination is the listener itself, or the kernel has none) is closed, not
relayed, so it cannot loop. One log line per relayed connection:
    outbound <src> -> <original dst>     inbound <src> -> <original dst>

Admin API (loopback, from the bootstrap): /ready (LIVE, or DRAINING after
/healthcheck/fail), /server_info, /listeners, /stats, POST /healthcheck/fail,
/healthcheck/ok, /drain_listeners, /quitquitquit.

Test hook: KUMA_STANDIN_ENVOY_FAKE_ORIGINAL_DST=host:port makes every
connection's original destination that address, to exercise relaying on
loopback without iptables.

Standard library only; runs with /usr/bin/python3 (Debian 12 and 13). build_archive.py
installs this file as bin/envoy with `#!/usr/bin/python3` as first line.
"""

ENVOY_VERSION = "1.38.2"  # replaced by build_archive.py
BUILD_PLATFORM = ""  # replaced by build_archive.py, e.g. "linux/amd64"

import hashlib
import json
import os
import platform
import signal
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


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


SO_ORIGINAL_DST = 80  # linux/netfilter_ipv4.h; IP6T_SO_ORIGINAL_DST has the same value
SOL_IPV6 = getattr(socket, "SOL_IPV6", 41)
SOL_IP = getattr(socket, "SOL_IP", 0)
FAKE_DST_ENV = "KUMA_STANDIN_ENVOY_FAKE_ORIGINAL_DST"
PASSTHROUGH_SOURCE = {socket.AF_INET: "127.0.0.6", socket.AF_INET6: "::6"}
CONNECT_TIMEOUT = 10.0

LOG_LEVELS = ["trace", "debug", "info", "warning", "warn", "error", "critical", "off"]
VALUE_OPTIONS = {
    "-c": "config-path", "--config-path": "config-path", "--config-yaml": "config-yaml",
    "--drain-time-s": "drain-time-s", "--drain-strategy": "drain-strategy",
    "--parent-shutdown-time-s": "parent-shutdown-time-s", "-l": "log-level", "--log-level": "log-level",
    "--component-log-level": "component-log-level", "--log-format": "log-format", "--log-path": "log-path",
    "--base-id": "base-id", "--base-id-path": "base-id-path", "--concurrency": "concurrency",
    "--mode": "mode", "--service-cluster": "service-cluster", "--service-node": "service-node",
    "--service-zone": "service-zone", "--restart-epoch": "restart-epoch",
    "--local-address-ip-version": "local-address-ip-version",
    "--file-flush-interval-msec": "file-flush-interval-msec", "--socket-path": "socket-path",
    "--socket-mode": "socket-mode", "--stats-tag": "stats-tag", "--disable-extensions": "disable-extensions",
}
FLAG_OPTIONS = {
    "--disable-hot-restart", "--cpuset-threads", "--use-dynamic-base-id", "--allow-unknown-static-fields",
    "--reject-unknown-dynamic-fields", "--ignore-unknown-dynamic-fields", "--enable-core-dump",
    "--enable-fine-grain-logging", "--log-format-escaped", "--hot-restart-version", "--version",
    "--skip-hot-restart-on-no-parent", "--skip-hot-restart-parent-stats", "-h", "--help",
}


def build_revision():
    return hashlib.sha1(("kuma-standin-envoy-" + ENVOY_VERSION).encode()).hexdigest()


def version_line():
    # Envoy: "envoy  version: <revision>/<version>/<status>/<build type>/<ssl>"; kuma-dp
    # (GetEnvoyVersion) takes what follows "version:" and needs exactly five '/' parts.
    return "envoy  version: %s/%s/Clean/RELEASE/BoringSSL" % (build_revision(), ENVOY_VERSION)


class Log(object):
    def __init__(self, level="info"):
        self.threshold = self.rank(level)
        self.lock = threading.Lock()

    @staticmethod
    def rank(level):
        level = "warning" if level == "warn" else level
        order = ["trace", "debug", "info", "warning", "error", "critical", "off"]
        return order.index(level)

    def log(self, level, component, message):
        if self.rank(level) < self.threshold:
            return
        now = time.time()
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)) + ".%03d" % int((now % 1) * 1000)
        line = "[%s][%d][%s][%s] %s\n" % (stamp, threading.get_native_id(), level, component, message)
        with self.lock:
            sys.stderr.write(line)
            sys.stderr.flush()

    def info(self, component, message):
        self.log("info", component, message)

    def warn(self, component, message):
        self.log("warning", component, message)

    def critical(self, component, message):
        self.log("critical", component, message)


LOG = Log()


def parse_error(arg, reason="Couldn't find match for argument"):
    sys.stderr.write("PARSE ERROR: Argument: %s\n             %s\n\nFor complete USAGE and HELP type: \n"
                     "   envoy --help\n\n" % (arg, reason))
    sys.exit(1)


def parse_args(argv):
    opts = {"flags": set()}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in VALUE_OPTIONS:
            if i + 1 >= len(argv):
                parse_error(arg, "Missing a value for this argument!")
            opts[VALUE_OPTIONS[arg]] = argv[i + 1]
            i += 2
            continue
        if arg in FLAG_OPTIONS:
            opts["flags"].add(arg)
            i += 1
            continue
        parse_error(arg)
    for key in ("drain-time-s", "parent-shutdown-time-s", "base-id", "concurrency", "restart-epoch"):
        if key in opts:
            try:
                if int(opts[key]) < 0:
                    raise ValueError
            except ValueError:
                parse_error("--" + key, "Couldn't read argument value from string '%s'" % opts[key])
    if opts.get("log-level", "info") not in LOG_LEVELS:
        parse_error("--log-level", "Value '%s' does not meet constraint: %s"
                    % (opts["log-level"], "|".join(LOG_LEVELS)))
    if opts.get("drain-strategy", "gradual") not in ("gradual", "immediate"):
        parse_error("--drain-strategy", "Value '%s' does not meet constraint: gradual|immediate"
                    % opts["drain-strategy"])
    if opts.get("mode", "serve") not in ("serve", "validate", "init_only"):
        parse_error("--mode", "Value '%s' does not meet constraint: serve|validate|init_only" % opts["mode"])
    return opts


def usage():
    return ("USAGE: \n\n   envoy  [--config-path <string>] [--config-yaml <string>] [--log-level <string>]\n"
            "          [--component-log-level <string>] [--drain-time-s <uint32_t>]\n"
            "          [--drain-strategy <string>] [--disable-hot-restart] [--base-id <uint32_t>]\n"
            "          [--concurrency <uint32_t>] [--cpuset-threads] [--mode <string>] [--version]\n"
            "          [-h|--help]\n\n   (kuma.mesh test stand-in: only the options above are meaningful)\n")


# ---------------------------------------------------------------- bootstrap --

def get(d, *names, default=None):
    """Envoy reads camelCase and snake_case alike."""
    if not isinstance(d, dict):
        return default
    for name in names:
        if name in d:
            return d[name]
        snake = "".join("_" + c.lower() if c.isupper() else c for c in name)
        if snake in d:
            return d[snake]
    return default


def merge(base, extra):
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value
    return base


def load_bootstrap(opts):
    if not opts.get("config-path") and not opts.get("config-yaml"):
        raise ValueError("At least one of --config-path or --config-yaml or Options::configProto() "
                         "should be non-empty")
    config = {}
    if opts.get("config-path"):
        path = opts["config-path"]
        try:
            with open(path) as f:
                text = f.read()
        except OSError as e:
            raise ValueError("Invalid path: %s (%s)" % (path, e.strerror))
        try:
            config = json.loads(text)
        except ValueError as e:
            raise ValueError("Unable to parse JSON as proto (%s): the stand-in reads JSON-form "
                             "bootstraps only: %s" % (e, path))
    if opts.get("config-yaml"):
        try:
            merge(config, json.loads(opts["config-yaml"]))
        except ValueError as e:
            raise ValueError("Unable to parse --config-yaml (the stand-in reads JSON form only): %s" % e)
    if not isinstance(config, dict):
        raise ValueError("bootstrap is not a mapping")
    return config


def socket_address(addr, what):
    sa = get(addr, "socketAddress")
    if not isinstance(sa, dict):
        raise ValueError("%s: only socketAddress is supported by the stand-in" % what)
    host = sa.get("address")
    port = get(sa, "portValue", default=0)
    if not isinstance(host, str) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError("%s: invalid socketAddress %r" % (what, sa))
    return host, port


class ListenerSpec(object):
    def __init__(self, raw):
        self.name = raw.get("name", "")
        self.host, self.port = socket_address(raw.get("address"), "listener %r" % self.name)
        self.original_dst = bool(get(raw, "useOriginalDst", default=False))
        direction = get(raw, "trafficDirection", default="")
        if not direction:
            direction = "INBOUND" if self.name.startswith("inbound") else "OUTBOUND"
        self.direction = direction.lower()
        meta = get(get(raw, "metadata", default={}), "filterMetadata", default={}) or {}
        self.inbounds = (meta.get("io.kuma.standin") or {}).get("inbounds") or []
        self.family = socket.AF_INET6 if ":" in self.host else socket.AF_INET


def parse_bootstrap(config):
    admin = get(config, "admin", default={}) or {}
    admin_addr = None
    if get(admin, "address") is not None:
        admin_addr = socket_address(get(admin, "address"), "admin.address")
    listeners = []
    static = get(config, "staticResources", default={}) or {}
    for raw in get(static, "listeners", default=[]) or []:
        spec = ListenerSpec(raw)
        if not spec.original_dst:
            LOG.warn("config", "listener '%s' is not an original-destination listener; the stand-in "
                     "ignores it" % spec.name)
            continue
        listeners.append(spec)
    return admin_addr, listeners


# --------------------------------------------------------------------- proxy --

def fmt_addr(addr):
    host, port = addr[0], addr[1]
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


def parse_hostport(text):
    text = text.strip()
    if text.startswith("["):
        host, dummy, port = text[1:].partition("]:")
    else:
        host, dummy, port = text.rpartition(":")
    return host, int(port)


def original_dst(conn, family):
    """The destination before REDIRECT, or None if the kernel has none."""
    try:
        if family == socket.AF_INET6:
            raw = conn.getsockopt(SOL_IPV6, SO_ORIGINAL_DST, 28)  # sockaddr_in6
            port = struct.unpack("!H", raw[2:4])[0]
            return socket.inet_ntop(socket.AF_INET6, raw[8:24]), port
        raw = conn.getsockopt(SOL_IP, SO_ORIGINAL_DST, 16)  # sockaddr_in
        port = struct.unpack("!H", raw[2:4])[0]
        return socket.inet_ntoa(raw[4:8]), port
    except OSError:
        return None


def is_loopback(host):
    return host.startswith("127.") or host in ("::1", "localhost")


def pump(src, dst, done):
    """Copy src to dst until EOF, then half-close dst; the last pump to finish closes both."""
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
    finally:
        with done[0]:
            done[1] += 1
            last = done[1] == 2
        if last:
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass


def relay(a, b):
    """Copy bytes both ways, one thread per direction, passing half-closes on."""
    done = [threading.Lock(), 0]
    threading.Thread(target=pump, args=(b, a, done), daemon=True).start()
    pump(a, b, done)


class Proxy(object):
    def __init__(self, specs):
        self.specs = specs
        self.sockets = []
        self.lock = threading.Lock()
        self.stats = {}
        self.own_ports = set()

    def count(self, name, key):
        with self.lock:
            k = "listener.%s.%s" % (name, key)
            self.stats[k] = self.stats.get(k, 0) + 1

    def bind(self):
        for spec in self.specs:
            s = socket.socket(spec.family, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if spec.family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # Envoy's default for "::"
            try:
                s.bind((spec.host, spec.port))
                s.listen(512)
            except OSError as e:
                raise OSError("cannot bind '%s': %s" % (fmt_addr((spec.host, spec.port)), e.strerror))
            spec.port = s.getsockname()[1]
            self.own_ports.add(spec.port)
            self.sockets.append((spec, s))
            LOG.info("config", "listener '%s' bound to %s (%s, original destination)"
                     % (spec.name, fmt_addr((spec.host, spec.port)), spec.direction))

    def start(self):
        for spec, s in self.sockets:
            threading.Thread(target=self.accept_loop, args=(spec, s), daemon=True).start()

    def accept_loop(self, spec, lsock):
        while True:
            try:
                conn, peer = lsock.accept()
            except OSError:
                return
            threading.Thread(target=self.handle, args=(spec, conn, peer), daemon=True).start()

    def upstream_for(self, spec, dst):
        """(target, source address to bind or None) for a connection to dst."""
        if spec.direction != "inbound":
            return dst, None
        target, declared = dst, False
        for inbound in spec.inbounds:
            ip = inbound.get("dataplaneIP", "")
            if inbound.get("port") == dst[1] and ip in (dst[0], "0.0.0.0", "::"):
                target = (inbound.get("workloadIP") or dst[0], inbound.get("workloadPort") or dst[1])
                declared = True
                break
        family = socket.AF_INET6 if ":" in target[0] else socket.AF_INET
        # Kuma's inbound passthrough cluster always binds 127.0.0.6 / ::6, which the rules never redirect: a
        # connection to a loopback address other than 127.0.0.1 (Kuma's validator's 127.0.0.6) is refused there
        # instead of coming back to this listener (a loop). A declared inbound's workload on the loopback is
        # reached from the loopback (Kuma's localhost cluster).
        source = None if declared and is_loopback(target[0]) else PASSTHROUGH_SOURCE[family]
        return target, source

    def handle(self, spec, conn, peer):
        local = conn.getsockname()
        fake = os.environ.get(FAKE_DST_ENV)
        dst = parse_hostport(fake) if fake else original_dst(conn, spec.family)
        if dst is None or (dst[0] == local[0] and dst[1] == local[1]) or \
                (dst[1] in self.own_ports and (is_loopback(dst[0]) or dst[0] == local[0])):
            LOG.info("filter", "%s %s refused: not redirected (original destination %s)"
                     % (spec.direction, fmt_addr(peer), fmt_addr(dst) if dst else "unavailable"))
            self.count(spec.name, "downstream_cx_refused")
            conn.close()
            return
        LOG.info("filter", "%s %s -> %s" % (spec.direction, fmt_addr(peer), fmt_addr(dst)))
        self.count(spec.name, "downstream_cx_total")
        target, source = self.upstream_for(spec, dst)
        family = socket.AF_INET6 if ":" in target[0] else socket.AF_INET
        up = socket.socket(family, socket.SOCK_STREAM)
        try:
            if source:
                up.bind((source, 0))
            up.settimeout(CONNECT_TIMEOUT)
            up.connect(target)
            up.settimeout(None)
        except OSError as e:
            LOG.warn("filter", "%s %s -> %s upstream %s failed: %s"
                     % (spec.direction, fmt_addr(peer), fmt_addr(dst), fmt_addr(target), e))
            self.count(spec.name, "upstream_cx_connect_fail")
            up.close()
            conn.close()
            return
        relay(conn, up)

    def close(self):
        for dummy, s in self.sockets:
            try:
                s.close()
            except OSError:
                pass


# --------------------------------------------------------------------- admin --

class Server(object):
    def __init__(self, opts, proxy):
        self.opts = opts
        self.proxy = proxy
        self.healthcheck_failed = False
        self.draining = False
        self.started = time.time()
        self.admin = None

    def state(self):
        return "DRAINING" if (self.healthcheck_failed or self.draining) else "LIVE"

    def start_admin(self, addr):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def version_string(self):
                return "envoy"

            def log_message(self, fmt, *args):
                pass

            def reply(self, status, body, ctype="text/plain; charset=UTF-8"):
                data = body.encode()
                self.send_response(status)
                self.send_header("content-type", ctype)
                self.send_header("content-length", str(len(data)))
                self.send_header("cache-control", "no-cache, max-age=0")
                self.send_header("x-content-type-options", "nosniff")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def route(self):
                path = self.path.split("?", 1)[0]
                post = self.command == "POST"
                if path == "/ready":
                    state = server.state()
                    return self.reply(200 if state == "LIVE" else 503, state + "\n")
                if path == "/server_info":
                    info = {"version": build_revision() + "/" + ENVOY_VERSION + "/Clean/RELEASE/BoringSSL",
                            "state": server.state(), "uptime_current_epoch": "%ds" % (time.time() - server.started),
                            "command_line_options": {"config_path": server.opts.get("config-path", ""),
                                                     "log_level": server.opts.get("log-level", "info"),
                                                     "drain_time": "%ss" % server.opts.get("drain-time-s", "600")}}
                    return self.reply(200, json.dumps(info, indent=2) + "\n", "application/json")
                if path == "/listeners":
                    lines = ["%s::%s" % (spec.name, fmt_addr((spec.host, spec.port)))
                             for spec, dummy in server.proxy.sockets]
                    return self.reply(200, "".join(line + "\n" for line in lines))
                if path == "/stats":
                    with server.proxy.lock:
                        stats = dict(server.proxy.stats)
                    stats["server.state"] = 0 if server.state() == "LIVE" else 1
                    return self.reply(200, "".join("%s: %s\n" % kv for kv in sorted(stats.items())))
                if path in ("/healthcheck/fail", "/healthcheck/ok", "/drain_listeners", "/quitquitquit"):
                    if not post:
                        return self.reply(405, "This endpoint requires POST\n")
                    if path == "/healthcheck/fail":
                        server.healthcheck_failed = True
                    elif path == "/healthcheck/ok":
                        server.healthcheck_failed = False
                    elif path == "/drain_listeners":
                        server.draining = True
                        LOG.info("admin", "draining listeners (%s)" % self.path)
                    self.reply(200, "OK\n")
                    if path == "/quitquitquit":
                        LOG.info("main", "shutting down server (/quitquitquit)")
                        threading.Thread(target=server.exit, args=(0,), daemon=True).start()
                    return None
                return self.reply(404, "invalid path. admin commands are:\n  /ready\n  /server_info\n"
                                       "  /listeners\n  /stats\n  /healthcheck/fail\n  /healthcheck/ok\n"
                                       "  /drain_listeners\n  /quitquitquit\n")

            do_GET = do_POST = do_HEAD = route

        family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        httpd_cls = type("AdminServer", (ThreadingHTTPServer,), {"address_family": family, "daemon_threads": True})
        try:
            self.admin = httpd_cls(addr, Handler)
        except OSError as e:
            raise OSError("cannot bind admin '%s': %s" % (fmt_addr(addr), e.strerror))
        LOG.info("main", "admin address: %s" % fmt_addr(self.admin.server_address))
        threading.Thread(target=self.admin.serve_forever, daemon=True).start()

    def exit(self, code):
        self.proxy.close()
        sys.stderr.flush()
        os._exit(code)


def main(argv):
    check_platform()
    opts = parse_args(argv)
    if "--version" in opts["flags"]:
        sys.stdout.write("\n%s\n\n" % version_line())
        return 0
    if "-h" in opts["flags"] or "--help" in opts["flags"]:
        sys.stdout.write(usage())
        return 0
    global LOG
    LOG = Log(opts.get("log-level", "info"))
    LOG.info("main", "initializing epoch 0 (base id=%s, hot restart version=disabled)" % opts.get("base-id", "0"))
    LOG.info("main", "statically linked extensions: (kuma.mesh stand-in, python %s)" % sys.version.split()[0])
    try:
        admin_addr, specs = parse_bootstrap(load_bootstrap(opts))
    except (ValueError, TypeError) as e:
        LOG.critical("main", "error initializing configuration '%s': %s" % (opts.get("config-path", ""), e))
        return 1
    if opts.get("mode") == "validate":
        sys.stdout.write("configuration '%s' OK\n" % opts.get("config-path", ""))
        return 0
    proxy = Proxy(specs)
    server = Server(opts, proxy)
    try:
        proxy.bind()
        if admin_addr is not None:
            server.start_admin(admin_addr)
    except OSError as e:
        LOG.critical("main", "error initializing configuration '%s': %s" % (opts.get("config-path", ""), e))
        return 1
    if opts.get("mode") == "init_only":
        return 0

    def on_signal(signum, _frame):
        name = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "SIGINT"}.get(signum, str(signum))
        LOG.warn("main", "caught ENVOY_%s" % name)
        LOG.info("main", "shutting down server instance")
        server.exit(0)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # Envoy reopens access logs on SIGUSR1, ignores SIGHUP
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    proxy.start()
    LOG.info("main", "starting main dispatch loop")
    LOG.info("main", "all clusters initialized. initializing init manager")
    LOG.info("config", "all dependencies initialized. starting workers")
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(0)
