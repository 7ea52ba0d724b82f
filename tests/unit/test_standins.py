"""The stand-ins for Kuma's release archive: layout, checksums, command lines, and real behaviour.

Archives are built with tests/standins/build_archive.py and run from their
extracted bin/ directories, through their own `#!/usr/bin/python3` line. The
network tests use loopback; the redirect test (root only) builds its own
network namespaces with TEST-NET addresses and Kuma's default rules.
"""

import hashlib
import importlib.util
import io
import json
import os
import platform
import re
import shutil
import signal
import socket
import struct
import subprocess
import tarfile
import tempfile
import textwrap
import threading
import time
import urllib.error
import urllib.request
import uuid

import pytest

from ansible_collections.kuma.mesh.tests.unit.paths import ROOT
STANDINS = os.path.join(ROOT, "tests", "standins")
SYSTEM_PYTHON = "/usr/bin/python3"
KUMA_DP_UID = 5678

HOST_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), "amd64")
OTHER_ARCH = "arm64" if HOST_ARCH == "amd64" else "amd64"
VERSIONS = ("2.14.3", "3.0.0")

pytestmark = pytest.mark.skipif(not os.access(SYSTEM_PYTHON, os.X_OK), reason="stand-ins run with /usr/bin/python3")


def load_standin(name):
    spec = importlib.util.spec_from_file_location("standin_" + name.replace("-", "_"),
                                                  os.path.join(STANDINS, name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build_archive = load_standin("build_archive")
make_token = load_standin("make_token")
serve = load_standin("serve")


def standin(name):
    """Command to run a stand-in from its source, with Debian's Python as the archive's shebang does."""
    return [SYSTEM_PYTHON, os.path.join(STANDINS, name + ".py")]


def free_port(kind=socket.SOCK_STREAM, host="127.0.0.1"):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def run(args, **kwargs):
    kwargs.setdefault("timeout", 60)
    check = kwargs.pop("check", False)
    return subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, check=check,
                          **kwargs)


def wait_for(predicate, timeout=15.0, interval=0.05, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("timed out waiting for " + what)


def http_get(url, timeout=2.0):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), dict(e.headers)


def dns_query(name, port, host="127.0.0.1", qtype=1, qid=0x1234):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    query = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    query += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00" + struct.pack("!HH", qtype, 1)
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.settimeout(3)
        s.sendto(query, (host, port))
        reply = s.recvfrom(4096)[0]
    rid, flags, qd, an = struct.unpack("!HHHH", reply[:8])
    assert rid == qid and flags & 0x8000
    answers, pos = [], len(query)
    for dummy in range(an):
        rtype, _cls, _ttl, length = struct.unpack("!HHIH", reply[pos + 2:pos + 12])
        rdata = reply[pos + 12:pos + 12 + length]
        answers.append(socket.inet_ntop(socket.AF_INET if rtype == 1 else socket.AF_INET6, rdata))
        pos += 12 + length
    return flags & 0xF, answers


class Procs(object):
    """Processes a test starts; all stopped at the end."""

    def __init__(self):
        self.procs = []

    def start(self, args, **kwargs):
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.STDOUT)
        proc = subprocess.Popen(args, universal_newlines=True, **kwargs)
        proc.lines = []
        if proc.stdout is not None:
            def drain(p=proc):
                for line in p.stdout:
                    p.lines.append(line)
            proc.reader = threading.Thread(target=drain, daemon=True)
            proc.reader.start()
        self.procs.append(proc)
        return proc

    def stop(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                pass


@pytest.fixture
def procs():
    p = Procs()
    yield p
    p.stop()


def output(proc):
    """What the process printed so far; all of it once the process has ended (the reader thread
    may still be draining the pipe right after wait() returns: under load it lost the last lines)."""
    if proc.poll() is not None and getattr(proc, "reader", None) is not None:
        proc.reader.join(10)
    return "".join(proc.lines)


# ------------------------------------------------------------------ archives --

@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    """{version: (archive, sha256 file, aggregate sha256, bin dir)} built for this host's arch and extracted."""
    out = str(tmp_path_factory.mktemp("dist"))
    result = {}
    for version in VERSIONS:
        archive, checksum, aggregate = build_archive.build(version, out, arch=HOST_ARCH)
        extract = os.path.join(out, "x-" + version)
        os.makedirs(extract)
        with tarfile.open(archive) as tar:
            tar.extractall(extract)
        result[version] = (archive, checksum, aggregate, os.path.join(extract, "kuma-" + version, "bin"))
    return result


@pytest.mark.parametrize("version", VERSIONS)
def test_archive_layout_is_kumas(archives, version):
    archive = archives[version][0]
    assert os.path.basename(archive) == "kuma-%s-linux-%s.tar.gz" % (version, HOST_ARCH)
    top = "kuma-" + version
    programs = ["envoy", "kuma-cp", "kuma-dp", "kumactl"] + (["coredns"] if version.startswith("2.") else [])
    tar = tarfile.open(archive)
    members = tar.getmembers()
    names = [m.name for m in members]
    assert names[0] == top and all(n == top or n.startswith(top + "/") for n in names)
    assert sorted(n for n in names if n.startswith(top + "/bin/")) == sorted(top + "/bin/" + p for p in programs)
    for extra in ("LICENSE", "NOTICE", "README", "UPGRADE.md", "conf/kuma-cp.defaults.yaml"):
        assert top + "/" + extra in names
    for m in members:
        assert (m.uid, m.gid, m.uname, m.gname, m.mtime) == (0, 0, "root", "root", 0), m.name
        if m.isdir():
            assert m.mode == 0o755, m.name
        elif "/bin/" in m.name:
            assert m.mode == 0o555, m.name
        else:
            assert m.mode == 0o444, m.name
    for p in programs:
        assert tar.extractfile(top + "/bin/" + p).readline() == b"#!/usr/bin/python3\n"
    tar.close()
    with open(archive, "rb") as f:
        assert f.read(10)[4:8] == b"\x00\x00\x00\x00"  # gzip mtime 0


def test_checksum_files_are_kumas(archives, tmp_path):
    archive, checksum, aggregate = archives["2.14.3"][:3]
    digest = hashlib.sha256(open(archive, "rb").read()).hexdigest()
    name = os.path.basename(archive)
    assert open(checksum).read() == "%s  %s\n" % (digest, name)
    assert os.path.basename(aggregate) == "kuma-2.14.3.sha256"
    out = str(tmp_path)
    paths = [build_archive.build("2.14.3", out, arch=a) for a in ("amd64", "arm64")]
    lines = open(paths[-1][2]).read().splitlines()
    assert [l.split("  ")[1] for l in lines] == ["kuma-2.14.3-linux-amd64.tar.gz", "kuma-2.14.3-linux-arm64.tar.gz"]
    if shutil.which("sha256sum"):
        assert run(["sha256sum", "-c", "kuma-2.14.3.sha256"], cwd=out).returncode == 0
        assert run(["sha256sum", "-c", os.path.basename(paths[0][1])], cwd=out).returncode == 0


def test_build_is_reproducible_and_arch_specific(tmp_path):
    a = build_archive.build("2.14.3", str(tmp_path / "a"))[0]
    b = build_archive.build("2.14.3", str(tmp_path / "b"))[0]
    c = build_archive.build("2.14.3", str(tmp_path / "c"), arch="arm64")[0]
    assert open(a, "rb").read() == open(b, "rb").read()
    assert open(a, "rb").read() != open(c, "rb").read()


def test_build_archive_cli(tmp_path):
    proc = run([SYSTEM_PYTHON, os.path.join(STANDINS, "build_archive.py"), "--version", "3.0.0", "--out",
                str(tmp_path), "--arch", "arm64", "--layout", "konghq"])
    assert proc.returncode == 0, proc.stderr
    base = tmp_path / "public/kuma-binaries-release/raw/names/kuma-linux-arm64/versions/3.0.0"
    assert proc.stdout.splitlines() == [str(base / n) for n in ("kuma-3.0.0-linux-arm64.tar.gz",
                                                                "kuma-3.0.0-linux-arm64.tar.gz.sha256",
                                                                "kuma-3.0.0.sha256")]
    bad = run([SYSTEM_PYTHON, os.path.join(STANDINS, "build_archive.py"), "--version", "2.14.3", "--out",
               str(tmp_path), "--arch", "x86_64"])
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_wrong_platform_does_not_run(tmp_path):
    archive = build_archive.build("2.14.3", str(tmp_path), arch=OTHER_ARCH)[0]
    with tarfile.open(archive) as tar:
        tar.extractall(str(tmp_path))
    proc = run([str(tmp_path / "kuma-2.14.3" / "bin" / "kuma-dp"), "version"])
    assert proc.returncode == 126 and "Exec format error" in proc.stderr


# ------------------------------------------------------------- command lines --

@pytest.mark.parametrize("version", VERSIONS)
def test_versions(archives, version):
    bindir = archives[version][3]
    assert run([os.path.join(bindir, "kuma-dp"), "version"]).stdout == "Kuma: %s\n" % version
    detailed = run([os.path.join(bindir, "kuma-dp"), "version", "--detailed"]).stdout
    assert "Version:       %s\n" % version in detailed and "Product:       Kuma\n" in detailed
    assert run([os.path.join(bindir, "kumactl"), "version"]).stdout == "Client: Kuma %s\n" % version
    # kuma-dp has no --version flag (cobra: unknown flag, exit 1)
    flag = run([os.path.join(bindir, "kuma-dp"), "--version"])
    assert flag.returncode == 1 and flag.stderr.startswith("Error: unknown flag: --version\n")
    # kuma-dp's GetEnvoyVersion: the text after "version:" has five '/'-separated parts
    envoy = run([os.path.join(bindir, "envoy"), "--version"]).stdout
    build = re.search(r"version:(.*)", envoy).group(1).strip()
    assert len(build.split("/")) == 5 and build.split("/")[1] == ("1.38.2" if version.startswith("2.") else "1.39.0")
    if version.startswith("2."):
        coredns = run([os.path.join(bindir, "coredns"), "--version"]).stdout
        assert re.search(r"CoreDNS-(.*)", coredns).group(1) == "1.14.6"


@pytest.mark.parametrize("version,args,message", [
    ("2.14.3", ["run", "--bogus"], "unknown flag: --bogus"),
    ("3.0.0", ["run", "--bogus=1"], "unknown flag: --bogus"),
    ("3.0.0", ["run", "--dns-coredns-path", "/usr/bin/coredns"], "unknown flag: --dns-coredns-path"),
    ("3.0.0", ["run", "--dns-coredns-port=15053"], "unknown flag: --dns-coredns-port"),
    ("3.0.0", ["run", "--config-dir", "/tmp"], "unknown flag: --config-dir"),
    ("2.14.3", ["run", "--dns-proxy-port", "15053"], "unknown flag: --dns-proxy-port"),
    ("2.14.3", ["run", "--admin-port", "9901"], "unknown flag: --admin-port"),
    ("2.14.3", ["run", "-x"], "unknown shorthand flag: 'x' in -x"),
    ("2.14.3", ["run", "--dns-enabled=maybe"], 'invalid argument "maybe" for "--dns-enabled" flag'),
    ("2.14.3", ["run", "--drain-time", "5"], 'invalid argument "5" for "--drain-time" flag: time: missing unit'),
    ("3.0.0", ["run", "--concurrency", "-1"], 'invalid argument "-1" for "--concurrency" flag'),
    ("2.14.3", ["run", "-v", "novalue"],
     'invalid argument "novalue" for "-v, --dataplane-var" flag: novalue must be formatted as key=value'),
    ("2.14.3", ["run", "--cp-address"], "flag needs an argument: --cp-address"),
    ("2.14.3", ["bogus"], 'unknown command "bogus" for "kuma-dp"'),
    ("2.14.3", ["--log-level", "trace", "version"], 'unknown log level "trace"'),
    ("3.0.0", ["run", "--transparent-proxy=maybe"], 'invalid argument "maybe" for "--transparent-proxy" flag'),
    ("2.14.3", ["run", "--transparent-proxy-config"], "flag needs an argument: --transparent-proxy-config"),
    ("3.0.0", ["run", "--transparent-proxy-ipv6"], "unknown flag: --transparent-proxy-ipv6"),
])
def test_kuma_dp_rejects_bad_command_lines(archives, version, args, message):
    proc = run([os.path.join(archives[version][3], "kuma-dp")] + args)
    assert proc.returncode == 1
    assert proc.stderr.startswith("Error: " + message), proc.stderr


def test_kuma_dp_accepts_2x_flags_and_warns_on_config_dir(archives, tmp_path):
    bindir = archives["2.14.3"][3]
    proc = run([os.path.join(bindir, "kuma-dp"), "run", "--config-dir", str(tmp_path), "--dns-coredns-path",
                "/nonexistent/coredns", "--dns-enabled=true", "--name", "", "--mesh", "default"])
    assert "Flag --config-dir has been deprecated, use --work-dir instead" in proc.stderr
    assert proc.returncode == 1
    assert "Error: configuration validation failed: .Dataplane is not valid: .Name must be non-empty" in proc.stderr


def test_envoy_command_line(tmp_path):
    envoy = standin("envoy")
    bad = run(envoy + ["--bogus"])
    assert bad.returncode == 1 and "PARSE ERROR: Argument: --bogus" in bad.stderr
    none = run(envoy + ["--log-level", "info"])
    assert none.returncode == 1 and "At least one of --config-path or --config-yaml" in none.stderr
    config = tmp_path / "bootstrap.yaml"
    config.write_text(json.dumps({"admin": {"address": {"socketAddress": {"address": "127.0.0.1", "portValue": 0}}}}))
    ok = run(envoy + ["--config-path", str(config), "--mode", "validate"])
    assert ok.returncode == 0 and ok.stdout == "configuration '%s' OK\n" % config
    level = run(envoy + ["--config-path", str(config), "--log-level", "loud"])
    assert level.returncode == 1 and "PARSE ERROR: Argument: --log-level" in level.stderr


def test_coredns_command_line():
    bad = run(standin("coredns") + ["-bogus"])
    assert bad.returncode == 2 and bad.stderr.startswith("flag provided but not defined: -bogus\nUsage of coredns:")


# ----------------------------------------------------------- kuma-dp run --

DATAPLANE = """\
# A Universal data plane proxy with transparent proxying, as Kuma's docs write it
type: Dataplane
mesh: default
name: {{ name }}
labels:
  app: web   # a comment
networking:
  address: {{ address }}
  inbound:
    - port: %(inbound)d
      servicePort: %(service)d
      tags:
        kuma.io/service: web
        kuma.io/protocol: "http"
  transparentProxying:
    redirectPortInbound: %(in)d
    redirectPortOutbound: %(out)d
    ipFamilyMode: DualStack
    reachableServices: [backend, "db"]
  admin:
    port: %(admin)d
"""


TPROXY_CONFIG = """\
# kumactl install transparent-proxy --config-file: kuma-dp reads the keys it knows and ignores the rest
kumaDPUser: "5678"
redirect:
  inbound:
    port: %(in)d
    excludePorts: [22]
  outbound:
    port: %(out)d
  dns:
    enabled: true
"""


class DP(object):
    """Files and ports for one kuma-dp run on loopback."""

    def __init__(self, tmp, version, bindir):
        self.tmp, self.version, self.bindir = str(tmp), version, bindir
        self.ports = {k: free_port() for k in ("inbound", "service", "in", "out", "admin", "readiness")}
        self.ports["dns"] = free_port(socket.SOCK_DGRAM)
        self.dataplane = os.path.join(self.tmp, "dataplane.yaml")
        with open(self.dataplane, "w") as f:
            f.write(DATAPLANE % self.ports)
        self.token = os.path.join(self.tmp, "token")
        with open(self.token, "w") as f:
            f.write(make_token.make_token("web-1") + "\n")
        self.ca = os.path.join(self.tmp, "ca.pem")
        with open(self.ca, "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nMIIBstandin\n-----END CERTIFICATE-----\n")

    def args(self, *extra):
        args = [os.path.join(self.bindir, "kuma-dp"), "run", "--cp-address", "https://127.0.0.1:5678",
                "--dataplane-token-file", self.token, "--ca-cert-file", self.ca,
                "--dataplane-file", self.dataplane, "--dataplane-var", "name=web-1", "-v", "address=127.0.0.1",
                "--binary-path", os.path.join(self.bindir, "envoy"), "--dns-enabled", "--drain-time", "2s",
                "--work-dir", os.path.join(self.tmp, "work")]
        if self.version.startswith("2."):
            args += ["--dns-coredns-path", os.path.join(self.bindir, "coredns"),
                     "--dns-coredns-port", str(self.ports["dns"])]
        else:
            # kumactl's configuration with the test's redirect ports: kuma-dp sends it to the control plane,
            # which then prefers it to networking.transparentProxying (set to the same ports above)
            tproxy = os.path.join(self.tmp, "tproxy.yaml")
            with open(tproxy, "w") as f:
                f.write(TPROXY_CONFIG % self.ports)
            args += ["--dns-proxy-port", str(self.ports["dns"]), "--transparent-proxy-config", tproxy]
        return args + list(extra)

    def env(self, **extra):
        env = dict(os.environ, KUMA_READINESS_PORT=str(self.ports["readiness"]))
        env.update(extra)
        return env

    @property
    def ready_url(self):
        return "http://127.0.0.1:%d/ready" % self.ports["readiness"]


def children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open("/proc/%d/stat" % pid) as f:
        return f.read().split(")")[-1].split()[0] != "Z"


@pytest.mark.parametrize("version", VERSIONS)
def test_run_serves_readiness_dns_and_stops_on_sigterm(archives, tmp_path, procs, version):
    dp = DP(tmp_path, version, archives[version][3])
    proc = procs.start(dp.args(), env=dp.env())
    status, body, headers = wait_for(lambda: ready_with(dp.ready_url, 200), what="READY\n" + output(proc))
    assert (status, body, headers.get("x-powered-by")) == (200, "READY", "kuma-dp")
    assert http_get_or_none("http://127.0.0.1:%d/healthz" % dp.ports["readiness"])[0] == 404
    assert http_get("http://127.0.0.1:%d/ready" % dp.ports["admin"])[1] == "LIVE\n"
    listeners = http_get("http://127.0.0.1:%d/listeners" % dp.ports["admin"])[1]
    assert "outbound:passthrough:ipv4::0.0.0.0:%d" % dp.ports["out"] in listeners
    assert "inbound:passthrough:ipv4::0.0.0.0:%d" % dp.ports["in"] in listeners
    rcode, answers = dns_query("backend.mesh", dp.ports["dns"])
    assert rcode == 0 and len(answers) == 1 and 240 <= int(answers[0].split(".")[0]) <= 255
    assert dns_query("example.com", dp.ports["dns"])[0] == 5  # REFUSED without an upstream
    bootstrap = json.load(open(os.path.join(str(tmp_path), "work", "bootstrap.yaml")))
    assert bootstrap["admin"]["address"]["socketAddress"]["portValue"] == dp.ports["admin"]
    wait = run([os.path.join(dp.bindir, "kuma-dp"), "wait", "--url", dp.ready_url, "--timeout", "10s",
                "--check-frequency", "100ms"])
    assert wait.returncode == 0, wait.stderr
    kids = children(proc.pid)
    assert len(kids) == (2 if version.startswith("2.") else 1)
    proc.send_signal(signal.SIGTERM)
    wait_for(lambda: http_get_or_none(dp.ready_url)[:2] == (503, "TERMINATING"), what="TERMINATING")
    assert http_get("http://127.0.0.1:%d/ready" % dp.ports["admin"])[1] == "DRAINING\n"
    assert proc.wait(15) == 0, output(proc)
    wait_for(lambda: not any(alive(k) for k in kids), what="children to stop")
    log = output(proc)
    assert "waiting for connections to be drained" in log and "stopping Kuma DP" in log
    assert "--drain-time-s 2 --drain-strategy immediate --disable-hot-restart" in \
        " ".join(json.loads(re.search(r"starting Envoy\t(.*)", log).group(1))["arguments"])


def ready_with(url, status):
    result = http_get_or_none(url)
    return result if result[0] == status else None


def http_get_or_none(url):
    try:
        return http_get(url, timeout=1)
    except (OSError, urllib.error.URLError):
        return (None, None, None)


def test_run_exits_non_zero_when_envoy_dies(archives, tmp_path, procs):
    dp = DP(tmp_path, "2.14.3", archives["2.14.3"][3])
    proc = procs.start(dp.args(), env=dp.env())
    wait_for(lambda: http_get_or_none(dp.ready_url)[0] == 200, what="READY")
    kids = children(proc.pid)
    envoy = [k for k in kids if "envoy" in open("/proc/%d/cmdline" % k).read()][0]
    os.kill(envoy, signal.SIGKILL)
    assert proc.wait(15) == 1
    assert "Envoy terminated with an error" in output(proc) and "Error: Envoy terminated with an error" in output(proc)
    wait_for(lambda: not any(alive(k) for k in kids), what="coredns to stop")


def test_environment_overrides_flags_like_kuma_dp(archives, tmp_path, procs):
    dp = DP(tmp_path, "3.0.0", archives["3.0.0"][3])
    args = dp.args()
    args[args.index("--binary-path") + 1] = "/nonexistent/envoy"
    proc = procs.start(args, env=dp.env(KUMA_DATAPLANE_RUNTIME_BINARY_PATH=os.path.join(dp.bindir, "envoy")))
    wait_for(lambda: http_get_or_none(dp.ready_url)[0] == 200, what="READY\n" + output(proc))
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)  # a second signal cuts the drain short
    assert proc.wait(10) == 0


def corrupt(dp, old, new):
    text = open(dp.dataplane).read()
    assert old in text
    with open(dp.dataplane, "w") as f:
        f.write(text.replace(old, new))


@pytest.mark.parametrize("case,message", [
    ("missing dataplane file", "error while reading provided file: open"),
    ("empty token", "token under file"),
    ("token with two lines", "Token shouldn't contain line breaks"),
    ("token not a JWT", "not valid JWT token"),
    ("missing token file", "could not read file"),
    ("unreadable CA", "could not read certificate file"),
    ("CA not PEM", "no PEM certificate found"),
    ("wrong type", 'invalid proxy resource type "Mesh", expected Dataplane'),
    ("empty name", "name: cannot be empty"),
    ("no address", "networking.address: address can't be empty"),
    ("inbound without service tag", 'tags["kuma.io/service"]: tag has to exist'),
    ("bad yaml", "error converting YAML to JSON"),
    ("name and file", "--name and --mesh cannot be specified when a dataplane definition is provided"),
    ("zero drain time", ".DrainTime must be positive"),
    ("no coredns", "could not find coreDNS executable"),
    ("no envoy", "failed to get Envoy version: could not find executable binary"),
    ("cp address", "could not parse Control Plane URL"),
])
def test_run_refuses_bad_input(archives, tmp_path, case, message):
    dp = DP(tmp_path, "2.14.3", archives["2.14.3"][3])
    args = dp.args()
    env = dp.env(PATH="/usr/bin:/bin")
    if case == "missing dataplane file":
        os.unlink(dp.dataplane)
    elif case == "empty token":
        open(dp.token, "w").close()
    elif case == "token with two lines":
        open(dp.token, "w").write("a.b.c\nd.e.f\n")
    elif case == "token not a JWT":
        open(dp.token, "w").write("not-a-token\n")
    elif case == "missing token file":
        os.unlink(dp.token)
    elif case == "unreadable CA":
        os.unlink(dp.ca)
    elif case == "CA not PEM":
        open(dp.ca, "w").write("hello\n")
    elif case == "wrong type":
        corrupt(dp, "type: Dataplane", "type: Mesh")
    elif case == "empty name":
        args[args.index("name=web-1")] = "nam=web-1"
    elif case == "no address":
        corrupt(dp, "  address: {{ address }}\n", "")
    elif case == "inbound without service tag":
        corrupt(dp, "kuma.io/service: web", "app: web")
    elif case == "bad yaml":
        corrupt(dp, "  inbound:\n", "  inbound:\n  - : :\n bad\n")
    elif case == "name and file":
        args += ["--name", "web-1"]
    elif case == "zero drain time":
        args[args.index("--drain-time") + 1] = "0s"
    elif case == "no coredns":
        args[args.index("--dns-coredns-path") + 1] = "/nonexistent/coredns"
    elif case == "no envoy":
        args[args.index("--binary-path") + 1] = "/nonexistent/envoy"
    elif case == "cp address":
        args[args.index("--cp-address") + 1] = "127.0.0.1:5678"
    if case in ("no coredns", "no envoy"):
        # kuma-dp also looks next to itself: use a copy that stands alone
        lonely = tmp_path / "lonely"
        lonely.mkdir()
        shutil.copy(args[0], str(lonely / "kuma-dp"))
        args[0] = str(lonely / "kuma-dp")
    proc = run(args, env=env, cwd=str(tmp_path))
    assert proc.returncode == 1, proc.stderr
    assert message in proc.stderr and "\nError: " in "\n" + proc.stderr, proc.stderr
    assert not os.path.exists(os.path.join(str(tmp_path), "work", "bootstrap.yaml"))


def test_dataplane_yaml_reader():
    kdp = load_standin("kuma-dp")
    doc = kdp.load_document(textwrap.dedent("""\
        ---
        type: Dataplane   # comment
        mesh: 'default'
        name: "dp-1"
        networking:
          address: 192.0.2.1
          inbound:
          - port: 8080
            tags: {kuma.io/service: web, "kuma.io/protocol": http}
          - port: 9090
            serviceAddress: 127.0.0.1
            tags:
              kuma.io/service: metrics
          transparentProxying:
            redirectPortInbound: 15006
            redirectPortOutbound: 15001
            reachableBackends:
              refs:
                - kind: MeshService
                  name: backend
                  port: 80
            reachableServices: []
          admin: {port: 9901}
        probes:
          endpoints: ~
        note: |
          line one
          line two
        """))
    assert doc == {
        "type": "Dataplane", "mesh": "default", "name": "dp-1",
        "networking": {
            "address": "192.0.2.1",
            "inbound": [{"port": 8080, "tags": {"kuma.io/service": "web", "kuma.io/protocol": "http"}},
                        {"port": 9090, "serviceAddress": "127.0.0.1", "tags": {"kuma.io/service": "metrics"}}],
            "transparentProxying": {"redirectPortInbound": 15006, "redirectPortOutbound": 15001,
                                    "reachableBackends": {"refs": [{"kind": "MeshService", "name": "backend",
                                                                    "port": 80}]},
                                    "reachableServices": []},
            "admin": {"port": 9901}},
        "probes": {"endpoints": None},
        "note": "line one\nline two\n",
    }
    assert kdp.load_document('{"type": "Dataplane", "mesh": "m"}') == {"type": "Dataplane", "mesh": "m"}
    assert kdp.render_template("name: {{ name }}\naddr: {{address}}\nx: {{ a.b }}\ny: {{ missing }}",
                               {"name": "dp<1>", "address": "192.0.2.1", "a.b": "c"}) == \
        "name: dp&lt;1&gt;\naddr: 192.0.2.1\nx: c\ny: "
    with pytest.raises(ValueError):
        kdp.load_document("a: 1\n  b: 2\n")


# --------------------------------------------------------------------- envoy --

def start_envoy(procs, tmp_path, listeners, env=None, admin_port=None):
    admin_port = admin_port or free_port()
    config = tmp_path / ("bootstrap-%s.yaml" % uuid.uuid4().hex[:6])
    config.write_text(json.dumps({
        "admin": {"address": {"socketAddress": {"address": "127.0.0.1", "portValue": admin_port}}},
        "staticResources": {"listeners": listeners}}))
    proc = procs.start(standin("envoy") + ["--config-path", str(config), "--log-level", "info", "--drain-time-s", "1",
                                           "--drain-strategy", "immediate", "--disable-hot-restart",
                                           "--cpuset-threads"], env=dict(os.environ, **(env or {})))
    wait_for(lambda: http_get_or_none("http://127.0.0.1:%d/ready" % admin_port)[0] == 200,
             what="envoy admin\n" + output(proc))
    return proc, admin_port


def listener(name, host, port, direction="OUTBOUND"):
    return {"name": name, "address": {"socketAddress": {"address": host, "portValue": port}},
            "useOriginalDst": True, "trafficDirection": direction}


class EchoServer(object):
    def __init__(self, host="127.0.0.1"):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.loop, daemon=True).start()

    def loop(self):
        while True:
            try:
                conn = self.sock.accept()[0]
            except OSError:
                return
            threading.Thread(target=self.echo, args=(conn,), daemon=True).start()

    @staticmethod
    def echo(conn):
        with conn:
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                conn.sendall(data)

    def close(self):
        self.sock.close()


def exchange(host, port, payload):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect((host, port))
        local = s.getsockname()
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks), local


def test_envoy_refuses_connections_that_were_not_redirected(procs, tmp_path):
    port = free_port()
    proc = start_envoy(procs, tmp_path, [listener("outbound:passthrough:ipv4", "127.0.0.1", port)])[0]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        local = s.getsockname()
        s.sendall(b"hello")
        try:
            assert s.recv(100) == b""  # closed without a byte relayed (or reset: unread data)
        except ConnectionResetError:
            pass
    wait_for(lambda: "outbound 127.0.0.1:%d refused: not redirected" % local[1] in output(proc), what="refusal log")
    assert " -> " not in output(proc)


def test_envoy_relays_many_connections_to_the_original_destination(procs, tmp_path):
    echo = EchoServer()
    port = free_port()
    proc, admin = start_envoy(procs, tmp_path, [listener("outbound:passthrough:ipv4", "127.0.0.1", port)],
                              env={"KUMA_STANDIN_ENVOY_FAKE_ORIGINAL_DST": "127.0.0.1:%d" % echo.port})
    results, errors = {}, []

    def client(i):
        payload = (b"%04d" % i) * (2000 + i * 37)
        try:
            results[i] = (exchange("127.0.0.1", port, payload), payload)
        except OSError as e:
            errors.append(e)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(60)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    echo.close()
    assert not errors and len(results) == 60
    log = output(proc)
    for (reply, local), payload in results.values():
        assert reply == payload
        assert "outbound 127.0.0.1:%d -> 127.0.0.1:%d" % (local[1], echo.port) in log
    stats = http_get("http://127.0.0.1:%d/stats" % admin)[1]
    assert "listener.outbound:passthrough:ipv4.downstream_cx_total: 60" in stats


def test_envoy_ipv6_listener(procs, tmp_path):
    if not serve_ipv6_ok():
        pytest.skip("no IPv6 loopback")
    echo = EchoServer("::1")
    port = free_port(host="::1")
    proc = start_envoy(procs, tmp_path, [listener("outbound:passthrough:ipv6", "::1", port)],
                       env={"KUMA_STANDIN_ENVOY_FAKE_ORIGINAL_DST": "[::1]:%d" % echo.port})[0]
    reply, local = exchange("::1", port, b"six")
    echo.close()
    assert reply == b"six"
    wait_for(lambda: "outbound [::1]:%d -> [::1]:%d" % (local[1], echo.port) in output(proc), what="log")


def serve_ipv6_ok():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_envoy_admin_and_signals(procs, tmp_path):
    port = free_port()
    proc, admin = start_envoy(procs, tmp_path, [listener("inbound:passthrough:ipv4", "127.0.0.1", port, "INBOUND")])
    assert http_get("http://127.0.0.1:%d/listeners" % admin)[1] == "inbound:passthrough:ipv4::127.0.0.1:%d\n" % port
    req = urllib.request.Request("http://127.0.0.1:%d/healthcheck/fail" % admin, data=b"", method="POST")
    assert urllib.request.urlopen(req, timeout=2).read() == b"OK\n"
    assert http_get("http://127.0.0.1:%d/ready" % admin)[:2] == (503, "DRAINING\n")
    busy = run(standin("envoy") + ["--config-path", proc.args[proc.args.index("--config-path") + 1]])
    assert busy.returncode == 1 and "cannot bind" in busy.stderr
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0 and "caught ENVOY_SIGTERM" in output(proc)


# ----------------------------------------------------------------------- DNS --

def test_dns_sections_are_identical():
    def section(name):
        text = open(os.path.join(STANDINS, name + ".py")).read()
        return text[text.index("# --- DNS wire format"):text.index("# --- end of shared DNS section ---")]
    assert section("coredns") == section("kuma-dp")


def test_coredns_answers_mesh_names_and_forwards_the_rest(procs, tmp_path):
    upstream = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    upstream.bind(("127.0.0.1", 0))

    def fake_upstream():  # answers everything with 198.51.100.7
        while True:
            try:
                data, peer = upstream.recvfrom(512)
            except OSError:
                return
            upstream.sendto(data[:2] + b"\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00" + data[12:] +
                            b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04" + bytes([198, 51, 100, 7]), peer)

    threading.Thread(target=fake_upstream, daemon=True).start()
    port = free_port(socket.SOCK_DGRAM)
    corefile = tmp_path / "Corefile"
    corefile.write_text(".:%d {\n    forward . 127.0.0.1:15054\n    errors\n    log\n}\n" % port)
    proc = procs.start(standin("coredns") + ["-conf", str(corefile), "-quiet"],
                       env=dict(os.environ, KUMA_STANDIN_DNS_UPSTREAM="127.0.0.1:%d" % upstream.getsockname()[1],
                                KUMA_STANDIN_DNS_RECORDS="db.mesh=192.0.2.10,v6.mesh=2001:db8::10"))
    rcode, answers = wait_for(lambda: dns_query_or_none("backend.mesh", port), what="coredns\n" + output(proc))
    assert rcode == 0 and answers == [dns_query("backend.mesh", port)[1][0]]  # stable
    assert dns_query("db.mesh", port) == (0, ["192.0.2.10"])
    assert dns_query("v6.mesh", port, qtype=28) == (0, ["2001:db8::10"])
    assert dns_query("backend.mesh", port, qtype=28) == (0, [])
    assert dns_query("example.org", port) == (0, ["198.51.100.7"])
    # no `bind` in the block (Kuma's template has none): every address of both families, as CoreDNS
    assert udp_listeners(port) == ({"0.0.0.0", "::"} if has_ipv6_loopback() else {"0.0.0.0"})
    upstream.close()
    wait_for(lambda: '"A IN db.mesh. udp' in output(proc), what="query log")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0


def dns_query_or_none(name, port):
    try:
        return dns_query(name, port)
    except OSError:
        return None


# --------------------------------------------------------------------- serve --

def test_serve_context_manager_serves_archives(archives):
    archive, checksum = archives["2.14.3"][:2]
    with serve.serve_directory(os.path.dirname(archive)) as server:
        assert re.match(r"^http://127\.0\.0\.1:\d+/$", server.url)
        data = urllib.request.urlopen(server.url + os.path.basename(archive), timeout=5).read()
        sums = urllib.request.urlopen(server.url + os.path.basename(checksum), timeout=5).read().decode()
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(server.url + "kuma-9.9.9-linux-amd64.tar.gz", timeout=5)
    assert sums.split()[0] == hashlib.sha256(data).hexdigest()
    assert [(r[0], r[2]) for r in server.requests] == [("GET", 200), ("GET", 200), ("GET", 404)]
    with pytest.raises(ValueError):
        serve.DirectoryServer(os.path.dirname(archive), host="0.0.0.0")


def test_serve_cli_in_the_background(archives, tmp_path):
    archive = archives["3.0.0"][0]
    pid_file, port_file = tmp_path / "pid", tmp_path / "port"
    proc = run([SYSTEM_PYTHON, os.path.join(STANDINS, "serve.py"), os.path.dirname(archive), "--background",
                "--pid-file", str(pid_file), "--port-file", str(port_file)], timeout=20)
    assert proc.returncode == 0, proc.stderr
    pid = int(pid_file.read_text())
    try:
        url = proc.stdout.strip()
        assert url == "http://127.0.0.1:%d/" % int(port_file.read_text())
        data = urllib.request.urlopen(url + os.path.basename(archive), timeout=5).read()
        assert data == open(archive, "rb").read()
    finally:
        os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not os.path.exists("/proc/%d" % pid) or not alive(pid), what="serve.py to stop")


# --------------------------------------------- real redirect, network namespaces --

NEED_ROOT = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("setpriv")
                               or not shutil.which("iptables-restore"),
                               reason="network namespaces and iptables need root, ip, setpriv, iptables")

# Kuma's default rule set for uid 5678 (kumactl install transparent-proxy, comments left out), plus a plain
# UDP 53 redirect to the DNS port so the DNS stand-in is exercised too.
KUMA_RULES = """*nat
:KUMA_MESH_INBOUND - [0:0]
:KUMA_MESH_INBOUND_REDIRECT - [0:0]
:KUMA_MESH_OUTBOUND - [0:0]
:KUMA_MESH_OUTBOUND_REDIRECT - [0:0]
-A PREROUTING -p tcp -j KUMA_MESH_INBOUND
-A OUTPUT -p udp --dport 53 -m owner ! --uid-owner 5678 -j REDIRECT --to-ports 15053
-A OUTPUT -p tcp -j KUMA_MESH_OUTBOUND
-A KUMA_MESH_INBOUND -p tcp -j KUMA_MESH_INBOUND_REDIRECT
-A KUMA_MESH_INBOUND_REDIRECT -p tcp -j REDIRECT --to-ports 15006
-A KUMA_MESH_OUTBOUND -s {passthrough} -o lo -j RETURN
-A KUMA_MESH_OUTBOUND ! -d {localhost} -o lo -p tcp -m owner --uid-owner 5678 -j KUMA_MESH_INBOUND_REDIRECT
-A KUMA_MESH_OUTBOUND -o lo -p tcp -m owner ! --uid-owner 5678 -j RETURN
-A KUMA_MESH_OUTBOUND -m owner --uid-owner 5678 -j RETURN
-A KUMA_MESH_OUTBOUND -d {localhost} -j RETURN
-A KUMA_MESH_OUTBOUND -j KUMA_MESH_OUTBOUND_REDIRECT
-A KUMA_MESH_OUTBOUND_REDIRECT -p tcp -j REDIRECT --to-ports 15001
COMMIT
"""

# Replies with what it saw, then echoes: "<name> saw <peer address>\n".
WHO_SERVER = r'''
import socket, sys, threading
name, port = sys.argv[1], int(sys.argv[2])
def serve(family, host):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((host, port)); s.listen(16)
    while True:
        c, peer = s.accept()
        c.sendall(("%s saw %s\n" % (name, peer[0])).encode()); c.close()
threading.Thread(target=serve, args=(socket.AF_INET6, "::"), daemon=True).start()
print("ready", flush=True)
serve(socket.AF_INET, "0.0.0.0")
'''

CLIENT = r'''
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
s = socket.create_connection((host, port), timeout=5)
print(s.getsockname()[1], s.recv(200).decode().strip())
'''


class Namespaces(object):
    def __init__(self):
        tag = uuid.uuid4().hex[:6]
        self.host, self.peer = "kst-h-" + tag, "kst-p-" + tag
        self.created = []
        for ns in (self.host, self.peer):
            run(["ip", "netns", "add", ns], check=True)
            self.created.append(ns)
            self.sh(ns, "ip", "link", "set", "lo", "up")
        run(["ip", "link", "add", "vh" + tag, "netns", self.host, "type", "veth", "peer", "name", "vp" + tag,
             "netns", self.peer], check=True)
        for ns, dev, v4, v6 in ((self.host, "vh" + tag, "192.0.2.1", "2001:db8::1"),
                                (self.peer, "vp" + tag, "192.0.2.2", "2001:db8::2")):
            self.sh(ns, "ip", "addr", "add", v4 + "/24", "dev", dev)
            self.sh(ns, "ip", "-6", "addr", "add", v6 + "/64", "dev", dev, "nodad")
            self.sh(ns, "ip", "link", "set", dev, "up")

    def sh(self, ns, *args, **kwargs):
        kwargs.setdefault("check", True)
        return run(["ip", "netns", "exec", ns] + list(args), **kwargs)

    def delete(self):
        for ns in self.created:
            pids = run(["ip", "netns", "pids", ns]).stdout.split()
            for pid in pids:  # only processes this test started inside its own namespaces
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            run(["ip", "netns", "del", ns])


@pytest.fixture
def namespaces():
    ns = Namespaces()
    try:
        yield ns
    finally:
        ns.delete()


@NEED_ROOT
@pytest.mark.parametrize("version", VERSIONS)
def test_redirected_traffic_reaches_its_original_destination(archives, namespaces, procs, version):
    ns = namespaces
    try:
        import pwd
        pwd.getpwuid(KUMA_DP_UID)
    except KeyError:
        pytest.skip("no user with uid 5678 (scripts/bootstrap creates kuma-dp)")
    rules_v4 = KUMA_RULES.format(passthrough="127.0.0.6/32", localhost="127.0.0.1/32")
    rules_v6 = KUMA_RULES.format(passthrough="::6/128", localhost="::1/128")
    ns.sh(ns.host, "iptables-restore", "--noflush", input=rules_v4)
    ns.sh(ns.host, "ip6tables-restore", "--noflush", input=rules_v6)
    ns.sh(ns.host, "ip", "-6", "addr", "add", "::6/128", "dev", "lo")  # kumactl adds it on IPv6 hosts

    # uid 5678 must read the archive and files: a world-readable copy outside pytest's 0700 tmp
    work = tempfile.mkdtemp(prefix="kuma-mesh-standins-")
    try:
        os.chmod(work, 0o755)
        bindir = os.path.join(work, "bin")
        shutil.copytree(archives[version][3], bindir)
        dataplane = os.path.join(work, "dataplane.yaml")
        with open(dataplane, "w") as f:
            f.write(textwrap.dedent("""\
                type: Dataplane
                mesh: default
                name: {{ name }}
                networking:
                  address: 192.0.2.1
                  inbound:
                    - port: 8080
                      tags:
                        kuma.io/service: app
                  transparentProxying:
                    redirectPortInbound: 15006
                    redirectPortOutbound: 15001
                """))
        token = os.path.join(work, "token")
        with open(token, "w") as f:
            f.write(make_token.make_token("app-1") + "\n")
        for path in (dataplane, token):
            os.chmod(path, 0o644)
        dp_args = [os.path.join(bindir, "kuma-dp"), "run", "--dataplane-file", dataplane, "-v", "name=app-1",
                   "--dataplane-token-file", token, "--binary-path", os.path.join(bindir, "envoy"),
                   "--drain-time", "1s"]
        dp_args += ["--dns-coredns-path", os.path.join(bindir, "coredns")] if version.startswith("2.") else \
            ["--transparent-proxy"]
        prefix = ["ip", "netns", "exec"]
        as_kuma_dp = ["setpriv", "--reuid=%d" % KUMA_DP_UID, "--regid=%d" % KUMA_DP_UID, "--clear-groups"]
        peer_srv = procs.start(prefix + [ns.peer, SYSTEM_PYTHON, "-c", WHO_SERVER, "peer", "8080"])
        app_srv = procs.start(prefix + [ns.host, SYSTEM_PYTHON, "-c", WHO_SERVER, "app", "8080"])
        run_dir = os.path.join(work, "run")  # kuma-dp's temporary work directory goes here
        os.mkdir(run_dir)
        os.chown(run_dir, KUMA_DP_UID, KUMA_DP_UID)
        dp = procs.start(prefix + [ns.host] + as_kuma_dp + [SYSTEM_PYTHON] + dp_args, cwd=run_dir,
                         env=dict(os.environ, TMPDIR=run_dir))
        for p in (peer_srv, app_srv):
            wait_for(lambda p=p: "ready" in output(p), what="test servers")
        wait_for(lambda: ns.sh(ns.host, SYSTEM_PYTHON, "-c",
                               "import urllib.request;print(urllib.request.urlopen("
                               "'http://127.0.0.1:9902/ready',timeout=1).read().decode())",
                               check=False).stdout.strip() == "READY", what="kuma-dp READY\n" + output(dp))

        # outbound: the app (root) dials the peer; iptables sends it to envoy, envoy (uid 5678) dials the peer
        for dst, src in (("192.0.2.2", "192.0.2.1"), ("2001:db8::2", "2001:db8::1")):
            out = ns.sh(ns.host, SYSTEM_PYTHON, "-c", CLIENT, dst, "8080").stdout.split(None, 1)
            assert out[1].strip() == "peer saw %s" % src
            shown = "[%s]:%s" % (src, out[0]) if ":" in src else "%s:%s" % (src, out[0])
            target = "[%s]:8080" % dst if ":" in dst else "%s:8080" % dst
            wait_for(lambda: "outbound %s -> %s" % (shown, target) in output(dp), what="outbound log\n" + output(dp))

        # inbound: the peer dials the app; iptables sends it to envoy, which dials the app from 127.0.0.6
        out = ns.sh(ns.peer, SYSTEM_PYTHON, "-c", CLIENT, "192.0.2.1", "8080").stdout.split(None, 1)
        assert out[1].strip() == "app saw 127.0.0.6"
        wait_for(lambda: "inbound 192.0.2.2:%s -> 192.0.2.1:8080" % out[0] in output(dp), what="inbound log")

        # DNS: a query for a mesh name to any server on UDP 53 is answered by the DNS stand-in
        query = ("import socket,struct;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.settimeout(3);"
                 "s.sendto(struct.pack('!6H',7,256,1,0,0,0)+b'\\x07backend\\x04mesh\\x00\\x00\\x01\\x00\\x01',"
                 "('198.51.100.53',53));r=s.recvfrom(512)[0];print(socket.inet_ntoa(r[-4:]),r[3]&15)")
        ns.sh(ns.host, "ip", "route", "add", "198.51.100.0/24", "dev", "vh" + ns.host[-6:])
        address, rcode = ns.sh(ns.host, SYSTEM_PYTHON, "-c", query).stdout.split()
        assert rcode == "0" and 240 <= int(address.split(".")[0]) <= 255

        dp.send_signal(signal.SIGTERM)
        assert dp.wait(15) == 0, output(dp)
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --- the transparent-proxy flags and the embedded DNS proxy's addresses (app/kuma-dp/cmd/run.go) ---------------

kuma_dp = load_standin("kuma-dp")


@pytest.mark.parametrize("tp,expected", [
    (None, [("0.0.0.0", 15053)]),
    ({"ipFamilyMode": "dualstack", "vnet": []}, [("127.0.0.1", 15053), ("::1", 15053)]),
    ({"ipFamilyMode": "ipv4", "vnet": []}, [("127.0.0.1", 15053)]),
    ({"ipFamilyMode": "dualstack", "vnet": ["docker0:172.17.0.0/16"]}, [("0.0.0.0", 15053), ("::", 15053)]),
    ({"ipFamilyMode": "ipv4", "vnet": ["docker0:172.17.0.0/16"]}, [("0.0.0.0", 15053)]),
    # IPFamilyMode.Set accepts any case but keeps the value as written; run.go compares it with "ipv4" as is
    ({"ipFamilyMode": "IPv4", "vnet": []}, [("127.0.0.1", 15053), ("::1", 15053)]),
])
def test_dns_proxy_addresses_are_kumas(tp, expected):
    assert kuma_dp.dns_proxy_addresses(tp, 15053) == expected


def tp_cfg(*values, enabled=False, dns_enabled=True):
    return {"transparent-proxy": enabled, "transparent-proxy-config": list(values), "dns-enabled": dns_enabled,
            "dns-proxy-port": 15053, "dns-envoy-port": 15054}


def write(tmp_path, name, text):
    path = os.path.join(str(tmp_path), name)
    with open(path, "w") as f:
        f.write(textwrap.dedent(text))
    return path


def test_tproxy_config_loads_like_kuma_dp(tmp_path):
    assert kuma_dp.load_tproxy_config(tp_cfg()) is None
    default = kuma_dp.load_tproxy_config(tp_cfg(enabled=True))
    assert default == {"ipFamilyMode": "dualstack", "vnet": [], "inbound": {"enabled": True, "port": 15006},
                       "outbound": {"enabled": True, "port": 15001},
                       "dns": {"enabled": True, "port": 15053 if kuma_dp.V3 else 15054}}
    first = write(tmp_path, "a.yaml", """\
        kumaDPUser: kuma-dp          # kumactl's keys kuma-dp does not know are ignored
        ipFamilyMode: ipv4
        redirect:
          outbound: {port: 15101, excludePorts: [22]}
          vnet: {networks: ["docker0:172.17.0.0/16"]}
          dns: {enabled: false, port: 5353}
        """)
    second = write(tmp_path, "b.json", '{"redirect": {"inbound": {"enabled": false}, "vnet": {"networks": []}}}')
    tp = kuma_dp.load_tproxy_config(tp_cfg(first, "", second, dns_enabled=False))
    assert tp["ipFamilyMode"] == "ipv4" and tp["vnet"] == []  # the later file wins, key by key
    assert tp["outbound"] == {"enabled": True, "port": 15101} and tp["inbound"] == {"enabled": False, "port": 15006}
    assert tp["dns"]["enabled"] is False  # kuma-dp's own DNS settings replace the file's
    assert kuma_dp.load_tproxy_config(tp_cfg(write(tmp_path, "empty.yaml", "")))["ipFamilyMode"] == "dualstack"


@pytest.mark.parametrize("text,message", [
    ("redirect: {outbound: {port: 0}}", "value '0' is not a valid port (uint16 in the range [1, 65535])"),
    ("redirect: {outbound: {port: 70000}}", "value '70000' is not a valid port"),
    ("redirect: {inbound: {port: '15006'}}", "value '\"15006\"' is not a valid port"),
    ("redirect: {inbound: {enabled: 'yes please'}}", "cannot unmarshal string into Go struct field"),
    ("ipFamilyMode: ipv6", "value 'ipv6' is not a valid IPFamilyMode: must be one of 'dualstack' or 'ipv4'"),
    ("redirect: {vnet: {networks: docker0}}", "cannot unmarshal string into Go struct field"),
    ("- a list", "cannot unmarshal array into Go value of type dataplane.DataplaneConfig"),
])
def test_tproxy_config_refuses_what_kuma_dp_refuses(tmp_path, text, message):
    path = write(tmp_path, "tp.yaml", text + "\n")
    with pytest.raises(kuma_dp.CmdError) as e:
        kuma_dp.load_tproxy_config(tp_cfg(path))
    assert str(e.value).startswith("failed to load transparent proxy configuration from provided input: ")
    assert message in str(e.value)


def test_tproxy_config_values_are_single_paths_or_stdin(tmp_path):
    a = write(tmp_path, "a.yaml", "ipFamilyMode: ipv4\n")
    with pytest.raises(kuma_dp.CmdError) as e:  # the flag's help speaks of comma-separated lists; the loader does not
        kuma_dp.load_tproxy_config(tp_cfg(a + "," + a))
    assert "unable to access configuration file '%s,%s'" % (a, a) in str(e.value)
    tp = kuma_dp.load_tproxy_config(tp_cfg("-"), stdin=io.StringIO("redirect:\n  vnet:\n    networks: [a:10.0.0.0/8]\n"))
    assert tp["vnet"] == ["a:10.0.0.0/8"]


def udp_listeners(port):
    """Local addresses bound to a UDP port, from /proc/net/udp and udp6."""
    found = set()
    for name, family in (("udp", socket.AF_INET), ("udp6", socket.AF_INET6)):
        try:
            lines = open("/proc/net/" + name).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local = line.split()[1]
            hexaddr, hexport = local.split(":")
            if int(hexport, 16) != port:
                continue
            raw = bytes.fromhex(hexaddr)
            if family == socket.AF_INET:
                raw = raw[::-1]
            else:
                raw = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
            found.add(socket.inet_ntop(family, raw))
    return found


def has_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.parametrize("version,flags,expected", [
    ("3.0.0", [], {"0.0.0.0"}),
    ("3.0.0", ["--transparent-proxy"], {"127.0.0.1", "::1"}),
    ("3.0.0", ["--transparent-proxy-config", "{ipv4}"], {"127.0.0.1"}),
    ("3.0.0", ["--transparent-proxy-config", "{vnet}"], {"0.0.0.0", "::"}),
    ("2.14.3", [], {"0.0.0.0"}),  # 2.x with the embedded DNS proxy (KUMA_DNS_PROXY_PORT) instead of CoreDNS
    ("2.14.3", ["--transparent-proxy=true"], {"127.0.0.1", "::1"}),
])
def test_run_binds_the_dns_proxy_where_kuma_dp_does(archives, tmp_path, procs, version, flags, expected):
    if "::1" in expected and not has_ipv6_loopback():
        pytest.skip("no IPv6 loopback")
    files = {"{ipv4}": write(tmp_path, "ipv4.yaml", "ipFamilyMode: ipv4\n"),
             "{vnet}": write(tmp_path, "vnet.yaml", "redirect:\n  vnet:\n    networks: ['docker0:172.17.0.0/16']\n")}
    dp = DP(tmp_path, version, archives[version][3])
    args = dp.args()
    if version.startswith("3."):
        i = args.index("--transparent-proxy-config")
        del args[i:i + 2]
    else:
        i = args.index("--dns-coredns-port")
        del args[i:i + 2]
    port = free_port(socket.SOCK_DGRAM)
    while port in udp_listeners(port) or (":" in "".join(expected) and not free_udp6(port)):
        port = free_port(socket.SOCK_DGRAM)
    env = dp.env(KUMA_DNS_PROXY_PORT=str(port))
    proc = procs.start(args + [files.get(f, f) for f in flags], env=env)
    wait_for(lambda: http_get_or_none(dp.ready_url)[0] == 200, what="READY\n" + output(proc))
    assert udp_listeners(port) == expected
    for host in expected:
        target = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
        assert dns_query("backend.mesh", port, host=target)[0] == 0
    request = json.load(open(os.path.join(str(tmp_path), "work", "bootstrap-request.json")))
    features = request["features"]
    if flags:
        assert "feature-transparent-proxy-in-dataplane-metadata" in features
        assert request["dataplaneConfig"]["redirect"]["dns"] == {
            "enabled": True, "port": port if version.startswith("3.") else 15054}
    else:
        assert "feature-transparent-proxy-in-dataplane-metadata" not in features and "dataplaneConfig" not in request
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0, output(proc)


def free_udp6(port):
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::", port))
        return True
    except OSError:
        return False


def test_run_takes_redirect_ports_from_the_transparent_proxy_config(archives, tmp_path, procs):
    """The control plane prefers the settings kuma-dp sends to networking.transparentProxying."""
    dp = DP(tmp_path, "3.0.0", archives["3.0.0"][3])
    other = {"in": free_port(), "out": free_port()}
    args = dp.args()
    with open(args[args.index("--transparent-proxy-config") + 1], "w") as f:
        f.write(TPROXY_CONFIG % dict(dp.ports, **other))
    proc = procs.start(args, env=dp.env())
    wait_for(lambda: http_get_or_none(dp.ready_url)[0] == 200, what="READY\n" + output(proc))
    listeners = http_get("http://127.0.0.1:%d/listeners" % dp.ports["admin"])[1]
    assert "outbound:passthrough:ipv4::0.0.0.0:%d" % other["out"] in listeners
    assert "inbound:passthrough:ipv4::0.0.0.0:%d" % other["in"] in listeners
    assert ":%d\n" % dp.ports["out"] not in listeners
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0
