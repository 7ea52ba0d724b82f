"""kuma_tproxy degrades where Kuma degrades, on real iptables in network namespaces.

A host whose kernel lacks the comment module, the conntrack zone support (``-j CT
--zone`` in the raw table) or the mangle table is played by fake ``*-restore`` on
PATH, stacked on the fault-injection harness of test_promises: they refuse a commit
that uses the missing feature, as such a kernel does (``--test`` stays userspace-only
and passes, as it does there). The module must find that out once, write Kuma's rules
without the feature, say what it left out and why, converge with no change and no
warning, and uninstall what it wrote. See docs/kuma_tproxy.md, "Hosts that lack a
feature"."""

import json
import os
import stat

import pytest

from netns import run_module
from test_promises import TOOLS, Faults

BASE = {"kuma_dp_user": "kuma-dp"}

REFUSE = """#!/bin/sh
# fake %(tool)s of a kernel without what %(dir)s/%(tool)s.refuse lists (one fixed string a line):
# a commit that uses it fails as the kernel refuses it; --test is userspace-only and passes.
# The input is the file named last (kuma_tproxy's runner never writes to a restore's stdin).
for input; do :; done
case " $* " in *" --test "*) test_call=1 ;; *) test_call=0 ;; esac
if [ $test_call = 0 ] && [ -s %(dir)s/%(tool)s.refuse ]; then
  line=$(grep -n -F -f %(dir)s/%(tool)s.refuse "$input" | head -n 1 | cut -d: -f1)
  if [ -n "$line" ]; then
    echo "%(tool)s v1.8.9 (nf_tables): line $line: RULE_APPEND failed (No such file or directory)" >&2
    exit 4
  fi
fi
exec %(next)s/%(tool)s "$@"
"""

PATTERNS = {"comment": "-m comment", "conntrack_zone": "--zone", "mangle": "*mangle"}


class Missing(object):
    """Fake restores on top of the fault-injection harness that refuse ``features``."""

    def __init__(self, tmp, features):
        self.faults = Faults(tmp)
        self.dir = os.path.join(tmp, "missing-bin")
        os.makedirs(self.dir, exist_ok=True)
        for tool in TOOLS:
            if not tool.endswith("-restore"):
                continue
            path = os.path.join(self.dir, tool)
            with open(path, "w") as f:
                f.write(REFUSE % {"tool": tool, "dir": self.dir, "next": self.faults.dir})
            os.chmod(path, stat.S_IRWXU)
            with open(path + ".refuse", "w") as f:
                f.write("".join(PATTERNS[name] + "\n" for name in features))
        self.path = self.dir + os.pathsep + self.faults.dir


def resolv(pair, *servers):
    path = os.path.join(pair.tmp, "resolv.conf")
    with open(path, "w") as f:
        f.write("".join("nameserver %s\n" % s for s in servers))
    return path


def warnings_of(result):
    return json.dumps(result.get("warnings") or [])


def kuma_lines(ns, family):
    return [line for line in ns.save(family).splitlines() if "KUMA_MESH" in line or "-j CT" in line
            or "INVALID" in line]


def probes(result):
    return [c for c in result["commands"] if c.startswith(("unshare", "/usr/bin/unshare"))
            or ("unshare" in c.split(" ")[0])]


def test_without_the_comment_module_rules_are_written_without_comments(pair):
    host = pair.host
    missing = Missing(pair.tmp, ["comment"])
    settings = dict(BASE, redirect={"dns": {"enabled": True, "resolv_conf": resolv(pair, "192.0.2.53", "2001:db8::53")}},
                    drop_invalid_packets=True)
    # check mode already knows (the probes run in a throwaway namespace) and touches nothing
    check = run_module(host, settings, check=True, path_prepend=missing.path)
    assert check["changed"] is True and set(check["left_out"]) == {"ipv4", "ipv6"}, check
    assert "-m comment" not in check["rules"]["ipv4"] and kuma_lines(host, "ipv4") == []
    first = run_module(host, settings, path_prepend=missing.path)
    assert not first.get("failed"), first
    assert first["changed"] is True
    assert first["rules"] == check["rules"]
    assert set(first["left_out"]) == {"ipv4", "ipv6"}, first["left_out"]
    assert list(first["left_out"]["ipv4"]) == ["comment"]
    assert "RULE_APPEND failed" in first["left_out"]["ipv4"]["comment"]
    text = warnings_of(first)
    assert "ipv4: comments are left out: the iptables comment module is not available" in text, text
    assert "ipv6: comments are left out" in text
    for family in ("ipv4", "ipv6"):
        saved = host.save(family)
        assert "-m comment" not in saved and "KUMA_MESH_OUTBOUND" in saved
        assert "-j CT --zone 1" in saved and "--ctstate INVALID -j DROP" in saved  # the rest is all there
        assert "-m comment" not in first["rules"][family]
    # converge: nothing to do, nothing to say; what was left out is still reported
    again = run_module(host, settings, path_prepend=missing.path)
    assert again["changed"] is False and not again.get("warnings"), again
    assert again["left_out"] == first["left_out"]
    # uninstall finds Kuma's uncommented rules by their content
    gone = run_module(host, dict(settings, state="absent"), path_prepend=missing.path)
    assert not gone.get("failed") and gone["changed"] is True, gone
    assert kuma_lines(host, "ipv4") == [] and kuma_lines(host, "ipv6") == []


def test_without_conntrack_zones_dns_is_redirected_without_the_split(pair):
    host = pair.host
    missing = Missing(pair.tmp, ["conntrack_zone"])
    settings = dict(BASE, redirect={"dns": {"enabled": True, "resolv_conf": resolv(pair, "192.0.2.53")}})
    first = run_module(host, settings, path_prepend=missing.path)
    assert not first.get("failed"), first
    assert list(first["left_out"]) == ["ipv4"] and list(first["left_out"]["ipv4"]) == ["conntrack_zone"]
    assert "ipv4: conntrack zone splitting is disabled (DNS is still redirected)" in warnings_of(first)
    saved = host.save("ipv4")
    assert "-j CT" not in saved and "*raw" not in first["rules"]["ipv4"]
    assert [line for line in saved.splitlines()
            if "-d 192.0.2.53/32" in line and "--dport 53" in line and "--to-ports 15053" in line]
    # IPv6 has no resolver: no zone split wanted there, so nothing left out, and no DNS warning
    assert "ipv6" not in first["left_out"]
    assert "DNS servers" not in warnings_of(first)
    assert first["dns_not_redirected"] == {"ipv6": "no IPv6 DNS servers found in %s" % resolv(pair, "192.0.2.53")}
    again = run_module(host, settings, path_prepend=missing.path)
    assert again["changed"] is False and not again.get("warnings"), again


def test_without_the_mangle_table_invalid_packets_are_not_dropped(pair):
    host = pair.host
    missing = Missing(pair.tmp, ["mangle"])
    settings = dict(BASE, drop_invalid_packets=True)
    first = run_module(host, settings, path_prepend=missing.path)
    assert not first.get("failed"), first
    assert list(first["left_out"]["ipv4"]) == list(first["left_out"]["ipv6"]) == ["mangle"]
    assert "drop_invalid_packets is left out" in warnings_of(first)
    for family in ("ipv4", "ipv6"):
        assert "INVALID" not in host.save(family) and "*mangle" not in first["rules"][family]
        assert "-m comment --comment" in host.save(family)  # comments are there
    again = run_module(host, settings, path_prepend=missing.path)
    assert again["changed"] is False and not again.get("warnings"), again
    # the module comes back (a kernel update): the next run writes the rule
    fixed = run_module(host, settings)
    assert fixed["changed"] is True and fixed["left_out"] == {}, fixed
    assert "--ctstate INVALID -j DROP" in host.save("ipv4")


@pytest.mark.parametrize("mode", ["nft", "legacy"])
def test_a_host_with_everything_probes_once_and_converges_silently(pair, mode):
    """First install: one probe per family (in a throwaway namespace); after that the
    saved rules prove the features and no probe runs. An IPv4-only resolv.conf is
    normal: said in dns_not_redirected, not warned."""
    host = pair.host
    path = resolv(pair, "192.0.2.53")
    settings = dict(BASE, redirect={"dns": {"enabled": True, "resolv_conf": path}}, drop_invalid_packets=True,
                    iptables_mode=mode)
    first = run_module(host, settings)
    assert not first.get("failed") and first["changed"] is True, first
    assert first["left_out"] == {} and not first.get("warnings"), first
    assert len(probes(first)) == 2, first["commands"]  # ipv4 (comment, zone, mangle), ipv6 (comment, mangle)
    assert all("--test" not in c and "-%s-restore" % mode in c for c in probes(first))
    assert "--ctstate INVALID -j DROP" in host.save("ipv4", mode) and "-j CT --zone 1" in host.save("ipv4", mode)
    again = run_module(host, settings)
    assert again["changed"] is False and not again.get("warnings"), again
    assert probes(again) == [] and again["dns_not_redirected"] == {"ipv6": "no IPv6 DNS servers found in %s" % path}
    assert [c for c in again["commands"] if "-restore" in c] == []


def test_no_dns_server_of_any_family_is_warned(pair):
    host = pair.host
    path = resolv(pair)
    result = run_module(host, dict(BASE, redirect={"dns": {"enabled": True, "resolv_conf": path}}))
    assert not result.get("failed"), result
    assert "DNS traffic is not redirected" in warnings_of(result)
    assert set(result["dns_not_redirected"]) == {"ipv4", "ipv6"}
