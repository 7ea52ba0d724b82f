"""kuma_dataplane as a module: main() with patched arguments, and once through `ansible` itself."""

import grp
import json
import os
import pwd
import stat
import subprocess
import sys

import pytest
import yaml

from ansible.module_utils import _internal as ansible_internal
from ansible.module_utils.testing import patch_module_args

from ansible_collections.kuma.mesh.plugins.modules import kuma_dataplane

from ansible_collections.kuma.mesh.tests.unit.paths import ROOT
OLD = 1000000000  # a past mtime, so any rewrite shows


@pytest.fixture(autouse=True)
def module_side(monkeypatch):
    """Run main() as on a target host, whatever other tests imported.

    Importing controller code (as test_free_form_commands does with ansible.parsing) flips
    ansible.module_utils._internal.is_controller for the whole process; module warnings then go
    to the controller's display instead of the result, as they never do in a real module process.
    """
    monkeypatch.setattr(ansible_internal, "is_controller", False)


def args_for(path, **overrides):
    args = dict(
        path=str(path),
        kuma_version="2.14.3",
        name="web-01",
        address="10.0.0.10",
        inbounds=[dict(port=8080, tags={"kuma.io/service": "web", "kuma.io/protocol": "http"})],
        expected_redirect_ports=dict(inbound=15006, outbound=15001),
    )
    args.update(overrides)
    return args


def run_module(capsys, args, check=False, diff=False):
    args = dict(args)
    if check:
        args["_ansible_check_mode"] = True
    if diff:
        args["_ansible_diff"] = True
    with patch_module_args(args):
        with pytest.raises(SystemExit) as exc:
            kuma_dataplane.main()
    result = json.loads(capsys.readouterr().out)
    result["rc"] = exc.value.code
    return result


def snapshot(path):
    st = os.stat(str(path))
    with open(str(path), "rb") as f:
        return f.read(), st.st_ino, st.st_mtime_ns, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid


def age(path):
    os.utime(str(path), (OLD, OLD))


@pytest.fixture
def dest(tmp_path):
    return tmp_path / "dataplane.yaml"


def test_writes_the_rendered_dataplane(capsys, dest):
    result = run_module(capsys, args_for(dest))
    assert result["rc"] == 0 and result["changed"] is True, result
    text = dest.read_text()
    assert text == result["content"]
    assert yaml.safe_load(text) == result["dataplane"]
    assert result["dataplane"]["networking"]["transparentProxying"] == {
        "redirectPortInbound": 15006,
        "redirectPortOutbound": 15001,
        "ipFamilyMode": "DualStack",
    }
    assert stat.S_IMODE(os.stat(str(dest)).st_mode) == 0o640
    assert result["kuma_major"] == 2 and result["path"] == str(dest)
    assert [p.name for p in dest.parent.iterdir()] == ["dataplane.yaml"]  # no temporary file left


def test_second_run_changes_nothing(capsys, dest):
    assert run_module(capsys, args_for(dest))["changed"] is True
    age(dest)
    before = snapshot(dest)
    result = run_module(capsys, args_for(dest), diff=True)
    assert result["rc"] == 0 and result["changed"] is False, result
    assert "diff" not in result
    assert snapshot(dest) == before


def test_changed_content_is_replaced_atomically_with_diff(capsys, dest):
    run_module(capsys, args_for(dest))
    old_text = dest.read_text()
    age(dest)
    result = run_module(capsys, args_for(dest, name="web-02"), diff=True)
    assert result["changed"] is True
    assert "name: web-02" in dest.read_text()
    assert os.stat(str(dest)).st_mtime_ns != OLD * 10**9
    (content_diff,) = result["diff"]
    assert content_diff["before"] == old_text and content_diff["after"] == dest.read_text()
    assert content_diff["before_header"] == content_diff["after_header"] == str(dest)


def test_check_mode_writes_nothing(capsys, dest):
    result = run_module(capsys, args_for(dest), check=True, diff=True)
    assert result["rc"] == 0 and result["changed"] is True
    assert not dest.exists()
    assert result["diff"][0]["before"] == "" and result["diff"][0]["after"] == result["content"]

    run_module(capsys, args_for(dest))
    age(dest)
    before = snapshot(dest)
    result = run_module(capsys, args_for(dest, name="web-02", mode="0600"), check=True, diff=True)
    assert result["changed"] is True
    assert "name: web-02" in result["diff"][0]["after"]
    assert result["diff"][1]["before"] == {"mode": "0640"} and result["diff"][1]["after"] == {"mode": "0600"}
    assert snapshot(dest) == before


def test_bad_input_leaves_the_file_byte_identical(capsys, dest):
    run_module(capsys, args_for(dest))
    age(dest)
    before = snapshot(dest)
    bad = args_for(dest, inbounds=[dict(port=8080, tags={"app": "web"})], address="0.0.0.0", mode="0600", owner="nobody")
    result = run_module(capsys, bad)
    assert result["rc"] == 1 and result["failed"] is True
    assert result["errors"] == [
        "address: '0.0.0.0' must not be 0.0.0.0 or ::",
        "inbounds[0].tags: 'kuma.io/service' is required for Kuma 2.x",
    ]
    assert "inbounds[0].tags: 'kuma.io/service' is required for Kuma 2.x" in result["msg"]
    assert snapshot(dest) == before
    assert [p.name for p in dest.parent.iterdir()] == ["dataplane.yaml"]


def test_bad_input_creates_no_file(capsys, dest):
    result = run_module(capsys, args_for(dest, kuma_version="3.0.0"))
    assert result["rc"] == 1
    assert result["errors"][0].startswith("inbounds[0].tags: ")
    assert not dest.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="changing the owner needs root")
def test_owner_group_and_mode_are_applied(capsys, dest):
    owner = pwd.getpwnam("nobody")
    group = grp.getgrgid(owner.pw_gid)
    result = run_module(capsys, args_for(dest, owner="nobody", group=group.gr_name, mode="0604"))
    assert result["changed"] is True
    ino, mode, uid, gid = (snapshot(dest)[i] for i in (1, 3, 4, 5))
    assert (mode, uid, gid) == (0o604, owner.pw_uid, group.gr_gid)

    # Only the attributes differ: they are corrected, the content is not rewritten.
    age(dest)
    result = run_module(capsys, args_for(dest, owner="root", group="root", mode="u=rw,g=r,o="), diff=True)
    assert result["changed"] is True
    after = snapshot(dest)
    assert (after[1], after[2]) == (ino, OLD * 10**9)
    assert (after[3], after[4], after[5]) == (0o640, 0, 0)
    (attr_diff,) = result["diff"]
    assert attr_diff["before"] == {"owner": owner.pw_uid, "group": group.gr_gid, "mode": "0604"}
    assert attr_diff["after"] == {"owner": 0, "group": 0, "mode": "0640"}
    assert run_module(capsys, args_for(dest, owner="root", group="root", mode="0640"))["changed"] is False


def test_existing_file_mode_is_corrected_to_the_default(capsys, dest):
    dest.write_bytes(b"old")
    os.chmod(str(dest), 0o666)
    run_module(capsys, args_for(dest))
    assert stat.S_IMODE(os.stat(str(dest)).st_mode) == 0o640


def test_state_absent(capsys, dest):
    run_module(capsys, args_for(dest))
    text = dest.read_text()
    result = run_module(capsys, dict(path=str(dest), state="absent"), check=True, diff=True)
    assert result["changed"] is True and dest.exists()
    assert result["diff"]["before"] == text and result["diff"]["after"] == ""
    result = run_module(capsys, dict(path=str(dest), state="absent"))
    assert result["changed"] is True and not dest.exists()
    assert run_module(capsys, dict(path=str(dest), state="absent"))["changed"] is False


def test_missing_directory_fails_cleanly(capsys, tmp_path):
    result = run_module(capsys, args_for(tmp_path / "nope" / "dataplane.yaml"))
    assert result["rc"] == 1 and "does not exist" in result["msg"]
    assert not (tmp_path / "nope").exists()


def test_name_address_and_version_are_required_when_present(capsys, dest):
    result = run_module(capsys, dict(path=str(dest), name="web-01"))
    assert result["rc"] == 1
    assert "kuma_version" in result["msg"] and "address" in result["msg"]
    assert not dest.exists()


def test_warnings_are_passed_on(capsys, dest):
    result = run_module(
        capsys, args_for(dest, kuma_version="3.0.0", inbounds=[dict(port=8080, name="http", protocol="http")])
    )
    assert result["changed"] is True
    # ansible-core 2.19 returns structured warnings; older releases plain strings.
    assert "Kuma 3.x generates no MeshService" in json.dumps(result["warnings"])


def ansible_env(tmp_path, python):
    """The environment of an `ansible` ad-hoc run of the module from this checkout, on `python`.
    Without PYTHONPATH: under ansible-test units it holds a module test's restricted view of ansible."""
    collections = tmp_path / "collections"
    (collections / "ansible_collections" / "kuma").mkdir(parents=True)
    (collections / "ansible_collections" / "kuma" / "mesh").symlink_to(ROOT)
    env = dict(
        os.environ,
        ANSIBLE_COLLECTIONS_PATH=str(collections),
        ANSIBLE_PYTHON_INTERPRETER=python,
        ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"),
        ANSIBLE_NOCOLOR="1",
    )
    env.pop("PYTHONPATH", None)
    return env


def test_through_ansible(tmp_path):
    """The real thing: the module shipped by AnsiballZ, module_utils imported from the collection."""
    dest = tmp_path / "dataplane.yaml"
    env = ansible_env(tmp_path, sys.executable)
    ansible = os.path.join(os.path.dirname(sys.executable), "ansible")
    module_args = json.dumps(args_for(dest, kuma_version="3.0.0", labels={"kuma.io/workload": "web"},
                                      inbounds=[dict(port=8080, name="http", protocol="http")]))

    def adhoc(*extra):
        cmd = [ansible, "localhost", "-c", "local", "-i", "localhost,", "-m", "kuma.mesh.kuma_dataplane", "-a", module_args]
        proc = subprocess.run(cmd + list(extra), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120, check=False)
        # "localhost | CHANGED => {...}"
        head, body = (proc.stdout.decode().split(" => ", 1) + [""])[:2]
        assert head.startswith("localhost | "), (proc.stdout, proc.stderr)
        return proc.returncode, json.loads(body)

    rc, result = adhoc("--check")
    assert rc == 0 and result["changed"] is True and not dest.exists(), result
    rc, result = adhoc()
    assert rc == 0 and result["changed"] is True, result
    assert yaml.safe_load(dest.read_text()) == result["dataplane"]
    assert dest.read_text() == result["content"]
    age(dest)
    rc, result = adhoc()
    assert rc == 0 and result["changed"] is False, result
    assert os.stat(str(dest)).st_mtime_ns == OLD * 10**9


UNIVERSAL_2X = dict(
    kuma_version="2.14.3",
    advertised_address="203.0.113.10",
    admin_port=9902,
    inbounds=[
        dict(
            port=8080,
            tags={"kuma.io/service": "web"},
            service_probe=dict(interval="10s", timeout="2s", healthy_threshold=1, unhealthy_threshold=3),
            state="NotReady",
            health=dict(ready=False),
        )
    ],
    outbounds=[dict(port=10001, tags={"kuma.io/service": "billing"})],
    kuma_dp_transparent_proxy=False,
    transparent_proxying=dict(direct_access_services=["legacy-db"]),
    metrics=dict(conf=dict(port=5670, path="/metrics", envoy=dict(used_only=True))),
    probes=dict(port=9000, endpoints=[dict(inbound_port=8080, inbound_path="/healthz", path="/8080/healthz")]),
)


def test_universal_fields_are_written_and_idempotent(capsys, dest):
    result = run_module(capsys, args_for(dest, **UNIVERSAL_2X))
    assert result["rc"] == 0 and result["changed"] is True, result
    resource = yaml.safe_load(dest.read_text())
    assert resource == result["dataplane"]
    net = resource["networking"]
    assert net["advertisedAddress"] == "203.0.113.10" and net["admin"] == {"port": 9902}
    assert net["inbound"][0]["serviceProbe"] == {
        "interval": "10s", "timeout": "2s", "unhealthyThreshold": 3, "healthyThreshold": 1, "tcp": {}
    }
    assert net["inbound"][0]["state"] == "NotReady" and net["inbound"][0]["health"] == {"ready": False}
    assert net["outbound"] == [{"port": 10001, "tags": {"kuma.io/service": "billing"}}]
    assert net["transparentProxying"]["directAccessServices"] == ["legacy-db"]
    assert resource["metrics"] == {"type": "prometheus", "conf": {"port": 5670, "path": "/metrics", "envoy": {"usedOnly": True}}}
    assert resource["probes"]["endpoints"][0] == {"inboundPort": 8080, "inboundPath": "/healthz", "path": "/8080/healthz"}
    # (ansible-core keeps warnings of earlier module runs in this process; none is about these options)
    assert "--transparent-proxy" not in json.dumps(result.get("warnings", []))
    age(dest)
    before = snapshot(dest)
    result = run_module(capsys, args_for(dest, **UNIVERSAL_2X))
    assert result["rc"] == 0 and result["changed"] is False, result
    assert snapshot(dest) == before


def test_2x_only_fields_are_refused_for_3x_and_the_file_stays(capsys, dest):
    run_module(capsys, args_for(dest))
    age(dest)
    before = snapshot(dest)
    options = dict(UNIVERSAL_2X)
    options.update(
        kuma_version="3.0.0",
        inbounds=[dict(port=8080, name="http")],
        outbounds=[dict(port=10001, backend_ref=dict(kind="MeshService", name="billing", port=80))],
    )
    args = args_for(dest, **options)
    result = run_module(capsys, args)
    assert result["rc"] == 1, result
    assert [e.split(":")[0] for e in result["errors"]] == ["advertised_address", "metrics", "probes"]
    assert all("Kuma 3.x" in e for e in result["errors"])
    assert "'203.0.113.10'" in result["errors"][0]
    assert snapshot(dest) == before


def test_argument_spec_refusals_are_clean(capsys, dest):
    for bad in (
        dict(inbounds=[dict(port=8080, tags={"kuma.io/service": "web"}, state="ready")]),
        dict(inbounds=[dict(port=8080, tags={"kuma.io/service": "web"}, health=dict())]),
        dict(outbounds=[dict(port=1, backend_ref=dict(kind="Service"))]),
        dict(admin_port="ninety"),
    ):
        result = run_module(capsys, args_for(dest, **bad))
        assert result["rc"] == 1 and result["failed"] is True and "Traceback" not in json.dumps(result), result
        assert not dest.exists()


def test_outbounds_without_kuma_dp_transparent_proxy_warn(capsys, dest):
    result = run_module(capsys, args_for(dest, outbounds=[dict(port=10001, tags={"kuma.io/service": "billing"})]))
    assert result["rc"] == 0 and "--transparent-proxy" in json.dumps(result["warnings"])
    result = run_module(capsys, args_for(dest, outbounds=[dict(port=10001, tags={"kuma.io/service": "billing"})],
                                         kuma_dp_transparent_proxy=True))
    assert result["rc"] == 1 and "Transparent Proxying mode" in result["msg"]


def test_every_example_is_valid():
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
    from ansible_collections.kuma.mesh.plugins.module_utils import dataplane

    examples = yaml.safe_load(kuma_dataplane.EXAMPLES)
    assert len(examples) >= 5
    for example in examples:
        args = example["kuma.mesh.kuma_dataplane"]
        validated = ArgumentSpecValidator(kuma_dataplane.ARGUMENT_SPEC).validate(args)
        assert not validated.error_messages, (example["name"], validated.error_messages)
        if args.get("state") == "absent":
            continue
        built = dataplane.build(validated.validated_parameters)
        assert built.errors == [], (example["name"], built.errors)


def oldest_target_python():
    """The oldest target Python the running ansible-core still supports: 3.8
    up to 2.19, 3.9 from 2.20 on (the collection's modules run on both)."""
    # (the distribution's metadata: ansible-test units lets a module's test import no more of ansible than module_utils)
    from importlib.metadata import version  # pylint: disable=import-outside-toplevel

    core = version("ansible-core")

    major_minor = tuple(int(part) for part in core.split(".")[:2])
    return os.path.expanduser("~/.pyenv/versions/%s/bin/python" % ("3.8.18" if major_minor < (2, 20) else "3.9.18"))


PY_OLDEST = oldest_target_python()


@pytest.mark.skipif(not os.path.exists(PY_OLDEST), reason="no such Python from pyenv: " + PY_OLDEST)
def test_runs_on_the_oldest_target_python_without_netaddr(tmp_path):
    """The oldest target Python: the module runs through Ansible there, with the standard library only."""
    probe = subprocess.run([PY_OLDEST, "-c", "import netaddr"], stderr=subprocess.PIPE, check=False)
    dest = tmp_path / "dataplane.yaml"
    env = ansible_env(tmp_path, PY_OLDEST)
    ansible = os.path.join(os.path.dirname(sys.executable), "ansible")
    module_args = json.dumps(args_for(dest, **dict(UNIVERSAL_2X, address="::ffff:10.0.0.10")))
    cmd = [ansible, "localhost", "-c", "local", "-i", "localhost,", "-m", "kuma.mesh.kuma_dataplane", "-a", module_args]
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120, check=False)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert probe.returncode != 0, "this Python has netaddr, so the test proves less than it says"
    assert yaml.safe_load(dest.read_text())["networking"]["address"] == "::ffff:10.0.0.10"
