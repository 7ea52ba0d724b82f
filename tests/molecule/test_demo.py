"""The README's main-job command, `scripts/demo`, does what the README says:
three local container hosts put into the mesh by kuma.mesh.site, and for
each Kuma's rules, kuma-dp running as kuma-dp, and an application's
connection going through the proxy; `scripts/demo down` removes them.

The hosts get their own name prefix (KUMA_MESH_DEMO_NAME), so a demo a user
left running is not touched. The output goes to tests/output/demo.log.
"""

import os
import re
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PREFIX = "kuma-demo-test"
HOSTS = [PREFIX + "-debian12", PREFIX + "-debian13", PREFIX + "-debian12-fw"]
TIMEOUT = int(os.environ.get("KUMA_MESH_MOLECULE_TIMEOUT", "2700"))


def demo(env, *args, log=None):
    return subprocess.run([os.path.join(ROOT, "scripts", "demo"), *args], cwd=ROOT, env=env,
                          stdin=subprocess.DEVNULL, stdout=log or subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=TIMEOUT, check=False)


def running_hosts(env):
    names = subprocess.run(["podman", "ps", "-a", "--format", "{{.Names}}"], env=env, capture_output=True,
                           text=True, check=True).stdout.split()
    return sorted(set(names) & set(HOSTS))


def host_section(output, host):
    """The lines the demo printed for one host after the playbook."""
    match = re.search(r"(?ms)^--- %s\n(.*?)(?=^--- |^demo: done)" % re.escape(host), output)
    assert match, f"no section for {host} in the demo's output"
    return match.group(1)


@pytest.mark.molecule
def test_demo_puts_three_hosts_into_the_mesh_and_down_removes_them(molecule_ready):
    env = dict(molecule_ready, KUMA_MESH_DEMO_NAME=PREFIX)
    out_dir = os.path.join(ROOT, "tests", "output")
    os.makedirs(out_dir, exist_ok=True)
    log_path = os.path.join(out_dir, "demo.log")
    try:
        with open(log_path, "w") as log:
            proc = demo(env, log=log)
        with open(log_path, errors="replace") as f:
            output = f.read()
        assert proc.returncode == 0, f"scripts/demo failed (exit {proc.returncode}):\n{output[-6000:]}"

        recap = re.findall(r"(?m)^(%s\S*) +: ok=\d+ +changed=\d+ +unreachable=(\d+) +failed=(\d+)" % PREFIX, output)
        assert sorted(entry[0] for entry in recap) == sorted(HOSTS), output[-3000:]
        assert all(entry[1:] == ("0", "0") for entry in recap), output[-3000:]  # unreachable, failed

        for host in HOSTS:
            section = host_section(output, host)
            # Kuma's chains and the jumps into them, in the nat table
            assert re.search(r"rules: :KUMA_MESH_INBOUND ", section), section
            assert re.search(r"rules: :KUMA_MESH_OUTBOUND ", section), section
            assert re.search(r"rules: -A PREROUTING .*-j KUMA_MESH_INBOUND", section), section
            assert re.search(r"rules: -A OUTPUT .*-j KUMA_MESH_OUTBOUND", section), section
            # the unit runs as kuma-dp
            assert "kuma-dp.service: User=kuma-dp" in section, section
            assert "kuma-dp.service: ActiveState=active" in section, section
            assert "kuma-dp.service: SubState=running" in section, section
            # the connection reached the service, and the proxy carried it
            assert "an application connects to 192.0.2.2:8080 and gets: peer:8080" in section, section
            assert re.search(r"proxy log: .*192\.0\.2\.2:8080", section), section
    finally:
        down = demo(env, "down")
    assert down.returncode == 0, down.stdout
    assert running_hosts(env) == [], "scripts/demo down left hosts"
