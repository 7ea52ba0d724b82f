# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kuma.mesh maintainers
# Apache License 2.0 (see LICENSE)
"""The iptables backend: read, compare, and replace only Kuma's part.

The pure part (parse, ownership, comparison, transaction text) is separate
from the runner (class Iptables, whose processes start through the run's one
tproxy_runner.Runner): ``*-save`` to read and, only when something differs, one validated
``*-restore --noflush`` per family that deletes Kuma's old rules and writes
the new ones in one transaction. Rules that are not Kuma's are never in the
transaction, so they cannot change.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.kuma.mesh.plugins.module_utils.tproxy_config import CHAIN_PREFIX, COMMENT_PREFIX
from ansible_collections.kuma.mesh.plugins.module_utils.tproxy_rules import BUILTIN_CHAINS, TABLE_ORDER

_CHAIN_REF = re.compile(r"(?:^|\s)-[jg]\s+%s" % CHAIN_PREFIX)


def is_kuma_chain(name):
    return name.startswith(CHAIN_PREFIX)


def is_kuma_rule(chain, line):
    """Kuma's own test: the comment prefix, or a KUMA_MESH chain (what kumactl uninstall uses)."""
    return COMMENT_PREFIX in line or is_kuma_chain(chain) or bool(_CHAIN_REF.search(line))


class SavedTable(object):
    """One table of iptables-save output: chains in order, rules per chain."""

    def __init__(self, name):
        self.name = name
        self.chains = []  # names, in save order
        self.rules = {}  # chain -> [rule lines, "-A CHAIN ..."]
        self.policies = {}  # built-in chain -> policy

    def add_chain(self, name):
        if name not in self.rules:
            self.chains.append(name)
            self.rules[name] = []


def parse_save(text):
    """iptables-save output -> {table: SavedTable}. Counters are ignored. Lines end at
    "\n" only: str.splitlines would also break a foreign rule whose comment holds
    \x1c-\x1e, U+0085 or U+2028 (iptables takes them)."""
    tables = {}
    current = None
    for raw in text.split("\n"):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            current = tables.setdefault(line[1:].strip(), SavedTable(line[1:].strip()))
        elif line == "COMMIT":
            current = None
        elif current is None:
            continue
        elif line.startswith(":"):
            fields = line[1:].split()
            current.add_chain(fields[0])
            if len(fields) > 1 and fields[1] != "-":
                current.policies[fields[0]] = fields[1]
        elif line.startswith("-A "):
            chain = line.split()[1]
            current.add_chain(chain)
            current.rules[chain].append(line)
    return tables


def has_existing_rules(tables):
    """Kuma's verifyExistingRules: more than an empty table's lines in nat, raw or mangle."""
    for name, empty_lines in (("nat", 4), ("raw", 2), ("mangle", 5)):
        table = tables.get(name)
        if table and len(table.chains) + sum(len(r) for r in table.rules.values()) > empty_lines:
            return True
    return False


def emptied_tables(before, after, extra_owned=None):
    """Tables that held Kuma's rules before and hold nothing at all now."""
    names = []
    kuma_before = owned_part(before, extra_owned)
    for name, table in after.items():
        if name not in kuma_before:
            continue
        if any(table.rules[c] for c in table.chains) or set(table.chains) - set(BUILTIN_CHAINS.get(name, ())):
            continue
        if any(policy != "ACCEPT" for policy in table.policies.values()):
            continue
        names.append(name)
    return names


def has_chain(tables, table, chain):
    return table in tables and chain in tables[table].rules


class Owned(object):
    """Kuma's part of one table: rules in built-in chains (with their 1-based
    position) and whole KUMA_MESH chains."""

    def __init__(self):
        self.builtin = {}  # chain -> [(position, line)]
        self.custom = {}  # chain -> [lines], in save order

    def empty(self):
        return not self.builtin and not self.custom


def owned_part(tables, extra_owned=None):
    """{table: Owned} for every table holding Kuma rules or chains.

    ``extra_owned`` ({table: set of lines}) claims rules that carry no
    comment (comments disabled), by exact match with the wanted rules.
    """
    result = {}
    for name, table in tables.items():
        if name not in TABLE_ORDER:
            # Kuma writes raw, nat and mangle only; a rule with Kuma's comment elsewhere
            # (an operator's filter rule) is not Kuma's and is never touched.
            continue
        owned = Owned()
        extra = (extra_owned or {}).get(name, set())
        for chain in table.chains:
            if is_kuma_chain(chain):
                owned.custom[chain] = list(table.rules[chain])
                continue
            for index, line in enumerate(table.rules[chain], 1):
                if is_kuma_rule(chain, line) or line in extra:
                    owned.builtin.setdefault(chain, []).append((index, line))
        if not owned.empty():
            result[name] = owned
    return result


def chain_in_sync(owned_entries, total_rules, head, tail):
    """Kuma's rules of one built-in chain are where kumactl would have put them:
    the inserted ones (``head``) on top in order, the appended ones (``tail``)
    together and in order below them; other rules may come after (added later)."""
    lines = [line for _index, line in owned_entries]
    if lines != list(head) + list(tail):
        return False
    positions = [index for index, _line in owned_entries]
    if positions[: len(head)] != list(range(1, len(head) + 1)):
        return False
    tail_positions = positions[len(head):]
    return tail_positions == list(range(tail_positions[0], tail_positions[0] + len(tail))) if tail_positions else True


def in_sync(tables, ruleset, extra_owned=None):
    """Whether the Kuma part of ``tables`` is exactly ``ruleset`` (None: no rules wanted)."""
    wanted_tables = dict((t.name, t) for t in ruleset.tables) if ruleset else {}
    owned = owned_part(tables, extra_owned=extra_owned)
    for name in set(owned) | set(wanted_tables):
        part = owned.get(name, Owned())
        wanted = wanted_tables.get(name)
        if wanted is None:
            return False
        comments = ruleset.comments
        custom_wanted = dict((c.name, [r.saved(comments) for r in c.rules]) for c in wanted.custom)
        if part.custom != custom_wanted:
            return False
        for chain in wanted.builtin:
            head = [r.saved(comments) for r in chain.head]
            tail = [r.saved(comments) for r in chain.tail]
            entries = part.builtin.get(chain.name, [])
            if not head and not tail:
                if entries:
                    return False
                continue
            if not entries:
                return False
            total = len(tables[name].rules.get(chain.name, []))
            if not chain_in_sync(entries, total, head, tail):
                return False
        if set(part.builtin) - set(c.name for c in wanted.builtin if c.rules):
            return False
    return True


def uncommented(ruleset):
    """With comments disabled, claim rules equal to wanted ones (nothing else marks them)."""
    if not ruleset or ruleset.comments:
        return None
    return dict((name, set(lines)) for name, lines in ruleset.saved_lines().items())


def owned_text(tables, extra_owned=None):
    """Kuma's part of each table as text, for diff mode: {table: text}."""
    out = {}
    for name, part in owned_part(tables, extra_owned=extra_owned).items():
        lines = [":%s - [0:0]" % c for c in sorted(part.custom)]
        table = tables[name]
        for chain in table.chains:
            if chain in part.builtin:
                lines += [line for _i, line in part.builtin[chain]]
        for chain in sorted(part.custom):
            lines += part.custom[chain]
        out[name] = "\n".join(lines) + "\n"
    return out


def wanted_text(ruleset):
    return dict((name, "\n".join(lines) + "\n") for name, lines in ruleset.saved_lines().items()) if ruleset else {}


def _delete_line(line):
    """``-A CHAIN spec`` as saved -> ``-D CHAIN spec``: deletes by rule spec, never by number,
    so a rule that changed under us makes the transaction fail instead of hitting another rule."""
    return "-D" + line[2:]


class Line(object):
    """One wanted rule: as iptables-save prints it (compared, deleted) and its
    arguments after ``-A CHAIN``/``-I CHAIN n`` as Kuma writes them (restored)."""

    def __init__(self, saved, rest):
        self.saved = saved
        self.rest = rest


class TableTarget(object):
    def __init__(self):
        self.custom = {}  # chain -> [Line], in Kuma's order
        self.custom_order = []
        self.builtin = {}  # chain -> ([Line] head, [Line] tail)


def _rest(restore_line, chain, position):
    words = restore_line.split(" ", 3 if position else 2)
    return words[-1] if len(words) > (3 if position else 2) else ""


def target_for(ruleset):
    """{table: TableTarget} that installs ``ruleset`` the way Kuma does ({}: nothing)."""
    if not ruleset:
        return {}
    target = {}
    comments = ruleset.comments
    for table in ruleset.tables:
        t = TableTarget()
        for chain in table.custom:
            t.custom_order.append(chain.name)
            t.custom[chain.name] = [
                Line(r.saved(comments), _rest(r.restore(comments), chain.name, r.position)) for r in chain.rules
            ]
        for chain in table.builtin:
            head = [Line(r.saved(comments), _rest(r.restore(comments), chain.name, r.position)) for r in chain.head]
            tail = [Line(r.saved(comments), _rest(r.restore(comments), chain.name, r.position)) for r in chain.tail]
            if head or tail:
                t.builtin[chain.name] = (head, tail)
        target[table.name] = t
    return target


def _tail_anchor(entries, head, tail):
    """How many foreign rules come before the place Kuma's appended rules hold now: the
    first current Kuma entry equal to a wanted appended rule, else the first one after
    the leading block on top. None: Kuma has no entry (the tail is appended, as kumactl
    does)."""
    if not entries:
        return None
    tail_lines = set(x.saved for x in tail)
    for count, (index, line) in enumerate(entries):
        if line in tail_lines:
            return index - 1 - count
    for count, (index, _line) in enumerate(entries):
        if index != count + 1:
            return index - 1 - count
    return 0


def _find_run(lines, wanted, start=0):
    """Index of ``wanted`` as a contiguous run in ``lines`` at or after ``start``, or None."""
    n = len(wanted)
    if not n:
        return None
    for i in range(start, len(lines) - n + 1):
        if lines[i:i + n] == wanted:
            return i
    return None


def _placeholder(count):
    return "# ... %d rule%s not Kuma's" % (count, "" if count == 1 else "s")


def _layout(lines, kuma):
    """A built-in chain as Kuma's lines with the foreign ones counted, for the diff."""
    out = []
    run = 0
    for line in lines:
        if line in kuma:
            if run:
                out.append(_placeholder(run))
                run = 0
            out.append(line)
        else:
            run += 1
    if run:
        out.append(_placeholder(run))
    return out


def plan_builtin(chain, total, entries, head, tail):
    """(restore lines, layout before, layout after) for Kuma's rules of one built-in chain.

    Kuma's inserted rules (``head``) belong on top in order, its appended ones
    (``tail``) together and in order below. Rules already in place stay; only the
    others are deleted (by spec, never by number) and inserted, the appended ones at
    the place Kuma's appended rules hold now among foreign rules.
    """
    head_saved = [x.saved for x in head]
    tail_saved = [x.saved for x in tail]
    kuma_now = set(line for _i, line in entries)
    before = _layout(total, kuma_now) if entries else []
    keep_head = bool(head) and total[:len(head)] == head_saved
    start = len(head) if keep_head else 0
    tail_at = _find_run(total, tail_saved, start)
    keep_tail = tail_at is not None and all(
        i in [e[0] - 1 for e in entries] for i in range(tail_at, tail_at + len(tail)))
    kept = set()
    if keep_head:
        kept |= set(range(len(head)))
    if keep_tail:
        kept |= set(range(tail_at, tail_at + len(tail)))
    lines = []
    simulated = list(total)
    for index, line in entries:
        if index - 1 in kept:
            continue
        lines.append(_delete_line(line))
        simulated.remove(line)
    if head and not keep_head:
        for i, x in enumerate(head):
            lines.append("-I %s %d %s" % (chain, i + 1, x.rest))
            simulated.insert(i, x.saved)
    if tail and not keep_tail:
        anchor = _tail_anchor(entries, head, tail)
        if anchor is None:
            for x in tail:
                lines.append("-A %s %s" % (chain, x.rest))
                simulated.append(x.saved)
        else:
            # position among what is left: the head, then ``anchor`` foreign rules
            position = len(head)
            foreign_seen = 0
            wanted_kuma = set(head_saved)
            while position < len(simulated) and foreign_seen < anchor:
                if simulated[position] not in wanted_kuma and simulated[position] not in kuma_now:
                    foreign_seen += 1
                position += 1
            for i, x in enumerate(tail):
                lines.append("-I %s %d %s" % (chain, position + i + 1, x.rest))
                simulated.insert(position + i, x.saved)
    after = _layout(simulated, set(head_saved) | set(tail_saved)) if (head or tail) else []
    return lines, before, after


class TablePlan(object):
    """What changes in one table: restore lines, and Kuma's part before/after for the diff."""

    def __init__(self, name):
        self.name = name
        self.lines = []
        self.before = []
        self.after = []

    def changed(self):
        return bool(self.lines)


def plan_table(name, table, part, want):
    """The minimal change of one table's Kuma part to ``want`` (TableTarget or None).

    Kuma chains already right are left alone; a changed chain is flushed and
    refilled in place (the jumps to it keep their place); a built-in chain's Kuma
    rules are rewritten only when they are not exactly where kumactl would have
    them, and then the appended ones go back where they were among foreign rules.
    """
    want = want or TableTarget()
    part = part or Owned()
    plan = TablePlan(name)
    chains = table.chains if table is not None else []
    deletes, flushes, removes, creates, fills, inserts = [], [], [], [], [], []
    # built-in chains
    names = [c for c in chains if c in part.builtin] + [c for c in want.builtin if c not in part.builtin]
    for chain in names:
        entries = part.builtin.get(chain, [])
        head, tail = want.builtin.get(chain, ([], []))
        total = table.rules.get(chain, []) if table is not None else []
        if entries and (head or tail) and chain_in_sync(entries, len(total), [x.saved for x in head], [x.saved for x in tail]):
            layout = _layout(total, set(line for _i, line in entries))
            plan.before += layout
            plan.after += layout
            continue
        lines, before, after = plan_builtin(chain, total, entries, head, tail)
        for line in lines:
            (deletes if line.startswith("-D") else inserts).append(line)
        plan.before += before
        plan.after += after
    # Kuma's own chains
    for chain in list(part.custom) + [c for c in want.custom_order if c not in part.custom]:
        current = part.custom.get(chain)
        wanted = want.custom.get(chain)
        if current is not None:
            plan.before.append(":%s - [0:0]" % chain)
        if wanted is not None:
            plan.after.append(":%s - [0:0]" % chain)
        if current is not None and wanted is not None and current == [x.saved for x in wanted]:
            continue
        if current is not None:
            flushes.append("-F %s" % chain)
            if wanted is None:
                removes.append("-X %s" % chain)
        else:
            creates.append("-N %s" % chain)
        fills += ["-A %s %s" % (chain, x.rest) for x in (wanted or [])]
    for chain in list(part.custom) + [c for c in want.custom_order if c not in part.custom]:
        plan.before += part.custom.get(chain, [])
        plan.after += [x.saved for x in want.custom.get(chain, [])]
    plan.lines = deletes + flushes + removes + creates + fills + inserts
    return plan


def plan_tables(tables, target, extra_owned=None):
    """[TablePlan] of every table Kuma has or wants a part in, in Kuma's order."""
    owned = owned_part(tables, extra_owned=extra_owned)
    out = []
    for name in TABLE_ORDER:
        if name not in owned and name not in target:
            continue
        out.append(plan_table(name, tables.get(name), owned.get(name), target.get(name)))
    return out


def script_of(plans):
    """The ``iptables-restore --noflush`` input of the changed tables ("" when none)."""
    blocks = ["\n".join(["*" + p.name] + p.lines + ["COMMIT"]) for p in plans if p.changed()]
    return "\n".join(blocks) + "\n" if blocks else ""


def transaction(tables, target, extra_owned=None):
    """The ``iptables-restore --noflush`` input that turns Kuma's current part of
    ``tables`` into ``target`` with the fewest changes ("" when nothing differs)."""
    return script_of(plan_tables(tables, target, extra_owned))


_COUNTERS = re.compile(r"\[\d+:\d+\]$")


def table_blocks(save_text):
    """{table: its iptables-save block, counters zeroed} of raw save output (lines
    end at "\n" only, as in parse_save: a rollback writes these blocks back)."""
    blocks = {}
    current = None
    for raw in save_text.split("\n"):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            current = line[1:].strip()
            blocks[current] = [line]
        elif current is not None:
            if line.startswith(":"):
                line = _COUNTERS.sub("[0:0]", line)
            blocks[current].append(line)
            if line == "COMMIT":
                current = None
    return dict((k, "\n".join(v) + "\n") for k, v in blocks.items())


def snapshot_restore_text(save_text, names):
    """``*-restore`` input (without --noflush) that puts the tables ``names`` back exactly
    as in ``save_text`` (foreign rules and policies included); a table that did not exist
    is emptied."""
    blocks = table_blocks(save_text)
    out = []
    for name in names:
        out.append(blocks.get(name, "*%s\nCOMMIT\n" % name))
    return "".join(out)


def tables_equal(a_text, b_text, names):
    """Whether the tables ``names`` are the same in two save outputs (counters ignored)."""
    a, b = table_blocks(a_text), table_blocks(b_text)
    return all(a.get(n) == b.get(n) for n in names)


class IptablesError(Exception):
    pass


class Iptables(object):
    """The runner for one family and one backend (nft or legacy). Its processes start
    through ``run`` (tproxy_runner.Runner: the run's one runner, which logs them into
    the result). Rules go to ``*-restore`` as a temporary file named on its command line
    (the runner writes and removes it); the host lock's descriptor is inherited so a restore outliving a
    killed run keeps other runs out until it ends."""

    def __init__(self, save_path, restore_path, mode, family, run, wait=5, wait_interval=0, lock_fd=None,
                 lock_args=None):
        self.save_path = save_path
        self.restore_path = restore_path
        self.mode = mode
        self.family = family
        self.run = run
        self.wait = wait
        self.wait_interval = wait_interval
        self.lock_fd = lock_fd
        # the xtables-lock flags of a legacy restore (tproxy_config.restore_lock_args)
        self.lock_args = list(lock_args) if lock_args is not None else None

    def _run(self, args, data=None):
        return self.run(args, data=data, pass_fds=(self.lock_fd,) if self.lock_fd is not None else ())

    def save(self):
        rc, out, err = self._run([self.save_path])
        if rc != 0:
            raise IptablesError("%s failed (rc=%d): %s" % (self.save_path, rc, err.strip()))
        return out

    def _restore_args(self, test=False, noflush=True):
        args = [self.restore_path]
        if noflush:
            args.append("--noflush")
        if self.mode == "legacy":
            # the xtables lock exists only for legacy; nft serialises in the kernel
            if self.lock_args is not None:
                args += self.lock_args
            else:
                if self.wait > 0:
                    args.append("--wait=%d" % self.wait)
                if self.wait_interval > 0:
                    args.append("--wait-interval=%d" % self.wait_interval)
        if test:
            args.append("--test")
        return args

    def probe(self, text, prefix=None):
        """A capability probe: ``*-restore --noflush`` of ``text`` started behind
        ``prefix`` (``unshare --net --``: committed in a throwaway network namespace,
        so the kernel really checks it and the host's rules never change), or with
        ``--test`` in place when there is no prefix. Returns (rc, message)."""
        args = list(prefix) + self._restore_args() if prefix else self._restore_args(test=True)
        rc, out, err = self._run(args, data=text)
        return rc, (err or out).strip()

    def restore(self, text, test=False, noflush=True):
        rc, out, err = self._run(self._restore_args(test, noflush), data=text)
        if rc != 0:
            raise IptablesError(
                "%s%s failed (rc=%d): %s" % (self.restore_path, " --test" if test else "", rc, (err or out).strip())
            )
