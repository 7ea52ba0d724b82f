"""kuma_dp_host's logic (plugins/module_utils/kuma_dp_host.py): validation, planning, safe unpacking."""

import io
import os
import tarfile

import pytest

from ansible_collections.kuma.mesh.plugins.module_utils import kuma_dp_host as h

NOFILE = h.FileState(False, None, None, None, None, False)


def spec(**changes):
    base = dict(
        user="kuma-dp", group="kuma-dp", uid=5678, gid=5678, adopt_user=False, app_users=[],
        config_dir="/etc/kuma-dp", token="tok\n", ca_cert=None, environment={}, tproxy_config=None,
        unit_path="/etc/systemd/system/kuma-dp.service", unit_content="[Unit]\n", unit_name="kuma-dp.service",
        install_dir="/opt/kuma", version="2.14.3", binaries=["kuma-dp", "envoy"], archive_top="kuma-2.14.3",
        archive_sha256="a" * 64, archive_path=None, readiness_url="", refuse_local_cp=True, after_firewalld="no",
        state="present", remove_user=False,
    )
    base.update(changes)
    return h.Spec(**base)


def f(content, uid=0, gid=0, mode=0o644):
    return h.FileState(True, content, uid, gid, mode, True)


def converged(s, **changes):
    files = {
        "config_dir": h.FileState(True, None, 0, 5678, 0o750, False),
        "install_dir": h.FileState(True, None, 0, 0, 0o755, False),
        "version_dir": h.FileState(True, None, 0, 0, 0o755, False),
        "token": f(b"tok\n", 5678, 5678, 0o600), "ca_cert": NOFILE, "env": NOFILE, "tproxy": NOFILE,
        "unit": f(b"[Unit]\n"),
    }
    files.update(changes.pop("files", {}))
    base = dict(
        account=h.Account("kuma-dp", 5678, 5678, h.NOHOME, h.NOLOGIN, ()),
        group=h.Group("kuma-dp", 5678, ()), uid_owner="kuma-dp", gid_owner="kuma-dp", app_uids={},
        files=files, marker=f(h.marker_text(s).encode()), binaries_ok=True, link="2.14.3", old_versions=(),
        installed_versions=("/opt/kuma/2.14.3",), install_entries=("2.14.3", "current"),
        unit_active="active", unit_enabled="enabled", local_cp=(), firewalld_enabled=False,
    )
    base.update(changes)
    return h.HostState(**base)


def test_a_converged_host_needs_nothing():
    s = spec()
    p = h.plan(s, converged(s))
    assert p.steps == () and p.changes == [] and not p.restart and not p.archive_needed


def test_a_new_host_gets_everything_and_needs_the_archive():
    s = spec()
    host = converged(s, account=None, group=None, uid_owner=None, gid_owner=None,
                     files={k: NOFILE for k in ("config_dir", "install_dir", "version_dir", "token", "unit")},
                     marker=NOFILE, binaries_ok=False, link=None, unit_active="inactive", unit_enabled="")
    p = h.plan(s, host)
    kinds = [step.kind for step in p.steps]
    assert kinds[:2] == ["groupadd", "useradd"]
    assert "unpack" in kinds and "link" in kinds and "enable" in kinds and "daemon-reload" in kinds
    assert p.archive_needed and p.restart
    assert set(p.changes) == {"user", "config", "credentials", "binaries", "unit", "service"}


@pytest.mark.parametrize("account", [
    h.Account("kuma-dp", 5678, 5678, "/home/kuma-dp", "/bin/bash", ()),
    h.Account("kuma-dp", 1000, 5678, h.NOHOME, h.NOLOGIN, ()),
    h.Account("kuma-dp", 5678, 5678, h.NOHOME, h.NOLOGIN, ("docker",)),
])
def test_an_account_that_is_not_ours_is_refused_unless_adopted(account):
    s = spec()
    with pytest.raises(h.HostError, match="kuma_dp_adopt_user"):
        h.plan(s, converged(s, account=account))
    p = h.plan(spec(adopt_user=True), converged(s, account=account))
    assert not any(step.kind in ("useradd", "groupadd") for step in p.steps)


def test_uid_0_is_refused_even_when_adopted():
    s = spec(adopt_user=True)
    with pytest.raises(h.HostError, match="uid 0"):
        h.plan(s, converged(s, account=h.Account("kuma-dp", 0, 0, "/root", "/bin/sh", ())))


def test_a_taken_uid_is_refused():
    s = spec()
    with pytest.raises(h.HostError, match="5678 already belongs to the account www"):
        h.plan(s, converged(s, account=None, group=None, uid_owner="www", gid_owner=None))


def test_validate_names_options():
    assert h.validate(spec()) == []
    found = h.validate(spec(user="root", uid=0, environment={"A": "x\ny", "1B": "z"}, version="x"))
    text = "\n".join(found)
    for needle in ("user: 'root'", "uid: 0", "value of A has a control character", "'1B' is not a variable",
                   "version: 'x'"):
        assert needle in text


def test_app_user_conflicts():
    uids = {"alice": 1000, "kdp": 5678}
    assert h.app_user_conflicts("kuma-dp", [5678], ["alice", "kuma-dp", "kdp", "5678", 42, "nobody"],
                                uids.get) == ["kuma-dp", "kdp", "5678"]


def test_the_app_user_being_the_dp_user_is_refused():
    s = spec(app_users=["web", "5678"])
    with pytest.raises(h.HostError, match="app_users: 5678 is the kuma-dp user"):
        h.plan(s, converged(s, app_uids={"web": 1000, "5678": 5678}))


def test_a_local_kuma_cp_is_refused():
    s = spec()
    with pytest.raises(h.HostError, match="kuma-cp process runs on this host"):
        h.plan(s, converged(s, local_cp=(42,)))


def test_environment_goes_to_a_root_0600_file_and_reloads():
    s = spec(environment={"B": 'a"b$c`d\\e', "A": 1})
    p = h.plan(s, converged(s))
    write = [step for step in p.steps if step.path == "/etc/kuma-dp/kuma-dp.env"][0]
    assert (write.data["uid"], write.data["gid"], write.data["mode"]) == (0, 0, 0o600)
    assert write.data["content"].decode().splitlines()[1:] == ['A="1"', 'B="a\\"b\\$c\\`d\\\\e"']
    assert any(step.kind == "daemon-reload" for step in p.steps) and p.restart
    # the diff shows no values
    assert all("a\"b" not in d["after"] for d in p.diffs)


def test_old_versions_alone_change_nothing_and_a_stopped_disabled_unit_is_service():
    s = spec()
    p = h.plan(s, converged(s, old_versions=("/opt/kuma/2.14.2",), unit_enabled="disabled"))
    assert p.changes == ["service"] and not p.restart


def _archive(tmp_path, members):
    path = str(tmp_path / "a.tar.gz")
    with tarfile.open(path, "w:gz") as tar:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(data)
                info.mode = 0o755
                tar.addfile(info, io.BytesIO(data))
            elif kind == "sym":
                info.type = tarfile.SYMTYPE
                info.linkname = data
                tar.addfile(info)
            elif kind == "chr":
                info.type = tarfile.CHRTYPE
                tar.addfile(info)
    return path


@pytest.mark.parametrize("kind, data, needle", [
    ("sym", "/usr/bin/anything", "kuma-2.14.3/bin/envoy is a symbolic link to /usr/bin/anything"),
    ("chr", None, "kuma-2.14.3/bin/envoy is a device"),
])
def test_only_regular_members_are_installed(tmp_path, kind, data, needle):
    path = _archive(tmp_path, [("kuma-2.14.3/bin/kuma-dp", "file", b"x"), ("kuma-2.14.3/bin/envoy", kind, data)])
    with tarfile.open(path) as tar:
        with pytest.raises(h.HostError, match=needle):
            h.safe_members(tar, "kuma-2.14.3", ["kuma-dp", "envoy"])


def test_a_missing_member_is_named(tmp_path):
    path = _archive(tmp_path, [("kuma-2.14.3/bin/kuma-dp", "file", b"x"), ("../evil", "file", b"y")])
    with tarfile.open(path) as tar:
        with pytest.raises(h.HostError, match="no envoy in the archive"):
            h.safe_members(tar, "kuma-2.14.3", ["kuma-dp", "envoy"])


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_apply_installs_files_binaries_and_link(tmp_path):
    archive = _archive(tmp_path, [("kuma-2.14.3/bin/kuma-dp", "file", b"dp"), ("kuma-2.14.3/bin/envoy", "file", b"ev"),
                                  ("kuma-2.14.3/bin/other", "sym", "/etc/shadow")])
    sha = h.sha256_of(archive)
    s = spec(config_dir=str(tmp_path / "etc"), install_dir=str(tmp_path / "opt"),
             unit_path=str(tmp_path / "unit.service"), archive_path=archive, archive_sha256=sha,
             environment={"A": "b"}, tproxy_config={"ipFamilyMode": "ipv4"})
    host = h.HostState(
        account=h.Account("kuma-dp", 5678, 5678, h.NOHOME, h.NOLOGIN, ()), group=h.Group("kuma-dp", 5678, ()),
        uid_owner="kuma-dp", gid_owner="kuma-dp", app_uids={},
        files=dict((k, NOFILE) for k in ("config_dir", "install_dir", "version_dir", "token", "ca_cert", "env",
                                         "tproxy", "unit")),
        marker=NOFILE, binaries_ok=False, link=None, old_versions=(), installed_versions=(), install_entries=(),
        unit_active="active", unit_enabled="enabled", local_cp=(), firewalld_enabled=False)
    p = h.plan(s, host)
    calls = []
    h.apply(s, p, lambda argv: (calls.append(argv), (0, "", ""))[1])
    assert calls == [["systemctl", "daemon-reload"]]
    binary = tmp_path / "opt" / "2.14.3" / "bin" / "kuma-dp"
    assert binary.read_bytes() == b"dp" and oct(binary.stat().st_mode & 0o7777) == "0o555"
    assert not (tmp_path / "opt" / "2.14.3" / "bin" / "other").exists()
    assert os.readlink(str(tmp_path / "opt" / "current")) == "2.14.3"
    env = tmp_path / "etc" / "kuma-dp.env"
    assert oct(env.stat().st_mode & 0o777) == "0o600" and env.stat().st_uid == 0
    # a second pass finds nothing to do
    again = h.gather(s._replace(archive_path=None), lambda argv: (0, "Id=kuma-dp.service\nActiveState=active\nUnitFileState=enabled\n", ""))
    again = again._replace(account=host.account, group=host.group, uid_owner="kuma-dp", gid_owner="kuma-dp")
    assert h.plan(s._replace(archive_path=None), again).steps == ()


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_a_wrong_archive_digest_installs_nothing(tmp_path):
    archive = _archive(tmp_path, [("kuma-2.14.3/bin/kuma-dp", "file", b"dp"), ("kuma-2.14.3/bin/envoy", "file", b"e")])
    s = spec(install_dir=str(tmp_path), archive_path=archive, archive_sha256="b" * 64)
    with pytest.raises(h.HostError, match="expected b{64}"):
        h.unpack(s, str(tmp_path))
    assert os.listdir(str(tmp_path)) == ["a.tar.gz"]


def test_without_the_digest_an_existing_marker_is_kept():
    s = spec(archive_sha256="")
    host = converged(spec(), marker=f(b"{}"))
    assert h.plan(s, host).steps == ()
    assert [step.kind for step in h.plan(spec(), host).steps] == ["write"]


def test_probe_ready_is_false_when_nothing_answers():
    assert h.probe_ready("http://127.0.0.1:1/ready", timeout=0.5) is False
    assert h.probe_ready("") is False


@pytest.mark.parametrize("mode, enabled, expected", [
    ("auto", True, "After=a.target firewalld.service\n"),
    ("auto", False, "After=a.target\n"),
    ("yes", False, "After=a.target firewalld.service\n"),
    ("no", True, "After=a.target\n"),
])
def test_after_firewalld(mode, enabled, expected):
    s = spec(unit_content="After=a.target\n", after_firewalld=mode)
    host = converged(s, firewalld_enabled=enabled)
    assert h.unit_text(s, host) == expected


def test_systemd_state_reads_both_units_in_one_call():
    out = ("Id=kuma-dp.service\nActiveState=active\nUnitFileState=enabled\n\n"
           "Id=firewalld.service\nActiveState=inactive\nUnitFileState=enabled\n")
    calls = []
    assert h._systemd_state(lambda argv: (calls.append(argv), (0, out, ""))[1], "kuma-dp.service") == (
        "active", "enabled", True)
    assert len(calls) == 1


# ------------------------------------------------------------ state=absent --
def test_absent_plans_service_unit_config_binaries_and_install_dir():
    s = spec(state="absent")
    p = h.plan_absent(s, converged(s))
    assert [(step.kind, step.path) for step in p.steps] == [
        ("stop", "kuma-dp.service"), ("remove", s.unit_path), ("daemon-reload", None),
        ("rmtree", "/etc/kuma-dp"), ("remove", "/opt/kuma/current"), ("rmtree", "/opt/kuma/2.14.3"),
        ("rmdir", "/opt/kuma"),
    ]
    assert p.changes == ["service", "unit", "config", "binaries"] and not p.restart


def test_absent_keeps_an_install_dir_with_foreign_entries_and_unmarked_versions():
    s = spec(state="absent")
    p = h.plan_absent(s, converged(s, install_entries=("2.14.3", "current", "2.13.0-by-hand")))
    assert "rmdir" not in [step.kind for step in p.steps]
    assert ("rmtree", "/opt/kuma/2.13.0-by-hand") not in [(step.kind, step.path) for step in p.steps]


def test_absent_on_a_clean_host_changes_nothing():
    s = spec(state="absent", remove_user=True)
    host = converged(s, account=None, group=None, files={k: NOFILE for k in ("config_dir", "install_dir", "unit")},
                     link=None, installed_versions=(), install_entries=(), unit_active="inactive", unit_enabled="")
    p = h.plan_absent(s, host)
    assert p.steps == () and p.changes == []


def test_absent_removes_only_the_account_the_module_creates():
    s = spec(state="absent", remove_user=True)
    p = h.plan_absent(s, converged(s))
    assert [(step.kind, step.path) for step in p.steps][-2:] == [("userdel", "kuma-dp"), ("groupdel", "kuma-dp")]
    with pytest.raises(h.HostError) as exc:
        h.plan_absent(s, converged(s, account=h.Account("kuma-dp", 1000, 5678, "/home/kuma-dp", "/bin/bash", ())))
    assert "remove_user: kuma-dp (uid 1000, home /home/kuma-dp, shell /bin/bash) is not the system account" \
        in exc.value.args[0][0]
    # a group someone else is in stays
    p = h.plan_absent(s, converged(s, group=h.Group("kuma-dp", 5678, ("alice",))))
    assert "groupdel" not in [step.kind for step in p.steps]


def test_absent_apply_removes_everything_and_a_second_pass_finds_nothing(tmp_path):
    etc, opt, unit = tmp_path / "etc", tmp_path / "opt", tmp_path / "kuma-dp.service"
    (etc).mkdir()
    (etc / "token").write_text("tok\n")
    for version in ("2.14.2", "2.14.3"):
        (opt / version / "bin").mkdir(parents=True)
        (opt / version / h.MARKER).write_text("{}")
    os.symlink("2.14.3", str(opt / "current"))
    unit.write_text("[Unit]\n")
    # as the role calls it: no version, binaries or archive
    s = spec(state="absent", config_dir=str(etc), install_dir=str(opt), unit_path=str(unit), refuse_local_cp=False,
             version=None, binaries=[], archive_top=None, archive_sha256="")
    systemctl = {"state": "ActiveState=active\nUnitFileState=enabled\n"}
    calls = []

    def run(argv):
        calls.append(argv)
        if argv[:2] == ["systemctl", "show"]:
            return 0, "Id=kuma-dp.service\n" + systemctl["state"], ""
        return 0, "", ""

    p = h.plan_absent(s, h.gather(s, run))
    h.apply(s, p, run)
    assert [c for c in calls if c[1] != "show"] == [
        ["systemctl", "disable", "--now", "kuma-dp.service"], ["systemctl", "daemon-reload"]]
    assert not etc.exists() and not opt.exists() and not unit.exists()
    systemctl["state"] = "ActiveState=inactive\nUnitFileState=\n"
    assert h.plan_absent(s, h.gather(s, run)).steps == ()
