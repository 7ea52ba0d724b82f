# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kuma.mesh maintainers
# Apache License 2.0 (see LICENSE)
"""Kuma's transparent-proxy rule set, built in memory. No I/O.

A line-for-line port of Kuma's builder (pkg/transparentproxy/iptables/builder/
builder_table_{raw,nat,mangle}.go, rules/rules.go, tables/tables.go): the same
chains, rules, comments, order and inserted-versus-appended positions. Every
rule renders two ways:

* ``restore()``: the ``iptables-restore`` line Kuma writes (``kumactl install
  transparent-proxy --dry-run`` prints these), and
* ``saved()``: the line ``iptables-save`` prints for that rule once it is in
  the kernel, which is what the current state is compared against.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import ipaddress
import re
from collections import namedtuple

from ansible_collections.kuma.mesh.plugins.module_utils.tproxy_config import (
    CHAIN_PREFIX,
    COMMENT_PREFIX,
    DNS_PORT,
    UidExclusion,
)

TABLE_ORDER = ("raw", "nat", "mangle")  # the order Kuma writes them in
BUILTIN_CHAINS = {
    "raw": ("PREROUTING", "OUTPUT"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
}
INBOUND_CHAIN = CHAIN_PREFIX + "_INBOUND"
OUTBOUND_CHAIN = CHAIN_PREFIX + "_OUTBOUND"
INBOUND_REDIRECT_CHAIN = CHAIN_PREFIX + "_INBOUND_REDIRECT"
OUTBOUND_REDIRECT_CHAIN = CHAIN_PREFIX + "_OUTBOUND_REDIRECT"
DOCKER_OUTPUT_CHAIN = "DOCKER_OUTPUT"
LOG_DEFAULT_LEVEL = 4  # iptables-save leaves --log-level out at this level


# -- parameters -------------------------------------------------------------
# Each parameter is a tuple; the first item says what it is:
#   ("s", address, negated) / ("d", address, negated)  source / destination
#   ("i", interface) / ("o", interface)                  in / out interface
#   ("p", protocol, [(flag, value, negated)])           -p with --dport/--sport
#   ("m", module, [(flag, value, negated)])             -m match with options
#   ("j", target, [(flag, value)])                      -j target with options


def src(address, negated=False):
    return ("s", str(address), negated)


def dst(address, negated=False):
    return ("d", str(address), negated)


def in_iface(name):
    return ("i", name)


def out_iface(name):
    return ("o", name)


def proto(name, dport=None, sport=None, negated=False):
    ports = []
    if dport is not None:
        ports.append(("dport", str(dport), negated))
    if sport is not None:
        ports.append(("sport", str(sport), negated))
    return ("p", name, ports)


def match(module, *options):
    return ("m", module, list(options))


def owner(uid, negated=False):
    return match("owner", ("uid-owner", str(uid), negated))


def jump(target, *options):
    return ("j", target, list(options))


RETURN = jump("RETURN")


def redirect_to(port):
    return jump("REDIRECT", ("to-ports", str(port)))


def ct_zone(zone):
    return jump("CT", ("zone", str(zone)))


def go_quote(text):
    """Go's %q, which Kuma uses for the comment text."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append("\\x%02x" % ord(ch))
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def save_quote(text):
    """How iptables-save quotes a string option (xtables_save_string)."""
    out = []
    for ch in text:
        if ch in "\\\"'":
            out.append("\\" + ch)
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


class UnsafeRule(ValueError):
    """A value that cannot be written into an iptables-restore line as one token."""


# Values (addresses, ports, interface names, chain names, protocols...):
# never a leading '-' or '!', nothing iptables-restore would split or unquote.
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9_:][A-Za-z0-9_.:/,+-]*\Z")
_SAFE_FLAG = re.compile(r"^(!|-[a-zA-Z]|--[a-z][a-z0-9-]*)\Z")
_COMMENT_CHARS = re.compile(r"^[\x20-\x7e]*\Z")


def safe_token(text, flag=False):
    """Whether ``text`` is one safe iptables-restore token of its kind."""
    if not isinstance(text, str) or len(text) > 512:
        return False
    return bool((_SAFE_FLAG if flag else _SAFE_VALUE).match(text))


def restore_quote(text):
    """A comment as one quoted iptables-restore token. Printable ASCII only
    (UnsafeRule otherwise): then Go's %q (what Kuma writes) and
    iptables-restore's unquoting (backslash escapes inside double quotes)
    agree byte for byte."""
    if not isinstance(text, str) or not _COMMENT_CHARS.match(text) or len(text) > 256:
        raise UnsafeRule("comment %r cannot be written into an iptables-restore line" % (text,))
    return go_quote(text)


def canonical_address(address):
    """``10.0.0.1`` -> ``10.0.0.1/32``, ``172.32.16.8/16`` -> ``172.32.0.0/16``."""
    return ipaddress.ip_network(u"%s" % address, strict=False).with_prefixlen


class Rule(object):
    """One rule of one chain: Kuma's rules.Rule."""

    def __init__(self, table, chain, params, comment="", insert=False):
        self.table = table
        self.chain = chain
        self.params = [p for p in params if p is not None]
        self.comment = comment
        self.insert = insert
        self.position = 0  # set by Chain.add for inserted rules, 1-based

    def full_comment(self):
        # Kuma joins prefix and text with "/" and cuts at 254 characters.
        return ("%s/%s" % (COMMENT_PREFIX, self.comment))[:254]

    def _params_with_comment(self, comments):
        if comments and self.comment:
            return [("m", "comment", [("comment", self.full_comment(), False)])] + self.params
        return list(self.params)

    def tokens(self, comments=True):
        """The rule as iptables-restore's tokens, after ``-A CHAIN`` / ``-I CHAIN n``:
        ``[(kind, text)]`` with kind ``"flag"`` (written by this module),
        ``"value"`` (may come from the options) or ``"comment"``."""
        out = []

        def flag(*words):
            out.extend(("flag", w) for w in words)

        def value(text):
            out.append(("value", text))

        for param in self._params_with_comment(comments):
            kind = param[0]
            if kind in ("s", "d"):
                flag(*((["!"] if param[2] else []) + ["-" + kind]))
                value(param[1])
            elif kind in ("i", "o"):
                flag("-" + kind)
                value(param[1])
            elif kind == "p":
                flag("-p")
                value(param[1])
                for name, text, negated in param[2]:
                    flag(*((["!"] if negated else []) + ["--" + name]))
                    value(text)
            elif kind == "m":
                flag("-m")
                value(param[1])
                for name, text, negated in param[2]:
                    flag(*((["!"] if negated else []) + ["--" + name]))
                    if name == "comment":
                        out.append(("comment", text))
                    else:
                        value(text)
            elif kind == "j":
                flag("-j")
                value(param[1])
                for name, text in param[2]:
                    flag("--" + name)
                    value(text)
        return out

    def head_words(self):
        if self.position:
            return ["-I", self.chain, str(self.position)]
        return ["-A", self.chain]

    def restore(self, comments=True):
        """The line as Kuma writes it for iptables-restore.

        Every value is checked against the safe token grammar at render time
        (UnsafeRule otherwise): it cannot start a new line, a new option or a
        quoted string, so the line tokenises exactly as written. The comment
        is written quoted (Go's %q, as Kuma does), which for the printable
        ASCII text allowed here is also how iptables-restore unquotes it.
        """
        if not safe_token(self.chain):
            raise UnsafeRule("chain %r cannot be written into an iptables-restore line" % (self.chain,))
        words = self.head_words()
        for kind, text in self.tokens(comments):
            if kind == "comment":
                words.append(restore_quote(text))
            elif safe_token(text, flag=kind == "flag"):
                words.append(text)
            else:
                raise UnsafeRule("%s: %r cannot be written into an iptables-restore line" % (self.chain, text))
        return " ".join(words)

    def args(self, comments=True):
        """The rule's arguments after ``-A CHAIN`` / ``-I CHAIN n``, as a list
        (what firewalld's direct interface takes). Checked as restore() does."""
        self.restore(comments)
        return [text for _kind, text in self.tokens(comments)]

    def saved(self, comments=True):
        """The line iptables-save prints for this rule (iptables 1.8, nft or legacy)."""
        params = self._params_with_comment(comments)
        generic = {}
        matches = []  # [module, [option words]]
        target = []
        for param in params:
            kind = param[0]
            if kind in ("s", "d"):
                generic[kind] = (["!"] if param[2] else []) + ["-" + kind, canonical_address(param[1])]
            elif kind in ("i", "o"):
                generic[kind] = ["-" + kind, param[1]]
            elif kind == "p":
                generic["p"] = ["-p", param[1]]
                if param[2]:
                    # Port options go to an already loaded match that takes
                    # them (multiport, or -m tcp/udp); otherwise iptables
                    # loads the protocol's match implicitly, right here.
                    host = None
                    for m in matches:
                        if m[0] in ("multiport", param[1]):
                            host = m
                            break
                    if host is None:
                        host = [param[1], []]
                        matches.append(host)
                    for flag, value, negated in param[2]:
                        if host[0] == "multiport":
                            flag += "s"
                        host[1] += (["!"] if negated else []) + ["--" + flag, value]
            elif kind == "m":
                words = []
                for flag, value, negated in param[2]:
                    if flag == "comment":
                        value = save_quote(value)
                    elif flag == "uid-owner":
                        value = value.replace(":", "-")
                    words += (["!"] if negated else []) + ["--" + flag, value]
                matches.append([param[1], words])
            elif kind == "j":
                target = ["-j", param[1]]
                for flag, value in param[2]:
                    if flag == "log-prefix":
                        value = save_quote(value)
                    elif flag == "log-level" and int(value) == LOG_DEFAULT_LEVEL:
                        continue
                    target += ["--" + flag, value]
        words = ["-A", self.chain]
        for key in ("s", "d", "i", "o", "p"):
            words += generic.get(key, [])
        for module, options in matches:
            words += ["-m", module] + options
        return " ".join(words + target)


class Chain(object):
    """Kuma's chains.Chain: rules in the order added; inserts numbered from 1."""

    def __init__(self, table, name):
        self.table = table
        self.name = name
        self.rules = []
        self._position = 0

    def add(self, *rules):
        for rule in rules:
            if rule is None:
                continue
            rule.table, rule.chain = self.table, self.name
            if rule.insert:
                self._position += 1
                rule.position = self._position
            self.rules.append(rule)
        return self

    @property
    def head(self):
        """Inserted rules, in the order they end up at the top of the chain."""
        return sorted((r for r in self.rules if r.position), key=lambda r: r.position)

    @property
    def tail(self):
        """Appended rules, in the order they end up at the bottom of the chain."""
        return [r for r in self.rules if not r.position]


def append(params, comment):
    return Rule(None, None, params, comment)


def insert(params, comment):
    return Rule(None, None, params, comment, insert=True)


class Table(object):
    def __init__(self, name):
        self.name = name
        self.builtin = [Chain(name, c) for c in BUILTIN_CHAINS[name]]
        self.custom = []

    def chain(self, name):
        for c in self.builtin + self.custom:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def chains(self):
        return self.builtin + self.custom

    def empty(self):
        return not any(c.rules for c in self.chains)


class RuleSet(object):
    """All of Kuma's rules for one family, table by table."""

    def __init__(self, family, tables, comments=True):
        self.family = family
        self.tables = tables  # list of Table in TABLE_ORDER, empty ones dropped
        self.comments = comments

    def table(self, name):
        for t in self.tables:
            if t.name == name:
                return t
        return None

    def restore_text(self):
        """What Kuma feeds to ``iptables-restore --noflush`` (its --dry-run output)."""
        blocks = []
        for table in self.tables:
            lines = ["* %s" % table.name]
            lines += ["-N %s" % c.name for c in table.custom]
            for c in table.chains:
                lines += [r.restore(self.comments) for r in c.rules]
            lines.append("COMMIT")
            blocks.append("\n".join(lines))
        return "\n".join(blocks) + "\n" if blocks else ""

    def saved_lines(self):
        """{table: [lines]} as iptables-save shows them on a host that had no rules."""
        out = {}
        for table in self.tables:
            # iptables-save lists user chains sorted by name, after the built-in ones.
            custom = sorted(table.custom, key=lambda c: c.name)
            lines = [":%s - [0:0]" % c.name for c in custom]
            for c in table.builtin + custom:
                lines += [r.saved(self.comments) for r in c.head + c.tail]
            out[table.name] = lines
        return out


# -- the builder ------------------------------------------------------------


def _mesh_inbound(cfg):
    chain = Chain("nat", INBOUND_CHAIN)
    if not cfg.inbound_enabled:
        return chain.add(append([proto("tcp"), RETURN], "inbound traffic redirection is disabled"))
    for address in cfg.inbound_exclude_ips:
        chain.add(append([src(address), RETURN], "skip further processing for configured IP address"))
    for port in cfg.inbound_include_ports:
        chain.add(
            append(
                [proto("tcp", dport=port), jump(INBOUND_REDIRECT_CHAIN)],
                "redirect inbound traffic from port %d to the custom chain for processing" % port,
            )
        )
    if cfg.inbound_include_ports:
        # Kuma: with include ports, only they are redirected; exclude ports are ignored.
        return chain
    for port in cfg.inbound_exclude_ports:
        chain.add(
            append(
                [proto("tcp", dport=port), RETURN],
                "exclude inbound traffic from port %d from redirection" % port,
            )
        )
    chain.add(
        append(
            [proto("tcp"), jump(INBOUND_REDIRECT_CHAIN)],
            "redirect all inbound traffic to the custom chain for processing",
        )
    )
    return chain


def _mesh_outbound(cfg):
    chain = Chain("nat", OUTBOUND_CHAIN)
    if not cfg.outbound_enabled:
        return chain.add(append([proto("tcp"), RETURN], "outbound traffic redirection is disabled"))
    for port in [] if cfg.outbound_include_ports else cfg.outbound_exclude_ports:
        chain.add(
            append(
                [proto("tcp", dport=port), RETURN],
                "exclude outbound traffic from port %d from redirection" % port,
            )
        )
    chain.add(
        append(
            [src(cfg.inbound_passthrough), out_iface(cfg.loopback), RETURN],
            "prevent traffic loops by ensuring traffic from the sidecar proxy (using %s) to loopback "
            "interface is not redirected again" % cfg.inbound_passthrough,
        ),
        append(
            [
                proto("tcp"),
                out_iface(cfg.loopback),
                dst(cfg.localhost, negated=True),
                owner(cfg.uid),
                jump(INBOUND_REDIRECT_CHAIN),
            ],
            "redirect outbound TCP traffic destined for loopback interface, but not targeting address %s, "
            "and owned by UID %s (kuma-dp user) to %s chain for proper handling"
            % (cfg.localhost, cfg.uid, INBOUND_REDIRECT_CHAIN),
        ),
        append(
            [proto("tcp"), out_iface(cfg.loopback), owner(cfg.uid, negated=True), RETURN],
            "return outbound TCP traffic destined for loopback interface, owned by any UID other than %s "
            "(kuma-dp user)" % cfg.uid,
        ),
        append([owner(cfg.uid), RETURN], "return outbound traffic owned by UID %s (kuma-dp user)" % cfg.uid),
        append(
            [dst(cfg.localhost), RETURN],
            "return traffic destined for localhost (%s) to avoid redirection" % cfg.localhost,
        ),
    )
    for port in cfg.outbound_include_ports:
        chain.add(
            append(
                [proto("tcp", dport=port), jump(OUTBOUND_REDIRECT_CHAIN)],
                "redirect outbound TCP traffic to port %d to our custom chain for further processing" % port,
            )
        )
    if not cfg.outbound_include_ports:
        chain.add(
            append(
                [jump(OUTBOUND_REDIRECT_CHAIN)],
                "redirect all other outbound traffic to our custom chain for further processing",
            )
        )
    return chain


def _mesh_redirect(name, port):
    return Chain("nat", name).add(
        append([proto("tcp"), redirect_to(port)], "redirect TCP traffic to envoy (port %d)" % port)
    )


def _log(prefix, level):
    return jump("LOG", ("log-prefix", prefix + ":"), ("log-level", str(level)))


def _exclusion_rule(exclusion):
    comment = "skip further processing for configured IP addresses, ports and UIDs"
    if isinstance(exclusion, UidExclusion):
        return insert(
            [
                match("multiport") if exclusion.ports else None,
                proto(exclusion.protocol, dport=exclusion.ports or None),
                owner(exclusion.uids) if exclusion.uids else None,
                RETURN,
            ],
            comment,
        )
    return insert([dst(exclusion), RETURN], comment)


def _output_rules(cfg, output):
    if cfg.log_enabled:
        output.add(insert([_log("OUTPUT", cfg.log_level)], "log matching packets using kernel logging"))
    for exclusion in cfg.outbound_exclusions:
        output.add(_exclusion_rule(exclusion))
    if cfg.dns_enabled:
        if cfg.docker_output:
            target, comment = jump(DOCKER_OUTPUT_CHAIN), "redirect DNS traffic from kuma-dp to the DOCKER_OUTPUT chain"
        else:
            target, comment = RETURN, "return early for DNS traffic from kuma-dp"
        output.add(
            insert([proto("udp", dport=DNS_PORT), owner(cfg.uid), target], comment),
            append(
                [proto("tcp", dport=DNS_PORT), owner(cfg.uid, negated=True), RETURN],
                "allow applications to perform DNS queries over TCP to port %d without mesh redirection "
                "(only traffic not owned by UID %s (kuma-dp user))" % (DNS_PORT, cfg.uid),
            ),
        )
        if cfg.dns_capture_all:
            output.add(
                insert(
                    [proto("udp", dport=DNS_PORT), redirect_to(cfg.dns_port)],
                    "redirect all DNS requests to the kuma-dp DNS proxy (listening on port %d)" % cfg.dns_port,
                )
            )
        else:
            for server in cfg.dns_servers:
                output.add(
                    insert(
                        [dst(server), proto("udp", dport=DNS_PORT), redirect_to(cfg.dns_port)],
                        "redirect DNS requests to %s to the kuma-dp DNS proxy (listening on port %d)"
                        % (server, cfg.dns_port),
                    )
                )
    rule = Rule(
        None,
        None,
        [proto("tcp"), jump(OUTBOUND_CHAIN)],
        "redirect outbound TCP traffic to our custom chain for processing",
        insert=cfg.outbound_insert,
    )
    output.add(rule)


def _prerouting_rules(cfg, prerouting):
    if cfg.log_enabled:
        prerouting.add(append([_log("PREROUTING", cfg.log_level)], "log matching packets using kernel logging"))
    if not cfg.vnet and not cfg.inbound_insert:
        prerouting.add(
            append([proto("tcp"), jump(INBOUND_CHAIN)], "redirect inbound TCP traffic to our custom chain for processing")
        )
        return
    for iface in sorted(cfg.vnet, key=lambda s: s.encode("utf-8")):
        cidr = cfg.vnet[iface]
        prerouting.add(
            insert(
                [in_iface(iface), match("udp"), proto("udp", dport=DNS_PORT), redirect_to(cfg.dns_port)],
                "redirect DNS requests on interface %s to the kuma-dp DNS proxy (listening on port %d)"
                % (iface, cfg.dns_port),
            ),
            insert(
                [dst(cidr, negated=True), in_iface(iface), proto("tcp"), redirect_to(cfg.outbound_port)],
                "redirect TCP traffic on interface %s, excluding destination %s, to the envoy's outbound "
                "passthrough port %d" % (iface, cidr, cfg.outbound_port),
            ),
        )
    prerouting.add(
        insert([proto("tcp"), jump(INBOUND_CHAIN)], "redirect remaining TCP traffic to our custom chain for processing")
    )


def _raw_table(cfg):
    raw = Table("raw")
    if not cfg.conntrack_zone_split:
        return raw
    output, prerouting = raw.chain("OUTPUT"), raw.chain("PREROUTING")
    output.add(
        append(
            [proto("udp", dport=DNS_PORT), owner(cfg.uid), ct_zone(1)],
            "assign connection tracking zone 1 to DNS traffic from the kuma-dp user (UID %s)" % cfg.uid,
        ),
        append(
            [proto("udp", sport=cfg.dns_port), owner(cfg.uid), ct_zone(2)],
            "assign connection tracking zone 2 to DNS responses from the kuma-dp DNS proxy",
        ),
    )
    if cfg.dns_capture_all:
        output.add(append([proto("udp", dport=DNS_PORT), ct_zone(2)], "assign connection tracking zone 2 to all DNS requests"))
        prerouting.add(
            append([proto("udp", sport=DNS_PORT), ct_zone(1)], "assign connection tracking zone 1 to all DNS responses")
        )
        return raw
    for server in cfg.dns_servers:
        output.add(
            append(
                [dst(server), proto("udp", dport=DNS_PORT), ct_zone(2)],
                "assign connection tracking zone 2 to DNS requests destined for %s" % server,
            )
        )
        if ipaddress.ip_address(u"%s" % server).is_loopback:
            output.add(
                append(
                    [src(server), dst(cfg.localhost), proto("udp"), ct_zone(1)],
                    "assign conntrack zone 1 to DNS responses from the local DNS server to localhost, needed when "
                    "the DNS query port is altered by a DNAT iptables rule, such as with Docker containers in a "
                    "custom network",
                )
            )
        prerouting.add(
            append(
                [src(server), proto("udp", sport=DNS_PORT), ct_zone(1)],
                "assign connection tracking zone 1 to DNS responses from %s" % server,
            )
        )
    return raw


def _nat_table(cfg):
    nat = Table("nat")
    _output_rules(cfg, nat.chain("OUTPUT"))
    _prerouting_rules(cfg, nat.chain("PREROUTING"))
    nat.custom = [
        _mesh_inbound(cfg),
        _mesh_outbound(cfg),
        _mesh_redirect(INBOUND_REDIRECT_CHAIN, cfg.inbound_port),
        _mesh_redirect(OUTBOUND_REDIRECT_CHAIN, cfg.outbound_port),
    ]
    return nat


def _mangle_table(cfg):
    mangle = Table("mangle")
    if cfg.drop_invalid_packets:
        mangle.chain("PREROUTING").add(
            append(
                [match("conntrack", ("ctstate", "INVALID", False)), jump("DROP")],
                "drop packets in the INVALID state to prevent potential issues with malformed or out-of-order packets",
            )
        )
    return mangle


def build(cfg):
    """Kuma's BuildIPTablesForRestore for one family, as a RuleSet."""
    tables = [t for t in (_raw_table(cfg), _nat_table(cfg), _mangle_table(cfg)) if not t.empty()]
    return RuleSet(cfg.family, tables, comments=cfg.comments)


# -- degrading where Kuma degrades --------------------------------------------

# Kuma (pkg/transparentproxy/config/config.go) leaves a feature out when the host
# cannot write it: comments without the comment module (Comments.Initialize),
# the DNS conntrack zone split without what it needs (DNS.Initialize, with a
# warning), drop_invalid_packets without the mangle table (Config.Initialize).
LeftOut = namedtuple("LeftOut", "feature option reason")
Degraded = namedtuple("Degraded", "cfg left_out")

_LEFT_OUT = {
    "comment": ("comments", "comments are left out: the iptables comment module is not available"),
    "conntrack_zone": (
        "redirect.dns.skip_conntrack_zone_split",
        "conntrack zone splitting is disabled (DNS is still redirected): the raw table's CT target with --zone "
        "is not available (Kuma: this requires the 'conntrack' iptables module)",
    ),
    "mangle": (
        "drop_invalid_packets",
        "drop_invalid_packets is left out: the mangle table's conntrack INVALID drop rule is not available",
    ),
}


def degrade(cfg, features):
    """``cfg`` without the features ``features`` (a tproxy_facts.Features, or None:
    all there) says the host cannot write, as Kuma does; Degraded(cfg, left_out),
    ``left_out`` a tuple of LeftOut. ``cfg`` itself is not changed."""
    if features is None:
        return Degraded(cfg, ())
    wanted = (("comment", cfg.comments), ("conntrack_zone", cfg.conntrack_zone_split),
              ("mangle", cfg.drop_invalid_packets))
    gone = [name for name, used in wanted if used and not features.has(name)]
    if not gone:
        return Degraded(cfg, ())
    out = copy.copy(cfg)
    out.comments = out.comments and "comment" not in gone
    out.conntrack_zone_split = out.conntrack_zone_split and "conntrack_zone" not in gone
    out.drop_invalid_packets = out.drop_invalid_packets and "mangle" not in gone
    return Degraded(out, tuple(LeftOut(name, _LEFT_OUT[name][0], features.reason(name)) for name in gone))


def left_out_message(family, feature, reason):
    """The warning for a ``feature`` of ``family`` left out: what, and why."""
    return "%s: %s (%s)" % (family, _LEFT_OUT[feature][1], reason)
