# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kuma.mesh maintainers
# Apache License 2.0 (see LICENSE)
"""The iptables backend: read, compare, and replace only Kuma's part.

The pure part (parse, ownership, comparison, transaction text) is separate
from the runner, which is the only code here that starts processes:
``*-save`` to read and, only when something differs, one validated
``*-restore --noflush`` per family that deletes Kuma's old rules and writes
the new ones in one transaction. Rules that are not Kuma's are never in the
transaction, so they cannot change.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import tempfile
import time

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
    """iptables-save output -> {table: SavedTable}. Counters are ignored."""
    tables = {}
    current = None
    for raw in text.splitlines():
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


def transaction(tables, target, extra_owned=None):
    """The ``iptables-restore --noflush`` input that turns Kuma's current part of
    ``tables`` into ``target``.

    ``target`` is {table: (custom chain names, rule lines)} where rule lines
    are complete restore lines (``-A``/``-I``) adding the new Kuma part to
    chains holding only foreign rules. Returns "" when there is nothing to do.
    """
    owned = owned_part(tables, extra_owned=extra_owned)
    blocks = []
    for name in TABLE_ORDER:
        part = owned.get(name, Owned())
        custom_wanted, lines_wanted = target.get(name, ([], []))
        if part.empty() and not lines_wanted and not custom_wanted:
            continue
        lines = ["*" + name]
        for chain in tables[name].chains if name in tables else []:
            for _index, line in part.builtin.get(chain, []):
                lines.append(_delete_line(line))
        for chain in part.custom:
            lines.append("-F %s" % chain)
        for chain in part.custom:
            if chain not in custom_wanted:
                lines.append("-X %s" % chain)
        for chain in custom_wanted:
            if chain not in part.custom:
                lines.append("-N %s" % chain)
        lines += lines_wanted
        lines.append("COMMIT")
        blocks.append("\n".join(lines))
    return "\n".join(blocks) + "\n" if blocks else ""


def target_for(ruleset):
    """The transaction target that installs ``ruleset`` the way Kuma does."""
    if not ruleset:
        return {}
    target = {}
    for table in ruleset.tables:
        lines = []
        for chain in table.chains:
            lines += [r.restore(ruleset.comments) for r in chain.rules]
        target[table.name] = ([c.name for c in table.custom], lines)
    return target


def owned_equal(a_tables, b_tables, extra_owned=None):
    """Kuma's part is the same in both, positions included."""
    a, b = owned_part(a_tables, extra_owned), owned_part(b_tables, extra_owned)
    return sorted(a) == sorted(b) and all(
        a[n].builtin == b[n].builtin and a[n].custom == b[n].custom for n in a
    )


def target_restoring(tables, extra_owned=None):
    """The transaction target that puts back Kuma's part of ``tables`` exactly,
    positions included (rollback): chains first, then built-in rules inserted
    at their old numbers in ascending order around the untouched foreign ones."""
    target = {}
    for name, part in owned_part(tables, extra_owned).items():
        lines = []
        for chain in part.custom:
            lines += part.custom[chain]
        for chain in tables[name].chains:
            for index, line in part.builtin.get(chain, []):
                lines.append("-I %s %d%s" % (chain, index, line[2 + 1 + len(chain):]))
        target[name] = (list(part.custom), lines)
    return target


class IptablesError(Exception):
    pass


class Iptables(object):
    """The runner for one family and one backend (nft or legacy)."""

    def __init__(self, module, save_path, restore_path, mode, wait=5, wait_interval=0, retries=4, sleep=2.0):
        self.module = module
        self.save_path = save_path
        self.restore_path = restore_path
        self.mode = mode
        self.wait = wait
        self.wait_interval = wait_interval
        self.retries = retries
        self.sleep = sleep
        self.commands = []  # every process this runner started, for the result

    def _run(self, args):
        self.commands.append(" ".join(a for a in args if not a.startswith(self.module.tmpdir)))
        return self.module.run_command(args)

    def save(self):
        rc, out, err = self._run([self.save_path])
        if rc != 0:
            raise IptablesError("%s failed (rc=%d): %s" % (self.save_path, rc, err.strip()))
        return out

    def _restore_args(self, test=False):
        args = [self.restore_path, "--noflush"]
        if self.mode == "legacy":
            # the xtables lock exists only for legacy; nft serialises in the kernel
            if self.wait > 0:
                args.append("--wait=%d" % self.wait)
            if self.wait_interval > 0:
                args.append("--wait-interval=%d" % self.wait_interval)
        if test:
            args.append("--test")
        return args

    def restore(self, text, test=False):
        # From a file, as Kuma does: a restore that dies early cannot break a pipe.
        fd, path = tempfile.mkstemp(prefix="kuma-tproxy-", suffix=".rules", dir=self.module.tmpdir)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
            rc, out, err = self._run(self._restore_args(test) + [path])
        finally:
            os.unlink(path)
        if rc != 0:
            raise IptablesError(
                "%s%s failed (rc=%d): %s" % (self.restore_path, " --test" if test else "", rc, (err or out).strip())
            )

    def apply(self, target, before_tables, extra_owned=None):
        """Replace Kuma's part with ``target``: validate, apply, retry on failure.

        Before every retry and before giving up, Kuma's part is put back as it
        was in ``before_tables``, so a failure leaves the host as it found it.
        """
        last_error = None
        current = before_tables  # just read by the caller: no second read on the first try
        for attempt in range(self.retries + 1):
            if attempt:
                current = parse_save(self.save())
            script = transaction(current, target, extra_owned)
            if not script:
                return
            try:
                self.restore(script, test=True)
                self.restore(script)
                return
            except IptablesError as exc:
                last_error = exc
                self.rollback(before_tables, extra_owned)
                if attempt < self.retries:
                    time.sleep(self.sleep)
        raise last_error

    def rollback(self, before_tables, extra_owned=None):
        """Put Kuma's part back as it was in ``before_tables`` (foreign rules never moved)."""
        current = parse_save(self.save())
        if owned_equal(current, before_tables, extra_owned):
            return
        self.restore(transaction(current, target_restoring(before_tables, extra_owned), extra_owned))
