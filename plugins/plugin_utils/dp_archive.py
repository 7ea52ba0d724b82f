# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kuma.mesh maintainers
# Apache License 2.0 (see LICENSE)
"""The Kuma release archive on the controller, for kuma.mesh.kuma_dp_host's action plugin.

Two steps, so that a host that has its release costs no download and no
hashing of the archive:

- ``expected_sha256`` - the sha256 the archive must have: ``checksum`` when
  given, else the line for the archive in its checksum file (downloaded once
  into the cache beside it, or read beside a local archive). Needed on every
  run: the host compares it with the digest recorded at install.
- ``ensure_archive`` - only when a host must install the release: the cached
  download (or the local archive) verified against that sha256; a missing or
  mismatching cached file is downloaded again into a temporary file, verified,
  then renamed into place. A local archive is never replaced, only refused.

Every write into the cache happens under an exclusive lock on
``<archive>.lock``: the forks of one run (or runs of strategy free, or two
playbooks) that need the same archive download it once, the others wait and
find it verified.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import contextlib
import errno
import fcntl
import hashlib
import os
import tempfile

# the digest and its grammar as the host side checks them
from ansible_collections.kuma.mesh.plugins.module_utils.kuma_dp_host import SHA256_RE, sha256_of

CHUNK = 1024 * 1024

# The role's __kuma_dp_archive: where the archive comes from and goes to.
Archive = collections.namedtuple("Archive", ["name", "path", "url", "checksum_url", "checksum", "local", "timeout"])


class ArchiveError(Exception):
    """The archive cannot be had or does not verify; the message says which and how to fix it."""


def archive_from(value):
    """An Archive from the task's ``archive`` option (a dict), or ArchiveError naming what is wrong."""
    if not isinstance(value, dict):
        raise ArchiveError("archive: expected a dict, got %r" % (value,))
    missing = [key for key in ("name", "path") if not value.get(key)]
    if missing:
        raise ArchiveError("archive: %s missing" % ", ".join(missing))
    checksum = str(value.get("checksum") or "").lower()
    if checksum.startswith("sha256:"):
        checksum = checksum[len("sha256:"):]
    if checksum and not SHA256_RE.match(checksum):
        raise ArchiveError("archive.checksum: %r is not a sha256 (64 hex digits, optionally after 'sha256:')"
                           % (value.get("checksum"),))
    local = value.get("local", False)
    if not isinstance(local, bool):
        local = str(local).lower() in ("true", "yes", "1")
    try:
        timeout = int(60 if value.get("timeout") is None else value["timeout"])
    except (TypeError, ValueError):
        raise ArchiveError("archive.timeout: %r is not a number of seconds" % (value.get("timeout"),))
    if not 0 < timeout <= 86400:
        raise ArchiveError("archive.timeout: %r is not between 1 and 86400 seconds" % (value.get("timeout"),))
    path = os.path.expanduser(str(value["path"]))
    if not local and not value.get("url"):
        raise ArchiveError("archive.url: missing for the download of %s" % value["name"])
    return Archive(name=str(value["name"]), path=path, url=str(value.get("url") or ""),
                   checksum_url=str(value.get("checksum_url") or value.get("url", "") + ".sha256"),
                   checksum=checksum, local=local, timeout=timeout)


def sha256_from_checksum_file(text, names):
    """The sha256 of the archive from a checksum file's text, '' when it has none.

    Lines are "<hex>  <name>" (sha256sum, or "<hex> *<name>" in binary mode) and
    the one naming one of ``names`` counts; a file of a single line with a lone
    "<hex>" is taken as the archive's.
    """
    if not text:
        return ""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    names = [str(n) for n in (names if isinstance(names, (list, tuple)) else [names])]
    for line in lines:
        fields = line.split()
        candidate = fields[0].lower()
        if not SHA256_RE.match(candidate):
            continue
        if len(fields) == 1 and len(lines) == 1:
            return candidate
        if len(fields) == 2 and fields[1].lstrip("*") in names:
            return candidate
    return ""


@contextlib.contextmanager
def cache_lock(path):
    """An exclusive lock on <path>.lock, its directory made first (0755)."""
    directory = os.path.dirname(path) or "."
    try:
        os.makedirs(directory, 0o755)
    except OSError as exc:
        if exc.errno != errno.EEXIST:
            raise ArchiveError("cannot create the download cache %s: %s" % (directory, exc.strerror))
    fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def download(url, dest, timeout, fetch, sha256=None):
    """url into dest through a temporary file beside it, renamed into place only when
    complete and, with sha256, only when its digest is that one."""
    fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(dest), dir=os.path.dirname(dest) or ".")
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                response = fetch(url, timeout)
                for chunk in iter(lambda: response.read(CHUNK), b""):
                    digest.update(chunk)
                    out.write(chunk)
            except Exception as exc:  # pylint: disable=broad-except  # urllib, socket, ssl: all say why
                raise ArchiveError("downloading %s failed: %s" % (url, exc))
        if sha256 is not None and digest.hexdigest() != sha256:
            raise ArchiveError("%s downloaded from %s has sha256 %s, expected %s (the checksum): not kept, "
                               "not installed" % (os.path.basename(dest), url, digest.hexdigest(), sha256))
        os.chmod(tmp, 0o644)
        os.rename(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def expected_sha256(archive, fetch):
    """The sha256 the archive must have (see the module docstring)."""
    if archive.checksum:
        return archive.checksum
    checksum_path = archive.path + ".sha256"
    if not archive.local and not os.path.isfile(checksum_path):
        with cache_lock(archive.path):
            if not os.path.isfile(checksum_path):
                download(archive.checksum_url, checksum_path, archive.timeout, fetch)
    try:
        with open(checksum_path) as f:
            text = f.read(1024 * 1024)
    except (IOError, OSError, UnicodeDecodeError):
        text = ""
    found = sha256_from_checksum_file(text, [archive.name, os.path.basename(archive.path)])
    if not found:
        if archive.local:
            raise ArchiveError("No sha256 for %s: set kuma_dp_checksum, or put its sha256sum line in %s on the "
                               "controller." % (archive.name, checksum_path))
        raise ArchiveError("No sha256 for %s: set kuma_dp_checksum, or check %s (cached as %s): it has no line "
                           "for the archive." % (archive.name, archive.checksum_url, checksum_path))
    return found


def ensure_archive(archive, sha256, fetch):
    """The path of the archive on the controller, verified against sha256 (see the module docstring)."""
    if archive.local:
        if not os.path.isfile(archive.path):
            raise ArchiveError("%s on the controller does not exist" % archive.path)
        got = sha256_of(archive.path)
        if got != sha256:
            raise ArchiveError("%s on the controller has sha256 %s, expected %s: refusing to install it"
                               % (archive.path, got, sha256))
        return archive.path
    with cache_lock(archive.path):
        if not (os.path.isfile(archive.path) and sha256_of(archive.path) == sha256):
            download(archive.url, archive.path, archive.timeout, fetch, sha256)
    return archive.path
