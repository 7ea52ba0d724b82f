"""The structure of the site and remediate playbooks for large fleets (strategy free, serial)."""

import os

import yaml

from ansible_collections.kuma.mesh.tests.unit.paths import ROOT


def plays(name):
    with open(os.path.join(ROOT, "playbooks", name)) as f:
        return yaml.safe_load(f)


def test_site_takes_serial_and_strategy():
    (play,) = plays("site.yml")
    assert "kuma_mesh_serial" in play["serial"]
    assert "kuma_mesh_strategy" in play["strategy"] and "linear" in play["strategy"]


def test_remediate_reports_in_a_linear_play_after_the_check():
    check, report, tproxy_report, repair, fail = plays("remediate.yml")
    # the check and the repair may run with strategy free ...
    assert check["check_mode"] is True and "kuma_mesh_strategy" in check["strategy"]
    assert "kuma_mesh_strategy" in repair["strategy"] and "kuma_mesh_serial" in repair["serial"]
    # ... because the report is a play of its own, linear, after every host's check
    assert report["strategy"] == "linear" and report["hosts"] == check["hosts"]
    names = [t["name"] for t in report["tasks"]]
    assert names[-1].startswith("Report the drift") and report["tasks"][-1]["run_once"] is True
    assert "kuma.mesh.dp_drift_report" in report["tasks"][-1]["vars"]["__lines"]
    # checked = hosts that kept their drift in the check play (not this play's ansible_play_hosts)
    assert "kuma_mesh_drift" in report["tasks"][-1]["vars"]["__checked"]
    assert not any(t.get("run_once") for t in check.get("post_tasks", []))
    assert "kuma_mesh_to_repair" in repair["hosts"] and "kuma_mesh_drifted" in fail["hosts"]
    # the transparent-proxy report: its own linear play after the drift report, one line per host
    assert tproxy_report["strategy"] == "linear" and tproxy_report["hosts"] == check["hosts"]
    (line,) = tproxy_report["tasks"]
    assert line["run_once"] is True and "kuma_mesh_tproxy_check" in line["ansible.builtin.debug"]["msg"]
