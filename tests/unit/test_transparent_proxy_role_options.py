"""The transparent_proxy role passes every kuma_tproxy option through: its whitelist
(vars/main.yml) is the module's top-level options but state, backend and the
persistence options (the role's own), and tasks/apply.yml passes each of them, and
only them, to the module."""

import os

import yaml

from ansible_collections.kuma.mesh.plugins.module_utils.tproxy import ARGUMENT_SPEC

from ansible_collections.kuma.mesh.tests.unit.paths import ROOT

ROLE = os.path.join(ROOT, "roles", "transparent_proxy")
ROLE_OWN = {"state", "backend", "other_backend", "firewalld_ipv6_redirect", "firewalld_rfc3964_backup",
            "boot_persistence"}


def load(*path):
    with open(os.path.join(ROLE, *path)) as f:
        return yaml.safe_load(f)


def test_whitelist_is_the_modules_options():
    whitelist = load("vars", "main.yml")["__kuma_tproxy_options"]
    assert len(whitelist) == len(set(whitelist))
    assert set(whitelist) == set(ARGUMENT_SPEC) - ROLE_OWN


def test_apply_passes_every_whitelisted_option():
    whitelist = set(load("vars", "main.yml")["__kuma_tproxy_options"])
    (task,) = [t for t in load("tasks", "apply.yml") if "kuma.mesh.kuma_tproxy" in t]
    args = task["kuma.mesh.kuma_tproxy"]
    assert set(args) == whitelist | ROLE_OWN
    for name in whitelist:
        assert args[name] == "{{ kuma_tproxy.%s | default(omit) }}" % name


def test_argument_specs_name_every_whitelisted_option():
    whitelist = load("vars", "main.yml")["__kuma_tproxy_options"]
    spec = load("meta", "argument_specs.yml")["argument_specs"]["main"]["options"]["kuma_tproxy"]
    text = " ".join(spec["description"])
    assert set(whitelist) == set(n for n in set(ARGUMENT_SPEC) - ROLE_OWN if "C(%s)" % n in text)
