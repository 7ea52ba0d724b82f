# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kuma.mesh maintainers
# Apache License 2.0 (see LICENSE)
"""The payload gate: a transaction may touch only Kuma's own chains and rules.

Pure code, standard library only. The engine calls it on every payload
before it is applied, and refuses the payload, with nothing applied, when
the list of violations is not empty:

``check_restore(text, chain_prefix=CHAIN_PREFIX, comment_prefix=COMMENT_PREFIX, claimed=None) -> [str]``
    ``text`` is an ``iptables-restore``/``ip6tables-restore`` input. It is
    split into lines and tokens exactly as iptables-restore does (lines at
    ``\\n``; ``#`` comment lines and empty lines skipped; tokens separated by
    space, tab or newline; double quotes open a quoted token in which a
    backslash escapes the next character; a closing quote ends the token).
    Accepted lines: ``*raw``/``*nat``/``*mangle`` headers (``* nat`` too),
    ``COMMIT``, ``:CHAIN - [0:0]`` declarations, ``-N``/``-F``/``-X`` of a
    Kuma chain (a name starting with ``chain_prefix``), and ``-A``/``-I``/
    ``-D`` of a rule that is Kuma's: any rule in a Kuma chain; in a built-in
    chain of the table (raw, nat or mangle) a rule that carries Kuma's
    comment (``comment_prefix``), jumps to a Kuma chain, or is one of the
    ``claimed`` rules (Kuma's rules written without comments). Every rule
    must use only the options and targets Kuma's rules use, with values of
    the safe token grammar. Anything else is a violation: another table
    (``filter``, ``security``), a foreign chain flushed, deleted, declared
    or filled, a built-in chain's policy, ``-t``, counters, a stray token,
    a control or non-ASCII character, a line iptables-restore would split.
    Each violation says the line number, why, and the line (``repr``).

``check_direct_rules(rules, chains=(), passthroughs=(), chain_prefix=CHAIN_PREFIX, comment_prefix=COMMENT_PREFIX, claimed=None) -> [str]``
    The same policy for firewalld direct entries (the forms the firewalld
    backend uses): ``rules`` are ``(ipv, table, chain, priority, args)``,
    ``chains`` are ``(ipv, table, chain)``, ``passthroughs`` are
    ``(ipv, args)`` (Kuma has none: every passthrough is a violation).
    ``claimed`` holds ``(ipv, table, chain, args)`` of Kuma's uncommented
    rules (``tproxy_firewalld.claims_of``).

``claims_for(rulesets) -> {table: set of lines}`` gives ``claimed`` for
``check_restore``: the built-in-chain rules of the given RuleSets, in the
restore form and in the iptables-save form (both are compared as tokens).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.kuma.mesh.plugins.module_utils.tproxy_config import CHAIN_PREFIX, COMMENT_PREFIX
from ansible_collections.kuma.mesh.plugins.module_utils.tproxy_rules import BUILTIN_CHAINS

MAX_LINE = 8000  # iptables-restore reads lines into a fixed buffer; longer ones would be split
MAX_TOKENS = 250  # iptables-restore's MAX_ARGC is 255

# The options Kuma's rules use, short and long, as written and as iptables-save prints them.
_VALUE_FLAGS = {
    "-p", "--protocol", "-s", "--source", "-d", "--destination", "-i", "--in-interface",
    "-o", "--out-interface", "-m", "--match", "-j", "--jump",
    "--dport", "--sport", "--dports", "--sports", "--destination-port", "--source-port",
    "--destination-ports", "--source-ports", "--uid-owner", "--comment", "--to-ports",
    "--zone", "--log-prefix", "--log-level", "--ctstate",
}
_MATCHES = {"tcp", "udp", "multiport", "owner", "comment", "conntrack"}
_PROTOCOLS = {"tcp", "udp"}
# Targets of Kuma's rules, per table (besides a jump to a Kuma chain).
_TARGETS = {
    "raw": {"CT"},
    "nat": {"RETURN", "REDIRECT", "LOG", "DOCKER_OUTPUT"},
    "mangle": {"DROP"},
}
_KUMA_CHAIN_TARGETS = {"RETURN", "REDIRECT"}
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9_:][A-Za-z0-9_.:/,+-]*\Z")
_CHAIN_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,28}\Z")
_COMMENT = re.compile(r"^[\x20-\x7e]{0,256}\Z")
_BAD_CHARS = re.compile(r"[^\x20-\x7e\t]")


class GateError(ValueError):
    pass


def tokenize(line):
    """iptables-restore's add_param_to_argv: the tokens of one line.

    Raises GateError for an unterminated quote (iptables-restore would
    misread the rest)."""
    tokens = []
    param = []
    quote_open = escaped = quoted = False
    for char in line:
        if quote_open:
            if escaped:
                param.append(char)
                escaped = False
                continue
            if char == "\\":
                escaped = True
                continue
            if char == '"':
                quote_open = False
                tokens.append("".join(param))  # a closing quote ends the token
                param, quoted = [], False
                continue
            param.append(char)
            continue
        if char == '"':
            quote_open = quoted = True
            continue
        if char in " \t\n":
            if param:
                tokens.append("".join(param))
                param, quoted = [], False
            continue
        param.append(char)
    if quote_open:
        raise GateError("unterminated quote")
    if param or quoted:
        tokens.append("".join(param))
    return tokens


def _is_kuma_chain(name, prefix):
    return name.startswith(prefix) and bool(_CHAIN_NAME.match(name))


def _rule_problem(table, chain, args, chain_prefix, comment_prefix, claimed_args):
    """Why ``args`` (after ``-A CHAIN``) is not a Kuma rule of ``table``/``chain``, or None."""
    if len(args) > MAX_TOKENS:
        return "too many tokens"
    builtin = chain in BUILTIN_CHAINS.get(table, ())
    if not builtin and not _is_kuma_chain(chain, chain_prefix):
        return "chain %r is neither Kuma's nor a built-in chain of the %s table" % (chain, table)
    target = None
    comment = None
    index = 0
    while index < len(args):
        token = args[index]
        if token == "!":
            if index + 1 >= len(args) or args[index + 1] not in _VALUE_FLAGS:
                return "'!' is not followed by an option"
            index += 1
            continue
        if token not in _VALUE_FLAGS:
            return "unexpected token %r" % token
        if index + 1 >= len(args):
            return "option %r has no value" % token
        value = args[index + 1]
        if token == "--comment":
            if not _COMMENT.match(value):
                return "comment %r has characters a Kuma comment has not" % value
            comment = value
        elif not _SAFE_VALUE.match(value):
            return "value %r of %s is not a safe token" % (value, token)
        elif token in ("-m", "--match") and value not in _MATCHES:
            return "match %r is not one Kuma uses" % value
        elif token in ("-p", "--protocol") and value not in _PROTOCOLS:
            return "protocol %r is not one Kuma uses" % value
        elif token in ("-j", "--jump"):
            if target is not None:
                return "more than one target"
            target = value
        index += 2
    if target is None:
        return "no target (-j)"
    jumps_to_kuma = _is_kuma_chain(target, chain_prefix)
    if not builtin:
        if not (jumps_to_kuma or target in _KUMA_CHAIN_TARGETS):
            return "target %r is not one Kuma's chains use" % target
        return None
    if not (jumps_to_kuma or target in _TARGETS.get(table, ())):
        return "target %r is not one of Kuma's in the %s table" % (target, table)
    if jumps_to_kuma:
        return None
    if comment is not None and comment.startswith(comment_prefix + "/"):
        return None
    if tuple(args) in claimed_args.get((table, chain), ()):
        return None
    return "a rule in the built-in chain %s that is not Kuma's (no Kuma comment, no jump to a Kuma chain, not claimed)" % chain


def _claimed_by_chain(claimed):
    """{table: lines} -> {(table, chain): set of arg tuples}."""
    out = {}
    for table, lines in (claimed or {}).items():
        for line in lines:
            try:
                tokens = tokenize(line)
            except GateError:
                continue
            if len(tokens) >= 2 and tokens[0] in ("-A", "-I", "-D"):
                rest = tokens[2:]
                if tokens[0] == "-I" and rest and rest[0].isdigit():
                    rest = rest[1:]
                out.setdefault((table, tokens[1]), set()).add(tuple(rest))
    return out


def check_restore(text, chain_prefix=CHAIN_PREFIX, comment_prefix=COMMENT_PREFIX, claimed=None):
    """The violations of an iptables-restore input (empty list: it may be applied).
    See the module docstring for the policy. Never raises."""
    violations = []
    if not isinstance(text, str):
        return ["the payload is not text: %r" % type(text).__name__]
    claimed_args = _claimed_by_chain(claimed)
    table = None
    for number, line in enumerate(text.split("\n"), 1):

        def bad(reason):
            violations.append("line %d: %s: %r" % (number, reason, line[:300]))

        if line == "" or line.startswith("#"):
            continue
        if len(line) > MAX_LINE:
            bad("longer than %d characters (iptables-restore would split it)" % MAX_LINE)
            continue
        if _BAD_CHARS.search(line):
            bad("control or non-ASCII character")
            continue
        if line.startswith("*"):
            words = line[1:].split()
            if table is not None:
                bad("table header inside table %r (COMMIT missing)" % table)
            if len(words) != 1 or words[0] not in BUILTIN_CHAINS:
                bad("only the raw, nat and mangle tables may be written")
                table = "?"
            else:
                table = words[0]
            continue
        if line == "COMMIT":
            if table is None:
                bad("COMMIT outside a table")
            table = None
            continue
        if table is None:
            bad("outside a table")
            continue
        if line.startswith(":"):
            words = line[1:].split()
            if (
                len(words) not in (2, 3)
                or not _is_kuma_chain(words[0], chain_prefix)
                or words[1] != "-"
                or (len(words) == 3 and not re.match(r"^\[[0-9]+:[0-9]+\]$", words[2]))
            ):
                bad("only Kuma's chains may be declared (':%s... - [0:0]')" % chain_prefix)
            continue
        try:
            tokens = tokenize(line)
        except GateError as exc:
            bad(str(exc))
            continue
        if table == "?":
            bad("rule in a table that may not be written")
            continue
        if not tokens:
            continue
        command = tokens[0]
        if command in ("-N", "-F", "-X"):
            if len(tokens) != 2 or not _is_kuma_chain(tokens[1], chain_prefix):
                bad("%s only of one Kuma chain" % command)
            continue
        if command not in ("-A", "-I", "-D"):
            bad("command %r is not one a Kuma transaction uses" % command)
            continue
        if len(tokens) < 2:
            bad("no chain")
            continue
        chain, args = tokens[1], tokens[2:]
        if command == "-I" and args and args[0].isdigit():
            if not 1 <= int(args[0]) <= 100000:
                bad("rule number out of range")
                continue
            args = args[1:]
        problem = _rule_problem(table, chain, args, chain_prefix, comment_prefix, claimed_args)
        if problem:
            bad(problem)
    if table is not None:
        violations.append("end of input: table %r has no COMMIT" % table)
    return violations


def check_direct_rules(
    rules, chains=(), passthroughs=(), chain_prefix=CHAIN_PREFIX, comment_prefix=COMMENT_PREFIX, claimed=None
):
    """The violations of firewalld direct entries (same policy as check_restore). Never raises."""
    violations = []
    claimed_args = {}
    for entry in claimed or ():
        try:
            ipv, table, chain, args = entry
            claimed_args.setdefault((table, chain), set()).add(tuple(args))
        except (TypeError, ValueError):
            continue
    for entry in chains or ():
        try:
            ipv, table, chain = entry
        except (TypeError, ValueError):
            violations.append("chain %r: not (ipv, table, chain)" % (entry,))
            continue
        if ipv not in ("ipv4", "ipv6") or table not in BUILTIN_CHAINS or not _is_kuma_chain(chain, chain_prefix):
            violations.append("chain %r: only Kuma's chains in raw, nat or mangle" % (entry,))
    for entry in rules or ():
        try:
            ipv, table, chain, priority, args = entry
            args = list(args)
        except (TypeError, ValueError):
            violations.append("rule %r: not (ipv, table, chain, priority, args)" % (entry,))
            continue
        if ipv not in ("ipv4", "ipv6") or table not in BUILTIN_CHAINS:
            violations.append("rule %r: only ipv4/ipv6 rules in raw, nat or mangle" % (entry,))
            continue
        if isinstance(priority, bool) or not isinstance(priority, int):
            violations.append("rule %r: priority is not a whole number" % (entry,))
            continue
        if not all(isinstance(a, str) for a in args) or any(_BAD_CHARS.search(a) for a in args):
            violations.append("rule %r: control, non-ASCII or non-text argument" % (entry,))
            continue
        if not isinstance(chain, str) or not _CHAIN_NAME.match(chain):
            violations.append("rule %r: bad chain name" % (entry,))
            continue
        problem = _rule_problem(table, chain, args, chain_prefix, comment_prefix, claimed_args)
        if problem:
            violations.append("rule %r: %s" % (entry, problem))
    for entry in passthroughs or ():
        violations.append("passthrough %r: Kuma's rules have no passthroughs" % (entry,))
    return violations


def claims_for(rulesets):
    """``claimed`` for check_restore: {table: set of lines} of the built-in-chain
    rules of ``rulesets`` (restore and iptables-save forms, with and without comments)."""
    out = {}
    for ruleset in rulesets:
        if ruleset is None:
            continue
        for table in ruleset.tables:
            lines = out.setdefault(table.name, set())
            for chain in table.builtin:
                for rule in chain.rules:
                    for comments in (True, False):
                        lines.add(rule.restore(comments))
                        lines.add(rule.saved(comments))
    return out
