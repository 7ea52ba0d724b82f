# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kuma.mesh maintainers
# Apache License 2.0 (see LICENSE)
"""Action plugin of kuma.mesh.kuma_dp_host: one module call when the host is as wanted.

The module compares the host first. Only when it reports that the release is
not installed (``archive_needed``) and the run is not in check mode is the
archive (``archive_src``, on the controller) sent to the host and the module
called again with it as ``archive_path``; that call does the whole change.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase


class ActionModule(ActionBase):
    TRANSFERS_FILES = True

    def run(self, tmp=None, task_vars=None):
        if task_vars is None:
            task_vars = dict()
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        args = self._task.args.copy()
        source = args.pop("archive_src", None)
        args.pop("archive_path", None)
        try:
            module_result = self._execute_module(
                module_name="kuma.mesh.kuma_dp_host", module_args=args, task_vars=task_vars)
            if module_result.get("archive_needed") and not module_result.get("failed") \
                    and not self._play_context.check_mode:
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
        finally:
            self._remove_tmp_path(self._connection._shell.tmpdir)
