# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kuma.mesh maintainers
# Apache License 2.0 (see LICENSE)
"""Action plugin of kuma.mesh.kuma_dp_host: one module call when the host is as wanted.

With ``archive`` (the role's), the sha256 the release archive must have is
worked out on the controller first (``kuma_dp_checksum``, or the checksum file,
downloaded once into the cache) and passed as ``archive_sha256``. The module
compares the host. Only when it reports that the release is not installed
(``archive_needed``) is the archive fetched into the controller's cache (once
for all forks, under a lock) and verified, in check mode too; outside check
mode it is then sent to the host and the module called again with it as
``archive_path``; that call does the whole change. A host that has its release
costs no download and no hashing of the archive.

The result also says whether the task ran in check mode (``check_mode``):
``--check``, or ``check_mode: true`` on the task, block, role or play.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible.errors import AnsibleActionFail
from ansible.module_utils.urls import open_url
from ansible.plugins.action import ActionBase

from ansible_collections.kuma.mesh.plugins.plugin_utils import dp_archive


def fetch(url, timeout):
    return open_url(url, timeout=timeout, http_agent="kuma.mesh")


class ActionModule(ActionBase):
    # No temporary directory up front (two more commands on the host per run, with
    # pipelining): one is made only when the archive is sent.
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        if task_vars is None:
            task_vars = dict()
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        args = self._task.args.copy()
        source = args.pop("archive_src", None)
        args.pop("archive_path", None)
        archive = args.pop("archive", None)
        check_mode = bool(self._play_context.check_mode)
        result["check_mode"] = check_mode
        try:
            if archive is not None:
                archive = dp_archive.archive_from(archive)
                args["archive_sha256"] = dp_archive.expected_sha256(archive, fetch)
                source = archive.path
            module_result = self._execute_module(
                module_name="kuma.mesh.kuma_dp_host", module_args=args, task_vars=task_vars)
            needed = module_result.get("archive_needed") and not module_result.get("failed")
            if needed and archive is not None:
                dp_archive.ensure_archive(archive, args["archive_sha256"], fetch)
            if needed and not check_mode:
                if not source:
                    raise AnsibleActionFail("kuma_dp_host: version %s is not installed and no archive_src was given"
                                            % args.get("version"))
                source = os.path.expanduser(source)
                if not os.path.isfile(source):
                    raise AnsibleActionFail("kuma_dp_host: archive_src %s is not a file on the controller" % source)
                tmpdir = self._connection._shell.tmpdir or self._make_tmp_path()
                remote = self._connection._shell.join_path(tmpdir, "kuma-release.tar.gz")
                self._transfer_file(source, remote)
                self._fixup_perms2((tmpdir, remote))
                args["archive_path"] = remote
                module_result = self._execute_module(
                    module_name="kuma.mesh.kuma_dp_host", module_args=args, task_vars=task_vars)
            result.update(module_result)
            return result
        except dp_archive.ArchiveError as exc:
            raise AnsibleActionFail(str(exc))
        finally:
            self._remove_tmp_path(self._connection._shell.tmpdir)
