# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kuma.mesh maintainers
# Apache License 2.0 (see LICENSE)
"""The one way kuma_tproxy's engine starts a process.

The module's main() hands the engine ``AnsibleModule.run_command`` (module_utils
never hold the module object); every process of a run (``*-save``, ``*-restore``,
the capability probes behind ``unshare``, ``ip``, ``nft``, ``systemctl``) goes
through one Runner, which:

- logs the command line into the result's ``commands`` before starting it;
- never lets Ansible end the run: ``check_rc=False`` and ``handle_exceptions=False``
  (with Ansible's default an OSError, a binary gone mid-run, calls fail_json and
  exits without the rollback); an OSError comes back as rc 127 and its message;
- keeps bytes exact both ways: output decoded from UTF-8 with ``surrogateescape``
  and input encoded the same way, so a foreign rule whose comment is not UTF-8
  is written back byte for byte when a rollback restores whole tables;
- hands a process its input as a file named on its command line (the restore
  tools' ``[file]`` argument; a private temporary file, removed after), never
  on its stdin: a tool that exits before reading its stdin (a lock it cannot
  get, an option it refuses) made run_command's write fail with EPIPE, and the
  tool's own exit code and message were lost (the retry on a busy xtables lock
  reads them). The logged command line leaves the file's name out;
- writes the input as it is (no newline added), expands nothing
  (``expand_user_and_vars=False``), runs every command with ``LC_ALL=C`` (the
  messages are parsed), and hands on only the descriptors asked for (``pass_fds``:
  the host lock's, for ``*-save``/``*-restore``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import tempfile

ENCODING = "utf-8"
ERRORS = "surrogateescape"
ENVIRON = {"LC_ALL": "C"}


def encode(text):
    """Text as the runner writes it to a process: the bytes it was read from."""
    return text.encode(ENCODING, ERRORS)


class Runner(object):
    """``runner(args, data=None, pass_fds=())`` -> (rc, stdout, stderr), never raises for a
    process that cannot be started; ``data``, when given, is written to a temporary file whose
    name is the command's last argument. ``run_command``: AnsibleModule.run_command, or a
    callable taking the same arguments (tests); ``log``: the list every command line is
    appended to."""

    def __init__(self, run_command, log=None):
        self.run_command = run_command
        self.log = log if log is not None else []

    def __call__(self, args, data=None, pass_fds=()):
        args = [str(a) for a in args]
        self.log.append(" ".join(args))
        if data is None:
            return self._start(args, pass_fds)
        try:
            fd, path = tempfile.mkstemp(prefix="kuma-mesh-tproxy-", suffix=".rules")
        except OSError as exc:
            return 127, "", "%s: cannot write its input to a temporary file: %s" % (args[0], exc.strerror or exc)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(encode(data))
            return self._start(args + [path], pass_fds)
        except OSError as exc:
            return 127, "", "%s: cannot write its input to a temporary file: %s" % (args[0], exc.strerror or exc)
        finally:
            try:
                os.unlink(path)
            except OSError:
                pass

    def _start(self, args, pass_fds):
        try:
            return self.run_command(
                args,
                check_rc=False,
                pass_fds=tuple(pass_fds) or None,
                environ_update=dict(ENVIRON),
                expand_user_and_vars=False,
                handle_exceptions=False,
                encoding=ENCODING,
                errors=ERRORS,
            )
        except OSError as exc:
            return 127, "", "%s: %s" % (args[0], exc.strerror or exc)
