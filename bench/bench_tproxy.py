"""kuma_tproxy against the same rules written with one ansible.builtin.iptables
task per rule, each against the floor (one trivial module round trip), all
measured in the same run on the same kind of host: a fresh network namespace
per measurement, ansible-playbook with a local connection inside it.

    scripts/bootstrap && .venv/bin/python bench/bench_tproxy.py [--rounds 5]

Prints a table of medians and ratios to the floor and writes JSON to
bench/results/. Also counts the processes a no-change kuma_tproxy run starts
(strace -f -e execve), whose target is: only the iptables-save reads.
Needs root (namespaces, iptables).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(ROOT, ".cache", "collections")
sys.path.insert(0, COLLECTIONS)

from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_config as config  # noqa: E402
from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_rules as rules  # noqa: E402

BIN = os.path.dirname(sys.executable)
SETTINGS = {"kuma_dp_user": "kuma-dp", "ip_family_mode": "ipv4"}


def iptables_task(rule):
    """One ansible.builtin.iptables task for one of Kuma's rules (the hand-written way)."""
    task = {"table": rule.table, "chain": rule.chain, "comment": rule.full_comment()}
    if rule.position:
        task.update(action="insert", rule_num=rule.position)
    for param in rule.params:
        kind = param[0]
        if kind == "s":
            task["source"] = ("!" if param[2] else "") + param[1]
        elif kind == "d":
            task["destination"] = ("!" if param[2] else "") + param[1]
        elif kind == "i":
            task["in_interface"] = param[1]
        elif kind == "o":
            task["out_interface"] = param[1]
        elif kind == "p":
            task["protocol"] = param[1]
            for flag, value, negated in param[2]:
                key = "destination_port" if flag == "dport" else "source_port"
                task[key] = ("!" if negated else "") + value
        elif kind == "m" and param[1] == "owner":
            flag, value, negated = param[2][0]
            task["uid_owner"] = ("!" if negated else "") + value
        elif kind == "j":
            task["jump"] = param[1]
            for flag, value in param[2]:
                if flag == "to-ports":
                    task["to_ports"] = value
                else:
                    raise ValueError("no ansible.builtin.iptables option for --%s" % flag)
        else:
            raise ValueError("no ansible.builtin.iptables mapping for %r" % (param,))
    return {"name": "Kuma rule", "ansible.builtin.iptables": task}


def per_rule_playbook():
    params = config.with_defaults(SETTINGS)
    ruleset = rules.build(config.family_config(params, ipv6=False, uid="5678"))
    tasks = []
    for table in ruleset.tables:
        for chain in table.custom:
            tasks.append({"name": "Kuma chain", "ansible.builtin.iptables": {
                "table": table.name, "chain": chain.name, "chain_management": True}})
        for chain in table.chains:
            tasks += [iptables_task(r) for r in chain.rules]
    return [{"hosts": "localhost", "gather_facts": False, "tasks": tasks}], len(tasks)


def playbooks(tmp):
    books = {
        "floor": [{"hosts": "localhost", "gather_facts": False, "tasks": [{"ansible.builtin.ping": {}}]}],
        "kuma_tproxy": [{"hosts": "localhost", "gather_facts": False,
                         "tasks": [{"kuma.mesh.kuma_tproxy": SETTINGS}]}],
    }
    books["iptables_per_rule"], count = per_rule_playbook()
    paths = {}
    for name, content in books.items():
        paths[name] = os.path.join(tmp, name + ".yml")
        with open(paths[name], "w") as f:
            json.dump(content, f)  # JSON is YAML
    return paths, count


class Namespace(object):
    def __init__(self):
        self.name = "kmb-" + uuid.uuid4().hex[:8]
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        subprocess.run(["ip", "netns", "exec", self.name, "ip", "link", "set", "lo", "up"], check=True)

    def playbook(self, path):
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_PYTHON_INTERPRETER=sys.executable,
                   ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false")
        start = time.perf_counter()
        proc = subprocess.run(["ip", "netns", "exec", self.name, os.path.join(BIN, "ansible-playbook"),
                               "-c", "local", "-i", "localhost,", path],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, env=env,
                              check=False)
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(proc.stdout[-3000:])
        recap = [line for line in proc.stdout.splitlines() if "changed=" in line][-1]
        changed = int(recap.split("changed=")[1].split()[0])
        return elapsed, changed

    def delete(self):
        subprocess.run(["ip", "netns", "del", self.name], check=False)


def count_processes():
    """Processes started by a no-change kuma_tproxy run (module run as Ansible runs it)."""
    ns = Namespace()
    try:
        args = {"ANSIBLE_MODULE_ARGS": dict(SETTINGS)}
        fd, path = tempfile.mkstemp(suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(args, f)
        cmd = [sys.executable, "-m", "ansible_collections.kuma.mesh.plugins.modules.kuma_tproxy", path]
        env = dict(os.environ, PYTHONPATH=COLLECTIONS)
        subprocess.run(["ip", "netns", "exec", ns.name] + cmd, env=env, stdout=subprocess.DEVNULL, check=True)
        trace = path + ".strace"
        proc = subprocess.run(["ip", "netns", "exec", ns.name, "strace", "-f", "-qq", "-e", "trace=execve",
                               "-o", trace] + cmd, env=env, stdout=subprocess.PIPE, universal_newlines=True,
                              check=True)
        result = json.loads(proc.stdout)
        with open(trace) as f:
            execs = [line.split('execve("', 1)[1].split('"', 1)[0] for line in f if 'execve("' in line
                     and "= 0" in line]
        os.unlink(trace)
        os.unlink(path)
        return {"changed": result["changed"], "execve": execs[1:], "reported": result["commands"]}
    finally:
        ns.delete()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--rounds", type=int, default=5)
    opts = parser.parse_args()
    subprocess.run(["id", "kuma-dp"], stdout=subprocess.DEVNULL, check=True)
    tmp = tempfile.mkdtemp(prefix="kuma-mesh-bench-")
    books, rule_tasks = playbooks(tmp)
    samples = {k: [] for k in ("floor", "kuma_tproxy apply", "kuma_tproxy re-run",
                               "iptables_per_rule apply", "iptables_per_rule re-run")}
    changed = {}
    for _round in range(opts.rounds):
        # interleaved, so drift of the machine hits every series alike
        ns = Namespace()
        try:
            samples["floor"].append(ns.playbook(books["floor"])[0])
        finally:
            ns.delete()
        for label in ("kuma_tproxy", "iptables_per_rule"):
            ns = Namespace()
            try:
                t, c = ns.playbook(books[label])
                samples[label + " apply"].append(t)
                changed[label + " apply"] = c
                t, c = ns.playbook(books[label])
                samples[label + " re-run"].append(t)
                changed[label + " re-run"] = c
            finally:
                ns.delete()
    medians = {k: statistics.median(v) for k, v in samples.items()}
    floor = medians["floor"]
    report = {
        "rounds": opts.rounds,
        "rules": rule_tasks,
        "median_seconds": medians,
        "ratio_to_floor": {k: v / floor for k, v in medians.items()},
        "changed_tasks": changed,
        "no_change_run_processes": count_processes(),
    }
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    out = os.path.join(ROOT, "bench", "results", "tproxy-%s.json" % time.strftime("%Y%m%d-%H%M%S"))
    with open(out, "w") as f:
        json.dump(report, f, indent=2)
    print("%-28s %10s %10s %8s" % ("measurement", "median s", "x floor", "changed"))
    for key, value in medians.items():
        print("%-28s %10.2f %10.2f %8s" % (key, value, value / floor, changed.get(key, "-")))
    procs = report["no_change_run_processes"]
    print("\nno-change kuma_tproxy run started %d processes: %s" % (len(procs["execve"]), ", ".join(procs["execve"])))
    print("iptables_per_rule playbook: %d tasks for Kuma's default IPv4 rules" % rule_tasks)
    print("written to %s" % out)


if __name__ == "__main__":
    main()
