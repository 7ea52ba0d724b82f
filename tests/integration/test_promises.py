"""What kuma_tproxy promises, tried on real iptables in network namespaces:
one run at a time, complete and truthful rollback at every step (a fault-injection
harness of fake ``*-restore``/``*-save`` on PATH, and a killed run), rules that keep
their place, and input the host cannot carry refused or ignored without a traceback.
See docs/kuma_tproxy.md, "What kuma_tproxy promises, and how it is tested"."""

import fcntl
import os
import signal
import stat
import subprocess
import sys
import threading

import pytest

from netns import COLLECTIONS, FOREIGN_V4, FOREIGN_V6, run_module, wait_for

BASE = {"kuma_dp_user": "kuma-dp"}
A = dict(BASE, redirect={"inbound": {"exclude_ports": [1111]}})
B = dict(BASE, redirect={"inbound": {"exclude_ports": [2222]}, "dns": {"capture_all": True}})


def state(ns):
    """Every table of both families (foreign rules included, counters stripped) and ::6."""
    addrs = ns.run("ip", "-6", "addr", "show", "dev", "lo").stdout
    return {"ipv4": ns.save("ipv4"), "ipv6": ns.save("ipv6"), "passthrough": "::6/128" in addrs}


def foreign(ns):
    ns.restore(FOREIGN_V4, "ipv4")
    ns.restore(FOREIGN_V6, "ipv6")
    return state(ns)


# -- one run at a time ---------------------------------------------------------------


def test_concurrent_runs_always_end_in_exactly_one_configuration(pair):
    host = pair.host
    foreign(host)
    assert not run_module(host, A).get("failed")
    state_a = state(host)
    assert not run_module(host, B).get("failed")
    state_b = state(host)
    assert state_a != state_b
    for i in range(10):
        results = {}

        def one(name, args):
            results[name] = run_module(host, dict(args, wait=30))

        threads = [threading.Thread(target=one, args=("a", A)), threading.Thread(target=one, args=("b", B))]
        if i % 2:
            threads.reverse()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not results["a"].get("failed") and not results["b"].get("failed"), results
        assert state(host) in (state_a, state_b), "pair %d ended in neither configuration" % i


def test_a_run_that_cannot_get_the_lock_fails_with_nothing_changed(pair):
    host = pair.host
    before = foreign(host)
    holder = subprocess.Popen(["flock", "--close", "/run/kuma-mesh-tproxy.lock", "sleep", "30"])  # only flock holds it
    try:
        assert wait_for(lambda: lock_is_held("/run/kuma-mesh-tproxy.lock"), 20)
        result = run_module(host, dict(BASE, wait=1))
    finally:
        holder.kill()
        holder.wait()
    assert result.get("failed") and "/run/kuma-mesh-tproxy.lock" in result["msg"], result
    assert result["changed"] is False and state(host) == before
    assert not [c for c in result["commands"] if "-restore" in c]


def lock_is_held(path):
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


# -- the fault-injection harness -------------------------------------------------------

FAKE = """#!/bin/sh
# fake %(tool)s: fails (exit 4) on the calls listed in %(dir)s/%(tool)s.fail (1-based numbers,
# "all" or "apply" = every call without --test), sleeps when %(dir)s/%(tool)s.sleep exists
count_file=%(dir)s/%(tool)s.count
n=$(( $(cat "$count_file" 2>/dev/null || echo 0) + 1 ))
echo "$n" > "$count_file"
if [ -f %(dir)s/%(tool)s.sleep ]; then touch %(dir)s/%(tool)s.started; sleep "$(cat %(dir)s/%(tool)s.sleep)"; fi
if [ -f %(dir)s/%(tool)s.fail ]; then
  spec=$(cat %(dir)s/%(tool)s.fail)
  case " $* " in *" --test "*) test_call=1 ;; *) test_call=0 ;; esac
  case " $* " in *" --noflush "*) noflush=1 ;; *) noflush=0 ;; esac
  for s in $spec; do
    if [ "$s" = "$n" ] || [ "$s" = all ] || { [ "$s" = apply ] && [ $test_call = 0 ] && [ $noflush = 1 ]; } \\
       || { [ "$s" = rollback ] && [ $noflush = 0 ]; }; then
      echo "injected failure in %(tool)s call $n" >&2; exit 4
    fi
  done
fi
exec /usr/sbin/%(tool)s "$@"
"""
TOOLS = ["iptables-nft-restore", "ip6tables-nft-restore", "iptables-nft-save", "ip6tables-nft-save"]


class Faults(object):
    def __init__(self, tmp):
        self.dir = os.path.join(tmp, "fake-bin")
        os.makedirs(self.dir, exist_ok=True)
        for tool in TOOLS:
            path = os.path.join(self.dir, tool)
            with open(path, "w") as f:
                f.write(FAKE % {"tool": tool, "dir": self.dir})
            os.chmod(path, stat.S_IRWXU)

    def fail(self, tool, spec):
        with open(os.path.join(self.dir, tool + ".fail"), "w") as f:
            f.write(spec)

    def sleep(self, tool, seconds):
        with open(os.path.join(self.dir, tool + ".sleep"), "w") as f:
            f.write(str(seconds))

    def reset(self):
        for name in os.listdir(self.dir):
            if name.endswith((".fail", ".count", ".sleep", ".started")):
                os.unlink(os.path.join(self.dir, name))


FULL = dict(BASE, redirect={"dns": {"capture_all": True}, "inbound": {"exclude_ports": [4444]}},
            retry={"max_retries": 1, "sleep_between_retries": 0})


@pytest.mark.parametrize(
    "start,tool,spec,where",
    [
        ("fresh", "iptables-nft-restore", "apply", "first family"),
        ("fresh", "ip6tables-nft-restore", "apply", "second family"),
        ("installed", "ip6tables-nft-restore", "apply", "second family"),
        ("fresh", "ip6tables-nft-save", "2", "read-back"),
        ("installed", "iptables-nft-save", "2", "read-back"),
    ],
)
def test_any_failure_after_a_write_puts_the_host_back_exactly(pair, start, tool, spec, where):
    """Whole tables back (foreign rules included), ::6 gone if this run added it,
    ``changed`` false, and the message says what was restored."""
    host = pair.host
    foreign(host)
    if start == "installed":
        assert not run_module(host, BASE).get("failed")
    before = state(host)
    faults = Faults(pair.tmp)
    faults.fail(tool, spec)
    result = run_module(host, FULL, path_prepend=faults.dir)
    assert result.get("failed"), result
    assert state(host) == before, where
    assert result["changed"] is False, result
    assert "as they were before this run" in result["msg"], result["msg"]
    if where != "first family":
        assert "restored:" in result["msg"] and result["rolled_back"], result
    # nothing left behind: the next run writes the wanted rules, the one after nothing
    faults.reset()
    assert run_module(host, FULL, path_prepend=faults.dir)["changed"] is True
    assert run_module(host, FULL)["changed"] is False


def test_a_failed_rollback_is_reported_and_the_next_run_repairs(pair):
    host = pair.host
    foreign(host)
    before = state(host)
    faults = Faults(pair.tmp)
    faults.fail("ip6tables-nft-restore", "apply")
    faults.fail("iptables-nft-restore", "rollback")
    result = run_module(host, FULL, path_prepend=faults.dir)
    assert result.get("failed")
    assert "NOT restored" in result["msg"] and result["rollback_failed"], result
    assert result["changed"] is True and state(host) != before  # truthful: the host differs
    faults.reset()
    assert not run_module(host, FULL).get("failed")
    assert run_module(host, FULL)["changed"] is False
    assert run_module(host, dict(FULL, state="absent"))["changed"] is True
    after = state(host)
    assert after["ipv4"] == before["ipv4"] and after["ipv6"] == before["ipv6"]


def test_a_killed_run_is_repaired_by_the_next_one(pair):
    """kill -9 while ip6tables-restore runs (IPv4 new, IPv6 old): the orphaned restore
    keeps the lock until it ends, then the next run makes both families right."""
    host = pair.host
    foreign(host)
    assert not run_module(host, A).get("failed")
    faults = Faults(pair.tmp)
    assert not run_module(host, B).get("failed")
    wanted_b = state(host)
    assert not run_module(host, A).get("failed")
    faults.sleep("ip6tables-nft-restore", 2)
    env = dict(os.environ, PYTHONPATH=COLLECTIONS, PATH=faults.dir + os.pathsep + os.environ["PATH"])
    args_file = os.path.join(pair.tmp, "args.json")
    import json
    with open(args_file, "w") as f:
        json.dump({"ANSIBLE_MODULE_ARGS": B}, f)
    proc = subprocess.Popen(["ip", "netns", "exec", host.name, sys.executable, "-m",
                             "ansible_collections.kuma.mesh.plugins.modules.kuma_tproxy", args_file],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert wait_for(lambda: os.path.exists(os.path.join(faults.dir, "ip6tables-nft-restore.started")), 20)
    # the module is the child of `ip netns exec` (which execs it: same pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    repaired = run_module(host, B)
    assert not repaired.get("failed"), repaired
    assert state(host) == wanted_b
    assert run_module(host, B)["changed"] is False
    leftovers = [n for n in os.listdir("/tmp") if n.startswith("kuma-tproxy-") and n.endswith(".rules")]
    assert leftovers == []


# -- rules keep their place -------------------------------------------------------------


def test_a_changed_kuma_chain_does_not_move_kumas_jump(pair):
    host = pair.host
    assert not run_module(host, A).get("failed")
    host.run("iptables", "-t", "nat", "-A", "OUTPUT", "-d", "198.51.100.9", "-j", "ACCEPT")
    before = host.save()
    jump = [l for l in before.splitlines() if l.startswith("-A OUTPUT") and "KUMA_MESH_OUTBOUND" in l][0]
    foreign_rule = "-A OUTPUT -d 198.51.100.9/32 -j ACCEPT"
    assert before.index(jump) < before.index(foreign_rule)
    changed = run_module(host, dict(A, redirect={"inbound": {"exclude_ports": [1111, 3333]}}), diff=True)
    assert changed["changed"]
    restores = [c for c in changed["commands"] if "-restore" in c]
    assert restores, changed
    after = host.save()
    assert after.index(jump) < after.index(foreign_rule), after
    assert "--dport 3333" in after
    # built-in chains untouched: the same OUTPUT and PREROUTING rules, in the same order
    for chain in ("-A OUTPUT", "-A PREROUTING"):
        assert [l for l in before.splitlines() if l.startswith(chain)] == \
            [l for l in after.splitlines() if l.startswith(chain)]


def test_position_only_drift_shows_in_the_check_mode_diff(pair):
    host = pair.host
    settings = dict(BASE, redirect={"dns": {"capture_all": True}})
    assert not run_module(host, settings).get("failed")
    host.run("iptables", "-t", "nat", "-I", "OUTPUT", "1", "-d", "198.51.100.8", "-j", "ACCEPT")
    result = run_module(host, settings, check=True, diff=True)
    assert result["changed"]
    nat = [d for d in result["diff"] if d["before_header"].startswith("ipv4 nft nat")][0]
    assert nat["before"] != nat["after"]
    assert "not Kuma's" in nat["before"]


# -- input the host cannot carry ----------------------------------------------------------


def test_an_operators_filter_rule_with_kumas_comment_is_left_alone(pair):
    host = pair.host
    host.run("iptables", "-A", "INPUT", "-p", "tcp", "--dport", "22", "-m", "comment", "--comment",
             "kuma/mesh/transparent/proxy/keep ssh", "-j", "ACCEPT")
    before = state(host)
    assert not run_module(host, BASE).get("failed")
    assert "kuma/mesh/transparent/proxy/keep ssh" in host.save()
    assert run_module(host, BASE)["changed"] is False
    assert not run_module(host, dict(BASE, state="absent")).get("failed")
    assert state(host) == before


def test_resolv_conf_is_read_as_glibc_reads_it(pair):
    host = pair.host
    path = os.path.join(pair.tmp, "resolv.conf")
    with open(path, "w") as f:
        f.write("# comment\nnameserver 192.0.2.53/24\nnameserver\n  nameserver 192.0.2.54\n"
                "nameserver 192.0.2.55 # trailing\nnameserver fe80::1%lo\n")
    result = run_module(host, dict(BASE, redirect={"dns": {"enabled": True, "resolv_conf": path}}))
    assert not result.get("failed"), result
    v4 = result["rules"]["ipv4"]
    assert "192.0.2.55" in v4  # the address only, the rest of the line ignored
    assert "192.0.2.54" not in v4  # glibc matches the keyword at the start of the line only
    assert "192.0.2.53" not in v4
    assert any("192.0.2.53/24" in str(w) for w in result.get("warnings", []))


def test_root_is_refused_and_empty_means_kumas_default(pair):
    host = pair.host
    before = state(host)
    for user in ("root", "0"):
        result = run_module(host, {"kuma_dp_user": user})
        assert result.get("failed") and "uid 0" in result["msg"], result
        assert state(host) == before
    result = run_module(host, {"kuma_dp_user": ""})
    assert not result.get("failed"), result
    assert "--uid-owner 5678" in host.save()


def test_uninstall_puts_back_kumactls_resolv_conf_backup(pair):
    host = pair.host
    path = os.path.join(pair.tmp, "resolv.conf")
    with open(path, "w") as f:
        f.write("nameserver 127.0.0.1\n")
    with open(path + ".kuma-backup", "w") as f:
        f.write("nameserver 192.0.2.53\n")
    settings = dict(BASE, redirect={"dns": {"resolv_conf": path}})
    check = run_module(host, dict(settings, state="absent"), check=True)
    assert check["changed"] and os.path.exists(path + ".kuma-backup")
    result = run_module(host, dict(settings, state="absent"))
    assert result["changed"] and result["resolv_conf_restored"] == path
    assert open(path).read() == "nameserver 192.0.2.53\n" and not os.path.exists(path + ".kuma-backup")
    assert run_module(host, dict(settings, state="absent"))["changed"] is False


def test_an_ssh_exclusion_stays_until_removed_explicitly(pair):
    host = pair.host
    env = {"SSH_CONNECTION": "192.0.2.2 50000 192.0.2.1 22"}
    first = run_module(host, BASE, env=env)
    assert first["ssh_port_excluded"] and "--dport 22 -j RETURN" in host.save()
    # a later run that sees no session (ansible-pull, local connection) keeps it, and says so
    later = run_module(host, BASE)
    assert later["changed"] is False and later["ssh_ports_kept"] == [22], later
    assert any("22" in str(w) and "protect_ssh_session" in str(w) for w in later.get("warnings", []))
    assert "--dport 22 -j RETURN" in host.save()
    removed = run_module(host, dict(BASE, protect_ssh_session=False))
    assert removed["changed"] and "--dport 22 -j RETURN" not in host.save()
