# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kuma.mesh maintainers
# Apache License 2.0 (see LICENSE)
"""kuma_tproxy's one call: read everything, compute the wanted rules, diff,
apply only what differs in one validated transaction per family, read back.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_config as config
from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_host as host
from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_iptables as ipt
from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_rules as rules

FAMILIES = ("ipv4", "ipv6")
_PREFIX = {"ipv4": "iptables", "ipv6": "ip6tables"}
_LEGACY_TABLE_NAMES = {"ipv4": "/proc/net/ip_tables_names", "ipv6": "/proc/net/ip6_tables_names"}


def binaries(mode, family):
    """(save, restore) paths of ``mode`` for ``family``, or None when not installed."""
    found = []
    for tool in ("save", "restore"):
        path = host.find_executable("%s-%s-%s" % (_PREFIX[family], mode, tool))
        if path is None:
            plain = host.find_executable("%s-%s" % (_PREFIX[family], tool))
            path = plain if plain and host.executable_mode(plain) == mode else None
        if path is None:
            return None
        found.append(path)
    return tuple(found)


def legacy_in_use(family):
    """Legacy tables exist only once something loaded them: without any, there is nothing to read."""
    try:
        with open(_LEGACY_TABLE_NAMES[family]) as f:
            return bool(f.read().strip())
    except (IOError, OSError):
        return False


class Run(object):
    """State of one module run."""

    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.runners = {}  # (mode, family) -> ipt.Iptables
        self.saved = {}  # (mode, family) -> parsed tables
        self.claims = {}  # (mode, family) -> rules recognised as Kuma's without comments
        self.other_commands = []  # processes started besides the iptables runners'
        self.result = dict(changed=False, rules={}, families=[], commands=[])

    # -- reading ---------------------------------------------------------------
    def runner(self, mode, family):
        key = (mode, family)
        if key not in self.runners:
            paths = binaries(mode, family)
            if paths is None:
                return None
            retry = self.params["retry"]
            self.runners[key] = ipt.Iptables(
                self.module,
                paths[0],
                paths[1],
                mode,
                wait=self.params["wait"],
                wait_interval=self.params["wait_interval"],
                retries=retry["max_retries"],
                sleep=retry["sleep_between_retries"],
            )
        return self.runners[key]

    def tables(self, mode, family):
        key = (mode, family)
        if key not in self.saved:
            if mode == "legacy" and not legacy_in_use(family):
                self.saved[key] = {}
            else:
                try:
                    self.saved[key] = ipt.parse_save(self.runners[key].save())
                except ipt.IptablesError as exc:
                    self.fail("reading the current rules failed: %s" % exc)
        return self.saved[key]

    def choose_mode(self):
        """Kuma's choice of backend, preferring one that already holds Kuma's rules,
        and on a host with no rules at all the one ``iptables`` points to."""
        wanted = self.params["iptables_mode"]
        if wanted != "auto":
            if self.runner(wanted, "ipv4") is None:
                self.fail(
                    "iptables_mode: %r: %s-%s-save and -restore are not installed" % (wanted, _PREFIX["ipv4"], wanted)
                )
            return wanted
        modes = [m for m in ("nft", "legacy") if self.runner(m, "ipv4") is not None]
        if not modes:
            self.fail("iptables_mode: 'auto': neither iptables-nft nor iptables-legacy is installed")
        if len(modes) == 1:
            return modes[0]
        nft, legacy = self.tables("nft", "ipv4"), self.tables("legacy", "ipv4")
        kuma_nft, kuma_legacy = bool(ipt.owned_part(nft)), bool(ipt.owned_part(legacy))
        if kuma_nft != kuma_legacy:
            return "nft" if kuma_nft else "legacy"
        busy_nft, busy_legacy = ipt.has_existing_rules(nft), ipt.has_existing_rules(legacy)
        if busy_nft and busy_legacy:
            docker_legacy = ipt.has_chain(legacy, "nat", rules.DOCKER_OUTPUT_CHAIN)
            docker_nft = ipt.has_chain(nft, "nat", rules.DOCKER_OUTPUT_CHAIN)
            return "legacy" if docker_legacy and not docker_nft else "nft"
        if busy_nft or busy_legacy:
            return "legacy" if busy_legacy else "nft"
        # No rules anywhere: Kuma would take nft; the backend the host's own
        # `iptables` points to (update-alternatives) is what its admins see.
        plain = host.find_executable("iptables")
        return (plain and host.executable_mode(plain)) or "nft"

    # -- helpers ---------------------------------------------------------------
    def fail(self, msg, **extra):
        self.result.update(extra)
        self.result["commands"] = self.commands()
        self.module.fail_json(msg=msg, **self.result)

    def commands(self):
        out = list(self.other_commands)
        for runner in self.runners.values():
            out += runner.commands
        return out

    # -- the run ---------------------------------------------------------------
    def check_input(self):
        if not config.HAS_NETADDR:
            self.module.fail_json(msg=missing_required_lib("netaddr"))
        errors = config.validate(self.params)
        present = self.params["state"] == "present"
        self.uid = host.resolve_uid(self.params["kuma_dp_user"])
        if present and self.uid is None:
            errors.append(
                "kuma_dp_user: %r does not refer to a valid user on the host (create it first, "
                "e.g. with the kuma.mesh.dataplane role)" % self.params["kuma_dp_user"]
            )
        dns = self.params["redirect"]["dns"]
        self.dns_servers = []
        if dns["enabled"] and not dns["capture_all"]:
            path = dns["resolv_conf"]
            if not os.path.isfile(path):
                if present:
                    errors.append("redirect.dns.resolv_conf: %r does not exist (redirect.dns.enabled is true)" % path)
            else:
                self.dns_servers = host.resolv_conf_servers(path)
        if errors:
            self.module.fail_json(msg="invalid options: " + "; ".join(errors), errors=errors, changed=False)

    def ssh_exclusion(self):
        """The SSH session's port stays out of inbound redirection unless the user opts out."""
        inbound = self.params["redirect"]["inbound"]
        port = host.ssh_session_port()
        self.result["ssh_session_port"] = port
        excluded = (
            port is not None
            and self.params["protect_ssh_session"]
            and inbound["enabled"]
            and port not in inbound["exclude_ports"]
        )
        self.result["ssh_port_excluded"] = bool(excluded)
        if port is not None and not self.params["protect_ssh_session"] and inbound["enabled"]:
            if port not in inbound["exclude_ports"]:
                self.module.warn(
                    "protect_ssh_session is false: new SSH connections to port %d will be redirected to "
                    "the inbound proxy port" % port
                )
        return [port] if excluded else []

    def wanted(self, mode):
        """{family: RuleSet or None} for the chosen backend."""
        present = self.params["state"] == "present"
        extra_inbound = self.ssh_exclusion() if present else []
        out = {}
        loopback = host.loopback_name()
        for family in FAMILIES:
            if self.runner(mode, family) is None:
                if family == "ipv6" and present and self.params["ip_family_mode"] == "dualstack":
                    self.module.warn("ip6tables-%s is not installed: IPv6 traffic will not be redirected" % mode)
                continue
            ruleset = None
            if not present:
                self.claim(mode, family, loopback)
            elif family == "ipv4" or self.ipv6_wanted():
                tables = self.tables(mode, family)
                cfg = config.family_config(
                    self.params,
                    ipv6=family == "ipv6",
                    uid=self.uid,
                    dns_servers=self.dns_servers,
                    docker_output=ipt.has_chain(tables, "nat", rules.DOCKER_OUTPUT_CHAIN),
                    loopback=loopback,
                    extra_inbound_exclude=extra_inbound,
                )
                dns = self.params["redirect"]["dns"]
                if (dns["enabled"] or dns["capture_all"]) and not cfg.dns_enabled:
                    self.module.warn(
                        "no %s DNS servers found in %s: DNS traffic capture for %s is disabled"
                        % (family.upper().replace("IPV", "IPv"), dns["resolv_conf"], family)
                    )
                ruleset = rules.build(cfg)
                self.result["rules"][family] = ruleset.restore_text()
                self.result["families"].append(family)
            out[family] = ruleset
        return out

    def claim(self, mode, family, loopback):
        """With comments disabled, the rules of the given settings are how Kuma's
        rules are recognised on uninstall (nothing else marks them)."""
        if not self.params["comments"]["disabled"] or self.uid is None:
            return
        cfg = config.family_config(
            self.params,
            ipv6=family == "ipv6",
            uid=self.uid,
            dns_servers=self.dns_servers,
            docker_output=ipt.has_chain(self.tables(mode, family), "nat", rules.DOCKER_OUTPUT_CHAIN),
            loopback=loopback,
        )
        self.claims[(mode, family)] = ipt.uncommented(rules.build(cfg))

    def ipv6_wanted(self):
        return self.params["ip_family_mode"] == "dualstack" and host.has_local_ipv6()

    def main(self):
        self.check_input()
        mode = self.choose_mode()
        self.result["iptables_mode"] = mode
        wanted = self.wanted(mode)
        if self.params["backend"] == "firewalld":
            # imported here: only firewalld hosts need it
            from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_firewalld

            return tproxy_firewalld.run(self, wanted)
        self.refuse_firewalld_managed(mode)

        # Every (backend, family) whose Kuma part must change, with its target.
        work = []
        diffs = []
        for family, ruleset in wanted.items():
            tables = self.tables(mode, family)
            extra = ipt.uncommented(ruleset) or self.claims.get((mode, family))
            if not ipt.in_sync(tables, ruleset, extra):
                work.append((mode, family, ipt.target_for(ruleset), ruleset, extra))
                diffs += self.diff(mode, family, tables, ruleset, extra)
        other = "legacy" if mode == "nft" else "nft"
        for family in FAMILIES:
            # Kuma's rules left in the other backend (a switch of iptables_mode,
            # or kumactl run with the other alternative) would redirect twice.
            if self.runner(other, family) is None:
                continue
            tables = self.tables(other, family)
            if ipt.owned_part(tables):
                work.append((other, family, {}, None, None))
                diffs += self.diff(other, family, tables, None)

        if self.params["state"] == "present":
            ipv6_address = "add" if "ipv6" in self.result["families"] and not host.has_inbound_passthrough_ipv6() else None
        else:
            ipv6_address = "del" if host.has_inbound_passthrough_ipv6() else None
        self.result["changed"] = bool(work) or bool(ipv6_address)
        if self.module._diff:
            self.result["diff"] = diffs
        if self.module.check_mode or not self.result["changed"]:
            self.result["commands"] = self.commands()
            return self.result

        if ipv6_address == "add":
            self.ipv6_passthrough_address("add")
        done = []
        for backend, family, target, ruleset, extra in work:
            runner = self.runners[(backend, family)]
            before = self.tables(backend, family)
            try:
                runner.apply(target, before, extra)
                after = ipt.parse_save(runner.save())
                if not ipt.in_sync(after, ruleset, extra):
                    runner.rollback(before, extra)
                    raise ipt.IptablesError(
                        "the rules read back after the restore differ from the wanted ones; rolled back"
                    )
            except ipt.IptablesError as exc:
                rolled_back = self.roll_back(done)
                self.fail(
                    "applying the %s %s rules failed: %s. The host's rules were left as they were before this run%s."
                    % (backend, family, exc, "" if rolled_back else " (except: rolling back another family failed)"),
                    failed_family=family,
                )
            done.append((runner, before, extra))
        if ipv6_address == "del":
            self.ipv6_passthrough_address("del")
        if self.params["state"] == "absent":
            self.drop_emptied_nft_tables(done)
        self.result["commands"] = self.commands()
        return self.result

    def refuse_firewalld_managed(self, mode):
        """Kuma's rules kept by firewalld (its permanent direct configuration, and
        its *_direct chains with FirewallBackend=iptables) are firewalld's; editing
        them with iptables would fight firewalld, so say which backend to use."""
        from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_firewalld

        entries = tproxy_firewalld.kuma_direct_entries()
        if entries:
            self.fail(
                "backend: 'iptables': Kuma's rules on this host are firewalld direct rules (%s); "
                "use backend: firewalld, or remove them first with backend: firewalld, state: absent" % entries[0]
            )
        for family in FAMILIES:
            if self.runner(mode, family) is None:
                continue
            for table in self.tables(mode, family).values():
                for chain in table.chains:
                    if chain.endswith("_direct") and any(ipt.is_kuma_rule(chain, r) for r in table.rules[chain]):
                        self.fail(
                            "backend: 'iptables': Kuma's rules on this host are firewalld direct rules (%s %s); "
                            "use backend: firewalld, or remove them first with backend: firewalld, state: absent"
                            % (family, chain)
                        )

    def drop_emptied_nft_tables(self, done):
        """iptables-nft creates a table on first use and never deletes it; after
        uninstall, a table Kuma's rules left empty (no rules, no user chains,
        ACCEPT policies) is deleted, which changes nothing for packets, so that
        the host looks as it did before. Needs the nft command; without it the
        empty tables stay."""
        nft = host.find_executable("nft")
        if nft is None:
            return
        for runner, before, extra in done:
            if runner.mode != "nft":
                continue
            family = "ip6" if "ip6tables" in runner.save_path else "ip"
            after = ipt.parse_save(runner.save())
            for name in ipt.emptied_tables(before, after, extra):
                args = [nft, "delete", "table", family, name]
                self.other_commands.append(" ".join(args))
                rc, _out, err = self.module.run_command(args)
                if rc != 0:
                    self.module.warn("could not delete the empty %s %s table: %s" % (family, name, err.strip()))

    def roll_back(self, done):
        ok = True
        for runner, before, extra in reversed(done):
            try:
                runner.rollback(before, extra)
            except ipt.IptablesError:
                ok = False
        return ok

    def ipv6_passthrough_address(self, action):
        """Kuma puts ::6/128 on the loopback, the IPv6 passthrough source its rules
        expect; uninstall takes it away again."""
        ip = host.find_executable("ip")
        if ip is None:
            self.fail("the 'ip' command (iproute2) is needed to change ::6/128 on the loopback interface")
        args = [ip, "-6", "addr", action, "::6/128", "dev", host.loopback_name()]
        rc, _out, err = self.module.run_command(args)
        self.other_commands.append(" ".join(args))
        if rc != 0 and "exists" not in err:
            self.fail("%s ::6/128 on the loopback interface failed: %s" % (action, err.strip()))

    def diff(self, mode, family, tables, ruleset, extra=None):
        before = ipt.owned_text(tables, extra)
        after = ipt.wanted_text(ruleset)
        out = []
        for table in rules.TABLE_ORDER:
            if table in before or table in after:
                name = "%s %s %s" % (family, mode, table)
                out.append(
                    dict(
                        before_header="%s (Kuma's rules now)" % name,
                        after_header="%s (Kuma's rules wanted)" % name,
                        before=before.get(table, ""),
                        after=after.get(table, ""),
                    )
                )
        return out


def run(module):
    return Run(module).main()
