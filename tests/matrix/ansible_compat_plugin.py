"""pytest plugin for scripts/test-matrix: lets tests/unit, written against the
newest ansible-core, run on the older lines too. It adds only test-side
helpers an older line lacks, each as that line's own mechanism does it, and
does nothing on a line that has them:

- ansible.module_utils.testing.patch_module_args (new in ansible-core 2.19):
  on 2.18 a module reads its arguments from basic._ANSIBLE_ARGS, the JSON
  document {"ANSIBLE_MODULE_ARGS": ...}; the context manager sets exactly that.
- ansible.module_utils._internal.is_controller (new in 2.19, which sends a
  module's warnings to the controller's display when it is True): 2.18 always
  returns warnings in the module's result, which is is_controller = False.
- ansible.template.trust_as_template (new in 2.19, which templates only
  trusted strings): 2.18 templates every string, so it returns the value.
"""

import contextlib
import json
import sys
import types
from unittest import mock

from ansible.module_utils import basic

try:
    import ansible.module_utils.testing  # noqa: F401  pylint: disable=unused-import
except ImportError:
    @contextlib.contextmanager
    def patch_module_args(args=None):
        if not isinstance(args, (dict, type(None))):
            raise TypeError("The `args` arg must be a dict or None.")
        payload = json.dumps({"ANSIBLE_MODULE_ARGS": args or {}}).encode()
        with mock.patch.object(basic, "_ANSIBLE_ARGS", payload):
            yield

    testing = types.ModuleType("ansible.module_utils.testing")
    testing.patch_module_args = patch_module_args
    sys.modules["ansible.module_utils.testing"] = testing
    import ansible.module_utils as _module_utils

    _module_utils.testing = testing

try:
    from ansible.module_utils import _internal
except ImportError:
    _internal = None
if _internal is not None and not hasattr(_internal, "is_controller"):
    _internal.is_controller = False

import ansible.template as _template  # noqa: E402  pylint: disable=wrong-import-position

if not hasattr(_template, "trust_as_template"):
    _template.trust_as_template = lambda value: value
