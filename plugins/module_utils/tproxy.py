# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kuma.mesh maintainers
# Apache License 2.0 (see LICENSE)
"""kuma_tproxy's engine: check the input, lock the host, gather its facts once,
plan per store, reconcile under one undo stack, read back.

    outcome = run(params, module.run_command, check_mode, diff_mode)

returns an Outcome; only the module's main() talks to Ansible with it. Every
process of the run starts through AnsibleModule.run_command, handed in by main()
and wrapped in one tproxy_runner.Runner. A store
is a place Kuma's rules can live: iptables nft or legacy, per family, and
firewalld (online or offline). The chosen store gets the wanted rules, every
other store gets none, in one run holding the host lock.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import math
import os
import re
import time

from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_config as config
from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_facts as facts_mod
from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_gate
from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_host as host
from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_iptables as ipt
from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_persist as persist
from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_rules as rules
from ansible_collections.kuma.mesh.plugins.module_utils.tproxy_lock import LOCK_PATH, HostLock, LockError
from ansible_collections.kuma.mesh.plugins.module_utils.tproxy_runner import Runner
from ansible_collections.kuma.mesh.plugins.module_utils.tproxy_undo import TproxyFailure, UndoStack, outcome_text

FAMILIES = facts_mod.FAMILIES
MAX_SLEEP = 60.0


def _argument_spec():
    spec = dict(config.ARGUMENT_SPEC)
    spec.update(persist.ARGUMENT_SPEC)
    return spec


# The module's options: the rules' (tproxy_config) and what is kept around them (tproxy_persist).
ARGUMENT_SPEC = _argument_spec()


class Outcome(object):
    """What main() reports: the result fields, warnings, and a failure message or None."""

    def __init__(self, result, warnings, failed=None):
        self.result = result
        self.warnings = warnings
        self.failed = failed


def _gate(text, store, claimed=None):
    """The payload gate: violations of ``text`` (a ``*-restore`` input for ``store``),
    [] when clean. ``claimed`` ({table: set of lines}, the engine's extra_owned) are
    Kuma's rules written without comments."""
    return list(tproxy_gate.check_restore(
        text, chain_prefix=config.CHAIN_PREFIX, comment_prefix=config.COMMENT_PREFIX, claimed=claimed or None))


def _sleep_seconds(value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        return 0.0
    if math.isnan(value) or value < 0:
        return 0.0
    return min(value, MAX_SLEEP)


# -- the iptables stores ---------------------------------------------------------------


class IptablesStore(object):
    """One iptables backend for one family: its snapshot, its plan, its apply."""

    def __init__(self, runner, in_use=True):
        self.runner = runner
        self.mode = runner.mode
        self.family = runner.family
        self.in_use = in_use
        self._snapshot = None
        self._tables = None

    @property
    def name(self):
        return "%s %s" % (self.family, self.mode)

    def snapshot(self):
        """The raw save output read once at the start (the rollback point)."""
        if self._snapshot is None:
            if not self.in_use:
                self._snapshot = ""
            else:
                try:
                    self._snapshot = self.runner.save()
                except ipt.IptablesError as exc:
                    raise TproxyFailure("reading the current %s rules failed: %s" % (self.name, exc))
        return self._snapshot

    def tables(self):
        if self._tables is None:
            self._tables = ipt.parse_save(self.snapshot())
        return self._tables


class StorePlan(object):
    """The change set of one iptables store: wanted rule set, claims, table plans, diff."""

    def __init__(self, store, ruleset, extra):
        self.store = store
        self.ruleset = ruleset
        self.extra = extra
        self.target = ipt.target_for(ruleset)
        self.tables = ipt.plan_tables(store.tables(), self.target, extra)
        self.script = ipt.script_of(self.tables)
        self.in_sync = ipt.in_sync(store.tables(), ruleset, extra)

    def changed(self):
        return bool(self.script) or not self.in_sync

    def claimed(self):
        """For the payload gate, with comments disabled: the uncommented rules this plan
        may write or delete, in the iptables-save form (``extra``, what it deletes) and
        in the restore form of the wanted rule set (what it writes)."""
        if not self.extra:
            return None
        out = dict((table, set(lines)) for table, lines in self.extra.items())
        for table, lines in tproxy_gate.claims_for([self.ruleset]).items():
            out.setdefault(table, set()).update(lines)
        return out

    def touched(self):
        return [p.name for p in self.tables if p.changed()]

    def diff(self):
        out = []
        for plan in self.tables:
            name = "%s %s %s" % (self.store.family, self.store.mode, plan.name)
            out.append(
                dict(
                    before_header="%s (Kuma's rules now)" % name,
                    after_header="%s (Kuma's rules wanted)" % name,
                    before="\n".join(plan.before) + "\n" if plan.before else "",
                    after="\n".join(plan.after) + "\n" if plan.after else "",
                )
            )
        return out


# -- one run ---------------------------------------------------------------------------


class Engine(object):
    """One run. ``run_command``: AnsibleModule.run_command (or a callable taking its
    arguments); every process of the run starts through ``self.run``, one Runner on it."""

    def __init__(self, params, run_command, check_mode=False, diff_mode=False):
        self.params = params
        self.check_mode = check_mode
        self.diff_mode = diff_mode
        self.present = isinstance(params, dict) and params.get("state") != "absent"
        self.warnings = []
        self.commands = []
        self.run = Runner(run_command, self.commands)
        self.undo = UndoStack()
        self.lock = HostLock(LOCK_PATH)
        self.facts = None
        self.stores = {}
        self.result = dict(changed=False, rules={}, families=[], commands=self.commands, lock=LOCK_PATH, left_out={},
                           dns_not_redirected={})
        self.passthrough_added = False
        self.passthrough_removed = False
        self.options = None
        self.other_pass = False
        self.file_diffs = []

    def warn(self, msg):
        self.warnings.append(msg)

    # -- input -------------------------------------------------------------------
    def check_input(self):
        """What only the host can tell about the options (the user, resolv.conf)."""
        errors = []
        f = self.facts
        errors += list(f.executable_errors)
        if self.present and f.uid_error:
            errors.append(f.uid_error)
        dns = self.params["redirect"]["dns"]
        if self.present and dns["enabled"] and not dns["capture_all"] and not f.resolv_conf_exists:
            errors.append("redirect.dns.resolv_conf: %r does not exist (redirect.dns.enabled is true)" % dns["resolv_conf"])
        if self.present and dns["enabled"] and not dns["capture_all"]:
            for line in f.dns_ignored:
                self.warn("%s: ignored %r (not an IP address, as glibc ignores it)" % (dns["resolv_conf"], line))
        if self.options is not None and self.options.boot is not None:
            errors += persist.foreign_files(self.options.boot)
        if errors:
            raise TproxyFailure("invalid options: " + "; ".join(errors), errors=errors)

    # -- stores --------------------------------------------------------------------
    def store(self, mode, family):
        key = (mode, family)
        if key not in self.stores:
            paths = self.facts.executables.get(key)
            if paths is None:
                self.stores[key] = None
            else:
                runner = ipt.Iptables(
                    paths.save,
                    paths.restore,
                    mode,
                    family,
                    self.run,
                    wait=max(0, int(self.params["wait"] or 0)),
                    wait_interval=max(0, int(self.params["wait_interval"] or 0)),
                    lock_args=config.restore_lock_args(self.params),
                    lock_fd=self.lock.fd,
                )
                in_use = mode != "legacy" or self.facts.legacy_in_use[family]
                self.stores[key] = IptablesStore(runner, in_use)
        return self.stores[key]

    def runner(self, mode, family):
        """For the firewalld backend: the runner of a store, or None."""
        store = self.store(mode, family)
        return store.runner if store else None

    def tables(self, mode, family):
        store = self.store(mode, family)
        return store.tables() if store else {}

    def choose_mode(self):
        """Kuma's choice of backend, preferring one that already holds Kuma's rules,
        and on a host with no rules at all the one ``iptables`` points to."""
        wanted = self.params["iptables_mode"]
        if wanted != "auto":
            if self.store(wanted, "ipv4") is None:
                raise TproxyFailure("iptables_mode: %r: iptables-%s-save and -restore are not installed" % (wanted, wanted))
            return wanted
        modes = [m for m in ("nft", "legacy") if self.store(m, "ipv4") is not None]
        if not modes:
            raise TproxyFailure("iptables_mode: 'auto': neither iptables-nft nor iptables-legacy is installed")
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
        return self.facts.default_mode or "nft"

    # -- the SSH guard ---------------------------------------------------------------
    def ssh_exclusion(self, mode):
        """Ports kept out of inbound redirection for SSH: the session's own port, and
        any sshd port an earlier run excluded for a session (it stays until the user
        sets protect_ssh_session: false)."""
        inbound = self.params["redirect"]["inbound"]
        session = self.facts.ssh
        self.result["ssh_session_port"] = session.port
        self.result["ssh_session_found_by"] = session.how
        user_ports = set(inbound["exclude_ports"])
        kept = []
        if self.params["protect_ssh_session"] and inbound["enabled"]:
            installed = set()
            for family in FAMILIES:
                store = self.store(mode, family)
                if store is not None:
                    installed |= excluded_inbound_ports(store.tables())
            kept = sorted(p for p in installed if p in session.sshd_ports and p not in user_ports and p != session.port)
        extra = []
        if session.port is not None and self.params["protect_ssh_session"] and inbound["enabled"]:
            if session.port not in user_ports:
                extra.append(session.port)
        extra += kept
        self.result["ssh_port_excluded"] = bool(extra and session.port in extra)
        self.result["ssh_ports_kept"] = kept
        if kept:
            self.warn(
                "port%s %s stay%s excluded from inbound redirection: an earlier run added %s for an SSH session%s; "
                "set protect_ssh_session: false to remove %s"
                % ("s" if len(kept) > 1 else "", ", ".join(str(p) for p in kept), "" if len(kept) > 1 else "s",
                   "them" if len(kept) > 1 else "it",
                   "" if session.port else " (this run sees no SSH session)", "them" if len(kept) > 1 else "it")
            )
        if session.port is None and session.under_sshd and self.params["protect_ssh_session"] and inbound["enabled"]:
            self.warn("running under sshd, but the SSH session's own connection could not be identified (SSH_CONNECTION "
                      "unset and no single sshd socket found): no session port was added to the inbound exclusions")
        if session.port is not None and not self.params["protect_ssh_session"] and inbound["enabled"]:
            if session.port not in user_ports:
                self.warn(
                    "protect_ssh_session is false: new SSH connections to port %d will be redirected to "
                    "the inbound proxy port" % session.port
                )
        return extra

    # -- wanted rules -----------------------------------------------------------------
    def family_config(self, family, tables, extra_inbound=None):
        """Kuma's view of one family, without what the host cannot write (result's left_out)."""
        degraded = rules.degrade(config.family_config(
            self.params,
            ipv6=family == "ipv6",
            uid=self.facts.uid,
            dns_servers=list(self.facts.dns_servers),
            docker_output=ipt.has_chain(tables, "nat", rules.DOCKER_OUTPUT_CHAIN),
            loopback=self.facts.loopback,
            extra_inbound_exclude=extra_inbound,
        ), self.facts.features.get(family))
        if degraded.left_out:
            self.result["left_out"][family] = dict((i.feature, i.reason) for i in degraded.left_out)
        return degraded.cfg

    def ipv6_wanted(self):
        return self.params["ip_family_mode"] == "dualstack" and self.facts.has_local_ipv6

    def wanted(self, mode):
        """{family: RuleSet or None} for the chosen backend (None: no rules)."""
        extra_inbound = self.ssh_exclusion(mode) if self.present else []
        out = {}
        for family in FAMILIES:
            store = self.store(mode, family)
            if store is None:
                if family == "ipv6" and self.present and self.params["ip_family_mode"] == "dualstack":
                    self.warn("ip6tables-%s is not installed: IPv6 traffic will not be redirected" % mode)
                continue
            ruleset = None
            if self.present and (family == "ipv4" or self.ipv6_wanted()):
                cfg = self.family_config(family, store.tables(), extra_inbound)
                dns = self.params["redirect"]["dns"]
                if (dns["enabled"] or dns["capture_all"]) and not cfg.dns_enabled:
                    self.result["dns_not_redirected"][family] = "no %s DNS servers found in %s" % (
                        family.replace("ipv", "IPv"), dns["resolv_conf"])
                ruleset = rules.build(cfg)
                self.result["rules"][family] = ruleset.restore_text()
                self.result["families"].append(family)
            out[family] = ruleset
        if self.result["families"] and set(self.result["families"]) <= set(self.result["dns_not_redirected"]):
            self.warn("no DNS servers of the redirected families (%s) found in %s: DNS traffic is not redirected"
                      % (", ".join(self.result["families"]), self.params["redirect"]["dns"]["resolv_conf"]))
        return out

    def claims(self, mode, family, ruleset):
        """With comments disabled, rules equal to Kuma's for these settings are Kuma's
        (nothing else marks them)."""
        if not self.params["comments"]["disabled"] and self.facts.features.get(family, facts_mod.ALL).has("comment"):
            return None
        if ruleset is not None:
            return ipt.uncommented(ruleset)
        if self.facts.uid is None:
            return None
        store = self.store(mode, family)
        return ipt.uncommented(rules.build(self.family_config(family, store.tables())))

    # -- ::6 ----------------------------------------------------------------------------
    def passthrough(self, action):
        """Kuma puts ::6/128 on the loopback, the IPv6 passthrough source its rules
        expect; uninstall takes it away again. Undone on failure."""
        if self.facts.ip is None:
            raise TproxyFailure("the 'ip' command (iproute2) is needed to change ::6/128 on the loopback interface")
        inverse = "del" if action == "add" else "add"

        def do(what):
            rc, out, err = self.run([self.facts.ip, "-6", "addr", what, "::6/128", "dev", self.facts.loopback])
            # judged by the address, not by ip's message (which iproute2 words differently
            # from release to release): adding an address that is there, or deleting one
            # that is gone, is done; the undo after a failed step relies on that
            if rc != 0 and host.has_inbound_passthrough_ipv6() != (what == "add"):
                raise TproxyFailure("%s ::6/128 on the loopback interface failed: %s" % (what, (err or out).strip()))

        self.undo.push("::6/128 %s the loopback again" % ("removed from" if action == "add" else "put back on"),
                       lambda: do(inverse))
        do(action)
        if action == "add":
            self.passthrough_added = True
        else:
            self.passthrough_removed = True

    def ipv6_passthrough_address(self, action):
        self.passthrough(action)

    # -- apply one iptables store -------------------------------------------------------
    def apply_store(self, plan):
        store, runner = plan.store, plan.store.runner
        before = store.snapshot()
        touched = set(plan.touched())
        retry = self.params["retry"]
        retries = max(0, min(int(retry["max_retries"] or 0), 100))
        sleep = _sleep_seconds(retry["sleep_between_retries"])
        created = [t for t in touched if t not in store.tables()]

        def restore_snapshot(names):
            try:
                if ipt.tables_equal(runner.save(), before, names):
                    return  # the failed restore wrote nothing: nothing to put back
            except ipt.IptablesError:
                pass  # cannot tell: put the snapshot back anyway
            runner.restore(ipt.snapshot_restore_text(before, sorted(names, key=_table_rank)), noflush=False)
            self.drop_tables(runner, created)
            now = runner.save()
            if not ipt.tables_equal(now, before, names):
                raise ipt.IptablesError("the %s tables read back after the restore differ from the snapshot" % store.name)

        written = set()
        self.undo.push(
            "%s tables %s (whole tables, foreign rules included)" % (store.name, ", ".join(sorted(touched))),
            lambda: restore_snapshot(written) if written else None,
        )
        current_text, current = before, store.tables()
        last = None
        for attempt in range(retries + 1):
            if attempt:
                time.sleep(sleep)
                try:
                    current_text = runner.save()
                except ipt.IptablesError as exc:
                    last = exc
                    continue
                current = ipt.parse_save(current_text)
            plans = ipt.plan_tables(current, plan.target, plan.extra)
            script = ipt.script_of(plans)
            if not script:
                break
            violations = _gate(script, store, plan.claimed())
            if violations:
                raise TproxyFailure(
                    "the %s transaction was refused by the payload gate before anything was applied: %s"
                    % (store.name, "; ".join(str(v) for v in violations)),
                    failed_family=store.family,
                )
            names = set(p.name for p in plans if p.changed())
            try:
                runner.restore(script, test=True)
            except ipt.IptablesError as exc:
                last = exc
                continue
            written |= names | touched
            try:
                runner.restore(script)
                last = None
                break
            except ipt.IptablesError as exc:
                last = exc
                try:
                    restore_snapshot(written)
                except ipt.IptablesError as undo_exc:
                    raise TproxyFailure("applying the %s rules failed: %s; restoring the snapshot failed: %s"
                                        % (store.name, exc, undo_exc), failed_family=store.family)
        if last is not None:
            raise TproxyFailure("applying the %s rules failed: %s" % (store.name, last), failed_family=store.family)
        # read back, still under the lock
        try:
            after = ipt.parse_save(runner.save())
        except ipt.IptablesError as exc:
            raise TproxyFailure("reading back the %s rules failed: %s" % (store.name, exc), failed_family=store.family)
        if not ipt.in_sync(after, plan.ruleset, plan.extra):
            raise TproxyFailure("the %s rules read back after the restore differ from the wanted ones" % store.name,
                                failed_family=store.family)
        return after

    def drop_tables(self, runner, names):
        """iptables-nft creates a table on first use and never deletes it: a table
        the run created (rollback) or emptied (uninstall) is deleted with nft."""
        if runner.mode != "nft" or not names or self.facts.nft is None:
            return
        family = "ip6" if runner.family == "ipv6" else "ip"
        for name in names:
            rc, _out, err = self.run([self.facts.nft, "delete", "table", family, name])
            if rc != 0:
                self.warn("could not delete the empty %s %s table: %s" % (family, name, err.strip()))

    # -- backends -------------------------------------------------------------------------
    def refuse_firewalld_managed(self, mode):
        """Kuma's rules kept by firewalld are firewalld's; editing them with iptables
        would fight firewalld, so say which backend to use."""
        from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_firewalld  # pylint: disable=import-outside-toplevel

        entries = tproxy_firewalld.kuma_direct_entries()
        if entries:
            raise TproxyFailure(
                "backend: 'iptables': Kuma's rules on this host are firewalld direct rules (%s); "
                "use backend: firewalld, or remove them first with backend: firewalld, state: absent" % entries[0]
            )
        for family in FAMILIES:
            if self.store(mode, family) is None:
                continue
            for table in self.tables(mode, family).values():
                for chain in table.chains:
                    if chain.endswith("_direct") and any(ipt.is_kuma_rule(chain, r) for r in table.rules[chain]):
                        raise TproxyFailure(
                            "backend: 'iptables': Kuma's rules on this host are firewalld direct rules (%s %s); "
                            "use backend: firewalld, or remove them first with backend: firewalld, state: absent"
                            % (family, chain)
                        )

    def iptables(self, mode, wanted):
        if not (self.other_pass and self.check_mode):
            # (in check mode the firewalld entries this run would remove are still there)
            self.refuse_firewalld_managed(mode)
        plans = []
        for family, ruleset in wanted.items():
            plan = StorePlan(self.store(mode, family), ruleset, self.claims(mode, family, ruleset))
            if plan.changed():
                plans.append(plan)
        other = "legacy" if mode == "nft" else "nft"
        for family in FAMILIES:
            # Kuma's rules left in the other backend (a switch of iptables_mode, or
            # kumactl run with the other alternative) would redirect twice.
            store = self.store(other, family)
            if store is None or not store.in_use:
                continue
            if ipt.owned_part(store.tables()):
                plans.append(StorePlan(store, None, self.claims(other, family, None)))
        self.result["stores_changed"] = [p.store.name for p in plans]
        diffs = []
        for plan in plans:
            diffs += plan.diff()
        action = self.passthrough_action()
        changed = bool(plans) or bool(action)
        self.result["changed"] = changed
        if self.diff_mode:
            self.result["diff"] = self.result.get("diff", []) + diffs
        if self.check_mode or not changed:
            return
        if action == "add":
            self.passthrough("add")
        emptied = []
        for plan in plans:
            emptied.append((plan, self.apply_store(plan)))
        if action == "del":
            self.passthrough("del")
        for plan, after in emptied:
            self.drop_tables(plan.store.runner, ipt.emptied_tables(plan.store.tables(), after, plan.extra))

    def remove_kuma(self, mode, family, extra=None):
        """For the firewalld store: Kuma's plain rules out of one iptables store (undoable)."""
        plan = StorePlan(self.store(mode, family), None, extra)
        if plan.changed():
            self.apply_store(plan)

    def passthrough_action(self):
        if self.present:
            return "add" if "ipv6" in self.result["families"] and not self.facts.passthrough_ipv6 else None
        return "del" if self.facts.passthrough_ipv6 else None

    def restore_resolv_conf(self):
        """kumactl's DNS redirection may have left resolv.conf.kuma-backup: uninstall puts it back."""
        backup = self.facts.kuma_backup
        if self.present or backup is None:
            return
        path = self.params["redirect"]["dns"]["resolv_conf"]
        self.result["resolv_conf_restored"] = path
        self.result["changed"] = True
        if self.check_mode:
            return
        with open(backup, "rb") as f:
            data = f.read()
        tmp = path + ".kuma-mesh-tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.rename(tmp, path)
        os.unlink(backup)

    # -- the run ------------------------------------------------------------------------
    def effective(self, given, errors=()):
        """The options this run uses: kumactl's configuration (config_file read from
        the host, config) merged under the options the task sets, then validated.
        Bad input fails here, before the lock is taken or anything is read.
        ``errors``: those found already in the options of tproxy_persist."""
        text, own_errors, errors = None, list(errors), []
        path = given.get("config_file") if isinstance(given, dict) else None
        if path is not None and not config.path_problem(path):
            found = facts_mod.read_config_file(path, config.MAX_CONFIG_TEXT)
            text = found.text
            if found.error:
                errors.append(found.error)
        if not errors:
            params, errors = config.effective_params(given, text)
            errors = list(errors)
            if not errors:
                errors = list(config.validate(params))
        errors = own_errors + errors
        if errors:
            raise TproxyFailure("invalid options: " + "; ".join(errors), errors=errors)
        return params

    def main(self):
        options, rest, errors = persist.split(self.params)
        self.params = self.effective(rest, errors)
        self.options = options
        self.present = self.params["state"] == "present"
        try:
            self.lock.acquire(max(0, int(self.params.get("wait") or 0)))
        except LockError as exc:
            raise TproxyFailure(str(exc))
        self.facts = facts_mod.gather(self.params)
        self.check_input()
        unit = persist.firewalld_unit()
        backend = persist.resolve_backend(options.backend, unit)
        self.params["backend"] = backend
        self.result["backend"] = backend
        self.check_commands()
        mode = self.choose_mode()
        self.result["iptables_mode"] = mode
        self.facts = facts_mod.with_features(self.facts, self.params, self.present,
                                             dict((f, self.store(mode, f)) for f in FAMILIES))
        wanted = self.wanted(mode)
        commands = Commands(self.run)
        writer = persist.Writer(self.undo, self.check_mode, self.file_diffs)
        changed = False
        # firewalld's RFC3964_IPv4 first: a refusal leaves the host as it was, and the
        # reload (which flushes iptables with FirewallBackend=nftables) comes before the rules
        rfc = None
        if options.ipv6_redirect != "ignore":
            rfc = persist.Rfc3964(options, writer, commands, _FirewalldRunning())
            self.result["firewalld_ipv6"] = rfc.info
            if self.present and rfc.blocks(self.result["families"]):
                if options.ipv6_redirect == "refuse":
                    raise rfc.refusal()
                if rfc.allow() and not self.check_mode:
                    wanted = self.reread(mode)  # firewalld's reload may have rewritten iptables
                changed = True
        # Kuma's rules kept the other way: firewalld's direct rules out when the rules are
        # plain iptables now (or everything out on uninstall with backend auto)
        remove_other = options.other_backend == "remove" or (not self.present and options.backend == "auto")
        if backend == "iptables" and remove_other and unit.installed:
            other_changed = self.remove_firewalld(mode)
            changed = changed or other_changed
            if other_changed and not self.check_mode:
                wanted = self.reread(mode)  # firewalld changed the iptables tables
        if backend == "firewalld":
            from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_firewalld  # pylint: disable=import-outside-toplevel

            fw_changed, diffs, info = tproxy_firewalld.reconcile(self, wanted, mode)
            self.result["firewalld"] = info
            changed = changed or bool(fw_changed)
            self.result["diff"] = self.result.get("diff", []) + diffs
            if not self.present and remove_other:
                # plain rules firewalld's run did not account for (it removes Kuma's plain rules itself)
                if fw_changed and not self.check_mode:
                    self.reread(mode)
                self.other_pass = True
                self.iptables(mode, dict((f, None) for f in FAMILIES))
                changed = changed or self.result["changed"]
        else:
            self.iptables(mode, wanted)
            changed = changed or self.result["changed"]
        self.result["changed"] = changed
        self.restore_resolv_conf()
        if rfc is not None and not self.present and rfc.restore():
            self.result["changed"] = True
        if options.boot is not None:
            boot = persist.BootPersistence(options.boot, writer, commands)
            self.result["boot_persistence"] = boot.info
            if self.present and backend == "iptables" and options.boot.state == "present":
                boot_changed = boot.present(self.result["rules"], mode)
            else:
                boot_changed = boot.absent()
            self.result["changed"] = self.result["changed"] or boot_changed
        if self.diff_mode:
            self.result["diff"] = self.result.get("diff", []) + self.file_diffs
        else:
            self.result.pop("diff", None)
        if self.result["changed"]:  # said when the rules are written, kept in left_out on every run
            for family in sorted(self.result["left_out"]):
                for feature, reason in sorted(self.result["left_out"][family].items()):
                    self.warn(rules.left_out_message(family, feature, reason))
        return self.result

    def reread(self, mode):
        """After firewalld changed iptables under this run: the host and the wanted rules again."""
        self.stores = {}
        # the features found at the start still hold (firewalld changed rules, not the kernel)
        self.facts = facts_mod.gather(self.params)._replace(features=self.facts.features)
        self.result["rules"], self.result["families"] = {}, []
        return self.wanted(mode)

    def remove_firewalld(self, mode):
        """Kuma's firewalld direct rules out (the rules are plain iptables rules now); the
        plain rules and ::6 are the iptables run's. Returns whether anything changed."""
        from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_firewalld  # pylint: disable=import-outside-toplevel

        fw_changed, diffs, info = tproxy_firewalld.reconcile(
            self, dict((f, None) for f in FAMILIES), mode, present=False, plain=False, passthrough=False)
        self.result["firewalld"] = info
        self.result["diff"] = self.result.get("diff", []) + diffs
        self.other_pass = True
        return bool(fw_changed)

    def check_commands(self):
        """Fail before anything is touched when a command this run needs is missing."""
        if not self.present:
            return
        wanted = self.params["iptables_mode"]
        modes = ("nft", "legacy") if wanted == "auto" else (wanted,)
        infix = "" if wanted == "auto" else "-" + wanted
        missing = []
        for family, tool in (("ipv4", "iptables"), ("ipv6", "ip6tables")):
            if family == "ipv6" and not self.ipv6_wanted():
                continue
            if not any(self.facts.executables.get((m, family)) for m in modes):
                missing += ["%s%s-save" % (tool, infix), "%s%s-restore" % (tool, infix)]
        if self.ipv6_wanted() and not self.facts.passthrough_ipv6 and self.facts.ip is None:
            missing.append("ip")
        if missing:
            raise TproxyFailure(
                "missing commands: %s (packages iptables and iproute2 on Debian)"
                % ", ".join(missing), missing_commands=missing)

    def host_differs(self):
        """After a rollback: whether any store differs from its snapshot, or ::6 changed."""
        for store in self.stores.values():
            if store is None or store._snapshot is None or not store.in_use:
                continue
            try:
                now = store.runner.save()
            except ipt.IptablesError:
                return True
            if not ipt.tables_equal(now, store._snapshot, rules.TABLE_ORDER):
                return True
        return host.has_inbound_passthrough_ipv6() != self.facts.passthrough_ipv6


class Commands(object):
    """Runs a command for tproxy_persist (systemctl, nft) through the run's runner
    (which logs it into the result's ``commands``); ``check``: a failure raises."""

    def __init__(self, runner):
        self.runner = runner

    def run(self, args, check=True):
        rc, out, err = self.runner(args)
        if check and rc != 0:
            raise TproxyFailure("%s failed (exit %d): %s" % (" ".join(args), rc, err.strip() or out.strip()))
        return rc, out, err


class _FirewalldRunning(object):
    """Whether firewalld runs in this network namespace, read from /proc once, when asked."""

    def __init__(self):
        self.value = None

    def __bool__(self):
        if self.value is None:
            from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_firewalld  # pylint: disable=import-outside-toplevel

            self.value = tproxy_firewalld.firewalld_process_running()
        return self.value

    __nonzero__ = __bool__


def _table_rank(name):
    return rules.TABLE_ORDER.index(name) if name in rules.TABLE_ORDER else len(rules.TABLE_ORDER)


_INBOUND_EXCLUDE = re.compile(r"^-A %s -p tcp .*--dport (\d+) -j RETURN$" % rules.INBOUND_CHAIN)


def excluded_inbound_ports(tables):
    """The ports Kuma's installed inbound chain keeps out of redirection."""
    nat = tables.get("nat")
    out = set()
    if nat is None:
        return out
    for line in nat.rules.get(rules.INBOUND_CHAIN, []):
        match = _INBOUND_EXCLUDE.match(line)
        if match:
            out.add(int(match.group(1)))
    return out


def run(params, run_command, check_mode=False, diff_mode=False):
    """One kuma_tproxy run: an Outcome for main(), never an exception. ``run_command``:
    AnsibleModule.run_command, which starts every process of the run (tproxy_runner)."""
    engine = Engine(params, run_command, check_mode, diff_mode)
    try:
        try:
            result = engine.main()
            return Outcome(result, engine.warnings)
        except TproxyFailure as exc:
            return _failed(engine, exc.msg, exc.fields)
        except Exception as exc:  # pylint: disable=broad-except  # no traceback, whatever the input
            return _failed(engine, "internal error (%s: %s)" % (exc.__class__.__name__, exc), {})
    finally:
        # held until after read-back, and through a rollback
        engine.lock.release()


def _failed(engine, msg, fields):
    result = engine.result
    result.update(fields)
    if "errors" in fields:  # bad input: nothing was read or written
        result["changed"] = False
        result["commands"] = []
        return Outcome(result, engine.warnings, msg)
    if len(engine.undo):
        restored, failed = engine.undo.unwind()
        msg = "%s. Rolled back: %s" % (msg, outcome_text(restored, failed))
        result["rolled_back"] = restored
        result["rollback_failed"] = ["%s (%s)" % f for f in failed]
        try:
            # (a file or setting that could not be put back differs too)
            result["changed"] = bool(failed) or engine.host_differs()
        except Exception:  # pylint: disable=broad-except
            result["changed"] = True
        if not failed and not result["changed"]:
            msg += ". The host's rules are as they were before this run"
    else:
        result["changed"] = False
        msg += ". Nothing was changed"
    return Outcome(result, engine.warnings, msg)
