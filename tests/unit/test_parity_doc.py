"""docs/kuma-parity.md stays honest: the options it names exist, every module option is in it, and every
kumactl / kuma-dp flag and Dataplane field read from Kuma's source (2.14 and 3.x) has a row."""

import glob
import os
import re

import pytest
import yaml

from ansible_collections.kuma.mesh.tests.unit.paths import ROOT
DOC = os.path.join(ROOT, "docs", "kuma-parity.md")
MODULES = ("kuma_tproxy_check", "kuma_tproxy", "kuma_dataplane")  # longest prefix first
TABLE_MODULES = ("kuma_tproxy", "kuma_dataplane")  # every top-level option of these must be in a table

# Options other helpers add to the modules and the dataplane role in issue 12. The integrator empties these
# sets after merging their branches (the test below fails as soon as a name exists, as a reminder).
PENDING = set()  # options named in the table before their branch was merged: none left
PENDING_ROLE_VARS = set()

# Read from Kuma's source: app/kumactl/cmd/install/install_transparent_proxy.go (release-2.14 and master)
KUMACTL_FLAGS = {
    "config", "config-file", "dry-run", "verbose", "ip-family-mode", "kuma-dp-user", "kuma-dp-uid",
    "redirect-inbound", "redirect-inbound-port", "redirect-outbound-port", "exclude-inbound-ports",
    "exclude-outbound-ports", "exclude-inbound-ips", "exclude-outbound-ips", "exclude-outbound-ports-for-uids",
    "redirect-inbound-insert-instead-of-append", "redirect-outbound-insert-instead-of-append", "redirect-dns",
    "redirect-all-dns-traffic", "redirect-dns-port", "skip-dns-conntrack-zone-split", "vnet",
    "drop-invalid-packets", "iptables-logs", "disable-comments", "wait", "wait-interval", "max-retries",
    "sleep-between-retries", "iptables-executables", "store-firewalld", "ebpf-enabled", "ebpf-instance-ip",
    "ebpf-bpffs-path", "ebpf-cgroup-path", "ebpf-programs-source-path", "ebpf-tc-attach-iface",
}
# pkg/transparentproxy/config/config.go (json tags; ebpf.* on 2.14 only)
KUMACTL_CONFIG_KEYS = {
    "kumaDPUser", "ipFamilyMode", "dropInvalidPackets", "wait", "waitInterval", "iptablesExecutables",
    "storeFirewalld", "dryRun", "verbose", "cniMode", "ebpf.*", "log.enabled", "log.level", "comments.disabled",
    "retry.maxRetries", "retry.sleepBetweenRetries", "redirect.vnet.networks", "redirect.dns.enabled",
    "redirect.dns.port", "redirect.dns.captureAll", "redirect.dns.skipConntrackZoneSplit",
    "redirect.dns.resolvConfigPath",
} | {"redirect.%s.%s" % (flow, key) for flow in ("inbound", "outbound") for key in (
    "enabled", "port", "includePorts", "excludePorts", "excludePortsForUIDs", "excludePortsForIPs",
    "insertRedirectInsteadOfAppend")}
# app/kuma-dp/cmd/run.go and root.go (2.14 and master)
KUMA_DP_FLAGS = {
    "transparent-proxy", "transparent-proxy-config", "log-level", "log-output-path", "log-max-retained-files",
    "log-max-size", "log-max-age", "cp-address", "ca-cert-file", "skip-verify", "dataplane-token-file",
    "dataplane-token", "dataplane-file", "dataplane", "dataplane-var", "name", "mesh", "proxy-type",
    "binary-path", "work-dir", "config-dir", "drain-time", "concurrency", "envoy-log-level",
    "envoy-component-log-level", "metrics-cert-path", "metrics-key-path", "bind-outbounds", "dns-enabled",
    "dns-proxy-port", "dns-coredns-port", "dns-coredns-path", "dns-envoy-port", "dns-prometheus-port",
    "dns-enable-logging", "dns-coredns-config-template-path", "dns-server-config-dir",
}
# api/mesh/v1alpha1/dataplane.proto, the fields a Universal sidecar can carry
DATAPLANE_FIELDS = {
    "mesh", "name", "labels", "networking.address", "networking.advertisedAddress", "networking.inbound[].port",
    "networking.inbound[].servicePort", "networking.inbound[].serviceAddress", "networking.inbound[].address",
    "networking.inbound[].tags", "networking.inbound[].name", "networking.inbound[].protocol",
    "networking.inbound[].health.ready", "networking.inbound[].serviceProbe", "networking.inbound[].state",
    "networking.outbound[].address", "networking.outbound[].tags", "networking.outbound[].backendRef",
    "networking.transparentProxying.redirectPortInbound", "networking.transparentProxying.redirectPortOutbound",
    "networking.transparentProxying.ipFamilyMode", "networking.transparentProxying.directAccessServices",
    "networking.transparentProxying.reachableServices", "networking.transparentProxying.reachableBackends.refs[]",
    "networking.admin.port", "networking.gateway", "networking.listeners", "metrics", "probes",
}

Row = tuple  # (section, kuma, v214, v3, collection, status)


def rows():
    section, out = None, []
    with open(DOC) as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("## "):
                section = line[3:]
            if not line.startswith("|") or line.startswith("|---") or line.startswith("| Kuma |"):
                continue
            cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
            assert len(cells) == 5, "a row needs 5 cells: %s" % line
            out.append(Row([section] + cells))
    return out


def spec(module):
    source = open(os.path.join(ROOT, "plugins", "modules", module + ".py")).read()
    doc = yaml.safe_load(re.search(r'DOCUMENTATION = r"""(.*?)"""', source, re.S).group(1))
    names = set()

    def walk(options, prefix):
        for name, option in (options or {}).items():
            names.add(prefix + name)
            walk(option.get("suboptions"), prefix + name + ".")
    walk(doc["options"], module + ".")
    return doc["options"], names


def role_variables():
    names = set()
    for path in glob.glob(os.path.join(ROOT, "roles", "*", "defaults", "main.yml")):
        names.update((yaml.safe_load(open(path)) or {}).keys())
    return names


def collection_names(cell):
    return re.findall(r"`([^`]+)`", cell)


def module_of(name):
    for module in MODULES:
        if name.startswith(module + "."):
            return module
    return None


def test_every_option_named_in_the_table_exists():
    specs = {m: spec(m)[1] for m in MODULES}
    variables = role_variables()
    wrong = []
    for row in rows():
        for name in collection_names(row[4]):
            module = module_of(name)
            if module:
                if name not in specs[module] and name not in PENDING:
                    wrong.append("%s (row %s)" % (name, row[1]))
            elif re.match(r"^kuma_(dp|tproxy)_[a-z0-9_]+$", name):
                if name not in variables and name not in PENDING_ROLE_VARS:
                    wrong.append("role variable %s (row %s)" % (name, row[1]))
            else:
                wrong.append("%s is neither a module option nor a role variable (row %s)" % (name, row[1]))
    assert not wrong, "docs/kuma-parity.md names options that do not exist: " + "; ".join(wrong)


def test_pending_names_are_still_pending():
    """Once another branch adds an option, it must leave PENDING (the integrator's reminder)."""
    specs = set().union(*(spec(m)[1] for m in MODULES))
    arrived = sorted((PENDING & specs) | (PENDING_ROLE_VARS & role_variables()))
    assert not arrived, "these exist now; remove them from PENDING in tests/unit/test_parity_doc.py: %s" % arrived


@pytest.mark.parametrize("module", TABLE_MODULES)
def test_every_top_level_option_is_in_the_table(module):
    named = {n for row in rows() for n in collection_names(row[4])}
    top = {module + "." + option for option in spec(module)[0]}
    missing = sorted(t for t in top if not any(n == t or n.startswith(t + ".") for n in named))
    assert not missing, "docs/kuma-parity.md has no row for %s" % missing


def test_every_status_is_same_differs_or_not_supported_with_a_reason():
    for row in rows():
        status = row[5]
        assert re.match(r"^(same|differs|not supported)\b", status), row
        if not status.startswith("same"):
            assert re.match(r"^(differs|not supported)( \(|: )", status), "give the reason: %s" % (row,)
        for cell in row[2:4]:
            assert cell in ("yes", "no", "deprecated", "—"), row


def kuma_names(section_start):
    names = set()
    for row in rows():
        if row[0].startswith(section_start):
            names.update(collection_names(row[1]))
    return names


def test_every_kumactl_flag_has_a_row():
    named = {n[2:] for n in kuma_names("kumactl install transparent-proxy: flags")}
    assert KUMACTL_FLAGS - named == set()


def test_every_kumactl_config_key_has_a_row():
    assert KUMACTL_CONFIG_KEYS - kuma_names("kumactl transparent-proxy configuration") == set()


def test_every_kuma_dp_flag_has_a_row():
    named = {n[2:] for n in kuma_names("kuma-dp run") if n.startswith("--")}
    assert KUMA_DP_FLAGS - named == set()


def test_every_dataplane_field_has_a_row():
    named = {re.sub(r" \(.*", "", n) for n in kuma_names("Dataplane resource")}
    fields = {f for f in DATAPLANE_FIELDS if f not in named and not any(n.startswith(f) for n in named)}
    assert fields == set()
