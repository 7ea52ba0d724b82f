"""Stand-in for kuma-cp in the stand-in release archive (tests only).

Only `kuma-cp version [-a|--detailed]` is implemented ("Kuma: <version>");
`kuma-cp run` and everything else fail with exit 1: there is no control plane
in the stand-in archive.

Standard library only; runs with /usr/bin/python3 (Debian 12 and 13). build_archive.py
installs this file as bin/kuma-cp with `#!/usr/bin/python3` as first line.
"""

KUMA_VERSION = "2.14.3"  # replaced by build_archive.py
KUMA_GIT_COMMIT = "0000000000000000000000000000000000000000"  # replaced by build_archive.py
KUMA_BUILD_DATE = "1970-01-01T00:00:00Z"  # replaced by build_archive.py
BUILD_PLATFORM = ""  # replaced by build_archive.py, e.g. "linux/amd64"

import os
import platform
import sys


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


def main(argv):
    check_platform()
    args = [a for a in argv if a not in ("-a", "--detailed")]
    if args == ["version"]:
        if len(args) != len(argv):
            sys.stdout.write("Product:       Kuma\nVersion:       %s\nGit Tag:       v%s\nGit Commit:    %s\n"
                             "Build Date:    %s\n" % (KUMA_VERSION, KUMA_VERSION, KUMA_GIT_COMMIT, KUMA_BUILD_DATE))
        else:
            sys.stdout.write("Kuma: %s\n" % KUMA_VERSION)
        return 0
    if not argv or argv[0] in ("-h", "--help", "help"):
        sys.stdout.write("Usage:\n  kuma-cp [command]\n\nAvailable Commands:\n  version     Print version\n\n"
                         "(kuma.mesh test stand-in: there is no control plane; only 'version' is implemented)\n")
        return 0
    sys.stderr.write("Error: the kuma-cp stand-in implements only 'version' (got: %s)\n" % " ".join(argv))
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
