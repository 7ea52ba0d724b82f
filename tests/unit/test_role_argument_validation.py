"""A wrong-typed role variable fails in Ansible's role argument validation, naming the
variable, before any task touches a host; a value of the right type that the modules
refuse (Ansible's int check takes ' 5678 ') fails in the dataplane role's input check,
on the controller; a filter's error reaches the play as a task failure naming the value.

One real ansible-playbook run (about 2 s): one localhost alias per case, each with its
bad variable in the inventory, so every host fails on its own. The hosts' Python is
/bin/false and the run is in check mode, so a case that wrongly passed validation fails
at the first remote task instead of touching this machine.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

DATAPLANE = {
    "dp_inbounds": ({"kuma_dp_inbounds": "x"}, "kuma_dp_inbounds"),
    "dp_uid": ({"kuma_dp_uid": "abc"}, "kuma_dp_uid"),
    "dp_state": ({"kuma_dp_state": "gone"}, "kuma_dp_state"),
    "dp_tproxy": ({"kuma_dp_tproxy": [1]}, "kuma_dp_tproxy"),
    "dp_extra_args": ({"kuma_dp_extra_args": {"a": 1}}, "kuma_dp_extra_args"),
    "dp_transparent_proxy": ({"kuma_dp_transparent_proxy": "maybe"}, "kuma_dp_transparent_proxy"),
    "dp_labels": ({"kuma_dp_labels": ["a"]}, "kuma_dp_labels"),
}
TPROXY = {
    "tp_tproxy": ({"kuma_tproxy": [1]}, "kuma_tproxy"),
    "tp_persistence": ({"kuma_tproxy_persistence": "iptables"}, "kuma_tproxy_persistence"),
    "tp_packages": ({"kuma_tproxy_manage_packages": "maybe"}, "kuma_tproxy_manage_packages"),
    "tp_state": ({"kuma_tproxy_state": ["present"]}, "kuma_tproxy_state"),
}
# right type for Ansible, refused by the role's own check (the modules' grammar)
STRICT = {
    "strict_uid": ({"kuma_dp_uid": " 5678 "}, "kuma_dp_uid must be 1-2147483646"),
    "strict_port": ({"kuma_dp_readiness_port": "\u0669\u0669\u0660\u0662"}, "kuma_dp_readiness_port must be a port"),
}
# valid, with the architecture and the address given (no facts to gather): every controller-side step of
# the role's facts must pass, with the values ansible-core hands filters (tagged str and int subclasses)
GOOD = {"dp_good": ({"kuma_dp_arch": "amd64", "kuma_dp_address": "192.0.2.1", "kuma_dp_version": "2.14.3",
                     "kuma_dp_tproxy": {"redirect": {"dns": {"enabled": True}}}}, "")}
CONTROLLER_FACTS = ("Check the role's variables", "Work out the release archive, the Dataplane's address and the "
                    "rules' settings", "Work out kuma-dp's settings from the rules' settings")
VALIDATING = "Validating arguments against arg spec"
# One play on every host; each host runs only its own case. "keeper" runs none, so the play
# (where every other host fails) goes on to the next task instead of ending the run.
INCLUDES = ("Include the dataplane role", "Include the transparent_proxy role")
PLAYBOOK = [{"hosts": "all", "gather_facts": False, "tasks": [
    {"name": INCLUDES[0], "ansible.builtin.include_role": {"name": "kuma.mesh.dataplane"},
     "when": "inventory_hostname in groups.dataplane"},
    {"name": INCLUDES[1], "ansible.builtin.include_role": {"name": "kuma.mesh.transparent_proxy"},
     "when": "inventory_hostname in groups.transparent_proxy"},
    {"name": "Quote a dict", "ansible.builtin.debug": {"msg": "{{ {'a': 1} | kuma.mesh.dp_systemd_quote }}"},
     "when": "inventory_hostname in groups.filter"},
]}]
COMMON = {"ansible_connection": "local", "ansible_python_interpreter": "/bin/false",
          "kuma_dp_cp_address": "https://cp:5678"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    playbook_cmd = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    if not os.path.exists(playbook_cmd):
        playbook_cmd = shutil.which("ansible-playbook")
    if not playbook_cmd:
        pytest.skip("ansible-playbook is not installed")
    tmp = tmp_path_factory.mktemp("argspec")
    groups = {"dataplane": dict(dict(DATAPLANE, **STRICT), **GOOD), "transparent_proxy": TPROXY, "filter": {"f": ({}, "")},
              "keeper": {"keeper": ({}, "")}}
    inventory = {"all": {"vars": COMMON, "children": dict(
        (group, {"hosts": dict((host, case[0]) for host, case in cases.items())}) for group, cases in groups.items())}}
    (tmp / "inventory.yml").write_text(yaml.safe_dump(inventory))
    (tmp / "playbook.yml").write_text(yaml.safe_dump(PLAYBOOK, sort_keys=False))
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json", ANSIBLE_LOCAL_TEMP=str(tmp / "tmp"),
               ANSIBLE_HOME=str(tmp / "home"), ANSIBLE_RETRY_FILES_ENABLED="false", ANSIBLE_NOCOLOR="1")
    proc = subprocess.run([playbook_cmd, "-i", str(tmp / "inventory.yml"), "--check", str(tmp / "playbook.yml")],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, env=env,
                          cwd=str(tmp), timeout=300, check=False)
    assert proc.returncode != 0, proc.stdout[-3000:]
    start = proc.stdout.find("{")
    assert start >= 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    report = json.loads(proc.stdout[start:])
    ran = {}  # host -> [(task name, result)]
    for play in report["plays"]:
        for task in play["tasks"]:
            for host, result in task["hosts"].items():
                if result.get("skipped") or task["task"]["name"] in INCLUDES:
                    continue
                # "kuma.mesh.dataplane : Validating arguments against arg spec 'main' - ..." -> the task's own words
                name = task["task"]["name"].split(" : ", 1)[-1]
                ran.setdefault(host, []).append((VALIDATING if name.startswith(VALIDATING) else name, result))
    return ran


@pytest.mark.parametrize("host", sorted(DATAPLANE) + sorted(TPROXY))
def test_a_wrong_type_fails_the_validation_naming_the_variable_and_nothing_else_runs(run, host):
    (bad, name) = dict(DATAPLANE, **TPROXY)[host]
    tasks = run[host]
    assert [task[0] for task in tasks] == [VALIDATING], tasks
    result = tasks[0][1]
    assert result.get("failed"), result
    text = " ".join([result.get("msg", "")] + list(result.get("argument_errors", [])))
    assert name in text, result


@pytest.mark.parametrize("host", sorted(STRICT))
def test_a_value_outside_the_modules_grammar_fails_the_roles_check_on_the_controller(run, host):
    needle = STRICT[host][1]
    tasks = run[host]
    names = [task[0] for task in tasks]
    assert names[0] == VALIDATING and not tasks[0][1].get("failed"), tasks  # Ansible's int check takes it
    # then controller-side tasks only (a remote one would have failed: Python is /bin/false), the
    # role's check last: it failed, and nothing ran after it
    assert names[-1] == "Check the role's variables" and not any(task[1].get("failed") for task in tasks[:-1]), names
    assert tasks[-1][1].get("failed") and needle in tasks[-1][1]["msg"], tasks[-1][1]


def test_valid_variables_pass_every_controller_side_step_of_the_facts(run):
    tasks = dict(run["dp_good"])
    for name in (VALIDATING,) + CONTROLLER_FACTS:
        assert name in tasks and not tasks[name].get("failed"), (name, tasks.get(name))
    assert "Gather the facts the role needs (architecture, default address)" not in tasks


def test_a_filter_error_is_a_task_failure_naming_the_value(run):
    (name, result), = run["f"]
    assert result.get("failed"), result
    assert "dp_systemd_quote: {'a': 1} is not a string" in result["msg"], result
