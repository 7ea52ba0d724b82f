"""Every free-form command task in the repository's YAML parses the way
Ansible parses it when it loads the task.

Ansible splits a free-form `shell:` or `command:` string into arguments
before it runs anything; an apostrophe in a shell comment ("the role's")
is an unbalanced quote there and fails the whole play at load time.
ansible-lint does not load tasks files included at run time, so without this
test such a slip shows only at the end of a long Molecule scenario.
"""

import glob
import os

import pytest
import yaml
from ansible.parsing.splitter import parse_kv

from ansible_collections.kuma.mesh.tests.unit.paths import ROOT
FREE_FORM_MODULES = {"shell", "command", "raw", "script"}
SKIP_DIRS = {".venv", ".cache", "tests/output", "bench/results"}


def yaml_files():
    for path in sorted(glob.glob(os.path.join(ROOT, "**", "*.yml"), recursive=True)):
        rel = os.path.relpath(path, ROOT)
        if not any(rel == d or rel.startswith(d + os.sep) for d in SKIP_DIRS):
            yield rel


def free_form_commands(node, where=""):
    """(task name, module, string) of every free-form command under node."""
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(key, str) and key.rsplit(".", 1)[-1] in FREE_FORM_MODULES and isinstance(value, str):
                yield node.get("name", where), key, value
            yield from free_form_commands(value, node.get("name", where))
    elif isinstance(node, list):
        for item in node:
            yield from free_form_commands(item, where)


def test_free_form_parser_rejects_an_apostrophe_in_a_comment():
    """The check below can fail: this is the slip it exists for."""
    with pytest.raises(Exception, match="unbalanced"):
        parse_kv("set -e\n# the role's file\necho done\n", check_raw=True)


@pytest.mark.parametrize("path", list(yaml_files()))
def test_free_form_commands_parse(path):
    with open(os.path.join(ROOT, path)) as f:
        try:
            documents = list(yaml.safe_load_all(f))
        except yaml.YAMLError:
            pytest.skip("not plain YAML (a Jinja template)")
    for document in documents:
        for name, module, command in free_form_commands(document):
            try:
                parse_kv(command, check_raw=True)
            except Exception as err:  # Ansible raises AnsibleParserError
                pytest.fail(f"{path}: task {name!r}: free-form {module} does not parse: {err}")
