"""Every role's defaults/main.yml agrees with its meta/argument_specs.yml."""

import os

import pytest
import yaml

from ansible_collections.kuma.mesh.tests.unit.paths import ROOT
ROLES = sorted(d for d in os.listdir(os.path.join(ROOT, "roles"))
               if os.path.isfile(os.path.join(ROOT, "roles", d, "meta", "argument_specs.yml")))
TYPES = {"str": str, "int": int, "bool": bool, "dict": dict, "list": list, "path": str}


def _load(role):
    with open(os.path.join(ROOT, "roles", role, "defaults", "main.yml")) as f:
        defaults = yaml.safe_load(f) or {}
    with open(os.path.join(ROOT, "roles", role, "meta", "argument_specs.yml")) as f:
        options = yaml.safe_load(f)["argument_specs"]["main"]["options"]
    return defaults, options


def test_both_roles_are_checked():
    assert {"dataplane", "transparent_proxy"} <= set(ROLES)


@pytest.mark.parametrize("role", ROLES)
def test_every_default_is_documented_and_every_documented_default_is_set(role):
    defaults, options = _load(role)
    public = {k for k in defaults if not k.startswith("__")}
    assert sorted(public - set(options)) == [], "defaults without an argument spec"
    with_default = {k for k, spec in options.items() if "default" in spec}
    assert sorted(with_default - public) == [], "argument spec defaults missing from defaults/main.yml"


@pytest.mark.parametrize("role", ROLES)
def test_defaults_equal_the_documented_defaults_and_types(role):
    defaults, options = _load(role)
    for name, spec in options.items():
        if name not in defaults:
            continue
        value = defaults[name]
        if "default" in spec:
            assert value == spec["default"], name
        if value is not None and spec.get("type") in TYPES and not (isinstance(value, str) and "{{" in value):
            assert isinstance(value, TYPES[spec["type"]]), (name, value)
        if "choices" in spec and value is not None:
            assert value in spec["choices"], name


@pytest.mark.parametrize("role", ROLES)
def test_every_option_has_a_description(role):
    _defaults, options = _load(role)
    for name, spec in options.items():
        assert spec.get("description"), name
        assert spec.get("type"), name
