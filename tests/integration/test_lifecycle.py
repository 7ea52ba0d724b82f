"""kuma_tproxy's promises on a real host: idempotence, drift repair, check mode,
uninstall that restores the host, adoption of kumactl's rules, rollback on
failure, the xtables lock, bad input and the SSH session."""

import os
import stat
import subprocess
import uuid

import pytest

from netns import ROOT, Namespace, run_module

GOLDEN = os.path.join(os.path.dirname(ROOT), "shared", "kuma-golden", "e2e-iptables-save")

FOREIGN = {
    "ipv4": """*raw
-A PREROUTING -s 192.0.2.77/32 -j NOTRACK
COMMIT
*nat
:CUSTOM_CHAIN_NAT - [0:0]
-A PREROUTING -p tcp -m tcp --dport 2222 -j CUSTOM_CHAIN_NAT
-A OUTPUT -d 198.51.100.7/32 -p tcp -m comment --comment "the user's own rule, with a quote ' in it" -j RETURN
-A CUSTOM_CHAIN_NAT -p tcp -j REDIRECT --to-ports 22
COMMIT
*mangle
:CUSTOM_CHAIN_MANGLE - [0:0]
-A PREROUTING -j CUSTOM_CHAIN_MANGLE
-A CUSTOM_CHAIN_MANGLE -j MARK --set-xmark 0x1/0xffffffff
COMMIT
""",
    "ipv6": """*nat
:CUSTOM6 - [0:0]
-A OUTPUT -d 2001:db8::99/128 -j CUSTOM6
-A CUSTOM6 -j RETURN
COMMIT
""",
}

FULL = {
    "kuma_dp_user": "kuma-dp",
    "drop_invalid_packets": True,
    "log": {"enabled": True},
    "redirect": {
        "dns": {"capture_all": True},
        "vnet": {"networks": ["docker0:172.17.0.0/16", "br+:2001:db8:1::/64"]},
        "inbound": {"exclude_ports": [22, 4444], "exclude_ips": ["192.0.2.0/28", "2001:db8::5"]},
        "outbound": {
            "exclude_ports": [6, 77],
            "exclude_ips": ["198.51.100.0/24,2001:db8:ff::/48"],
            "exclude_ports_for_uids": ["udp:53:106-108", "1000"],
        },
    },
}


def all_rules(ns, mode="nft"):
    return {f: ns.save(f, mode) for f in ("ipv4", "ipv6")}


def restore_processes(result):
    """The restores run in the host's namespace (not the feature probes in a throwaway one)."""
    return [c for c in result["commands"] if "-restore" in c and " --net -- " not in c]


def with_foreign_rules(ns, mode="nft"):
    for family, text in FOREIGN.items():
        ns.restore(text, family, mode)
    return all_rules(ns, mode)


def test_second_run_writes_nothing_and_drift_is_repaired(pair):
    host = pair.host
    with_foreign_rules(host)
    first = run_module(host, FULL)
    assert first["changed"] and restore_processes(first), first
    installed = all_rules(host)

    second = run_module(host, FULL)
    assert second["changed"] is False, second
    assert restore_processes(second) == [] and all("-save" in c for c in second["commands"]), second
    assert all_rules(host) == installed

    # drift: a Kuma rule deleted and one changed by hand
    host.run("iptables", "-t", "nat", "-D", "KUMA_MESH_INBOUND", "-p", "tcp", "-m", "comment", "--comment",
             "kuma/mesh/transparent/proxy/exclude inbound traffic from port 4444 from redirection",
             "-m", "tcp", "--dport", "4444", "-j", "RETURN")
    host.run("ip6tables", "-t", "nat", "-R", "KUMA_MESH_INBOUND_REDIRECT", "1", "-p", "tcp", "-j", "REDIRECT",
             "--to-ports", "16006")
    assert all_rules(host) != installed
    repaired = run_module(host, FULL)
    assert repaired["changed"], repaired
    assert all_rules(host) == installed
    assert run_module(host, FULL)["changed"] is False


def test_kuma_rules_moved_from_the_top_are_drift(pair):
    host = pair.host
    run_module(host, FULL)
    installed = all_rules(host)
    host.run("iptables", "-t", "nat", "-I", "OUTPUT", "1", "-d", "198.51.100.8", "-j", "ACCEPT")
    result = run_module(host, FULL)
    assert result["changed"], "Kuma's inserted OUTPUT rules must be on top"
    lines = host.save()
    kuma_first = lines.index("-A OUTPUT -m comment")
    assert kuma_first < lines.index("-A OUTPUT -d 198.51.100.8/32 -j ACCEPT")
    assert all_rules(host)["ipv6"] == installed["ipv6"]


def test_check_mode_touches_nothing_and_reports_the_change(pair):
    host = pair.host
    before = with_foreign_rules(host)
    result = run_module(host, FULL, check=True, diff=True)
    assert result["changed"] is True
    assert restore_processes(result) == []
    assert all_rules(host) == before
    assert result["rules"]["ipv4"].startswith("* raw\n") and "-N KUMA_MESH_INBOUND" in result["rules"]["ipv4"]
    headers = [d["after_header"] for d in result["diff"]]
    assert "ipv4 nft nat (Kuma's rules wanted)" in headers and "ipv6 nft raw (Kuma's rules wanted)" in headers
    nat = [d for d in result["diff"] if d["after_header"].startswith("ipv4 nft nat")][0]
    assert nat["before"] == "" and ":KUMA_MESH_OUTBOUND - [0:0]" in nat["after"]
    # '::6' is not added in check mode either
    assert "::6" not in host.run("ip", "-6", "addr", "show", "dev", "lo").stdout


def test_uninstall_restores_the_host_exactly(pair):
    host = pair.host
    before = with_foreign_rules(host)
    run_module(host, FULL)
    assert "KUMA_MESH" in host.save("ipv4") and "::6/128" in host.run("ip", "-6", "addr", "show", "dev", "lo").stdout
    removed = run_module(host, {"state": "absent"}, diff=True)
    assert removed["changed"], removed
    after = all_rules(host)
    # byte-identical: the tables the install created (raw, mangle) are gone again
    assert after == before
    assert "::6/128" not in host.run("ip", "-6", "addr", "show", "dev", "lo").stdout
    again = run_module(host, {"state": "absent"})
    assert again["changed"] is False and restore_processes(again) == []


def kumactl_golden(name):
    if not os.path.isdir(GOLDEN):
        if os.environ.get("CI"):
            raise AssertionError("missing " + GOLDEN)
        pytest.skip("Kuma's golden files are not beside this checkout")
    with open(os.path.join(GOLDEN, name)) as f:
        return f.read().replace("ifPlaceholder", "lo")


def test_rules_written_by_kumactl_are_adopted_then_removed(pair):
    """Kuma's own iptables-save output after `kumactl install transparent-proxy`:
    for the same settings the module finds nothing to change; absent removes it all."""
    host = pair.host
    before = with_foreign_rules(host)
    host.restore(kumactl_golden("ubuntu-24-04-default.iptables.golden"), "ipv4")
    host.restore(kumactl_golden("ubuntu-24-04-default.ip6tables.golden"), "ipv6")
    host.run("ip", "-6", "addr", "add", "::6/128", "dev", "lo")
    adopted = run_module(host, {"kuma_dp_user": "kuma-dp"})
    assert adopted["changed"] is False, adopted
    changed = run_module(host, {"kuma_dp_user": "kuma-dp", "redirect": {"inbound": {"port": 15007}}})
    assert changed["changed"]
    assert "--to-ports 15007" in host.save("ipv4")
    run_module(host, {"state": "absent"})
    assert all_rules(host) == before


def test_rules_of_kumactl_with_many_flags_are_removed(pair):
    host = pair.host
    before = with_foreign_rules(host)
    host.restore(kumactl_golden("ubuntu-24-04-with-multiple-flags.iptables.golden"), "ipv4")
    host.restore(kumactl_golden("ubuntu-24-04-with-multiple-flags.ip6tables.golden"), "ipv6")
    result = run_module(host, {"state": "absent"})
    assert result["changed"]
    assert all_rules(host) == before


def test_legacy_backend_and_switching_backends(pair):
    host = pair.host
    legacy = run_module(host, dict(FULL, iptables_mode="legacy"))
    assert legacy["changed"] and legacy["iptables_mode"] == "legacy"
    assert "KUMA_MESH_OUTBOUND" in host.save("ipv4", "legacy")
    assert "--wait=5" in " ".join(legacy["commands"])
    assert run_module(host, dict(FULL, iptables_mode="legacy"))["changed"] is False
    # auto keeps the backend that holds Kuma's rules
    assert run_module(host, FULL)["iptables_mode"] == "legacy"
    # switching to nft moves the rules: none are left behind in legacy
    switched = run_module(host, dict(FULL, iptables_mode="nft"))
    assert switched["changed"]
    assert "KUMA_MESH" not in host.save("ipv4", "legacy") and "KUMA_MESH" not in host.save("ipv6", "legacy")
    assert "KUMA_MESH" in host.save("ipv4", "nft")
    assert run_module(host, dict(FULL, iptables_mode="nft"))["changed"] is False


def test_ipv4_mode_removes_kumas_ipv6_rules(pair):
    host = pair.host
    run_module(host, FULL)
    assert "KUMA_MESH" in host.save("ipv6")
    result = run_module(host, dict(FULL, ip_family_mode="ipv4"))
    assert result["changed"] and result["families"] == ["ipv4"]
    assert "KUMA_MESH" not in host.save("ipv6") and "KUMA_MESH" in host.save("ipv4")


def test_host_without_ipv6_stays_ipv4_only_when_passthrough_address_appears():
    """A host whose only IPv6 is ::1 gets Kuma's IPv4 rules only, as kumactl
    does; ::6 on the loopback (kuma-dp.service, or an earlier run, puts it
    there) does not turn IPv6 on at the next run."""
    ns = Namespace("kmlo-" + uuid.uuid4().hex[:6])
    try:
        first = run_module(ns, FULL)
        assert first["changed"] and first["families"] == ["ipv4"], first
        ns.run("ip", "-6", "addr", "add", "::6/128", "dev", "lo")
        again = run_module(ns, FULL)
        assert again["changed"] is False and again["families"] == ["ipv4"], again
        assert "KUMA_MESH" not in ns.save("ipv6") and "KUMA_MESH" in ns.save("ipv4")
    finally:
        ns.delete()


def test_comments_disabled_is_idempotent_and_uninstallable(pair):
    host = pair.host
    settings = dict(FULL, comments={"disabled": True})
    before = with_foreign_rules(host)
    assert run_module(host, settings)["changed"]
    assert "kuma/mesh" not in host.save("ipv4")
    assert run_module(host, settings)["changed"] is False
    run_module(host, dict(settings, state="absent"))
    assert all_rules(host) == before


def failing_restore(tmp, fail_when):
    """An iptables-nft-restore in front of the real one that fails on demand:
    'apply' fails the real run after the validation passed, and 'ipv6' fails
    only the IPv6 family (the IPv4 one has been applied by then)."""
    bindir = os.path.join(tmp, "bin")
    os.makedirs(bindir, exist_ok=True)
    for tool in ("iptables-nft-restore", "ip6tables-nft-restore"):
        fail = fail_when == "apply" or (fail_when == "ipv6" and tool.startswith("ip6"))
        path = os.path.join(bindir, tool)
        with open(path, "w") as f:
            f.write("#!/bin/sh\n")
            if fail:
                f.write('case " $* " in *" --test "*) ;; *) echo "injected failure" >&2; exit 4;; esac\n')
            f.write('exec /usr/sbin/%s "$@"\n' % tool)
        os.chmod(path, stat.S_IRWXU)
    return bindir


@pytest.mark.parametrize("fail_when", ["apply", "ipv6"])
def test_a_failed_apply_leaves_the_rules_as_they_were(pair, fail_when):
    host = pair.host
    with_foreign_rules(host)
    run_module(host, {"kuma_dp_user": "kuma-dp"})
    before = all_rules(host)
    bindir = failing_restore(pair.tmp, fail_when)
    settings = dict(FULL, retry={"max_retries": 1, "sleep_between_retries": 0})
    result = run_module(host, settings, path_prepend=bindir)
    assert result.get("failed"), result
    assert "injected failure" in result["msg"] and "as they were before this run" in result["msg"], result["msg"]
    assert result["changed"] is False
    assert all_rules(host) == before


def test_the_xtables_lock_is_waited_for_and_retried(pair):
    host = pair.host
    holder = subprocess.Popen(["flock", "/run/xtables.lock", "sleep", "3"])
    try:
        result = run_module(
            host,
            {"kuma_dp_user": "kuma-dp", "iptables_mode": "legacy", "wait": 1,
             "retry": {"max_retries": 5, "sleep_between_retries": 1}},
        )
    finally:
        holder.wait()
    assert result["changed"] and not result.get("failed"), result
    assert len([c for c in result["commands"] if "legacy-restore --noflush --wait=1 --test" in c]) >= 2
    assert "KUMA_MESH" in host.save("ipv4", "legacy")


@pytest.mark.parametrize(
    "args,expected",
    [
        ({"redirect": {"inbound": {"port": 70000}}}, "redirect.inbound.port: 70000 is not a valid port"),
        ({"redirect": {"outbound": {"exclude_ports": [0]}}}, "redirect.outbound.exclude_ports: 0 is not a valid port"),
        ({"redirect": {"outbound": {"exclude_ips": ["10.0.0.300"]}}}, "redirect.outbound.exclude_ips: '10.0.0.300' is not a valid IP"),
        ({"redirect": {"inbound": {"exclude_ips": ["fe80::/129"]}}}, "redirect.inbound.exclude_ips: 'fe80::/129'"),
        ({"redirect": {"outbound": {"exclude_ports_for_uids": ["3000-5000:1:*"]}}}, "wildcard '*' is not allowed for UIDs"),
        ({"redirect": {"outbound": {"exclude_ports_for_uids": ["http:3000-5000:1"]}}}, "invalid or unsupported protocol: 'http'"),
        ({"redirect": {"outbound": {"exclude_ports_for_uids": ["1:1,2,3"]}}}, "invalid UID entry: '1,2,3'"),
        ({"redirect": {"outbound": {"exclude_ports_for_uids": ["a3000-5000:1"]}}}, "invalid uint16 value: 'a3000'"),
        ({"redirect": {"vnet": {"networks": ["docker0"]}}}, "redirect.vnet.networks: 'docker0' is not 'iface:CIDR'"),
        ({"redirect": {"vnet": {"networks": ["docker0:172.17.0.0"]}}}, "'172.17.0.0' is not a valid CIDR"),
        ({"kuma_dp_user": "no-such-user-here"}, "kuma_dp_user: 'no-such-user-here' does not refer to a valid user"),
        ({"redirect": {"inbound": {"port": 15001}}}, "both are 15001"),
        ({"redirect": {"dns": {"enabled": True, "resolv_conf": "/nonexistent/resolv.conf"}}},
         "redirect.dns.resolv_conf: '/nonexistent/resolv.conf' does not exist"),
        ({"no_such_option": 1}, "no_such_option"),
    ],
)
def test_bad_input_names_the_option_and_changes_nothing(pair, args, expected):
    host = pair.host
    before = with_foreign_rules(host)
    run_module(host, {"kuma_dp_user": "kuma-dp"})
    installed = all_rules(host)
    assert installed != before
    result = run_module(host, dict({"kuma_dp_user": "kuma-dp"}, **args))
    assert result.get("failed"), result
    assert expected in result["msg"], result["msg"]
    assert all_rules(host) == installed
    assert not result.get("commands")


def test_the_ssh_session_port_stays_reachable(pair):
    host = pair.host
    env = {"SSH_CONNECTION": "192.0.2.2 50000 192.0.2.1 2022"}
    result = run_module(host, {"kuma_dp_user": "kuma-dp"}, env=env)
    assert result["ssh_session_port"] == 2022 and result["ssh_port_excluded"] is True
    assert "--dport 2022 -j RETURN" in host.save("ipv4")
    assert run_module(host, {"kuma_dp_user": "kuma-dp"}, env=env)["changed"] is False
    # an explicit opt-out: the port is redirected like any other, with a warning
    out = run_module(host, {"kuma_dp_user": "kuma-dp", "protect_ssh_session": False}, env=env)
    assert out["changed"] and out["ssh_port_excluded"] is False
    assert any("2022" in str(w) for w in out.get("warnings", []))
    assert "--dport 2022" not in host.save("ipv4")
