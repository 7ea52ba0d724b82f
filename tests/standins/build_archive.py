"""Build a stand-in Kuma release archive from the stand-ins next to this file.

    python3 build_archive.py --version 2.14.3 --out DIR [--arch amd64|arm64] [--os linux|darwin]
                     [--layout flat|konghq] [--envoy-version V] [--coredns-version V]

Writes, the way Kuma's mk/distribution.mk does:
  kuma-<version>-<os>-<arch>.tar.gz
      kuma-<version>/{LICENSE,NOTICE,README,UPGRADE.md}     (0444)
      kuma-<version>/conf/kuma-cp.defaults.yaml            (0444)
      kuma-<version>/dashboards/grafana/README.md          (0444)
      kuma-<version>/bin/{kuma-cp,kuma-dp,kumactl,envoy}   (0555)
      kuma-<version>/bin/coredns                           (0555, versions < 3 only)
    tar sorted by name, owner and group root:0, mtime 0 (reproducible; gzip mtime 0 too)
  kuma-<version>-<os>-<arch>.tar.gz.sha256   `shasum -a 256 <archive>`: "<hex>  <name>\\n"
  kuma-<version>.sha256                      `sha256sum *.tar.gz` over every archive of that
                                             version in the directory (the file Kuma publishes)
--layout konghq puts the three files under
public/kuma-binaries-release/raw/names/kuma-<os>-<arch>/versions/<version>/ as on
packages.konghq.com, so a role's real download URL works against serve.py.

Prints the archive, its .sha256 and the aggregate .sha256 paths, one a line.
The stand-ins are the <name>.py files next to this one; in the archive they
are bin/<name>, mode 0555, with `#!/usr/bin/python3` as first line (the
sources carry no shebang: ansible-test's sanity test allows none of that
form), so they run with Debian's own Python. They get the version baked in (kuma-dp picks its 2.x or 3.x flag set
from it) and the platform: run on another OS or architecture they exit 126
("Exec format error") unless KUMA_STANDIN_IGNORE_PLATFORM=1. Importable: build(version, out, arch="amd64", ...) returns the same
three paths.
"""

import argparse
import gzip
import hashlib
import io
import os
import re
import sys
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
ARCHES = ("amd64", "arm64")
OSES = ("linux", "darwin")
# mk/dev.mk ENVOY_VERSION and mk/build.mk COREDNS_VERSION at v2.14.3 and on the 3.0 line
DEFAULT_ENVOY = {2: "1.38.2", 3: "1.39.0"}
DEFAULT_COREDNS = "1.14.6"
VERSION_RE = re.compile(r"^(\d+)\.(\d+)\.(\d+)(-[0-9A-Za-z.-]+)?$")
KONGHQ_DIR = "public/kuma-binaries-release/raw/names/kuma-{os}-{arch}/versions/{version}"

README = """Welcome to Kuma!

===============================================================================

THIS IS A TEST STAND-IN built by the kuma.mesh collection's
tests/standins/build_archive.py. The programs in bin/ are small Python
programs that imitate Kuma's command lines; they are not Kuma.

This folder contains your download of Kuma:

{tree}
===============================================================================
"""
LICENSE = """Test stand-in for Kuma's release archive (kuma.mesh collection tests).
Kuma itself is licensed under the Apache License, Version 2.0.
"""
NOTICE = "Kuma stand-in archive for tests. Not a Kuma release.\n"
UPGRADE = "# Upgrade notes\n\nStand-in archive: nothing to upgrade.\n"
CP_DEFAULTS = "# kuma-cp defaults (stand-in archive: there is no control plane)\nenvironment: universal\n"
DASHBOARDS = "# Grafana dashboards\n\nStand-in archive: no dashboards.\n"


def bake(name, text, version, envoy_version, coredns_version, build_platform):
    commit = hashlib.sha1(("kuma-standin-" + version).encode()).hexdigest()
    subs = {
        "KUMA_VERSION": version,
        "KUMA_GIT_COMMIT": commit,
        "KUMA_BUILD_DATE": "1970-01-01T00:00:00Z",
        "ENVOY_VERSION": envoy_version,
        "COREDNS_VERSION": coredns_version,
        "BUILD_PLATFORM": build_platform,
    }
    for key, value in subs.items():
        text, n = re.subn(r'^%s = "[^"]*"(  # replaced by build_archive\.py.*)$' % key,
                          lambda m, v=value, k=key: '%s = "%s"%s' % (k, v, m.group(1)), text, flags=re.M)
        needed = key == "BUILD_PLATFORM" or (key == "KUMA_VERSION" and name in ("kuma-dp", "kumactl", "kuma-cp"))
        if n != 1 and needed:
            raise RuntimeError("%s: no %s line to bake" % (name, key))
    return text


def archive_entries(version, envoy_version, coredns_version, build_platform):
    """{relative path: (bytes, mode)} of the archive's files."""
    major = int(VERSION_RE.match(version).group(1))
    programs = ["kuma-cp", "kuma-dp", "kumactl", "envoy"] + (["coredns"] if major < 3 else [])
    files = {}
    for name in programs:
        with open(os.path.join(HERE, name + ".py")) as f:
            text = bake(name, f.read(), version, envoy_version, coredns_version, build_platform)
        files["bin/" + name] = (("#!/usr/bin/python3\n" + text).encode(), 0o555)
    tree = "├── LICENSE\n├── NOTICE\n├── README\n├── UPGRADE.md\n├── bin\n" + "".join(
        "│   %s %s\n" % ("└──" if i == len(sorted(programs)) - 1 else "├──", p)
        for i, p in enumerate(sorted(programs))) + "├── conf\n│   └── kuma-cp.defaults.yaml\n" \
        "└── dashboards\n    └── grafana\n"
    files["README"] = (README.format(tree=tree).encode(), 0o444)
    files["LICENSE"] = (LICENSE.encode(), 0o444)
    files["NOTICE"] = (NOTICE.encode(), 0o444)
    files["UPGRADE.md"] = (UPGRADE.encode(), 0o444)
    files["conf/kuma-cp.defaults.yaml"] = (CP_DEFAULTS.encode(), 0o444)
    files["dashboards/grafana/README.md"] = (DASHBOARDS.encode(), 0o444)
    return files


def tar_bytes(top, files):
    """GNU tar --sort=name --owner=root:0 --group=root:0 --numeric-owner --mtime=@0, gzip with mtime 0."""
    dirs = {top}
    for path in files:
        parts = path.split("/")[:-1]
        for i in range(len(parts)):
            dirs.add(top + "/" + "/".join(parts[:i + 1]))
    entries = {d: None for d in dirs}
    entries.update({top + "/" + p: v for p, v in files.items()})

    def walk(directory):
        yield directory
        children = sorted(n for n in entries if os.path.dirname(n) == directory)
        for child in children:
            if entries[child] is None:
                yield from walk(child)
            else:
                yield child

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name in walk(top):
            info = tarfile.TarInfo(name)
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = 0
            if entries[name] is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            else:
                data, mode = entries[name]
                info.mode = mode
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def build(version, out, arch="amd64", os_name="linux", layout="flat", envoy_version=None, coredns_version=None):
    m = VERSION_RE.match(version or "")
    if not m:
        raise ValueError("version must look like 2.14.3, got %r" % version)
    if arch not in ARCHES:
        raise ValueError("arch must be one of %s (Kuma's names), got %r" % ("/".join(ARCHES), arch))
    if os_name not in OSES:
        raise ValueError("os must be one of %s, got %r" % ("/".join(OSES), os_name))
    major = int(m.group(1))
    envoy_version = envoy_version or DEFAULT_ENVOY.get(major, DEFAULT_ENVOY[3] if major > 3 else DEFAULT_ENVOY[2])
    coredns_version = (coredns_version or DEFAULT_COREDNS).lstrip("v")
    directory = out
    if layout == "konghq":
        directory = os.path.join(out, KONGHQ_DIR.format(os=os_name, arch=arch, version=version))
    elif layout != "flat":
        raise ValueError("layout must be flat or konghq, got %r" % layout)
    os.makedirs(directory, exist_ok=True)
    top = "kuma-%s" % version
    name = "%s-%s-%s.tar.gz" % (top, os_name, arch)
    archive = os.path.join(directory, name)
    write(archive, tar_bytes(top, archive_entries(version, envoy_version, coredns_version,
                                                  "%s/%s" % (os_name, arch))))
    digest = sha256_file(archive)
    write(archive + ".sha256", ("%s  %s\n" % (digest, name)).encode())
    pattern = re.compile(r"^%s-[a-z]+-[a-z0-9]+\.tar\.gz$" % re.escape(top))
    lines = ["%s  %s\n" % (sha256_file(os.path.join(directory, n)), n)
             for n in sorted(os.listdir(directory)) if pattern.match(n)]
    aggregate = os.path.join(directory, top + ".sha256")
    write(aggregate, "".join(lines).encode())
    return archive, archive + ".sha256", aggregate


def main(argv=None):
    p = argparse.ArgumentParser(description="Build a stand-in Kuma release archive (tests only).")
    p.add_argument("--version", required=True, help="Kuma version, e.g. 2.14.3 or 3.0.0")
    p.add_argument("--out", required=True, help="directory to write to (created if missing)")
    p.add_argument("--arch", default="amd64", choices=ARCHES)
    p.add_argument("--os", dest="os_name", default="linux", choices=OSES)
    p.add_argument("--layout", default="flat", choices=("flat", "konghq"))
    p.add_argument("--envoy-version", help="version the envoy stand-in reports (default: Kuma's for the major)")
    p.add_argument("--coredns-version", help="version the coredns stand-in reports (default %s)" % DEFAULT_COREDNS)
    args = p.parse_args(argv)
    try:
        paths = build(args.version, args.out, args.arch, args.os_name, args.layout, args.envoy_version,
                      args.coredns_version)
    except (ValueError, OSError) as e:
        p.error(str(e))
    for path in paths:
        print(os.path.abspath(path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
