"""The fault sweep: every process kuma_tproxy starts, made to fail in turn, on real
iptables in a network namespace, through the real module.

Every process of a run starts through one runner (plugins/module_utils/tproxy_runner.py,
on AnsibleModule.run_command). A clean run is counted first; then for every N the
N-th start fails, in two ways:

- ``exit``: a fake of each tool the engine runs (``*-save``, ``*-restore``, ``unshare``
  of the capability probes, ``ip``, ``nft``) first on PATH, all counting one sequence
  of starts, fails the N-th (exit 4) and runs the real tool otherwise;
- ``oserror``: the binary is not there at the N-th start (subprocess.Popen raises
  FileNotFoundError in the module process, a sitecustomize hook on PYTHONPATH), which
  Ansible's run_command would turn into a fail_json without the rollback unless it is
  told not to.

What a failed start must lead to depends on what it was, and the sweep knows it from the
counted run:
- a read or a write (``*-save``, ``*-restore``, ``ip -6 addr``): the run fails with a
  message naming the failure (no traceback, no "internal error"), ``changed`` is false,
  and the host is exactly as before, byte for byte (both families' tables with foreign
  rules, comments that are not UTF-8 or hold what str.splitlines takes for a line end
  among them, and ::6 on lo);
- a capability probe (``unshare --net -- *-restore``): a probe's failure is a finding,
  not a fault; the engine probes again and writes the same rules as the clean run;
- ``nft delete table`` of a table the run emptied: a warning, the run succeeds.
Afterwards a clean run converges and the next one changes nothing.
"""

import os
import shutil
import stat
import subprocess

import pytest

from netns import COLLECTIONS, FOREIGN_V4, FOREIGN_V6, run_module

BASE = {"kuma_dp_user": "kuma-dp"}
OLD = dict(BASE, redirect={"inbound": {"exclude_ports": [1111]}})
# no retries: every failure is final (a retry would write the rules after a transient fault)
FULL = dict(BASE, ip_family_mode="dualstack", retry={"max_retries": 0},
            redirect={"dns": {"capture_all": True}, "inbound": {"exclude_ports": [4444, 5555]}})
ABSENT = dict(FULL, state="absent")

NOT_UTF8 = os.fsdecode(b"\xff\xfe")  # passed to iptables as these two bytes
SEPARATORS = "x\x1cy\x85z\u2028w"  # line boundaries to str.splitlines, not to iptables-save

# where each scenario starts (the module runs that set the host up after the foreign
# rules) and the run swept
SCENARIOS = {
    "fresh": ([], FULL),
    "installed": ([OLD], FULL),  # installed with other options: every table changes
    "uninstall": ([FULL], ABSENT),
}

TOOLS = ["iptables-nft-save", "iptables-nft-restore", "ip6tables-nft-save", "ip6tables-nft-restore",
         "unshare", "ip", "nft"]

FAKE = """#!/bin/sh
# fake %(tool)s: counts the engine's starts (all tools, one sequence) and fails start
# number $(cat %(dir)s/fail). The restore a probe starts behind unshare is not the
# engine's own start (unshare execs it: the fake unshare's process id), and run_module's
# own ip netns exec is none either (the module runs in it).
if [ "$KUMA_SWEEP_UNSHARE" != "$$" ] && { [ %(tool)s != ip ] || [ "$1" != netns ]; }; then
  n=$(( $(cat %(dir)s/count 2>/dev/null || echo 0) + 1 ))
  echo "$n" > %(dir)s/count
  if [ "$(cat %(dir)s/fail 2>/dev/null)" = "$n" ]; then
    echo "injected failure of %(tool)s (start $n)" >&2
    exit 4
  fi
fi
if [ %(tool)s = unshare ]; then
  KUMA_SWEEP_UNSHARE=$$ exec %(real)s "$@"
fi
exec %(real)s "$@"
"""

HOOK = """# sitecustomize of the fault sweep (tests/integration/test_fault_sweep.py): the
# start number $KUMA_SWEEP_OSERROR_AT of this process finds no binary
import errno
import os
import subprocess

_at = int(os.environ.get("KUMA_SWEEP_OSERROR_AT") or 0)
_count_file = os.environ.get("KUMA_SWEEP_COUNT")
_popen = subprocess.Popen
_count = [0]


def _faulty_popen(args, *more, **kwargs):
    _count[0] += 1
    if _count_file:
        with open(_count_file, "w") as f:
            f.write(str(_count[0]))
    if _count[0] == _at:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), os.fsdecode(args[0]))
    return _popen(args, *more, **kwargs)


if _count_file or _at:
    subprocess.Popen = _faulty_popen
"""


class Sweep(object):
    """Injects the fault at one start number, one of two ways (see the module docstring)."""

    def __init__(self, tmp, how):
        self.how = how
        self.dir = os.path.join(tmp, "sweep-" + how)
        os.makedirs(self.dir)
        self.count_file = os.path.join(self.dir, "count")
        if how == "exit":
            path = os.environ["PATH"]
            for tool in TOOLS:
                real = shutil.which(tool, path=path)
                assert real, tool
                fake = os.path.join(self.dir, tool)
                with open(fake, "w") as f:
                    f.write(FAKE % {"tool": tool, "dir": self.dir, "real": real})
                os.chmod(fake, stat.S_IRWXU)
        else:
            with open(os.path.join(self.dir, "sitecustomize.py"), "w") as f:
                f.write(HOOK)

    def run(self, host, args, fail_at=0):
        if os.path.exists(self.count_file):
            os.unlink(self.count_file)
        if self.how == "exit":
            with open(os.path.join(self.dir, "fail"), "w") as f:
                f.write(str(fail_at))
            return run_module(host, args, path_prepend=self.dir)
        env = {"PYTHONPATH": self.dir + os.pathsep + COLLECTIONS, "KUMA_SWEEP_COUNT": self.count_file,
               "KUMA_SWEEP_OSERROR_AT": str(fail_at)}
        return run_module(host, args, env=env)

    def count(self):
        with open(self.count_file) as f:
            return int(f.read())


def save_bytes(ns, family):
    """``*-nft-save`` output as bytes (a comment need not be UTF-8), counters stripped."""
    tool = ("iptables" if family == "ipv4" else "ip6tables") + "-nft-save"
    out = subprocess.run(["ip", "netns", "exec", ns.name, tool], stdout=subprocess.PIPE, check=True).stdout
    lines = []
    for line in out.split(b"\n"):
        if line.startswith(b"#"):
            continue
        if line.startswith(b":") and line.endswith(b"]"):
            line = line[:line.rindex(b"[")].rstrip()
        lines.append(line)
    return b"\n".join(lines)


def state(ns):
    """Every table of both families, byte for byte (foreign rules included), and ::6 on lo."""
    addrs = ns.run("ip", "-6", "addr", "show", "dev", "lo").stdout
    return {"ipv4": save_bytes(ns, "ipv4"), "ipv6": save_bytes(ns, "ipv6"), "passthrough": "::6/128" in addrs}


def foreign(ns):
    ns.restore(FOREIGN_V4, "ipv4")
    ns.restore(FOREIGN_V6, "ipv6")
    ns.run("iptables-nft", "-t", "nat", "-A", "OUTPUT", "-d", "198.51.100.8", "-m", "comment", "--comment",
           NOT_UTF8, "-j", "RETURN")
    ns.run("iptables-nft", "-t", "nat", "-A", "OUTPUT", "-d", "198.51.100.9", "-m", "comment", "--comment",
           SEPARATORS, "-j", "RETURN")
    ns.run("ip6tables-nft", "-t", "nat", "-I", "OUTPUT", "-d", "2001:db8::98", "-m", "comment", "--comment",
           "v6 " + NOT_UTF8, "-j", "RETURN")
    saved = state(ns)
    assert b'--comment "\xff\xfe"' in saved["ipv4"] and b'--comment "v6 \xff\xfe"' in saved["ipv6"]
    assert b'--comment "%s"' % SEPARATORS.encode() in saved["ipv4"]
    return saved


def kind(command):
    name = os.path.basename(command.split()[0])
    if name == "unshare":
        return "probe"
    if name == "nft":
        return "drop"
    return "step"


def clear(result):
    """A failure message a user can act on: no traceback, no internal error."""
    msg = result.get("msg", "")
    return "exception" not in result and "Traceback" not in msg and "internal error" not in msg


def test_the_non_utf8_comment_survives_install_uninstall_and_a_rollback(pair):
    """Foreign rules in the tables Kuma writes keep their bytes: an install and an
    uninstall never touch them, and a rollback, which writes whole tables back, writes
    exactly the bytes it read (before tproxy_runner, output was decoded with
    errors="replace": the rollback wrote U+FFFD back and still said the host was as before)."""
    host = pair.host
    before = foreign(host)
    assert not run_module(host, FULL).get("failed")
    installed = state(host)
    for family in ("ipv4", "ipv6"):
        assert b"\xff\xfe" in installed[family]
    sweep = Sweep(pair.tmp, "exit")
    counted = sweep.run(host, ABSENT)
    assert counted["changed"] and not counted.get("failed"), counted
    assert state(host) == before
    # a rollback writes the whole nat table of IPv4 back (the IPv6 restore fails)
    failing = [i for i, c in enumerate(sweep.run(host, FULL)["commands"], 1)
               if c.endswith("ip6tables-nft-restore --noflush") and kind(c) == "step"][0]
    assert sweep.run(host, ABSENT)["changed"]
    result = sweep.run(host, FULL, fail_at=failing)
    assert result.get("failed") and "ipv4 nft tables" in result["msg"], result
    assert "as they were before this run" in result["msg"], result["msg"]
    assert result["changed"] is False and state(host) == before


@pytest.mark.parametrize("how", ["exit", "oserror"])
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_start_failing_in_turn_leaves_the_host_as_it_was(pair, scenario, how):
    host = pair.host
    setup, args = SCENARIOS[scenario]
    foreign(host)
    for step in setup:
        assert not run_module(host, step).get("failed")
    before = state(host)
    sweep = Sweep(pair.tmp, how)

    def back_to_start():
        result = run_module(host, setup[-1] if setup else ABSENT)
        assert not result.get("failed"), result
        assert state(host) == before, "the set-up did not come back to the start"

    clean = sweep.run(host, args)
    assert clean["changed"] and not clean.get("failed"), clean
    commands = clean["commands"]
    # every process of the run went through the runner into ``commands``, and through the fault
    assert sweep.count() == len(commands), (sweep.count(), commands)
    wanted = state(host)
    kinds = [kind(c) for c in commands]
    assert "step" in kinds and (scenario != "fresh" or "probe" in kinds) and (scenario != "uninstall" or "drop" in kinds)
    back_to_start()
    for n, command in enumerate(commands, 1):
        where = "start %d of %d (%s), %s" % (n, len(commands), command, how)
        result = sweep.run(host, args, fail_at=n)
        assert result.get("commands", [])[:n] == commands[:n], (where, result.get("msg"))
        marker = "injected failure" if how == "exit" else "No such file or directory"
        if kind(command) == "step":
            assert result.get("failed"), where
            assert clear(result) and marker in result["msg"], (where, result["msg"])
            assert result["changed"] is False, (where, result)
            assert ("as they were before this run" in result["msg"] or "Nothing was changed" in result["msg"]), \
                (where, result["msg"])
            assert state(host) == before, where
            continue
        assert not result.get("failed") and clear(result), (where, result)
        if kind(command) == "probe":
            # a probe's failure is a verdict on the features: probed again one by one
            # (the same rules), or, a probe of one feature, the feature left out and said
            if state(host) != wanted:
                assert result["left_out"] and any(marker in str(w) for w in result["warnings"]), (where, result)
        else:
            assert any("could not delete the empty" in str(w) and marker in str(w) for w in result.get("warnings", [])), where
        back_to_start()
    # nothing left behind: a clean run converges, the next changes nothing
    assert sweep.run(host, args)["changed"] is True
    assert state(host) == wanted
    assert run_module(host, args)["changed"] is False
