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
- writes the input as it is (``binary_data``: no newline added), expands nothing
  (``expand_user_and_vars=False``), runs every command with ``LC_ALL=C`` (the
  messages are parsed), and hands on only the descriptors asked for (``pass_fds``:
  the host lock's, for ``*-save``/``*-restore``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

ENCODING = "utf-8"
ERRORS = "surrogateescape"
ENVIRON = {"LC_ALL": "C"}


def encode(text):
    """Text as the runner writes it to a process: the bytes it was read from."""
    return text.encode(ENCODING, ERRORS)


class Runner(object):
    """``runner(args, data=None, pass_fds=())`` -> (rc, stdout, stderr), never raises for a
    process that cannot be started. ``run_command``: AnsibleModule.run_command, or a
    callable taking the same arguments (tests); ``log``: the list every command line is
    appended to."""

    def __init__(self, run_command, log=None):
        self.run_command = run_command
        self.log = log if log is not None else []

    def __call__(self, args, data=None, pass_fds=()):
        args = [str(a) for a in args]
        self.log.append(" ".join(args))
        payload = None
        if data is not None:
            # run_command leaves stdin inherited for empty input: a blank line is
            # nothing to every tool that reads its input here (*-restore)
            payload = encode(data) or b"\n"
        try:
            return self.run_command(
                args,
                check_rc=False,
                data=payload,
                binary_data=True,
                pass_fds=tuple(pass_fds) or None,
                environ_update=dict(ENVIRON),
                expand_user_and_vars=False,
                handle_exceptions=False,
                encoding=ENCODING,
                errors=ERRORS,
            )
        except OSError as exc:
            return 127, "", "%s: %s" % (args[0], exc.strerror or exc)
