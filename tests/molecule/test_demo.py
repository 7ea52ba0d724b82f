"""The README's main-job command, `scripts/demo`, does what the README says:
three local container hosts put into the mesh by kuma.mesh.site, and for
each Kuma's whole rule set per family, kuma-dp running (per /proc) as
kuma-dp, the application's connection, made as the application's user, going
through the proxy; it says plainly which parts are stand-ins. `scripts/demo
converge` runs site again on the running hosts and ends with changed=0 on
every host; `scripts/demo down` removes them.

The hosts get their own name prefix (KUMA_MESH_DEMO_NAME), so a demo a user
left running is not touched. The outputs go to tests/output/demo.log,
demo-converge.log and demo-down.log. The demo runs in the background with the
Molecule scenarios (jobs.py, conftest.py).
"""

import os
import re
import subprocess

import pytest

import jobs

ROOT = jobs.ROOT
PREFIX = "kuma-demo-test"
HOSTS = [PREFIX + "-debian12", PREFIX + "-debian13", PREFIX + "-debian12-fw"]
TIMEOUT = int(os.environ.get("KUMA_MESH_MOLECULE_TIMEOUT", "2700"))
# The short view: the playbook's output is in a file, the terminal gets the
# changed tasks, the plays and the recap (the whole task list was 440 lines).
MAX_LINES = 200


def expected(name):
    """Seconds the job takes (the site run, the converge again, the summaries),
    for the order the background jobs start in: 69 s in the run of docs/performance.md)."""
    return 70


def running_hosts(env):
    names = subprocess.run(["podman", "ps", "-a", "--format", "{{.Names}}"], env=env, capture_output=True,
                           text=True, check=True).stdout.split()
    return sorted(set(names) & set(HOSTS))


def demo_job(env):
    env = dict(env, KUMA_MESH_DEMO_NAME=PREFIX)
    script = os.path.join(ROOT, "scripts", "demo")

    def step(args, name):
        path = os.path.join(jobs.OUTPUT, name)
        with open(path, "w") as log:
            try:
                rc = jobs.run_logged([script, *args], log, env, TIMEOUT)
            except jobs.TimedOut as exc:
                log.write(f"\n{exc}\n")
                rc = "timeout"
        with open(path, errors="replace") as f:
            return {"rc": rc, "output": f.read(), "log": jobs.relative(path)}

    def work(log):
        result = {}
        try:
            result["up"] = step([], "demo.log")
            if result["up"]["rc"] == 0:
                result["converge"] = step(["converge"], "demo-converge.log")
        finally:
            result["down"] = step(["down"], "demo-down.log")
            result["left"] = running_hosts(env)
        result["ok"] = all(r["rc"] == 0 for k, r in result.items() if k in ("up", "converge", "down"))
        return result

    return jobs.Job("demo", os.path.join(jobs.OUTPUT, "demo-job.log"), work)


def background_job(item, env):
    """The job conftest.py starts in the background for this test."""
    return demo_job(env)


def host_section(output, host):
    """The lines the demo printed for one host after the playbook."""
    match = re.search(r"(?ms)^--- %s\n(.*?)(?=^--- |^$)" % re.escape(host), output)
    assert match, f"no section for {host} in the demo's output"
    return match.group(1)


def recap(output):
    return re.findall(r"(?m)^ *(%s\S*) +: ok=\d+ +changed=(\d+) +unreachable=(\d+) +failed=(\d+)" % PREFIX, output)


def check_hosts(output):
    assert "no Kuma release can be downloaded" in output and "does not exist" in output, output[:2000]
    for i, host in enumerate(HOSTS):
        section = host_section(output, host)
        for family, save in (("IPv4", "iptables-save"), ("IPv6", "ip6tables-save")):
            match = re.search(r"(?m)^  %s rules \(%s\): (?:the same )?(\d+) rules of Kuma's" % (family, save), section)
            assert match, section
            # the whole set (DNS redirection included), not only 4 chains and 2 jumps
            assert int(match.group(1)) >= 12, section
            if i == 0:
                rules = re.search(r"(?m)^  %s rules [^\n]*\n((?:    [^\n]*\n)*)" % family, section).group(1)
                for chain in ("KUMA_MESH_INBOUND", "KUMA_MESH_OUTBOUND", "KUMA_MESH_INBOUND_REDIRECT",
                              "KUMA_MESH_OUTBOUND_REDIRECT"):
                    assert re.search(r"\*nat :%s " % chain, rules), rules
                assert re.search(r"\*nat -A PREROUTING .*-j KUMA_MESH_INBOUND", rules), rules
                assert re.search(r"\*nat -A OUTPUT .*-j KUMA_MESH_OUTBOUND", rules), rules
                assert re.search(r"-j REDIRECT --to-ports 15001", rules), rules
        assert "kuma-dp.service: User=kuma-dp" in section, section
        assert "kuma-dp.service: ActiveState=active" in section, section
        assert "kuma-dp.service: SubState=running" in section, section
        # the running processes, read from /proc, are kuma-dp's uid: kuma-dp and its Envoy
        processes = re.findall(r"(?m)^  process \d+ runs as uid (\d+) \((\S*)\): (.*)$", section)
        assert len(processes) >= 2, section
        assert all(user == "kuma-dp" and uid != "0" for uid, user, _command in processes), section
        assert any("envoy" in cmd for _uid, _user, cmd in processes), section
        # the application's own user, its connection answered by the peer through the proxy
        assert re.search(r"the application, as demo-app \(uid [1-9]\d*\), connects to 192\.0\.2\.2:8080 "
                         r"and gets: peer:8080", section), section
        assert re.search(r"proxy log: .*192\.0\.2\.2:8080", section), section


@pytest.mark.molecule
def test_demo_puts_three_hosts_into_the_mesh_converges_again_with_no_change_and_down_removes_them(molecule_ready):
    job = jobs.wait(demo_job(molecule_ready))
    result = job.result
    up = result["up"]
    assert up["rc"] == 0, f"scripts/demo failed (exit {up['rc']}), log {up['log']}:\n{up['output'][-6000:]}"
    output = up["output"]
    # a short view, the whole playbook output in a file named in the view
    match = re.search(r"== ansible-playbook kuma\.mesh\.site \(whole output: (\S+)\)", output)
    assert match, output[:3000]
    full = os.path.join(ROOT, match.group(1))
    assert os.path.isfile(full), full
    with open(full, errors="replace") as f:
        assert "TASK [" in f.read()
    assert len(output.splitlines()) < MAX_LINES, output
    assert "TASK [" not in output and "skipping: [" not in output, output

    entries = recap(output)
    assert sorted(entry[0] for entry in entries) == sorted(HOSTS), output[-3000:]
    assert all(entry[2:] == ("0", "0") for entry in entries), output[-3000:]  # unreachable, failed
    check_hosts(output)

    converge = result["converge"]
    assert converge["rc"] == 0, f"scripts/demo converge failed, log {converge['log']}:\n{converge['output'][-6000:]}"
    entries = recap(converge["output"])
    assert sorted(entry[0] for entry in entries) == sorted(HOSTS), converge["output"][-3000:]
    assert all(entry[1:] == ("0", "0", "0") for entry in entries), converge["output"]  # changed, unreachable, failed
    check_hosts(converge["output"])

    assert result["down"]["rc"] == 0, result["down"]["output"]
    assert result["left"] == [], "scripts/demo down left hosts"
