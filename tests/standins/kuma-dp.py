"""Stand-in for kuma-dp on a Universal transparent-proxy host (tests only).

Shape taken from Kuma's sources (app/kuma-dp/cmd, pkg/config/app/kuma-dp):
  kuma-dp version [-a|--detailed]     prints "Kuma: <version>" (baked in by build_archive.py)
  kuma-dp run [flags]                 the real flag set of the baked-in major version:
                                      2.x has --config-dir (deprecated) and the CoreDNS
                                      flags (--dns-coredns-path, ...); 3.x has
                                      --dns-proxy-port and rejects the CoreDNS flags.
  kuma-dp wait [--url U] [--timeout D] [--check-frequency D] [--request-timeout D]
Root flags --log-level (off|info|debug), --log-output-path, --log-max-*. Flag
parsing follows cobra/pflag: unknown flags, bad values, unknown commands print
"Error: ..." and exit 1; `--version` is not a kuma-dp flag. Environment
variables (KUMA_CONTROL_PLANE_URL, KUMA_DATAPLANE_RUNTIME_TOKEN_PATH,
KUMA_READINESS_PORT, KUMA_DNS_ENABLED, ...) are applied after the flags, as
kuma-dp's config loader does.

`run` does what kuma-dp does before it talks to the control plane: renders the
Dataplane template (--dataplane-file/-d, --dataplane, --dataplane-var/-v, mustache
`{{ var }}`), parses it (JSON or the usual block YAML), validates it (type
Dataplane, mesh, name, networking.address, inbound ports, kuma.io/service tag),
checks the token file (non-empty, one line, JWT-shaped) and the CA file,
resolves envoy (--binary-path, ./envoy, next to kuma-dp) and checks
`envoy --version`. There is no control plane: instead of fetching a bootstrap
the stand-in writes one (<work-dir>/bootstrap.yaml, JSON) with the admin
address (networking.admin.port, default 9901) and original-destination
listeners on transparentProxying.redirectPortOutbound / redirectPortInbound
(IPv6 too when the host has IPv6 and ipFamilyMode is not IPv4), then starts
envoy with the same arguments kuma-dp uses. DNS (enabled by default): 2.x
starts `coredns -conf <Corefile> -quiet` (--dns-coredns-path, ./coredns, next to
kuma-dp) from Kuma's Corefile template; 3.x (and 2.x with KUMA_DNS_PROXY_PORT)
serves DNS itself on --dns-proxy-port, bound as dnsProxyAddresses in run.go:
0.0.0.0 without a transparent proxy; with --transparent-proxy or
--transparent-proxy-config, 127.0.0.1 and ::1 (separate sockets; ::1 unless
ipFamilyMode is exactly "ipv4"), or 0.0.0.0 and :: with redirect.vnet.networks.
The transparent-proxy configuration is loaded as kuma-dp loads it (one file per
value or '-' for stdin, later values win, unknown keys ignored, wrong types and
ports refused), drives the redirect listeners as the control plane would (it
wins over networking.transparentProxying), and is written with the rest of the
bootstrap request to <work-dir>/bootstrap-request.json.

Readiness: as kuma-dp's readiness reporter (app/kuma-dp/pkg/dataplane/readiness):
GET http://127.0.0.1:9902/ready (port: KUMA_READINESS_PORT), text/plain READY
(200), NOT_READY or TERMINATING (503), header x-powered-by: kuma-dp. Stricter
than the real one: READY only once envoy's admin /ready says LIVE and DNS has
answered once.

Signals: SIGTERM/SIGINT -> TERMINATING, POST /healthcheck/fail to envoy, wait
--drain-time (a second signal cuts it short), SIGTERM to the children, exit 0.
SIGUSR2 drains envoy's inbound listeners. A child that exits makes kuma-dp stop
the others and exit 1 (0 if the child exited 0, as kuma-dp does). Logs go to
stderr in kuma-dp's format; envoy and coredns inherit stdout and stderr.

Standard library only; runs with /usr/bin/python3 (Debian 12 and 13). build_archive.py
installs this file as bin/kuma-dp with `#!/usr/bin/python3` as first line.
"""

KUMA_VERSION = "2.14.3"  # replaced by build_archive.py
KUMA_GIT_COMMIT = "0000000000000000000000000000000000000000"  # replaced by build_archive.py
KUMA_BUILD_DATE = "1970-01-01T00:00:00Z"  # replaced by build_archive.py
BUILD_PLATFORM = ""  # replaced by build_archive.py, e.g. "linux/amd64"

import base64
import csv
import ctypes
import html
import json
import os
import platform
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
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


MAJOR = int(KUMA_VERSION.split(".", 1)[0])
V3 = MAJOR >= 3


class CmdError(Exception):
    """An error cobra prints as "Error: <msg>" (exit 1)."""

    def __init__(self, msg, usage=False):
        Exception.__init__(self, msg)
        self.usage = usage


# ------------------------------------------------------------------- logging --

class Logger(object):
    LEVELS = {"off": 0, "info": 1, "debug": 2}

    def __init__(self):
        self.level = 1
        self.out = sys.stderr
        self.lock = threading.Lock()

    def _write(self, level, name, msg, kv):
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(now)) + ".%03d" % int((now % 1) * 1000) + \
            time.strftime("%z", time.localtime(now))
        fields = ""
        if kv:
            pairs = dict(zip(kv[0::2], kv[1::2]))
            fields = "\t" + json.dumps(pairs, default=str)
        with self.lock:
            self.out.write("%s\t%s\t%s\t%s%s\n" % (stamp, level, name, msg, fields))
            self.out.flush()

    def info(self, name, msg, *kv):
        if self.level >= 1:
            self._write("INFO", name, msg, kv)

    def debug(self, name, msg, *kv):
        if self.level >= 2:
            self._write("DEBUG", name, msg, kv)

    def error(self, name, err, msg, *kv):
        if self.level >= 1:
            self._write("ERROR", name, msg, ("error", str(err)) + kv)


LOG = Logger()


# --------------------------------------------------------------------- flags --

class Flag(object):
    def __init__(self, name, kind, default, usage, short=None, deprecated=None):
        self.name, self.kind, self.default, self.usage = name, kind, default, usage
        self.short, self.deprecated = short, deprecated

    def display(self):
        return "-%s, --%s" % (self.short, self.name) if self.short else "--%s" % self.name


def go_parse_bool(text):
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ValueError('strconv.ParseBool: parsing "%s": invalid syntax' % text)


def go_parse_uint(text, bits):
    body = text.replace("_", "")
    try:
        if re.match(r"^0[0-7]+$", body):
            value = int(body, 8)
        else:
            value = int(body, 0)
    except ValueError:
        raise ValueError('strconv.ParseUint: parsing "%s": invalid syntax' % text)
    if value < 0 or text.startswith(("-", "+")):
        raise ValueError('strconv.ParseUint: parsing "%s": invalid syntax' % text)
    if value >= 1 << bits:
        raise ValueError('strconv.ParseUint: parsing "%s": value out of range' % text)
    return value


def go_parse_int(text):
    try:
        return int(text.replace("_", ""), 0)
    except ValueError:
        raise ValueError('strconv.ParseInt: parsing "%s": invalid syntax' % text)


DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "\u03bcs": 1e-6, "ms": 1e-3, "s": 1.0,
                  "m": 60.0, "h": 3600.0}


def go_parse_duration(text):
    """time.ParseDuration, in seconds."""
    orig, s, sign = text, text, 1.0
    if s[:1] in "+-" and s:
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if s == "0":
        return 0.0
    if not s:
        raise ValueError('time: invalid duration "%s"' % orig)
    total = 0.0
    while s:
        m = re.match(r"(\d*\.?\d*)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)", s)
        if not m or m.group(1) in ("", "."):
            if re.match(r"^\d*\.?\d*$", s):
                raise ValueError('time: missing unit in duration "%s"' % orig)
            raise ValueError('time: invalid duration "%s"' % orig)
        total += float(m.group(1)) * DURATION_UNITS[m.group(2)]
        s = s[m.end():]
    return sign * total


def fmt_duration(seconds):
    if seconds == 0:
        return "0s"
    if seconds < 1:
        return "%gms" % (seconds * 1000)
    out, rest = "", seconds
    h = int(rest // 3600)
    if h:
        out += "%dh" % h
        rest -= h * 3600
    m = int(rest // 60)
    if m or h:
        out += "%dm" % m
        rest -= m * 60
    return out + ("%gs" % rest)


def convert(flag, text, values, changed):
    kind = flag.kind
    if kind == "string":
        return text
    if kind == "bool":
        return go_parse_bool(text)
    if kind == "uint32":
        return go_parse_uint(text, 32)
    if kind == "int":
        return go_parse_int(text)
    if kind == "duration":
        return go_parse_duration(text)
    if kind == "stringArray":
        return (list(values[flag.name]) if flag.name in changed else []) + [text]
    if kind == "stringToString":
        out = dict(values[flag.name]) if flag.name in changed else {}
        if text:
            for item in next(csv.reader([text])):
                key, sep, value = item.partition("=")
                if not sep:
                    raise ValueError("%s must be formatted as key=value" % item)
                out[key] = value
        return out
    raise AssertionError(kind)


def parse_flags(args, flags):
    """pflag: returns (values, changed names, positional args, help requested)."""
    by_name = {f.name: f for f in flags}
    by_short = {f.short: f for f in flags if f.short}
    values = {f.name: (dict(f.default) if isinstance(f.default, dict) else
                       list(f.default) if isinstance(f.default, list) else f.default) for f in flags}
    changed, positional, help_requested = set(), [], False

    def set_value(flag, text):
        if flag.deprecated:
            sys.stderr.write("Flag --%s has been deprecated, %s\n" % (flag.name, flag.deprecated))
        try:
            values[flag.name] = convert(flag, text, values, changed)
        except ValueError as e:
            raise CmdError('invalid argument "%s" for "%s" flag: %s' % (text, flag.display(), e), usage=True)
        changed.add(flag.name)

    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            positional.extend(args[i:])
            break
        if arg.startswith("--") and len(arg) > 2:
            name, has_value, text = arg[2:].partition("=")
            if name == "help":
                help_requested = True
                continue
            flag = by_name.get(name)
            if flag is None:
                raise CmdError("unknown flag: --%s" % name, usage=True)
            if not has_value:
                if flag.kind == "bool":
                    text = "true"
                elif i < len(args):
                    text = args[i]
                    i += 1
                else:
                    raise CmdError("flag needs an argument: --%s" % name, usage=True)
            set_value(flag, text)
        elif arg.startswith("-") and len(arg) > 1:
            shorts = arg[1:]
            while shorts:
                c, shorts = shorts[0], shorts[1:]
                if c == "h":
                    help_requested = True
                    continue
                flag = by_short.get(c)
                if flag is None:
                    raise CmdError("unknown shorthand flag: '%s' in -%s" % (c, arg[1:]), usage=True)
                if shorts.startswith("="):
                    set_value(flag, shorts[1:])
                    shorts = ""
                elif flag.kind == "bool":
                    set_value(flag, "true")
                elif shorts:
                    set_value(flag, shorts)
                    shorts = ""
                elif i < len(args):
                    set_value(flag, args[i])
                    i += 1
                else:
                    raise CmdError("flag needs an argument: '%s' in -%s" % (c, c), usage=True)
        else:
            positional.append(arg)
    return values, changed, positional, help_requested


ROOT_FLAGS = [
    Flag("log-level", "string", "info", "log level: one of off|info|debug"),
    Flag("log-output-path", "string", "", "path to the file that will be filled with logs. Example: if we set it "
         "to /tmp/kuma.log then after the file is rotated we will have /tmp/kuma-2021-06-07T09-15-18.265.log"),
    Flag("log-max-retained-files", "int", 1000, "maximum number of the old log files to retain"),
    Flag("log-max-size", "int", 100, "maximum size in megabytes of a log file before it gets rotated"),
    Flag("log-max-age", "int", 30, "maximum number of days to retain old log files based on the timestamp "
         "encoded in their filename"),
]


def run_flags():
    flags = [
        Flag("name", "string", "", "Name of the Dataplane"),
        Flag("mesh", "string", "", "Mesh that Dataplane belongs to"),
        Flag("proxy-type", "string", "dataplane",
             'type of the Dataplane ("dataplane")' if V3 else 'type of the Dataplane ("dataplane", "ingress")'),
        Flag("drain-time", "duration", 30.0, "drain time for Envoy connections on Kuma DP shutdown"),
        Flag("cp-address", "string", "https://localhost:5678",
             "URL of the Control Plane Dataplane Server. Example: https://localhost:5678"),
        Flag("ca-cert-file", "string", "", "Path to CA cert by which connection to the Control Plane will be "
             "verified if HTTPS is used"),
        Flag("skip-verify", "bool", False, "Skip TLS verification of the Control Plane certificate (insecure, for "
             "development/testing only)"),
        Flag("binary-path", "string", "envoy", "Binary path of Envoy executable"),
        Flag("concurrency", "uint32", 0, "Number of Envoy worker threads"),
    ]
    if not V3:
        flags.append(Flag("config-dir", "string", "", "Directory in which Envoy config will be generated",
                          deprecated="use --work-dir instead"))
    flags += [
        Flag("work-dir", "string", "", "Directory in which Kuma DP config will be generated"),
        Flag("dataplane-token-file", "string", "", "Path to a file with dataplane token (use 'kumactl generate "
             "dataplane-token' to get one)"),
        Flag("dataplane-token", "string", "", "Dataplane Token"),
        Flag("dataplane", "string", "", "Dataplane template to apply (YAML or JSON)"),
        Flag("dataplane-file", "string", "", "Path to Dataplane template to apply (YAML or JSON)", short="d"),
        Flag("dataplane-var", "stringToString", {}, "Variables to replace Dataplane template", short="v"),
        Flag("envoy-log-level", "string", "", "Envoy log level. Available values are: [trace][debug][info]"
             "[warning|warn][error][critical][off]. By default it inherits Kuma DP logging level."),
        Flag("envoy-component-log-level", "string", "", "Configures Envoy's --component-log-level"),
        Flag("metrics-cert-path", "string", "", "A path to the certificate for metrics listener"),
        Flag("metrics-key-path", "string", "", "A path to the certificate key for metrics listener"),
        Flag("bind-outbounds", "bool", False, "If true then dataplane bind outbounds to real addresses"),
    ]
    if V3:
        flags += [
            Flag("dns-enabled", "bool", True, "If true then builtin DNS functionality is enabled and the embedded "
                 "DNS proxy is started"),
            Flag("dns-proxy-port", "uint32", 15053, "A port on which the embedded DNS proxy listens. When "
                 "transparent proxy is enabled then iptables will redirect DNS traffic to this port."),
        ]
    else:
        flags += [
            Flag("dns-enabled", "bool", True, "If true then builtin DNS functionality is enabled and CoreDNS "
                 "server is started"),
            Flag("dns-envoy-port", "uint32", 15054, "A port that handles Virtual IP resolving by Envoy. CoreDNS "
                 "should be configured that it first tries to use this DNS resolver and then the real one"),
            Flag("dns-coredns-port", "uint32", 15053, "A port that handles DNS requests. When transparent proxy is "
                 "enabled then iptables will redirect DNS traffic to this port."),
            Flag("dns-coredns-path", "string", "coredns", "A path to CoreDNS binary."),
            Flag("dns-coredns-config-template-path", "string", "", "A path to a CoreDNS config template."),
            Flag("dns-server-config-dir", "string", "", "Directory in which DNS Server config will be generated"),
            Flag("dns-prometheus-port", "uint32", 19153, "A port for exposing Prometheus stats"),
            Flag("dns-enable-logging", "bool", False, "If true then CoreDNS logging is enabled"),
        ]
    flags += [
        Flag("transparent-proxy", "bool", False, "Enable transparent proxy with default configuration"),
        Flag("transparent-proxy-config", "stringArray", [], "Enable transparent proxy with provided "
             "configuration. This flag can be repeated. Each value can be: a comma-separated list of file "
             "paths, or a dash '-' to read from STDIN"),
    ]
    return flags


WAIT_FLAGS = [
    Flag("check-frequency", "duration", 1.0, "frequency of checking if the data plane proxy is ready"),
    Flag("timeout", "duration", 180.0, "timeout defines how long waits for the data plane proxy"),
    Flag("request-timeout", "duration", 0.5, "requestTimeout defines timeout for the request to the data "
         "plane proxy"),
    Flag("url", "string", "http://localhost:9901/ready", "url at which admin is exposed"),
    Flag("unix-socket", "string", "", "path to Unix domain socket for admin API (overrides --url)"),
]

VERSION_FLAGS = [Flag("detailed", "bool", False, "Print detailed version", short="a")]

COMMANDS = {
    "run": ("Launch Dataplane (Envoy)", run_flags),
    "version": ("Print version", lambda: VERSION_FLAGS),
    "wait": ("Waits for data plane proxy to be ready", lambda: WAIT_FLAGS),
    "help": ("Help about any command", lambda: []),
}


def usage_text(command):
    def flag_lines(flags):
        lines = []
        for f in flags:
            left = ("  -%s, --%s" % (f.short, f.name)) if f.short else ("      --%s" % f.name)
            kind = {"bool": "", "stringToString": " stringToString", "stringArray": " stringArray"}.get(
                f.kind, " " + f.kind)
            default = ""
            if f.kind == "string" and f.default:
                default = ' (default "%s")' % f.default
            elif f.kind in ("uint32", "int") and f.default:
                default = " (default %d)" % f.default
            elif f.kind == "duration" and f.default:
                default = " (default %s)" % fmt_duration(f.default)
            elif f.kind == "bool" and f.default:
                default = " (default true)"
            elif f.kind == "stringToString":
                default = " (default [])"
            if f.deprecated:
                continue
            lines.append("%s%s   %s%s" % (left, kind, f.usage, default))
        return "\n".join(lines)

    if command is None:
        cmds = "\n".join("  %-12s%s" % (name, COMMANDS[name][0]) for name in sorted(COMMANDS))
        return ("Usage:\n  kuma-dp [command]\n\nAvailable Commands:\n%s\n\nFlags:\n  -h, --help   help for kuma-dp\n"
                "%s\n\nUse \"kuma-dp [command] --help\" for more information about a command.\n"
                % (cmds, flag_lines(ROOT_FLAGS)))
    return ("Usage:\n  kuma-dp %s [flags]\n\nFlags:\n  -h, --help   help for %s\n%s\n\nGlobal Flags:\n%s\n"
            % (command, command, flag_lines(COMMANDS[command][1]()), flag_lines(ROOT_FLAGS)))


def find_command(args):
    """cobra's Find: the first argument that is not a flag (or a root flag's value)."""
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return None, args
        if arg.startswith("--"):
            name = arg[2:]
            if "=" not in name and name != "help":
                i += 1  # '--flag arg': cobra's stripFlags skips the next argument unless the flag is a bool
        elif arg.startswith("-") and len(arg) == 2 and arg != "-h":
            i += 1
        elif not arg.startswith("-"):
            return arg, args[:i] + args[i + 1:]
        i += 1
    return None, args


# ------------------------------------------------------- YAML, JSON, mustache --

class YAMLError(ValueError):
    pass


def strip_comment(line):
    out, quote = [], None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"" and (i == 0 or line[i - 1] in " \t:[{,-"):
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            break
        out.append(ch)
    return "".join(out).rstrip()


def yaml_scalar(text):
    t = text.strip()
    if t == "":
        return None
    if t[0] in "[{":
        value, rest = flow_value(t, 0)
        if t[rest:].strip():
            raise YAMLError("unexpected text after flow collection: %r" % t)
        return value
    if t[0] == '"':
        if not t.endswith('"') or len(t) < 2:
            raise YAMLError("unterminated double-quoted string: %s" % t)
        try:
            return json.loads(t)
        except ValueError:
            return t[1:-1]
    if t[0] == "'":
        if not t.endswith("'") or len(t) < 2:
            raise YAMLError("unterminated single-quoted string: %s" % t)
        return t[1:-1].replace("''", "'")
    if t in ("~", "null", "Null", "NULL"):
        return None
    if t in ("true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"):
        return True
    if t in ("false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"):
        return False
    if re.match(r"^[-+]?(0|[1-9][0-9_]*)$", t):
        return int(t.replace("_", ""))
    if re.match(r"^0x[0-9a-fA-F]+$", t):
        return int(t, 16)
    if re.match(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$", t):
        return float(t)
    if t[0] in "&*!|>%@`":
        raise YAMLError("unsupported YAML construct: %s" % t)
    return t


def flow_value(s, i):
    """Parse a flow collection or scalar starting at s[i]; returns (value, next index)."""
    while i < len(s) and s[i] == " ":
        i += 1
    if i >= len(s):
        raise YAMLError("unexpected end of flow collection")
    if s[i] == "[":
        out, i = [], i + 1
        while True:
            while i < len(s) and s[i] == " ":
                i += 1
            if i < len(s) and s[i] == "]":
                return out, i + 1
            value, i = flow_value(s, i)
            out.append(value)
            while i < len(s) and s[i] == " ":
                i += 1
            if i < len(s) and s[i] == ",":
                i += 1
            elif i < len(s) and s[i] == "]":
                return out, i + 1
            else:
                raise YAMLError("bad flow sequence: %s" % s)
    if s[i] == "{":
        out, i = {}, i + 1
        while True:
            while i < len(s) and s[i] == " ":
                i += 1
            if i < len(s) and s[i] == "}":
                return out, i + 1
            m = re.compile(r"\s*(\"[^\"]*\"|'[^']*'|[^:,{}\[\]]+?)\s*:(\s|$)").match(s, i)
            if not m:
                raise YAMLError("bad flow mapping: %s" % s)
            key = yaml_scalar(m.group(1))
            value, i = flow_value(s, m.end())
            out[key] = value
            while i < len(s) and s[i] == " ":
                i += 1
            if i < len(s) and s[i] == ",":
                i += 1
            elif i < len(s) and s[i] == "}":
                return out, i + 1
            else:
                raise YAMLError("bad flow mapping: %s" % s)
    if s[i] in "\"'":
        q = s[i]
        j = i + 1
        while j < len(s):
            if s[j] == q and not (q == '"' and s[j - 1] == "\\"):
                break
            j += 1
        return yaml_scalar(s[i:j + 1]), j + 1
    m = re.compile(r"[^,\]}]*").match(s, i)
    return yaml_scalar(m.group(0)), m.end()


KEY_RE = re.compile(r"^(\"[^\"]*\"|'[^']*'|[^\s'\"#][^#]*?)\s*:(?:\s+(.*))?$")


def parse_yaml(text):
    raw_lines = text.splitlines()
    lines = []  # (indent, content, raw index)
    docs = 0
    for n, raw in enumerate(raw_lines):
        if raw.strip() in ("---", "...") and not raw.startswith(" "):
            if raw.strip() == "---":
                docs += 1
                if docs > 1 and lines:
                    raise YAMLError("multiple YAML documents are not supported")
            continue
        content = strip_comment(raw)
        if not content.strip():
            continue
        lead = content[:len(content) - len(content.lstrip())]
        if "\t" in lead:
            raise YAMLError("line %d: tabs are not allowed for indentation" % (n + 1))
        lines.append((len(lead), content.strip(), n))
    if not lines:
        return None
    pos = [0]

    def block_scalar(indicator, parent_indent, raw_index):
        body = []
        j = raw_index + 1
        while j < len(raw_lines):
            line = raw_lines[j]
            if line.strip() and len(line) - len(line.lstrip()) <= parent_indent:
                break
            body.append(line)
            j += 1
        while pos[0] < len(lines) and lines[pos[0]][2] < j:
            pos[0] += 1
        nonblank = [b for b in body if b.strip()]
        cut = min((len(b) - len(b.lstrip()) for b in nonblank), default=0)
        text_lines = [b[cut:] for b in body]
        while text_lines and not text_lines[-1].strip():
            text_lines.pop()
        if indicator.startswith(">"):
            value = " ".join(t.strip() for t in text_lines)
        else:
            value = "\n".join(text_lines)
        if "-" not in indicator:
            value += "\n"
        return value

    def parse_node(indent):
        ind, content = lines[pos[0]][:2]
        if content == "-" or content.startswith("- "):
            return parse_seq(ind)
        return parse_map(ind)

    def value_after(rest, indent, raw_index, allow_same_indent_seq):
        if rest is None or rest == "":
            if pos[0] < len(lines):
                nind, ncontent = lines[pos[0]][:2]
                if nind > indent:
                    return parse_node(nind)
                if allow_same_indent_seq and nind == indent and (ncontent == "-" or ncontent.startswith("- ")):
                    return parse_seq(nind)
            return None
        if rest[0] in "|>":
            return block_scalar(rest, indent, raw_index)
        return yaml_scalar(rest)

    def parse_map(indent):
        out = {}
        while pos[0] < len(lines):
            ind, content, raw_index = lines[pos[0]]
            if ind < indent:
                break
            if ind > indent:
                raise YAMLError("line %d: bad indentation" % (raw_index + 1))
            if content == "-" or content.startswith("- "):
                break
            m = KEY_RE.match(content)
            if not m:
                raise YAMLError("line %d: expected 'key: value', got %r" % (raw_index + 1, content))
            key = yaml_scalar(m.group(1))
            pos[0] += 1
            if key in out:
                raise YAMLError("line %d: duplicate key %r" % (raw_index + 1, key))
            out[key] = value_after(m.group(2), indent, raw_index, True)
        return out

    def parse_seq(indent):
        out = []
        while pos[0] < len(lines):
            ind, content, raw_index = lines[pos[0]]
            if ind != indent or not (content == "-" or content.startswith("- ")):
                if ind > indent:
                    raise YAMLError("line %d: bad indentation" % (raw_index + 1))
                break
            item = content[1:].lstrip()
            if not item:
                pos[0] += 1
                out.append(value_after(None, indent, raw_index, False))
                continue
            offset = indent + (len(content) - len(item))
            if item.startswith("- ") or (KEY_RE.match(item) and item[0] not in "[{\"'") or \
                    (KEY_RE.match(item) and item[0] in "\"'" and not yaml_is_plain_quoted(item)):
                lines[pos[0]] = (offset, item, raw_index)
                out.append(parse_node(offset))
            else:
                pos[0] += 1
                out.append(value_after(item, indent, raw_index, False))
        return out

    value = parse_node(lines[0][0])
    if pos[0] < len(lines):
        raise YAMLError("line %d: unexpected content %r" % (lines[pos[0]][2] + 1, lines[pos[0]][1]))
    return value


def yaml_is_plain_quoted(item):
    q = item[0]
    return item.endswith(q) and item.count(q) == 2


def load_document(text):
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            return json.loads(stripped)
        except ValueError:
            pass
    return parse_yaml(text)


def render_template(text, variables):
    """Kuma's template.Render: mustache with dotted names; {{x}} is HTML-escaped, {{{x}}} and {{&x}} are not."""
    context = {}
    for key, value in variables.items():
        node = context
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {}) if isinstance(node.get(part, {}), dict) else {}
        node[parts[-1]] = value

    def lookup(name):
        node = context
        for part in name.split("."):
            if not isinstance(node, dict) or part not in node:
                return ""
            node = node[part]
        return node if isinstance(node, str) else ""

    def escape(value):
        return html.escape(value, quote=True).replace("&#x27;", "&#39;").replace("&quot;", "&#34;")

    text = re.sub(r"\{\{\{\s*([^{}\s]+)\s*\}\}\}", lambda m: lookup(m.group(1)), text)
    text = re.sub(r"\{\{&\s*([^{}\s]+)\s*\}\}", lambda m: lookup(m.group(1)), text)
    return re.sub(r"\{\{\s*([^{}!#^/>=\s][^{}\s]*)\s*\}\}", lambda m: escape(lookup(m.group(1))), text)


# ------------------------------------------------------- Dataplane resource --

NAME_RE = re.compile(r"^[0-9a-z.\-_]*$")


def valid_ip(text):
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, text)
            return True
        except (OSError, ValueError):
            pass
    return False


def valid_dns_name(text):
    return bool(re.match(r"^(?=.{1,253}$)([a-zA-Z0-9_]([a-zA-Z0-9_-]{0,61}[a-zA-Z0-9])?)(\.[a-zA-Z0-9_]"
                         r"([a-zA-Z0-9_-]{0,61}[a-zA-Z0-9])?)*\.?$", text))


def validate_dataplane(dp):
    """kuma-dp's readResource checks plus the control plane's Dataplane validation a stand-in can do."""
    if not isinstance(dp, dict):
        raise CmdError("invalid dataplane: the document is not a mapping")
    kind = dp.get("type")
    if kind in (None, ""):
        raise CmdError("Object type not specified")
    if kind != "Dataplane":
        raise CmdError('invalid proxy resource type "%s", expected Dataplane' % kind)
    violations = []
    for field in ("name", "mesh"):
        value = dp.get(field)
        if value in (None, ""):
            violations.append("%s: cannot be empty" % field)
        elif not isinstance(value, str):
            violations.append("%s: must be a string" % field)
        elif not NAME_RE.match(value) or len(value) > 253:
            violations.append("%s: invalid characters: must consist of lower case alphanumeric characters, "
                              "'-', '.' and '_'." % field)
    net = dp.get("networking")
    if not isinstance(net, dict):
        violations.append("networking: must be defined")
    else:
        address = net.get("address")
        if not address:
            violations.append("networking.address: address can't be empty")
        elif not isinstance(address, str) or address in ("0.0.0.0", "::") or \
                not (valid_ip(address) or valid_dns_name(address)):
            violations.append("networking.address: must be a valid IP address or domain name, not 0.0.0.0 or ::")
        inbounds = net.get("inbound") or []
        if not isinstance(inbounds, list):
            violations.append("networking.inbound: must be a list")
            inbounds = []
        for i, inbound in enumerate(inbounds):
            where = "networking.inbound[%d]" % i
            if not isinstance(inbound, dict):
                violations.append("%s: must be a mapping" % where)
                continue
            for key in ("port", "servicePort"):
                value = inbound.get(key)
                if key == "servicePort" and value in (None, 0):
                    continue
                if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
                    violations.append("%s.%s: port must be in the range [1, 65535]" % (where, key))
            for key in ("address", "serviceAddress"):
                if inbound.get(key) not in (None, "") and not valid_ip(str(inbound.get(key))):
                    violations.append("%s.%s: %s has to be valid IP address" % (where, key, key))
            tags = inbound.get("tags")
            if tags:
                if not isinstance(tags, dict):
                    violations.append("%s.tags: must be a mapping" % where)
                elif "kuma.io/service" not in tags:
                    violations.append('%s.tags["kuma.io/service"]: tag has to exist' % where)
        tp = net.get("transparentProxying")
        if tp is not None:
            if not isinstance(tp, dict):
                violations.append("networking.transparentProxying: must be a mapping")
            else:
                for key in ("redirectPortInbound", "redirectPortOutbound"):
                    value = tp.get(key, 0)
                    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 65535:
                        violations.append("networking.transparentProxying.%s: must be a port" % key)
        admin = net.get("admin")
        if admin is not None:
            port = admin.get("port") if isinstance(admin, dict) else None
            if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
                violations.append("networking.admin.port: must be a port")
    if violations:
        raise CmdError("; ".join(violations))
    return dp


# ------------------------------------------------------------- token, files --

def b64url_json(segment):
    padded = segment + "=" * (-len(segment) % 4)
    return json.loads(base64.urlsafe_b64decode(padded.encode("ascii")).decode("utf-8"))


JWT_ALGS = {"HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384",
            "PS512", "EdDSA", "none"}


def validate_token_path(path):
    """kuma-dp's ValidateTokenPath (app/kuma-dp/pkg/config/validate.go)."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise CmdError("dataplane token is invalid, in Kubernetes you must mount a serviceAccount token, in "
                       "universal you must start your proxy with a generated token.: could not read file %s: "
                       "%s" % (path, e.strerror))
    hint = ("dataplane token is invalid, in Kubernetes you must mount a serviceAccount token, in universal you "
            "must start your proxy with a generated token.: ")
    if not raw:
        raise CmdError(hint + "token under file %s is empty" % path)
    token = raw.decode("utf-8", "replace").strip()
    if re.search(r"[\x00\n\r]", token):
        raise CmdError(hint + "Token shouldn't contain line breaks within the token, only at the start or end")
    parts = token.split(".")
    if len(parts) != 3:
        raise CmdError(hint + "not valid JWT token. Can't parse it.: token is malformed: token contains an "
                              "invalid number of segments")
    try:
        header = b64url_json(parts[0])
        b64url_json(parts[1])
    except (ValueError, UnicodeDecodeError) as e:
        raise CmdError(hint + "not valid JWT token. Can't parse it.: token is malformed: %s" % e)
    if not isinstance(header, dict) or header.get("alg") not in JWT_ALGS:
        raise CmdError(hint + "not valid JWT token. Can't parse it.: token is unverifiable: signing method "
                              "(alg) is unavailable")
    return token


def look_path(candidate):
    """exec.LookPath: a name without '/' is searched in PATH, a path must be an executable file."""
    if "/" in candidate:
        return candidate if os.path.isfile(candidate) and os.access(candidate, os.X_OK) else None
    return shutil.which(candidate)


def lookup_binary(configured, name):
    candidates = [configured, os.path.join(os.getcwd(), name),
                  os.path.join(os.path.dirname(os.path.realpath(sys.argv[0])), name)]
    for candidate in candidates:
        found = look_path(candidate) if candidate else None
        if found:
            return os.path.abspath(found)
    raise CmdError("could not find executable binary in any of the following paths: [%s]"
                   % " ".join(c for c in candidates))


def has_local_ipv6():
    """tproxy_config.HasLocalIPv6: a non-loopback IPv6 address on some interface."""
    try:
        with open("/proc/net/if_inet6") as f:
            for line in f:
                fields = line.split()
                if fields and fields[0] != "00000000000000000000000000000001":
                    return True
    except OSError:
        pass
    return False


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


COREFILE_TEMPLATE = """.:{{ .CoreDNSPort }} {
    forward . 127.0.0.1:{{ .EnvoyDNSPort }}
    # We want all requests to be sent to the Envoy DNS Filter, unsuccessful responses should be forwarded to the original DNS server.
    # For example: requests other than A, AAAA and SRV will return NOTIMP when hitting the envoy filter and should be sent to the original DNS server.
    # Codes from: https://github.com/miekg/dns/blob/master/msg.go#L138
    alternate NOTIMP,FORMERR,NXDOMAIN,SERVFAIL,REFUSED . /etc/resolv.conf
    prometheus localhost:{{ .PrometheusPort }}
    errors{{ if .CoreDNSLogging}}
    log{{end}}
}
"""


def render_corefile(template, cfg):
    fields = {"CoreDNSPort": cfg["dns-coredns-port"], "EnvoyDNSPort": cfg["dns-envoy-port"],
              "PrometheusPort": cfg["dns-prometheus-port"], "CoreDNSLogging": cfg["dns-enable-logging"],
              "ConfigDir": cfg["dns-server-config-dir"], "CoreDNSBinaryPath": cfg["dns-coredns-path"],
              "Enabled": cfg["dns-enabled"]}
    text = re.sub(r"\{\{\s*if\s+\.(\w+)\s*\}\}(.*?)\{\{\s*end\s*\}\}",
                  lambda m: m.group(2) if fields.get(m.group(1)) else "", template, flags=re.S)

    def field(m):
        if m.group(1) not in fields:
            raise CmdError('template: Corefile: can\'t evaluate field %s in type kumadp.DNS' % m.group(1))
        value = fields[m.group(1)]
        return ("true" if value else "false") if isinstance(value, bool) else str(value)

    return re.sub(r"\{\{\s*\.(\w+)\s*\}\}", field, text)


# ------------------------------------------------------------------ commands --

ENV_VARS = [  # (variable, flag/config key, kind); applied after flags like kuma-dp's config loader
    ("KUMA_CONTROL_PLANE_URL", "cp-address", "string"),
    ("KUMA_CONTROL_PLANE_CA_CERT_FILE", "ca-cert-file", "string"),
    ("KUMA_CONTROL_PLANE_CA_CERT", "ca-cert", "string"),
    ("KUMA_CONTROL_PLANE_TLS_SKIP_VERIFY", "skip-verify", "bool"),
    ("KUMA_DATAPLANE_MESH", "mesh", "string"),
    ("KUMA_DATAPLANE_NAME", "name", "string"),
    ("KUMA_DATAPLANE_PROXY_TYPE", "proxy-type", "string"),
    ("KUMA_DATAPLANE_DRAIN_TIME", "drain-time", "duration"),
    ("KUMA_READINESS_PORT", "readiness-port", "uint32"),
    ("KUMA_DATAPLANE_RUNTIME_BINARY_PATH", "binary-path", "string"),
    ("KUMA_DATAPLANE_RUNTIME_WORK_DIR", "work-dir", "string"),
    ("KUMA_DATAPLANE_RUNTIME_CONCURRENCY", "concurrency", "uint32"),
    ("KUMA_DATAPLANE_RUNTIME_TOKEN_PATH", "dataplane-token-file", "string"),
    ("KUMA_DATAPLANE_RUNTIME_TOKEN", "dataplane-token", "string"),
    ("KUMA_DATAPLANE_RUNTIME_RESOURCE", "dataplane", "string"),
    ("KUMA_DATAPLANE_RUNTIME_RESOURCE_PATH", "dataplane-file", "string"),
    ("KUMA_DATAPLANE_RUNTIME_ENVOY_LOG_LEVEL", "envoy-log-level", "string"),
    ("KUMA_DATAPLANE_RUNTIME_ENVOY_COMPONENT_LOG_LEVEL", "envoy-component-log-level", "string"),
    ("KUMA_DATAPLANE_RUNTIME_IPV6_ENABLED", "ipv6-enabled", "bool"),
    ("KUMA_DNS_ENABLED", "dns-enabled", "bool"),
    ("KUMA_DNS_PROXY_PORT", "dns-proxy-port", "uint32"),
]
if not V3:
    ENV_VARS += [
        ("KUMA_DATAPLANE_RUNTIME_CONFIG_DIR", "config-dir", "string"),
        ("KUMA_DNS_CORE_DNS_PORT", "dns-coredns-port", "uint32"),
        ("KUMA_DNS_ENVOY_DNS_PORT", "dns-envoy-port", "uint32"),
        ("KUMA_DNS_CORE_DNS_BINARY_PATH", "dns-coredns-path", "string"),
        ("KUMA_DNS_CORE_DNS_CONFIG_TEMPLATE_PATH", "dns-coredns-config-template-path", "string"),
        ("KUMA_DNS_CONFIG_DIR", "dns-server-config-dir", "string"),
        ("KUMA_DNS_PROMETHEUS_PORT", "dns-prometheus-port", "uint32"),
        ("KUMA_DNS_ENABLE_LOGGING", "dns-enable-logging", "bool"),
    ]


def apply_env(cfg):
    for var, key, kind in ENV_VARS:
        if var not in os.environ:
            continue
        text = os.environ[var]
        try:
            if kind == "bool":
                cfg[key] = go_parse_bool(text)
            elif kind == "uint32":
                cfg[key] = go_parse_uint(text, 32)
            elif kind == "duration":
                cfg[key] = go_parse_duration(text)
            else:
                cfg[key] = text
        except ValueError as e:
            raise CmdError("processing environment variables failed: envconfig.Process: assigning %s to %s: "
                           "converting '%s' to type %s. details: %s" % (var, key, text, kind, e))


def _json_field(doc, name):
    """encoding/json's key matching: the exact key first, then a case-insensitive one."""
    if name in doc:
        return True, doc[name]
    for key, value in doc.items():
        if isinstance(key, str) and key.lower() == name.lower():
            return True, value
    return False, None


def _go_type_name(value):
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def _tp_port(value, field):
    """tproxy_config.Port.UnmarshalJSON: Set(the JSON text) -> parsePort (uint16 in [1, 65535])."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = "null" if value is None else json.dumps(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 65535:
        raise ValueError("value '%s' is not a valid port (uint16 in the range [1, 65535])" % text)
    return value


def _tp_bool(value, field):
    if value is None:
        return None
    if not isinstance(value, bool):
        raise ValueError("json: cannot unmarshal %s into Go struct field %s of type bool"
                         % (_go_type_name(value), field))
    return value


def _tp_merge(tp, doc):
    """yaml.Unmarshal (sigs.k8s.io/yaml, not strict) of one document into tproxy_dp.DataplaneConfig:
    keys it does not know are ignored, the ones it knows overwrite what earlier documents set."""
    if doc is None:
        return
    if not isinstance(doc, dict):
        raise ValueError("json: cannot unmarshal %s into Go value of type dataplane.DataplaneConfig"
                         % _go_type_name(doc))
    found, mode = _json_field(doc, "ipFamilyMode")
    if found:
        if mode is None:
            mode = ""
        if not isinstance(mode, str):
            raise ValueError("value '%s' is not a valid IPFamilyMode: json: cannot unmarshal %s into Go value of "
                             "type string" % (json.dumps(mode), _go_type_name(mode)))
        if mode.lower() == "":
            tp["ipFamilyMode"] = "dualstack"
        elif mode.lower() in ("dualstack", "ipv4"):
            tp["ipFamilyMode"] = mode  # kept as written: Kuma compares it with "ipv4" as is
        else:
            raise ValueError("value '%s' is not a valid IPFamilyMode: must be one of 'dualstack' or 'ipv4'" % mode)
    found, redirect = _json_field(doc, "redirect")
    if not found or redirect is None:
        return
    if not isinstance(redirect, dict):
        raise ValueError("json: cannot unmarshal %s into Go struct field DataplaneConfig.redirect of type "
                         "dataplane.DataplaneRedirect" % _go_type_name(redirect))
    for flow in ("inbound", "outbound", "dns"):
        found, value = _json_field(redirect, flow)
        if not found or value is None:
            continue
        if not isinstance(value, dict):
            raise ValueError("json: cannot unmarshal %s into Go struct field DataplaneRedirect.redirect.%s of type "
                             "dataplane.DatalpaneTrafficFlow" % (_go_type_name(value), flow))
        found, enabled = _json_field(value, "enabled")
        if found and enabled is not None:
            tp[flow]["enabled"] = _tp_bool(enabled, "DatalpaneTrafficFlow.redirect.%s.enabled" % flow)
        found, port = _json_field(value, "port")
        if found:
            tp[flow]["port"] = _tp_port(port, "redirect.%s.port" % flow)
    found, vnet = _json_field(redirect, "vnet")
    if found and vnet is not None:
        if not isinstance(vnet, dict):
            raise ValueError("json: cannot unmarshal %s into Go struct field DataplaneRedirect.redirect.vnet of "
                             "type dataplane.DataplaneVNet" % _go_type_name(vnet))
        found, networks = _json_field(vnet, "networks")
        if found:
            if networks is None:
                networks = []
            if not isinstance(networks, list) or not all(isinstance(n, str) for n in networks):
                raise ValueError("json: cannot unmarshal %s into Go struct field DataplaneVNet.redirect.vnet.networks "
                                 "of type []string" % _go_type_name(networks))
            tp["vnet"] = list(networks)


def default_tproxy_config():
    """tproxy_dp.DefaultDataplaneConfig(): kumactl's defaults."""
    return {"ipFamilyMode": "dualstack", "vnet": [],
            "inbound": {"enabled": True, "port": 15006},
            "outbound": {"enabled": True, "port": 15001},
            "dns": {"enabled": False, "port": 15053}}


def load_tproxy_config(cfg, stdin=None):
    """--transparent-proxy / --transparent-proxy-config, as the PreRunE of app/kuma-dp/cmd/run.go loads them
    (config.NewLoader(tpCfg).WithValidation().Load(stdin, values...)): each value is one file path or '-' for
    stdin (the loader does not split on commas, whatever the flag's help says), later values override earlier
    ones, unknown keys are ignored, wrong types and ports outside [1, 65535] are refused. Then the DNS flow is
    set from kuma-dp's own DNS settings, as run.go does."""
    if not cfg["transparent-proxy"] and not cfg["transparent-proxy-config"]:
        return None
    prefix = "failed to load transparent proxy configuration from provided input: "
    tp = default_tproxy_config()
    for value in cfg["transparent-proxy-config"]:
        source = value.strip()
        if source == "":
            continue
        if source == "-":
            text = (stdin or sys.stdin).read()
            where = "unable to parse configuration: "
        else:
            if not os.path.exists(value):
                raise CmdError(prefix + "unable to access configuration file '%s', please check if the file "
                               "exists and has the correct permissions" % value)
            try:
                with open(value) as f:
                    text = f.read()
            except (OSError, UnicodeDecodeError) as e:
                raise CmdError(prefix + "reading configuration from file '%s' failed: %s" % (value, e))
            where = "parsing configuration from file '%s' failed: unable to parse configuration: " % value
        try:
            _tp_merge(tp, load_document(text) if text.strip() else None)
        except ValueError as e:
            raise CmdError(prefix + where + "error unmarshaling JSON: while decoding JSON: %s" % e)
    tp["dns"] = {"enabled": cfg["dns-enabled"],
                 "port": cfg["dns-proxy-port"] if V3 else cfg["dns-envoy-port"]}
    return tp


def tproxy_enabled(tp, address):
    """DataplaneConfig.Enabled(): inbound or outbound redirected, and ipv4 mode only with an IPv4 address."""
    if tp is None or not (tp["inbound"]["enabled"] or tp["outbound"]["enabled"]):
        return False
    try:
        socket.inet_pton(socket.AF_INET, address or "")
        return True
    except (OSError, ValueError):
        return tp["ipFamilyMode"] != "ipv4"


def dns_proxy_addresses(tp, port):
    """dnsProxyAddresses in app/kuma-dp/cmd/run.go (2.14 and 3.x): 0.0.0.0 without a transparent proxy;
    with one, loopback (127.0.0.1, and ::1 unless ipFamilyMode is exactly "ipv4"), or every interface
    (0.0.0.0, and :: unless "ipv4") with vnet networks. Each family gets its own socket."""
    if tp is None:
        return [("0.0.0.0", port)]
    dual = tp["ipFamilyMode"] != "ipv4"
    if tp["vnet"]:
        return [("0.0.0.0", port)] + ([("::", port)] if dual else [])
    return [("127.0.0.1", port)] + ([("::1", port)] if dual else [])


def read_resource(cfg):
    path, inline = cfg["dataplane-file"], cfg["dataplane"]
    if path == "":
        data = inline
    elif path == "-":
        data = sys.stdin.read()
    else:
        try:
            with open(path) as f:
                data = f.read()
        except OSError as e:
            raise CmdError("error while reading provided file: open %s: %s" % (path, e.strerror.lower()))
    if not data:
        return None
    rendered = render_template(data, cfg["dataplane-var"])
    LOG.info("kuma-dp.run", "rendered resource", "resource", rendered)
    try:
        doc = load_document(rendered)
    except ValueError as e:
        raise CmdError("error converting YAML to JSON: yaml: %s" % e)
    return validate_dataplane(doc)


def resource_tproxy_config(net):
    """DataplaneResource.GetTransparentProxy(): the redirect ports and IP family of networking.transparentProxying."""
    tp = net.get("transparentProxying")
    if not isinstance(tp, dict):
        return None
    inbound, outbound = tp.get("redirectPortInbound") or 0, tp.get("redirectPortOutbound") or 0
    return {"ipFamilyMode": str(tp.get("ipFamilyMode") or "").lower() or "unspecified", "vnet": [],
            "inbound": {"enabled": inbound > 0, "port": inbound},
            "outbound": {"enabled": outbound > 0, "port": outbound},
            "dns": {"enabled": False, "port": 0}}


def make_bootstrap(dp, cfg, ipv6, tpcfg=None):
    """What the control plane would send (as far as the stand-in needs it), in Envoy's JSON form. The redirect
    listeners follow tproxy_dp.GetDataplaneConfig: a kuma-dp started with --transparent-proxy(-config) sends
    its settings in the dataplane metadata (feature-transparent-proxy-in-dataplane-metadata) and the control
    plane uses those instead of the resource's networking.transparentProxying."""
    net = dp.get("networking") or {} if dp else {}
    admin_port = (net.get("admin") or {}).get("port", 9901) if dp else 9901
    tp = tpcfg if tpcfg is not None else resource_tproxy_config(net)
    listeners = []
    inbounds = []
    for inbound in (net.get("inbound") or []) if dp else []:
        dp_ip = inbound.get("address") or net.get("address")
        inbounds.append({"dataplaneIP": dp_ip, "port": inbound["port"],
                         "workloadIP": inbound.get("serviceAddress") or dp_ip,
                         "workloadPort": inbound.get("servicePort") or inbound["port"]})
    if tp is not None and tproxy_enabled(tp, net.get("address")):
        families = [("ipv4", "0.0.0.0")] + ([("ipv6", "::")] if ipv6 and tp["ipFamilyMode"] != "ipv4" else [])
        for direction in ("outbound", "inbound"):
            if not tp[direction]["enabled"]:
                continue
            port = tp[direction]["port"]
            for fam, host in families:
                listener = {"name": "%s:passthrough:%s" % (direction, fam),
                            "address": {"socketAddress": {"address": host, "portValue": port}},
                            "useOriginalDst": True, "trafficDirection": direction.upper()}
                if direction == "inbound":
                    listener["metadata"] = {"filterMetadata": {"io.kuma.standin": {"inbounds": inbounds}}}
                listeners.append(listener)
    name = "%s.%s" % (cfg["mesh"], cfg["name"])
    service = ""
    for inbound in (net.get("inbound") or []) if dp else []:
        service = (inbound.get("tags") or {}).get("kuma.io/service", service) or service
        if service:
            break
    return {
        "admin": {"accessLogPath": "/dev/null",
                  "address": {"socketAddress": {"address": "127.0.0.1", "portValue": admin_port}}},
        "node": {"id": name, "cluster": service or cfg["name"],
                 "metadata": {"dataplane.admin.port": str(admin_port), "version": {"kumaDp": {
                     "version": KUMA_VERSION, "gitCommit": KUMA_GIT_COMMIT, "buildDate": KUMA_BUILD_DATE}}}},
        "staticResources": {"listeners": listeners},
    }, admin_port


def tproxy_json(tp):
    """tproxy_dp.DataplaneConfig as JSON (the bootstrap request's dataplaneConfig)."""
    return {"ipFamilyMode": tp["ipFamilyMode"],
            "redirect": {"inbound": tp["inbound"], "outbound": tp["outbound"], "dns": tp["dns"],
                         "vnet": {"networks": tp["vnet"]} if tp["vnet"] else {}}}


def write_bootstrap_request(cfg, dp, tp, ipv6):
    """What kuma-dp would POST to the control plane's /bootstrap (types.BootstrapRequest, the fields that
    matter here), saved as <work-dir>/bootstrap-request.json so tests can read what the control plane gets."""
    features = ["feature-tcp-accesslog-via-named-pipe", "feature-bind-outbounds"] if cfg["bind-outbounds"] else \
        ["feature-tcp-accesslog-via-named-pipe"]
    if cfg["dns-proxy-port"]:
        features.append("feature-embedded-dns")
    if tp is not None:
        features.append("feature-transparent-proxy-in-dataplane-metadata")
    request = {"mesh": cfg["mesh"], "name": cfg["name"], "proxyType": cfg["proxy-type"],
               "dataplaneResource": json.dumps(dp) if dp else "", "operatingSystem": "linux",
               "features": features, "workdir": cfg["work-dir"], "ipv6Enabled": ipv6,
               "dnsPort": cfg["dns-proxy-port"] if cfg["dns-enabled"] else 0,
               "readinessPort": cfg["readiness-port"]}
    if tp is not None:
        request["dataplaneConfig"] = tproxy_json(tp)
    path = os.path.join(cfg["work-dir"], "bootstrap-request.json")
    with open(path, "w") as f:
        json.dump(request, f, indent=2, sort_keys=True)
    os.chmod(path, 0o600)


def envoy_version(path):
    try:
        out = subprocess.run([path, "--version"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30,
                             check=False)
    except OSError as e:
        raise CmdError("Failed to fetch Envoy bootstrap config. failed to get Envoy version: failed to execute "
                       "%s with arguments \"--version\": %s" % (path, e))
    if out.returncode != 0:
        raise CmdError("Failed to fetch Envoy bootstrap config. failed to get Envoy version: failed to execute "
                       "%s with arguments \"--version\": exit status %d" % (path, out.returncode))
    text = out.stdout.decode("utf-8", "replace").replace("\r\n", "\n").strip("\n")
    m = re.search(r"version:(.*)", text)
    build = m.group(0)[len("version:"):].strip() if m else ""
    parts = build.split("/")
    if len(parts) != 5:
        raise CmdError("Failed to fetch Envoy bootstrap config. failed to get Envoy version: wrong Envoy build "
                       "format: %s" % build)
    return build, parts[1]


def coredns_version(path):
    try:
        out = subprocess.run([path, "--version"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30,
                             check=False)
    except OSError as e:
        raise CmdError("failed to execute coreDNS at path %s: %s" % (path, e))
    if out.returncode != 0:
        raise CmdError("failed to execute coreDNS at path %s: exit status %d" % (path, out.returncode))
    m = re.search(r"CoreDNS-(.*)", out.stdout.decode("utf-8", "replace"))
    if not m:
        raise CmdError("unexpected version output format: %s" % out.stdout.decode("utf-8", "replace"))
    return m.group(1)


def child_preexec():
    """kuma-dp's BuildCommand: own process group, SIGKILL when kuma-dp dies."""
    os.setpgid(0, 0)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Readiness(object):
    """kuma-dp's readiness reporter: only /ready, READY / NOT_READY / TERMINATING."""

    def __init__(self, host, port, envoy_admin_port, dns_ready):
        self.terminating = False
        self.dns_seen = False
        self.envoy_admin_port = envoy_admin_port
        self.dns_ready = dns_ready
        reporter = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *args):
                pass

            def send_response(self, code, message=None):  # Go's net/http sends no Server header
                self.log_request(code)
                self.send_response_only(code, message)
                self.send_header("Date", self.date_time_string())

            def handle_any(self):
                if self.path.split("?", 1)[0] != "/ready":
                    body = b"404 page not found\n"
                    self.send_response(404)
                    self.send_header("Content-Type", "text/plain; charset=utf-8")
                    self.send_header("X-Content-Type-Options", "nosniff")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                state, status = reporter.state()
                body = state.encode()
                self.send_response(status)
                self.send_header("content-type", "text/plain")
                self.send_header("content-length", str(len(body)))
                self.send_header("cache-control", "no-cache, max-age=0")
                self.send_header("x-powered-by", "kuma-dp")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)
                LOG.debug("readiness", "responding readiness state", "state", state, "client",
                          "%s:%d" % self.client_address[:2])

            do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = handle_any

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        cls = type("ReadinessServer", (ThreadingHTTPServer,), {"address_family": family, "daemon_threads": True})
        self.server = cls((host, port), Handler)
        LOG.info("readiness", "starting readiness reporter", "addr",
                 ("[%s]:%d" if family == socket.AF_INET6 else "%s:%d") % self.server.server_address[:2])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def state(self):
        if self.terminating:
            return "TERMINATING", 503
        if not self.dns_seen:  # like kuma-dp's DNS gate: once passed, it stays passed
            self.dns_seen = self.dns_ready()
            if not self.dns_seen:
                return "NOT_READY", 503
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/ready" % self.envoy_admin_port, timeout=2) as r:
                if r.status == 200:
                    return "READY", 200
        except (OSError, urllib.error.URLError):
            pass
        return "NOT_READY", 503

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def envoy_admin_post(port, path):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), data=b"", method="POST")
    with urllib.request.urlopen(req, timeout=5) as r:
        if r.status != 200:
            raise OSError("expected 200 status code, got %d" % r.status)


def cmd_run(cfg, root_level):
    cfg.setdefault("readiness-port", 9902)
    cfg.setdefault("ipv6-enabled", True)
    cfg.setdefault("ca-cert", "")
    if V3:
        cfg.setdefault("dns-proxy-port", 15053)
    else:
        cfg.setdefault("dns-proxy-port", 0)
    apply_env(cfg)

    # Config.Validate (pkg/config/app/kuma-dp/config.go)
    problems = []
    if cfg["dataplane"] or cfg["dataplane-file"]:
        if cfg["drain-time"] <= 0:
            problems.append(".Dataplane is not valid: .DrainTime must be positive")
    else:
        if cfg["proxy-type"] not in ("dataplane", "ingress", "egress"):
            problems.append('.Dataplane is not valid: .ProxyType is not valid: "%s" is not a valid proxy type'
                            % cfg["proxy-type"])
        if not cfg["mesh"] and cfg["proxy-type"] not in ("ingress", "egress"):
            problems.append(".Dataplane is not valid: .Mesh must be non-empty")
        if not cfg["name"]:
            problems.append(".Dataplane is not valid: .Name must be non-empty")
    if not cfg["binary-path"]:
        problems.append(".DataplaneRuntime is not valid: .BinaryPath must be non-empty")
    if not 0 < cfg["readiness-port"] <= 65535:
        problems.append(".Dataplane is not valid: .ReadinessPort has to be in (0, 65535] range")
    if cfg["dns-enabled"] and not V3:
        for key, label in (("dns-coredns-port", "CoreDNSPort"), ("dns-envoy-port", "EnvoyDNSPort"),
                           ("dns-prometheus-port", "PrometheusPort")):
            if cfg[key] > 65353:
                problems.append(".DNS is not valid: .%s has to be in [0, 65353] range" % label)
        if not cfg["dns-coredns-path"]:
            problems.append(".DNS is not valid: .CoreDNSBinaryPath cannot be empty")
    if cfg["dns-enabled"] and V3 and not 0 < cfg["dns-proxy-port"] <= 65535:
        problems.append(".DNS is not valid: .ProxyPort has to be in (0, 65535] range")
    if problems:
        LOG.error("kuma-dp.run", "; ".join(problems), "unable to load configuration")
        raise CmdError("configuration validation failed: " + "; ".join(problems))
    tp = load_tproxy_config(cfg)  # after config.Load, as in run.go's PreRunE

    LOG.info("kuma-dp.run", "starting Data Plane", "version", KUMA_VERSION)
    if cfg["proxy-type"] != "dataplane":
        raise CmdError('invalid proxy type "%s" (the stand-in runs data plane proxies only)' % cfg["proxy-type"])
    if not cfg["envoy-log-level"]:
        cfg["envoy-log-level"] = root_level

    dp = read_resource(cfg)
    if dp is not None:
        if cfg["name"] or cfg["mesh"]:
            raise CmdError("--name and --mesh cannot be specified when a dataplane definition is provided, mesh "
                           "and name will be read from the dataplane definition")
        cfg["mesh"], cfg["name"] = dp["mesh"], dp["name"]

    url = urllib.parse.urlparse(cfg["cp-address"])
    if url.scheme not in ("http", "https") or not url.hostname:
        raise CmdError('Failed to fetch Envoy bootstrap config. could not parse Control Plane URL "%s": want '
                       'http(s)://host:port' % cfg["cp-address"])

    # work dir (2.x: the deprecated --config-dir still feeds it; a DNS config dir may need a temp dir too)
    if not V3 and cfg.get("config-dir") and not cfg["work-dir"]:
        cfg["work-dir"] = cfg["config-dir"]
    tmp_dir = None
    need_tmp = not cfg["work-dir"] or (not V3 and not cfg["dns-server-config-dir"])
    if need_tmp:
        tmp_dir = tempfile.mkdtemp(prefix="kuma-dp-")
        os.chmod(tmp_dir, 0o711)
        if not cfg["work-dir"]:
            cfg["work-dir"] = tmp_dir
        if not V3 and not cfg["dns-server-config-dir"]:
            cfg["dns-server-config-dir"] = tmp_dir
        LOG.info("kuma-dp.run", "generated configurations will be stored in a temporary directory", "dir", tmp_dir)
    try:
        os.makedirs(cfg["work-dir"], 0o711, exist_ok=True)
    except OSError as e:
        LOG.error("kuma-dp.run", e, "unable to create work directory", "dir", cfg["work-dir"])
        raise CmdError("mkdir %s: %s" % (cfg["work-dir"], e.strerror.lower()))
    try:
        return run_components(cfg, dp, tp)
    finally:
        if tmp_dir:
            shutil.rmtree(tmp_dir, ignore_errors=True)


def run_components(cfg, dp, tp):
    if not cfg["ca-cert"] and cfg["ca-cert-file"]:
        try:
            with open(cfg["ca-cert-file"]) as f:
                cfg["ca-cert"] = f.read()
        except OSError as e:
            raise CmdError("could not read certificate file %s: open %s: %s"
                           % (cfg["ca-cert-file"], cfg["ca-cert-file"], e.strerror.lower()))
        if "-----BEGIN CERTIFICATE-----" not in cfg["ca-cert"]:
            raise CmdError("Failed to fetch Envoy bootstrap config. could not add CA cert from %s: no PEM "
                           "certificate found" % cfg["ca-cert-file"])
    ipv6 = cfg["ipv6-enabled"] and has_local_ipv6()

    # token (defaultDataplaneTokenGenerator)
    if cfg["dataplane-token"]:
        path = os.path.join(cfg["work-dir"], cfg["name"])
        with open(path, "w") as f:
            f.write(cfg["dataplane-token"])
        os.chmod(path, 0o600)
        cfg["dataplane-token-file"] = path
    if cfg["dataplane-token-file"]:
        validate_token_path(cfg["dataplane-token-file"])

    LOG.info("kuma-dp.run", "fetching bootstrap configuration")
    try:
        envoy_path = lookup_binary(cfg["binary-path"], "envoy")
    except CmdError as e:
        raise CmdError("Failed to fetch Envoy bootstrap config. failed to get Envoy version: %s" % e)
    build, version = envoy_version(envoy_path)
    LOG.info("kuma-dp.run.envoy", "fetched Envoy version", "version", {"Build": build, "Version": version})
    write_bootstrap_request(cfg, dp, tp, ipv6)
    bootstrap, admin_port = make_bootstrap(dp, cfg, ipv6, tp)
    LOG.info("kuma-dp.run", "received bootstrap configuration", "adminPort", admin_port)

    procs = []  # (name, Popen)
    dns_server = None
    try:
        if cfg["dns-enabled"]:
            if cfg["dns-proxy-port"]:
                addresses = dns_proxy_addresses(tp, cfg["dns-proxy-port"])
                LOG.info("kuma-dp.run", "Running with embedded DNS proxy", "port", cfg["dns-proxy-port"],
                         "addresses", ["[%s]:%d" % a if ":" in a[0] else "%s:%d" % a for a in addresses])
                try:
                    dns_server = DNSServer(addresses)
                except OSError as e:
                    raise CmdError(e.strerror)
            else:
                try:
                    coredns_path = lookup_binary(cfg["dns-coredns-path"], "coredns")
                except CmdError as e:
                    raise CmdError("could not find coreDNS executable: %s" % e)
                coredns_version(coredns_path)
                template = COREFILE_TEMPLATE
                if cfg["dns-coredns-config-template-path"]:
                    try:
                        with open(cfg["dns-coredns-config-template-path"]) as f:
                            template = f.read()
                    except OSError as e:
                        raise CmdError("open %s: %s" % (cfg["dns-coredns-config-template-path"],
                                                        e.strerror.lower()))
                corefile = os.path.join(cfg["dns-server-config-dir"], "Corefile")
                os.makedirs(cfg["dns-server-config-dir"], 0o755, exist_ok=True)
                with open(corefile, "w") as f:
                    f.write(render_corefile(template, cfg))
                os.chmod(corefile, 0o600)
                LOG.info("kuma-dp.run.dns-server", "configuration saved to a file", "file", corefile)
                args = ["-conf", corefile, "-quiet"]
                LOG.info("kuma-dp.run.dns-server", "starting DNS Server (coredns)", "args", args)
                procs.append(("DNS Server", subprocess.Popen([coredns_path] + args, preexec_fn=child_preexec)))

        config_file = os.path.join(cfg["work-dir"], "bootstrap.yaml")
        with open(config_file, "w") as f:
            json.dump(bootstrap, f, indent=2)
        os.chmod(config_file, 0o600)
        LOG.info("kuma-dp.run.envoy", "bootstrap configuration saved to a file", "file", config_file)
        args = ["--config-path", config_file, "--drain-time-s", str(int(cfg["drain-time"])),
                "--drain-strategy", "immediate", "--disable-hot-restart", "--log-level", cfg["envoy-log-level"]]
        if cfg["envoy-component-log-level"]:
            args += ["--component-log-level", cfg["envoy-component-log-level"]]
        if cfg["concurrency"] > 0:
            args += ["--concurrency", str(cfg["concurrency"])]
        else:
            args += ["--cpuset-threads"]
        LOG.info("kuma-dp.run.envoy", "starting Envoy", "path", envoy_path, "arguments", args)
        procs.append(("Envoy", subprocess.Popen([envoy_path] + args, preexec_fn=child_preexec)))

        if dns_server is not None:
            dns_server.start()

        def dns_ready():
            if dns_server is None and cfg["dns-enabled"]:
                return udp_answers("127.0.0.1", cfg["dns-coredns-port"])
            return True
        try:
            readiness = Readiness("127.0.0.1", cfg["readiness-port"], admin_port, dns_ready)
        except OSError as e:
            LOG.error("kuma-dp.run", e, "error while running Kuma DP")
            raise CmdError("listen tcp 127.0.0.1:%d: bind: %s" % (cfg["readiness-port"], e.strerror.lower()))
        LOG.info("kuma-dp.run", "starting Kuma DP", "version", KUMA_VERSION)
        return supervise(cfg, procs, readiness, admin_port)
    finally:
        for name, proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if dns_server is not None:
            dns_server.close()


def udp_answers(host, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.settimeout(1)
        query = struct.pack("!HHHHHH", 0x4B44, 0x0100, 1, 0, 0, 0) + b"\x05ready\x04mesh\x00" + \
            struct.pack("!HH", 1, 1)
        s.sendto(query, (host, port))
        return len(s.recvfrom(512)[0]) >= 12
    except OSError:
        return False
    finally:
        s.close()


def supervise(cfg, procs, readiness, admin_port):
    signals = []

    def on_signal(signum, _frame):
        signals.append(signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR2):
        signal.signal(signum, on_signal)

    draining = False
    exit_code = 0
    while True:
        time.sleep(0.1)
        dead = [(name, proc) for name, proc in procs if proc.poll() is not None]
        if dead:
            name, proc = dead[0]
            if proc.returncode == 0:
                LOG.info("kuma-dp.run", "%s terminated successfully" % name)
            else:
                reason = "exit status %d" % proc.returncode if proc.returncode > 0 else \
                    "signal: %s" % signal.Signals(-proc.returncode).name.lower().replace("sig", "", 1)
                LOG.error("kuma-dp.run", reason, "%s terminated with an error" % name)
                exit_code = 1
            break
        if not signals:
            continue
        signum = signals.pop(0)
        if signum == signal.SIGUSR2:
            if not draining:
                LOG.info("kuma-dp.run", "draining Envoy connections")
                try:
                    envoy_admin_post(admin_port, "/drain_listeners?inboundonly&graceful&skip_exit")
                except OSError as e:
                    LOG.error("kuma-dp.run", e, "could not drain connections")
            draining = True
            continue
        LOG.info("kuma-dp.run", "Kuma DP caught an exit signal")
        if draining:
            LOG.info("kuma-dp.run", "already drained, exit immediately")
        else:
            readiness.terminating = True
            LOG.info("kuma-dp.run", "draining Envoy connections")
            try:
                envoy_admin_post(admin_port, "/healthcheck/fail")
            except (OSError, urllib.error.URLError) as e:
                LOG.error("kuma-dp.run", e, "could not drain connections")
            else:
                LOG.info("kuma-dp.run", "waiting for connections to be drained", "waitTime",
                         fmt_duration(cfg["drain-time"]))
                deadline = time.time() + cfg["drain-time"]
                while time.time() < deadline and not signals and all(p.poll() is None for name, p in procs):
                    time.sleep(0.05)
        break
    LOG.info("kuma-dp.run", "stopping all Kuma DP components")
    readiness.terminating = True
    for name, proc in procs:
        if proc.poll() is None:
            LOG.info("kuma-dp.run", "stopping %s" % name)
            try:
                proc.send_signal(signal.SIGTERM)
            except OSError:
                pass
    deadline = time.time() + 5
    for name, proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    readiness.close()
    if exit_code:
        LOG.error("kuma-dp.run", "a component stopped", "error while running Kuma DP")
        raise CmdError("%s terminated with an error" % dead[0][0])
    LOG.info("kuma-dp.run", "stopping Kuma DP")
    return 0


def cmd_version(values):
    if values["detailed"]:
        sys.stdout.write("Product:       Kuma\nVersion:       %s\nGit Tag:       v%s\nGit Commit:    %s\n"
                         "Build Date:    %s\n" % (KUMA_VERSION, KUMA_VERSION, KUMA_GIT_COMMIT, KUMA_BUILD_DATE))
    else:
        sys.stdout.write("Kuma: %s\n" % KUMA_VERSION)
    return 0


def cmd_wait(values):
    url = values["url"]
    if values["unix-socket"]:
        raise CmdError("the stand-in does not implement --unix-socket")
    host = urllib.parse.urlparse(url).hostname
    LOG.info("kuma-dp.wait", "waiting for data plane proxy to be ready", "timeout", fmt_duration(values["timeout"]))
    deadline = time.time() + values["timeout"]
    while True:
        time.sleep(values["check-frequency"])
        try:
            if host not in ("localhost", "127.0.0.1", "::1"):
                raise OSError('URL host must be a loopback address, got "%s"' % host)
            with urllib.request.urlopen(url, timeout=values["request-timeout"]) as r:
                r.read()
                if r.status == 200:
                    LOG.info("kuma-dp.wait", "data plane is ready")
                    return 0
                err = "HTTP status code %d" % r.status
        except urllib.error.HTTPError as e:
            err = "HTTP status code %d" % e.code
        except (OSError, urllib.error.URLError) as e:
            err = str(e)
        LOG.info("kuma-dp.wait", "data plane proxy is not ready", "err", err)
        if time.time() >= deadline:
            raise CmdError("timeout occurred while waiting for data plane proxy to be ready")


def main(argv):
    check_platform()
    command, rest = find_command(argv)
    if command is not None and command not in COMMANDS:
        sys.stderr.write('Error: unknown command "%s" for "kuma-dp"\nRun \'kuma-dp --help\' for usage.\n' % command)
        return 1
    flags = list(ROOT_FLAGS) + (COMMANDS[command][1]() if command else [])
    try:
        values, changed, positional, help_requested = parse_flags(rest, flags)
    except CmdError as e:
        sys.stderr.write("Error: %s\n%s" % (e, usage_text(command if command != "help" else None)))
        return 1
    if command is None or command == "help" or help_requested:
        if command is None and positional:
            sys.stderr.write('Error: unknown command "%s" for "kuma-dp"\nRun \'kuma-dp --help\' for usage.\n'
                             % positional[0])
            return 1
        target = None if command in (None, "help") else command
        if command == "help" and positional and positional[0] in COMMANDS:
            target = positional[0]
        sys.stdout.write(usage_text(target))
        return 0
    if values["log-level"] not in Logger.LEVELS:
        sys.stderr.write('Error: unknown log level "%s"\n' % values["log-level"])
        return 1
    LOG.level = Logger.LEVELS[values["log-level"]]
    if values["log-output-path"]:
        path = os.path.abspath(values["log-output-path"])
        sys.stdout.write('kuma-dp: logs will be stored in "%s"\n' % path)
        LOG.out = open(path, "a")
    try:
        if command == "version":
            return cmd_version(values)
        if command == "wait":
            return cmd_wait(values)
        return cmd_run(values, values["log-level"])
    except CmdError as e:
        sys.stderr.write("Error: %s\n" % e)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
