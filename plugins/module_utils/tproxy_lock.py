# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kuma.mesh maintainers
# Apache License 2.0 (see LICENSE)
"""One kuma_tproxy run at a time per host.

An exclusive ``flock`` on a file under /run, taken before the rules are read
and held until they were read back. The descriptor is handed to every
``*-restore`` the run starts, so a restore orphaned by a killed run keeps the
lock until it has finished: the next run never reads rules a dead run is
still writing.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import fcntl
import os
import time

LOCK_PATH = "/run/kuma-mesh-tproxy.lock"


class LockError(Exception):
    pass


class HostLock(object):
    def __init__(self, path=LOCK_PATH):
        self.path = path
        self.fd = None
        self.waited = 0.0

    def acquire(self, wait):
        """Take the lock, waiting at most ``wait`` seconds (0: try once)."""
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise LockError("cannot open the lock file %s: %s" % (self.path, exc.strerror))
        start = time.time()
        deadline = start + max(0.0, float(wait))
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self.waited = time.time() - start
                return self
            except (IOError, OSError) as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    self.release()
                    raise LockError("cannot lock %s: %s" % (self.path, exc.strerror))
            if time.time() >= deadline:
                self.release()
                raise LockError(
                    "another kuma_tproxy run (or a restore it started) holds %s; waited %ss (option wait). "
                    "Nothing was changed" % (self.path, wait)
                )
            time.sleep(0.05)

    def release(self):
        if self.fd is not None:
            try:
                os.close(self.fd)
            finally:
                self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()
        return False
