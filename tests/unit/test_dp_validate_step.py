"""The dataplane role's transparent-proxy proof (roles/dataplane/tasks/validate.yml): its variables, when it
runs (only after a change, never in check mode unless kuma.mesh.remediate asks), what it passes to
kuma_tproxy_check, and remediate's use of it. The conditions are rendered with Ansible's own templating; the
proof itself runs in molecule/dataplane-install (converge asserts it, per family)."""

import os

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

from ansible_collections.kuma.mesh.tests.unit.paths import ROOT

ROLE = os.path.join(ROOT, "roles", "dataplane")


def load(*path):
    with open(os.path.join(ROOT, *path)) as f:
        return yaml.safe_load(f)


ROLE_VARS = load("roles", "dataplane", "vars", "main.yml")
TASKS = load("roles", "dataplane", "tasks", "validate.yml")
SKIP_MSG, PROVE, SHOW = TASKS
DEFAULTS = load("roles", "dataplane", "defaults", "main.yml")
SPECS = load("roles", "dataplane", "meta", "argument_specs.yml")["argument_specs"]["main"]["options"]


def render(expr, **variables):
    values = dict(DEFAULTS)
    values.update({"__kuma_dp_validate_wanted": ROLE_VARS["__kuma_dp_validate_wanted"],
                   "__kuma_dp_validate_changed": ROLE_VARS["__kuma_dp_validate_changed"],
                   "__kuma_dp_check_mode": False, "__kuma_dp_rules_changed": False, "__kuma_dp_dataplane_result": {},
                   "__kuma_dp_host": {"changes": []}, "__kuma_dp_started": {}})
    values.update(variables)
    # variables holding templates (role vars, task vars) are rendered when used, as Ansible does with the role's
    values = {k: trust_as_template(v) if isinstance(v, str) and "{{" in v else v for k, v in values.items()}
    templar = Templar(loader=DataLoader(), variables=values)
    text = expr if "{{" in str(expr) else "{{ %s }}" % expr
    return templar.template(trust_as_template(text))


def runs(task, **variables):
    return all(render(condition, **variables) for condition in task["when"])


def test_the_variables_are_documented_with_the_defaults():
    for name, default in (("kuma_dp_validate_tproxy", True), ("kuma_dp_validate_tproxy_user", ""),
                          ("kuma_dp_validate_tproxy_dns_name", "")):
        assert DEFAULTS[name] == default and SPECS[name]["default"] == default, name
    assert SPECS["kuma_dp_validate_tproxy"]["type"] == "bool"


def test_the_proof_comes_after_kuma_dp_is_ready_and_before_the_prune():
    steps = [t["ansible.builtin.import_tasks"] for t in load("roles", "dataplane", "tasks", "present.yml")]
    assert steps.index("validate.yml") == steps.index("service.yml") + 1
    assert steps.index("prune.yml") > steps.index("validate.yml")


@pytest.mark.parametrize("changed, expected", [
    ({}, False),  # a no-change re-converge: no remote call
    ({"__kuma_dp_rules_changed": True}, True),
    ({"__kuma_dp_dataplane_result": {"changed": True}}, True),
    ({"__kuma_dp_host": {"changes": ["binaries"]}}, True),
    ({"__kuma_dp_started": {"changed": True}}, True),
])
def test_it_runs_only_when_the_rules_the_dataplane_or_kuma_dp_changed(changed, expected):
    assert runs(PROVE, **changed) is expected
    assert runs(SKIP_MSG, **changed) is False  # not check mode: no message
    assert "delegate_to" not in PROVE and SHOW["ansible.builtin.debug"]["msg"] == "{{ kuma_dp_tproxy_check.msg }}"


def test_a_variable_turns_it_off_and_it_needs_the_roles_rules():
    assert not runs(PROVE, kuma_dp_validate_tproxy=False, __kuma_dp_rules_changed=True)
    assert not runs(PROVE, kuma_dp_transparent_proxy=False, __kuma_dp_rules_changed=True)


def test_check_mode_skips_it_with_the_reason_unless_remediate_reports():
    assert not runs(PROVE, __kuma_dp_check_mode=True, __kuma_dp_rules_changed=True)
    assert runs(SKIP_MSG, __kuma_dp_check_mode=True, __kuma_dp_rules_changed=True)
    assert "skipped in check mode" in SKIP_MSG["ansible.builtin.debug"]["msg"]
    assert not runs(SKIP_MSG, __kuma_dp_check_mode=True)  # nothing would change: nothing to say
    # kuma.mesh.remediate: every host, check mode or not, changed or not; a failed proof is reported, not an error
    assert runs(PROVE, __kuma_dp_check_mode=True, __kuma_dp_validate_report=True)
    assert not runs(SKIP_MSG, __kuma_dp_check_mode=True, __kuma_dp_validate_report=True, __kuma_dp_rules_changed=True)
    failed = {"kuma_dp_tproxy_check": {"failed": True}}
    assert render(PROVE["failed_when"], **failed) is True
    assert render(PROVE["failed_when"], __kuma_dp_validate_report=True, **failed) is False


def args(**variables):
    base = {"kuma_dp_user": "kuma-dp", "kuma_dp_ip_family_mode": "dualstack", "__kuma_dp_major": 2,
            "__kuma_dp_name": "web-1", "__kuma_dp_dns_port": 15053,
            "__kuma_dp_redirect_ports": {"inbound": 15006, "outbound": 15001},
            "__kuma_dp_tproxy": {"redirect": {"inbound": {"port": 15006}, "outbound": {"port": 15001},
                                              "dns": {"enabled": True, "port": 15053}}},
            "kuma_dp_inbounds": [{"port": 9090, "tags": {"kuma.io/service": "web"}}]}
    base.update(variables)
    base.update(PROVE["vars"])
    module_args = PROVE["kuma.mesh.kuma_tproxy_check"]
    out = {}
    for key, value in module_args.items():
        rendered = render(value, omit="__omit__", **base) if isinstance(value, str) and "{{" in value else value
        if rendered != "__omit__":
            out[key] = rendered
    return out


def test_what_the_role_passes_to_the_module():
    a = args()
    assert a["checks"] == ["outbound", "inbound", "dns"] and "families" not in a
    # (ints from 2.19 on; ansible-core 2.18 renders them as strings, which the module's int options take)
    assert tuple(int(a[k]) for k in ("outbound_port", "inbound_port", "dns_port")) == (15001, 15006, 15053)
    assert a["test_user"] == "nobody" and a["dns_name"] == "web.mesh" and a["listener"] == "auto"
    assert args(kuma_dp_app_users=["demo-app", "other"])["test_user"] == "demo-app"
    assert args(kuma_dp_app_users=[2001])["test_user"] == "2001"
    assert args(kuma_dp_validate_tproxy_user="tester", kuma_dp_app_users=["demo-app"])["test_user"] == "tester"
    assert args(kuma_dp_ip_family_mode="ipv4")["families"] == ["ipv4"]
    off = args(__kuma_dp_redirect_ports={"inbound": 0, "outbound": 15001},
               __kuma_dp_tproxy={"redirect": {"inbound": {"port": 15006}, "outbound": {"port": 15001},
                                              "dns": {"enabled": False, "port": 15053}}})
    assert off["checks"] == ["outbound"]


def test_the_dns_name_is_a_mesh_name_of_the_service():
    assert args(kuma_dp_validate_tproxy_dns_name="backend.mesh")["dns_name"] == "backend.mesh"
    assert args(__kuma_dp_major=3, kuma_dp_labels={"kuma.io/workload": "shop"})["dns_name"] == "shop.mesh"
    assert args(__kuma_dp_major=3, kuma_dp_labels={})["dns_name"] == "web-1.mesh"
    assert "dns_name" not in args(kuma_dp_inbounds=[])


def test_remediate_runs_the_proof_on_every_checked_host_and_keeps_a_line():
    with open(os.path.join(ROOT, "playbooks", "remediate.yml")) as f:
        check = yaml.safe_load(f)[0]
    include, keep = check["post_tasks"][1:3]
    assert include["ansible.builtin.include_role"] == {"name": "kuma.mesh.dataplane", "tasks_from": "validate.yml"}
    assert include["vars"] == {"__kuma_dp_validate_report": True}
    line = keep["ansible.builtin.set_fact"]["kuma_mesh_tproxy_check"]
    assert render(line, kuma_dp_tproxy_check={"proven": {}, "msg": "transparent proxy checked - ipv4: x"}) == \
        "proven - transparent proxy checked - ipv4: x"
    assert render(line, kuma_dp_tproxy_check={"failed": False, "failed_when_result": False, "msg": "no route"}) == \
        "NOT proven - no route"
    assert render(line, kuma_dp_tproxy_check={"skipped": True}).startswith("not run (")
