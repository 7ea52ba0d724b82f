"""The site playbook on fleets of 1, 3 and 6 local container hosts: converge
and no-change re-converge, time per host and how it grows. The re-converge
must report zero changed tasks. The peer, measured on the same hosts in the
same run, is the floor: a playbook with one ansible.builtin.ping task, one
trivial module round trip per host.

    scripts/bootstrap && scripts/testbed && . scripts/env.sh && \
        .venv/bin/python bench/bench_fleet.py [--sizes 1,3,6] [--forks 6] [--pipelining]

Hosts are Debian 12 systemd containers (network none) on this machine; the
Kuma release is the stand-in archive (tests/standins), installed as an
air-gapped archive. The hosts are reached with containers.podman.podman, or
with --pipelining through the test bed's podman_pipelined (one `podman exec -i`
per module task, as SSH with pipelining reaches a real fleet; --exec nsenter
as the Molecule scenarios run it); then the remote
calls per host of each run are counted too (every command the connection runs
on a host: a module, or a step of a file transfer). Writes JSON to
bench/results/ and prints a table. Needs root and podman (scripts/testbed).
"""

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
VERSION = "2.14.3"
IMAGE = "localhost/kuma-mesh-debian:12"
CONNECTION_PLUGINS = os.path.join(ROOT, "molecule", "_shared", "connection_plugins")


def run(args, **kwargs):
    return subprocess.run(args, check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, **kwargs)


def start_hosts(names):
    for name in names:
        subprocess.run(["podman", "rm", "-f", "-t", "5", "--ignore", name], check=False, stdout=subprocess.DEVNULL)
        run(["podman", "run", "-d", "--name", name, "--hostname", name, "--systemd=always", "--network", "none",
             "--cap-add", "NET_ADMIN,NET_RAW,SYS_ADMIN", "--label", "kuma.mesh.bench=1", IMAGE, "/sbin/init"])
    for name in names:
        for _attempt in range(90):
            state = subprocess.run(["podman", "exec", name, "systemctl", "is-system-running"],
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, universal_newlines=True,
                                   check=False).stdout.strip()
            if state in ("running", "degraded"):
                break
            time.sleep(1)


def remove_hosts(names):
    subprocess.run(["podman", "rm", "-f", "-t", "5", "--ignore"] + names, check=False, stdout=subprocess.DEVNULL)


def inventory(path, names, work, connection):
    lines = ["kuma_dataplanes:", "  hosts:"] + ["    %s:" % n for n in names] + [
        "  vars:",
        "    ansible_connection: %s" % connection,
        "    ansible_python_interpreter: /usr/bin/python3",
        '    kuma_dp_version: "%s"' % VERSION,
        "    kuma_dp_local_archive: %s/release/kuma-%s-linux-amd64.tar.gz" % (work, VERSION),
        "    kuma_dp_cache_dir: %s/cache" % work,
        "    kuma_dp_cp_address: https://kuma-cp.example.test:5678",
        "    kuma_dp_token_src: %s/token" % work,
        '    kuma_dp_name: "{{ inventory_hostname }}"',
        "    kuma_dp_address: 192.0.2.1",
        "    kuma_dp_inbounds: [{port: 9090, tags: {kuma.io/service: bench-app}}]",
        # hosts with --network none: nothing leaves them, so there is no outbound redirect to prove
        "    kuma_dp_validate_tproxy: false",
    ]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


FLOOR_PLAYBOOK = """\
- name: Floor, one trivial module round trip per host
  hosts: kuma_dataplanes
  gather_facts: false
  tasks:
    - name: Ping
      ansible.builtin.ping:
"""


Run = collections.namedtuple("Run", ["seconds", "changed", "calls_per_host"])


def playbook(inv, forks, play, env, hosts):
    """One ansible-playbook run: its time, its changed tasks and (pipelined) the remote calls per host."""
    calls = tempfile.NamedTemporaryFile(prefix="kuma-mesh-calls-", delete=False)
    calls.close()
    env = dict(env, KUMA_MESH_COUNT_CALLS=calls.name)
    start = time.perf_counter()
    proc = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", inv, "-f", str(forks), play], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, check=False)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(proc.stdout[-4000:])
    changed = sum(int(line.split("changed=")[1].split()[0]) for line in proc.stdout.splitlines() if "changed=" in line)
    with open(calls.name) as f:
        counted = f.read().split()
    os.unlink(calls.name)
    per_host = (float(len([c for c in counted if c in hosts])) / len(hosts)) if counted else None
    return Run(took, changed, per_host)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--sizes", default="1,3,6")
    parser.add_argument("--forks", type=int, default=6)
    parser.add_argument("--pipelining", action="store_true",
                        help="reach the hosts through podman_pipelined (molecule/_shared/connection_plugins)")
    parser.add_argument("--exec", dest="exec_with", choices=("podman", "nsenter"), default="podman",
                        help="how podman_pipelined runs a command on a host: podman exec -i (the default, as the "
                             "results in docs/performance.md were measured) or nsenter (as the Molecule scenarios)")
    opts = parser.parse_args()
    connection = "podman_pipelined" if opts.pipelining else "containers.podman.podman"
    env = dict(os.environ)
    if opts.pipelining:
        env.update(ANSIBLE_CONNECTION_PLUGINS=CONNECTION_PLUGINS, ANSIBLE_PIPELINING="true",
                   KUMA_MESH_PODMAN_EXEC=opts.exec_with)
    work = tempfile.mkdtemp(prefix="kuma-mesh-bench-fleet-")
    run([sys.executable, os.path.join(ROOT, "tests", "standins", "build_archive.py"), "--version", VERSION,
         "--out", os.path.join(work, "release")])
    run([sys.executable, os.path.join(ROOT, "tests", "standins", "make_token.py"), "--name", "bench",
         "--out", os.path.join(work, "token")])
    floor_play = os.path.join(work, "floor.yml")
    with open(floor_play, "w") as f:
        f.write(FLOOR_PLAYBOOK)
    rows = []
    for size in [int(s) for s in opts.sizes.split(",")]:
        names = ["kuma-bench-%d-%d" % (size, i) for i in range(size)]
        inv = os.path.join(work, "inventory-%d.yml" % size)
        inventory(inv, names, work, connection)
        start_hosts(names)
        try:
            floor = playbook(inv, opts.forks, floor_play, env, names).seconds
            first = playbook(inv, opts.forks, "kuma.mesh.site", env, names)
            again = playbook(inv, opts.forks, "kuma.mesh.site", env, names)
            print("%d hosts: floor %.1f s, converge %.1f s, re-converge %.1f s, load %.2f" % (
                size, floor, first.seconds, again.seconds, os.getloadavg()[0]), flush=True)
        finally:
            remove_hosts(names)
        converge, reconverge = first.seconds, again.seconds
        rows.append({"hosts": size, "floor_s": floor, "converge_s": converge, "reconverge_s": reconverge,
                     "converge_per_host_s": converge / size, "reconverge_per_host_s": reconverge / size,
                     "changed_converge": first.changed, "changed_reconverge": again.changed,
                     "calls_per_host_converge": first.calls_per_host,
                     "calls_per_host_reconverge": again.calls_per_host})
    base = rows[0]
    for row in rows:
        row["converge_x_floor"] = row["converge_s"] / row["floor_s"]
        row["reconverge_x_floor"] = row["reconverge_s"] / row["floor_s"]
        row["converge_growth"] = row["converge_s"] / base["converge_s"]
        row["reconverge_growth"] = row["reconverge_s"] / base["reconverge_s"]
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    out = os.path.join(ROOT, "bench", "results", "fleet-%s.json" % time.strftime("%Y%m%d-%H%M%S"))
    with open(out, "w") as f:
        json.dump({"forks": opts.forks, "connection": connection, "cpus": os.cpu_count(),
                   "load_after": os.getloadavg(), "rows": rows},
                  f, indent=2)
    print("%5s %7s %11s %9s %8s %13s %9s %8s %11s %9s %13s" % (
        "hosts", "floor s", "converge s", "per host", "x floor", "re-converge s", "per host", "x floor",
        "growth", "changed", "calls/host"))

    def calls(value):
        return "-" if value is None else "%.0f" % value

    for r in rows:
        print("%5d %7.1f %11.1f %9.1f %8.1f %13.1f %9.1f %8.1f %5.2f/%-5.2f %4d/%-4d %6s/%-6s" % (
            r["hosts"], r["floor_s"], r["converge_s"], r["converge_per_host_s"], r["converge_x_floor"],
            r["reconverge_s"], r["reconverge_per_host_s"], r["reconverge_x_floor"],
            r["converge_growth"], r["reconverge_growth"], r["changed_converge"], r["changed_reconverge"],
            calls(r["calls_per_host_converge"]), calls(r["calls_per_host_reconverge"])))
    print("written to %s" % out)
    if any(r["changed_reconverge"] for r in rows):
        raise SystemExit("the no-change re-converge reported changed tasks")


if __name__ == "__main__":
    main()
