# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kuma.mesh maintainers
# Apache License 2.0 (see LICENSE)
"""The firewalld backend of kuma_tproxy: Kuma's rules as firewalld direct rules.

Kuma's rules become firewalld *direct* entries, permanent (the source of truth
that survives reloads, restarts and reboots) and, while firewalld runs,
runtime too:

* every ``KUMA_MESH_*`` chain is a direct chain;
* every rule is a direct rule in its chain whose priority gives Kuma's final
  order: in a built-in chain Kuma's inserted rules (``chain.head``) get
  ``INSERT_BASE + k`` and its appended ones (``chain.tail``) ``APPEND_BASE + k``
  (k = 0, 1, ... in Kuma's order); rules of Kuma's own chains get
  ``APPEND_BASE + k``. Priorities are distinct, so the order never depends on
  the order entries were added or read;
* comments are kept (``rule.args(ruleset.comments)``).

Kuma's entries are found with kumactl's test (a ``KUMA_MESH`` chain, a jump to
one, or the comment prefix) plus, for rules without any mark, equality with
Kuma's uncommented rules (``comments.disabled``, or ``ipv4`` priority 3 as
``kumactl --store-firewalld`` writes them). Only Kuma's entries are ever
replaced: other direct chains, rules and passthroughs stay as they are (and
byte-for-byte in ``direct.xml`` when it is edited offline).

The pure part (translation, detection, comparison, runtime plan, direct.xml
parse and edit) is separate from the I/O: ``Online`` talks to a running
firewalld over D-Bus with firewalld's own Python client; when firewalld is not
running, ``direct.xml`` is edited and replaced atomically.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import shlex
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape, quoteattr

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_config as config
from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_host as host
from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_iptables as ipt
from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_rules as rules
from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_gate
from ansible_collections.kuma.mesh.plugins.module_utils.tproxy_config import CHAIN_PREFIX, COMMENT_PREFIX
from ansible_collections.kuma.mesh.plugins.module_utils.tproxy_undo import TproxyFailure

FAMILIES = ("ipv4", "ipv6")
ETC_FIREWALLD = "/etc/firewalld"
DIRECT_XML = ETC_FIREWALLD + "/direct.xml"
INSERT_BASE = -10000  # Kuma's inserted rules: -10000, -9999, ...: before direct rules of usual priorities
APPEND_BASE = 10000  # Kuma's appended rules and its own chains' rules: 10000, 10001, ...
MAX_RULES = 10000  # per chain and kind, so the two ranges never meet
KUMACTL_PRIORITY = 3  # what kumactl install transparent-proxy --store-firewalld writes
_JUMPS = ("-j", "--jump", "-g", "--goto")
XML_HEADER = '<?xml version="1.0" encoding="utf-8"?>\n'


class FirewalldError(Exception):
    undone = True  # for a failed runtime change: whether the calls made before it were undone


# -- entries ------------------------------------------------------------------
# chain: (ipv, table, chain)
# rule: (ipv, table, chain, priority, (args...))
# passthrough: (ipv, (args...))


def join_args(args):
    """firewalld's joinArgs: how direct.xml and firewall-cmd write a rule's arguments."""
    return " ".join(shlex.quote(a) for a in args)


def chain_text(entry):
    return "%s %s %s" % entry


def rule_text(entry):
    """One rule as ``firewall-cmd --direct --get-all-rules`` prints it."""
    ipv, table, chain, priority, args = entry
    return "%s %s %s %d %s" % (ipv, table, chain, priority, join_args(args))


def is_kuma_chain(name):
    return ipt.is_kuma_chain(name)


def is_kuma_rule(chain, args):
    """kumactl's test (as tproxy_iptables.is_kuma_rule) on an argument list: Kuma's comment
    prefix, a KUMA_MESH chain, or a jump to one (short or long option)."""
    if is_kuma_chain(chain) or any(COMMENT_PREFIX in a for a in args):
        return True
    for index, arg in enumerate(args[:-1]):
        if arg in _JUMPS and is_kuma_chain(args[index + 1]):
            return True
    return False


def is_builtin(table, chain):
    return chain in rules.BUILTIN_CHAINS.get(table, ())


class Direct(object):
    """A firewalld direct configuration: chains, rules and passthroughs in order."""

    def __init__(self, chains=None, rules_=None, passthroughs=None):
        self.chains = [tuple(c) for c in chains or []]
        self.rules = [normal_rule(r) for r in rules_ or []]
        self.passthroughs = [(p[0], tuple(p[1])) for p in passthroughs or []]

    @classmethod
    def from_settings(cls, settings):
        """From firewalld's D-Bus form ``(chains, rules, passthroughs)``."""
        return cls(settings[0], settings[1], settings[2])

    def settings(self):
        """To firewalld's D-Bus form (what ``config.direct.update`` takes)."""
        return [
            [tuple(c) for c in self.chains],
            [(r[0], r[1], r[2], r[3], list(r[4])) for r in self.rules],
            [(p[0], list(p[1])) for p in self.passthroughs],
        ]

    def empty(self):
        return not (self.chains or self.rules or self.passthroughs)


def normal_rule(entry):
    ipv, table, chain, priority, args = entry
    return (ipv, table, chain, int(priority), tuple(args))


# -- Kuma's rules as direct entries ----------------------------------------------


def wanted_entries(ruleset):
    """([chains], [rules]) of one family's RuleSet, with the priorities of the module's scheme."""
    if ruleset is None:
        return [], []
    ipv = ruleset.family
    chains, out = [], []
    for table in ruleset.tables:
        for chain in table.custom:
            chains.append((ipv, table.name, chain.name))
        for chain in table.builtin + table.custom:
            head, tail = chain.head, chain.tail
            if len(head) > MAX_RULES or len(tail) > MAX_RULES:
                raise FirewalldError(
                    "%s %s %s: more than %d rules cannot be ordered by priority" % (ipv, table.name, chain.name, MAX_RULES)
                )
            for k, rule in enumerate(head):
                out.append((ipv, table.name, chain.name, INSERT_BASE + k, tuple(rule.args(ruleset.comments))))
            for k, rule in enumerate(tail):
                out.append((ipv, table.name, chain.name, APPEND_BASE + k, tuple(rule.args(ruleset.comments))))
    return chains, out


def claims_of(rulesets):
    """{(ipv, table, chain, args)} of Kuma's rules in built-in chains without comments:
    how rules that carry no mark are recognised."""
    out = set()
    for ruleset in rulesets:
        if ruleset is None:
            continue
        for table in ruleset.tables:
            for chain in table.builtin:
                for rule in chain.head + chain.tail:
                    out.add((ruleset.family, table.name, chain.name, tuple(rule.args(False))))
    return out


class Detector(object):
    """Which direct entries are Kuma's."""

    def __init__(self, claims=None, any_priority=False):
        self.claims = claims or set()
        self.any_priority = any_priority  # comments disabled: claim equal rules whatever their priority

    def chain(self, entry):
        return entry[0] in FAMILIES and is_kuma_chain(entry[2])

    def rule(self, entry, marked_only=False):
        ipv, table, chain, priority, args = entry
        if ipv not in FAMILIES:
            return False
        if is_kuma_rule(chain, args):
            return True
        if marked_only or (ipv, table, chain, tuple(args)) not in self.claims:
            return False
        return self.any_priority or (ipv == "ipv4" and priority == KUMACTL_PRIORITY)

    def passthrough(self, entry):
        """Kuma never writes passthroughs; this only says whether one looks like Kuma's (to warn)."""
        return entry[0] in FAMILIES and is_kuma_rule("", entry[1])

    def part(self, direct, family=None):
        """(set of chains, set of rules): Kuma's entries of ``direct`` (of one family, or all)."""
        chains = set(c for c in direct.chains if self.chain(c) and family in (None, c[0]))
        found = set(r for r in direct.rules if self.rule(r) and family in (None, r[0]))
        return chains, found

    def foreign(self, direct):
        """``direct`` without Kuma's entries, order kept."""
        return Direct(
            [c for c in direct.chains if not self.chain(c)],
            [r for r in direct.rules if not self.rule(r)],
            direct.passthroughs,
        )


def replaced(direct, detector, chains, rules_):
    """``direct`` with Kuma's entries replaced by ``chains`` and ``rules_`` (appended after the others)."""
    out = detector.foreign(direct)
    out.chains += [c for c in chains if c not in out.chains]
    out.rules += [r for r in rules_ if r not in out.rules]
    return out


def sort_key_rule(entry):
    ipv, table, chain, priority, args = entry
    order = rules.TABLE_ORDER.index(table) if table in rules.TABLE_ORDER else len(rules.TABLE_ORDER)
    return (ipv, order, table, not is_builtin(table, chain), chain, priority, args)


def sort_key_chain(entry):
    ipv, table, chain = entry
    order = rules.TABLE_ORDER.index(table) if table in rules.TABLE_ORDER else len(rules.TABLE_ORDER)
    return (ipv, order, table, chain)


def entries_text(chains, rules_):
    """Chains then rules, one a line, as firewall-cmd --direct prints them (diff mode)."""
    lines = [chain_text(c) for c in sorted(chains, key=sort_key_chain)]
    lines += [rule_text(r) for r in sorted(rules_, key=sort_key_rule)]
    return "".join(line + "\n" for line in lines)


def runtime_ops(current_chains, current_rules, wanted_chains, wanted_rules):
    """The D-Bus calls that turn Kuma's runtime entries into the wanted ones, in a safe order:
    new chains; old rules out of built-in chains, then of Kuma's chains; new rules into Kuma's
    chains, then into built-in chains; old chains (empty and unreferenced by then) last.
    Entries present in both are not touched."""
    current_chains, current_rules = set(current_chains), set(current_rules)
    wanted_chains, wanted_rules = set(wanted_chains), set(wanted_rules)
    ops = [("add_chain", c) for c in sorted(wanted_chains - current_chains, key=sort_key_chain)]
    gone = sorted(current_rules - wanted_rules, key=sort_key_rule)
    ops += [("remove_rule", r) for r in gone if not is_kuma_chain(r[2])]
    ops += [("remove_rule", r) for r in gone if is_kuma_chain(r[2])]
    new = sorted(wanted_rules - current_rules, key=sort_key_rule)
    ops += [("add_rule", r) for r in new if is_kuma_chain(r[2])]
    ops += [("add_rule", r) for r in new if not is_kuma_chain(r[2])]
    ops += [("remove_chain", c) for c in sorted(current_chains - wanted_chains, key=sort_key_chain)]
    return ops


_INVERSE = {"add_chain": "remove_chain", "remove_chain": "add_chain", "add_rule": "remove_rule", "remove_rule": "add_rule"}


def inverse(op):
    return (_INVERSE[op[0]], op[1])


def op_text(op):
    kind, entry = op
    name = {"add_chain": "addChain", "remove_chain": "removeChain", "add_rule": "addRule", "remove_rule": "removeRule"}
    return "direct.%s %s" % (name[kind], chain_text(entry) if kind.endswith("chain") else rule_text(entry))


def apply_ops(api, ops, calls):
    """Apply ``ops``; on a failure undo the ones done (newest first) and raise FirewalldError
    saying which call failed and whether the undo worked."""
    done = []
    for op in ops:
        calls.append(op_text(op))
        try:
            api.apply(op)
        except FirewalldError as exc:
            undo_failed = undo_ops(api, done, calls)
            error = FirewalldError(
                "%s failed: %s%s" % (op_text(op), exc, "; undoing the earlier calls failed too: %s" % undo_failed if undo_failed else "")
            )
            error.undone = not undo_failed
            raise error
        done.append(op)
    return done


def undo_ops(api, done, calls):
    """Undo applied ops, newest first; returns the errors ("" when all undone)."""
    errors = []
    for op in reversed(done):
        back = inverse(op)
        calls.append(op_text(back))
        try:
            api.apply(back)
        except FirewalldError as exc:
            errors.append("%s: %s" % (op_text(back), exc))
    return "; ".join(errors)


# -- direct.xml -------------------------------------------------------------------

_TOKEN = re.compile(
    r"<!--.*?-->|<\?.*?\?>|<!\[CDATA\[.*?\]\]>"
    r"|<(?P<name>chain|rule|passthrough)\b(?:[^>\"']|\"[^\"]*\"|'[^']*')*?(?:/>|>(?:.*?)</(?P=name)\s*>)",
    re.S,
)
_CLOSE = re.compile(r"</direct\s*>")
_SELF_CLOSED = re.compile(r"<direct\b[^>]*/>")


def _element_entry(elem):
    """(kind, entry) of one parsed element; None when firewalld would ignore it."""
    attrs = elem.attrib
    if elem.tag == "chain":
        if not all(k in attrs for k in ("ipv", "table", "chain")):
            return None
        return ("chain", (attrs["ipv"], attrs["table"], attrs["chain"]))
    if elem.tag == "rule":
        if not all(k in attrs for k in ("ipv", "table", "chain", "priority")) or not (elem.text or "").strip():
            return None
        try:
            priority = int(attrs["priority"])
            args = tuple(shlex.split(elem.text))
        except ValueError:
            return None
        return ("rule", (attrs["ipv"], attrs["table"], attrs["chain"], priority, args))
    if elem.tag == "passthrough":
        if "ipv" not in attrs or not (elem.text or "").strip():
            return None
        try:
            return ("passthrough", (attrs["ipv"], tuple(shlex.split(elem.text))))
        except ValueError:
            return None
    return None


def chain_element(entry):
    ipv, table, chain = entry
    return "<chain ipv=%s table=%s chain=%s/>" % (quoteattr(ipv), quoteattr(table), quoteattr(chain))


def rule_element(entry):
    ipv, table, chain, priority, args = entry
    return "<rule ipv=%s table=%s chain=%s priority=%s>%s</rule>" % (
        quoteattr(ipv),
        quoteattr(table),
        quoteattr(chain),
        quoteattr("%d" % priority),
        escape(join_args(args)),
    )


def passthrough_element(entry):
    return "<passthrough ipv=%s>%s</passthrough>" % (quoteattr(entry[0]), escape(join_args(entry[1])))


def render(direct):
    """A whole direct.xml as firewalld writes it."""
    lines = [XML_HEADER.rstrip("\n"), "<direct>"]
    lines += ["  " + chain_element(c) for c in direct.chains]
    lines += ["  " + rule_element(r) for r in direct.rules]
    lines += ["  " + passthrough_element(p) for p in direct.passthroughs]
    lines.append("</direct>")
    return "\n".join(lines) + "\n"


class DirectXml(object):
    """direct.xml as text: every entry with its exact span, so that an edit
    removes and adds Kuma's entries and leaves every other byte as it was."""

    def __init__(self, text):
        self.text = text
        self.items = []  # (kind, entry or None, start, end)
        self.direct = Direct()
        self.in_place = True  # False: the text cannot be edited safely, so it is written anew
        if text is None or not text.strip():
            self.text = None
            return
        try:
            root = ET.fromstring(text.encode("utf-8"))
        except ET.ParseError as exc:
            raise FirewalldError("%s is not valid XML: %s" % (DIRECT_XML, exc))
        if root.tag != "direct":
            raise FirewalldError("%s: the root element is <%s>, not <direct>" % (DIRECT_XML, root.tag))
        parsed = [_element_entry(e) for e in root if e.tag in ("chain", "rule", "passthrough")]
        for match in _TOKEN.finditer(text):
            if not match.group("name"):
                continue
            try:
                item = _element_entry(ET.fromstring(match.group(0).encode("utf-8")))
            except ET.ParseError:
                item = None
            self.items.append((item, match.start(), match.end()))
        # The spans must be exactly the root's children, else edit the parsed form, not the text.
        if [i for i, _s, _e in self.items] != parsed:
            self.in_place = False
            self.items = [(i, None, None) for i in parsed]
        for item, _start, _end in self.items:
            if item is None:
                continue
            kind, entry = item
            if kind == "chain":
                self.direct.chains.append(entry)
            elif kind == "rule":
                self.direct.rules.append(entry)
            else:
                self.direct.passthroughs.append(entry)

    def edited(self, detector, chains, rules_):
        """The file's text with Kuma's entries replaced by ``chains`` and ``rules_``."""
        if self.text is None or not self.in_place:
            return render(replaced(self.direct, detector, chains, rules_))
        text = self.text
        cuts = []
        for item, start, end in self.items:
            if item is None:
                continue
            kind, entry = item
            if (kind == "chain" and detector.chain(entry)) or (kind == "rule" and detector.rule(entry)):
                cuts.append(_whole_lines(text, start, end))
        for start, end in reversed(cuts):
            text = text[:start] + text[end:]
        new = [chain_element(c) for c in chains] + [rule_element(r) for r in rules_]
        if not new:
            return text
        block = "".join("  %s\n" % e for e in new)
        close = list(_CLOSE.finditer(text))
        if close:
            at = close[-1].start()
            line_start = text.rfind("\n", 0, at) + 1
            if text[line_start:at].strip():  # "...</rule></direct>" on one line
                return text[:at] + "\n" + block + text[at:]
            return text[:line_start] + block + text[line_start:]
        match = _SELF_CLOSED.search(text)
        opening = match.group(0)[:-2].rstrip() + ">"
        return text[: match.start()] + opening + "\n" + block + "</direct>" + text[match.end():]


def _whole_lines(text, start, end):
    """The span of an element, widened to its whole line(s) when nothing else is on them."""
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    line_end = len(text) if line_end < 0 else line_end + 1
    if not text[line_start:start].strip() and not text[end:line_end].strip():
        return line_start, line_end
    return start, end


# -- talking to firewalld -----------------------------------------------------------


class Online(object):
    """A running firewalld, over D-Bus through its own Python client (python3-firewall)."""

    def __init__(self, client, settings_class, errors):
        self.client = client
        self.settings_class = settings_class
        self.errors = errors

    def _call(self, what, func, *args):
        try:
            return func(*args)
        except self.errors as exc:
            message = exc.get_dbus_message() if hasattr(exc, "get_dbus_message") else None
            raise FirewalldError(message or str(exc) or what)

    def state(self):
        return self._call("state", self.client.get_property, "state")

    def permanent(self):
        settings = self._call("config.direct.getSettings", lambda: self.client.config().direct().getSettings())
        return Direct.from_settings(settings.settings)

    def set_permanent(self, direct):
        self._call("config.direct.update", lambda: self.client.config().direct().update(self.settings_class(direct.settings())))

    def runtime(self):
        return Direct(
            self._call("direct.getAllChains", self.client.getAllChains),
            self._call("direct.getAllRules", self.client.getAllRules),
            self._call("direct.getAllPassthroughs", self.client.getAllPassthroughs),
        )

    def apply(self, op):
        kind, entry = op
        if kind == "add_chain":
            self._call(kind, self.client.addChain, *entry)
        elif kind == "remove_chain":
            self._call(kind, self.client.removeChain, *entry)
        elif kind == "add_rule":
            self._call(kind, self.client.addRule, entry[0], entry[1], entry[2], entry[3], list(entry[4]))
        else:
            self._call(kind, self.client.removeRule, entry[0], entry[1], entry[2], entry[3], list(entry[4]))


def connect(wait=30.0):
    """(Online or None, import error or None). None without an error: firewalld is not running."""
    try:
        import dbus  # pylint: disable=import-outside-toplevel
        from firewall.client import FirewallClient, FirewallClientDirect  # pylint: disable=import-outside-toplevel
        from firewall.errors import FirewallError  # pylint: disable=import-outside-toplevel
    except ImportError as exc:
        return None, exc
    errors = (dbus.exceptions.DBusException, FirewallError)
    try:
        client = FirewallClient()
    except errors:
        return None, None  # no system bus: nothing runs
    if not client.connected:
        return None, None
    api = Online(client, FirewallClientDirect, errors)
    deadline = time.time() + wait
    state = api.state()
    while state == "INIT" and time.time() < deadline:
        time.sleep(0.5)
        state = api.state()
    if state != "RUNNING":
        raise FirewalldError("firewalld is in state %s, not RUNNING (see journalctl -u firewalld)" % state)
    return api, None


def firewalld_process_running(proc="/proc"):
    """Whether a firewalld process runs in this network namespace (firewalds of containers,
    visible in /proc too, manage other namespaces and do not count)."""
    try:
        pids = [p for p in os.listdir(proc) if p.isdigit()]
        own = os.readlink(os.path.join(proc, "self", "ns", "net"))
    except OSError:
        return False
    for pid in pids:
        try:
            with open(os.path.join(proc, pid, "comm")) as f:
                if f.read().strip() != "firewalld":
                    continue
            if os.readlink(os.path.join(proc, pid, "ns", "net")) == own:
                return True
        except (IOError, OSError):
            continue
    return False


def firewalld_backend(path=ETC_FIREWALLD + "/firewalld.conf"):
    """FirewallBackend of firewalld.conf (nftables unless set)."""
    try:
        with open(path) as f:
            for line in f:
                key, sep, value = line.strip().partition("=")
                if sep and key.strip() == "FirewallBackend":
                    return value.strip().strip("\"'") or "nftables"
    except (IOError, OSError):
        pass
    return "nftables"


def direct_xml_path():
    try:
        from firewall import config as fw_config  # pylint: disable=import-outside-toplevel

        return fw_config.FIREWALLD_DIRECT
    except (ImportError, AttributeError):
        return DIRECT_XML


def kuma_direct_entries(path=None):
    """Kuma's entries (marked ones) in firewalld's permanent direct configuration, as
    firewall-cmd prints them; [] without one. For the iptables backend, which must not
    edit rules firewalld owns: with FirewallBackend=nftables they sit in the built-in
    chains themselves, where iptables-save cannot tell them from plain ones."""
    try:
        with open(path or direct_xml_path()) as f:
            direct = DirectXml(f.read()).direct
    except (IOError, OSError, FirewalldError):
        return []
    chains, found = Detector().part(direct)
    return entries_text(chains, found).splitlines()


def reference_rulesets(run_state, wanted):
    """The rule sets whose uncommented rules are claimed: the wanted ones and, for
    uninstall or a family not wanted, those of the given settings (with and without
    Docker's DNS chain)."""
    out = [r for r in wanted.values() if r is not None]
    uid = run_state.facts.uid
    if uid is None:
        return out
    loopback = run_state.facts.loopback
    for family in FAMILIES:
        for docker in (False, True):
            cfg = config.family_config(
                run_state.params,
                ipv6=family == "ipv6",
                uid=uid,
                dns_servers=list(run_state.facts.dns_servers),
                docker_output=docker,
                loopback=loopback,
            )
            out.append(rules.build(cfg))
    return out


def saved_claims(rulesets, family):
    """{table: set of iptables-save lines} of the uncommented rules of ``family``, also
    as firewalld's iptables backend has them (in ``<CHAIN>_direct``)."""
    out = {}
    for ruleset in rulesets:
        if ruleset is None or ruleset.family != family:
            continue
        plain = rules.RuleSet(ruleset.family, ruleset.tables, comments=False)
        for table, lines in plain.saved_lines().items():
            bucket = out.setdefault(table, set())
            for line in lines:
                bucket.add(line)
                words = line.split(" ", 2)
                if len(words) == 3 and words[0] == "-A" and is_builtin(table, words[1]):
                    bucket.add("-A %s_direct %s" % (words[1], words[2]))
    return out


def count_owned(owned):
    """How many rules an ``ipt.owned_part`` result holds."""
    return sum(len(v) for p in owned.values() for v in list(p.builtin.values()) + list(p.custom.values()))


def count_rules(tables):
    return sum(len(lines) for t in tables.values() for lines in t.rules.values())


def firewalld_mode(family):
    """'nft' or 'legacy': which iptables firewalld writes direct rules with (None: unknown)."""
    path = "/usr/sbin/%s-restore" % ("iptables" if family == "ipv4" else "ip6tables")
    try:
        from firewall import config as fw_config  # pylint: disable=import-outside-toplevel

        path = fw_config.COMMANDS.get("%s-restore" % family, path)
    except (ImportError, AttributeError):
        pass
    return host.executable_mode(path) if os.path.exists(path) else None


# -- the run ---------------------------------------------------------------------------


class FirewalldRun(object):
    """The firewalld store: reads, plans and applies firewalld's direct configuration and
    removes Kuma's plain iptables rules through the engine (``ctx``), whose undo stack
    also holds what this store writes to iptables and ::6. Returns (changed, diffs, info);
    failures raise TproxyFailure."""

    def __init__(self, run_state, wanted, iptables_mode=None, present=None, plain=True, passthrough=True):
        self.rs = run_state
        self.params = run_state.params
        self.iptables_mode = iptables_mode
        self.families = [f for f in FAMILIES if wanted.get(f) is not None]
        self.present = self.params["state"] == "present" if present is None else present
        # plain=False, passthrough=False: only firewalld's entries are this run's (the
        # engine's iptables store keeps the plain rules and ::6, backend iptables)
        self.plain = plain
        self.manage_passthrough = passthrough
        self.wanted = dict((f, wanted.get(f)) for f in FAMILIES)
        self.comments = not self.params["comments"]["disabled"]
        self.path = direct_xml_path()
        self.calls = []
        self.info = dict(
            running=False,
            permanent_changed=False,
            runtime_changed=False,
            direct_xml=self.path,
            direct={},
            iptables_removed=[],
            calls=self.calls,
        )
        references = reference_rulesets(run_state, self.wanted)
        self.detector = Detector(claims_of(references), any_priority=not self.comments)
        self.iptables_claims = dict((f, saved_claims(references, f)) for f in FAMILIES) if not self.comments else {}

    def fail(self, msg, **extra):
        raise TproxyFailure(msg, firewalld=self.info, **extra)

    # -- wanted --------------------------------------------------------------
    def wanted_entries(self):
        chains, found = [], []
        for family in FAMILIES:
            try:
                c, r = wanted_entries(self.wanted[family])
            except FirewalldError as exc:
                self.fail("backend: 'firewalld': %s" % exc)
            chains += c
            found += r
            if c or r:
                self.info["direct"][family] = entries_text(c, r).splitlines()
        return chains, found

    # -- plain iptables rules --------------------------------------------------
    def iptables_kuma(self, family, fresh=False):
        """[(runner, tables, extra, owned)] of every iptables backend holding Kuma rules for ``family``."""
        out = []
        extra = self.iptables_claims.get(family) or None
        for mode in ("nft", "legacy"):
            runner = self.rs.runner(mode, family)
            if runner is None:
                continue
            if fresh:
                if mode == "legacy" and not self.rs.tables(mode, family):
                    continue
                try:
                    tables = ipt.parse_save(runner.save())
                except ipt.IptablesError as exc:
                    raise FirewalldError("reading back the %s %s rules failed: %s" % (mode, family, exc))
            else:
                tables = self.rs.tables(mode, family)
            owned = ipt.owned_part(tables, extra)
            if owned:
                out.append((runner, tables, extra, owned))
        return out

    def plain_work(self, runtime_kuma):
        """Kuma's rules written straight into iptables (backend iptables, kumactl) would redirect
        a second time next to firewalld's: the ones to remove, per family and iptables backend.
        With Kuma's entries in firewalld's runtime, the iptables backend firewalld writes with
        must hold exactly those (FirewallBackend=nftables puts them in the built-in chains
        themselves, where nothing tells them apart), else the module stops."""
        work = []
        if not self.plain:
            return work
        for family in FAMILIES:
            chains, rules_ = runtime_kuma.get(family, (set(), set()))
            managed = bool(chains or rules_)
            fw_mode = firewalld_mode(family) if managed else None
            counted = 0
            for runner, tables, extra, owned in self.iptables_kuma(family):
                if managed and fw_mode in (None, runner.mode):
                    counted += count_owned(owned)
                else:
                    work.append((family, runner, tables, extra))
            if not managed:
                continue
            expected = len([r for r in rules_ if not self.comments or self.detector.rule(r, marked_only=True)])
            if counted != expected:
                self.fail(
                    "backend: 'firewalld': iptables holds %d of Kuma's %s rules but firewalld's runtime direct "
                    "configuration accounts for %d: rules were added (backend: iptables, kumactl) or removed behind "
                    "firewalld's back. Run 'firewall-cmd --reload' (firewalld then rewrites the iptables tables from "
                    "its permanent configuration) and run this task again" % (counted, family, expected)
                )
        return work

    def foreign_iptables_rules(self):
        """Rules in the iptables tables firewalld would flush that are neither firewalld's nor Kuma's."""
        total = 0
        for family in FAMILIES:
            mode = firewalld_mode(family) or self.iptables_mode
            if mode is None or self.rs.runner(mode, family) is None:
                continue
            tables = self.rs.tables(mode, family)
            total += count_rules(tables) - count_owned(ipt.owned_part(tables, self.iptables_claims.get(family) or None))
        return total

    # -- the run ---------------------------------------------------------------
    def main(self):
        wanted_chains, wanted_rules = self.wanted_entries()
        violations = _gate_direct(list(wanted_rules), list(wanted_chains),
                                  None if self.comments else self.detector.claims)
        if violations:
            self.fail("backend: 'firewalld': the direct rules were refused by the payload gate before anything was "
                      "applied: %s" % "; ".join(str(v) for v in violations))
        wanted_set = (set(wanted_chains), set(wanted_rules))
        try:
            api, import_error = connect()
        except FirewalldError as exc:
            self.fail("backend: 'firewalld': %s" % exc)
        if api is None and firewalld_process_running():
            # Never edit direct.xml under a running firewalld: it would not apply it, and would overwrite it.
            if import_error is not None:
                self.fail(
                    missing_required_lib(
                        "firewall (python3-firewall, firewalld's Python client)",
                        reason="to change the direct rules of the running firewalld",
                    )
                    + " The module's Python (%s) could not import it: %s. Use the interpreter firewalld's "
                    "client is installed for (ansible_python_interpreter: /usr/bin/python3)." % (sys.executable, import_error)
                )
            self.fail(
                "backend: 'firewalld': a firewalld process runs but firewalld does not answer on D-Bus (starting or "
                "stopping?); run again once 'firewall-cmd --state' says running, or stop firewalld"
            )
        self.info["running"] = api is not None
        if api is None:
            return self.offline(wanted_chains, wanted_rules, wanted_set)
        return self.online(api, wanted_chains, wanted_rules, wanted_set)

    def ipv6_action(self):
        if not self.manage_passthrough:
            return None
        if self.present:
            return "add" if "ipv6" in self.families and not self.rs.facts.passthrough_ipv6 else None
        return "del" if self.rs.facts.passthrough_ipv6 else None

    def warn_passthroughs(self, direct):
        for entry in direct.passthroughs:
            if self.detector.passthrough(entry):
                self.rs.warn(
                    "firewalld direct passthrough %s %s looks like Kuma's; passthroughs are left alone"
                    % (entry[0], join_args(entry[1]))
                )

    def diff(self, where, before_direct, wanted_set):
        out = []
        for family in FAMILIES:
            before = entries_text(*self.detector.part(before_direct, family))
            after = entries_text(*[set(e for e in s if e[0] == family) for s in wanted_set])
            if before or after:
                out.append(
                    dict(
                        before_header="firewalld %s direct %s (Kuma's entries now)" % (where, family),
                        after_header="firewalld %s direct %s (Kuma's entries wanted)" % (where, family),
                        before=before,
                        after=after,
                    )
                )
        return out

    def finish(self, changed, diffs):
        return bool(changed), diffs, self.info

    def remove_plain(self, work):
        """Remove Kuma's plain iptables rules; returns what to roll back."""
        done = []
        for family, runner, tables, extra in work:
            try:
                self.rs.remove_kuma(runner.mode, family, extra)
            except TproxyFailure as exc:
                self.fail(
                    "backend: 'firewalld': removing Kuma's plain %s %s rules (written by backend: iptables or kumactl) "
                    "failed: %s" % (runner.mode, family, exc),
                    failed_family=family,
                )
            done.append((runner, tables, extra))
            self.info["iptables_removed"].append("%s %s" % (runner.mode, family))
        return done

    def rollback_plain(self, done):
        """The engine's undo stack puts removed plain rules back (after this store's own undo)."""
        return True

    def offline(self, wanted_chains, wanted_rules, wanted_set):
        installed = os.path.isdir(os.path.dirname(self.path)) or host.find_executable("firewalld")
        if not installed:
            if self.present:
                self.fail("backend: 'firewalld': firewalld is not installed (no %s)" % os.path.dirname(self.path))
            return self.finish(False, [])
        try:
            with open(self.path) as f:
                text = f.read()
        except (IOError, OSError):
            text = None
        try:
            doc = DirectXml(text)
        except FirewalldError as exc:
            self.fail("backend: 'firewalld': %s" % exc)
        self.warn_passthroughs(doc.direct)
        permanent_changed = self.detector.part(doc.direct) != wanted_set
        plain = self.plain_work({})
        ipv6_address = self.ipv6_action()
        self.info["permanent_changed"] = permanent_changed
        diffs = self.diff("permanent", doc.direct, wanted_set)
        if self.present:
            self.rs.warn(
                "firewalld is not running: Kuma's rules were %s firewalld's permanent configuration (%s) only; they "
                "take effect when firewalld starts" % ("written to" if permanent_changed else "found in", self.path)
            )
        changed = permanent_changed or plain or ipv6_address
        if self.rs.check_mode or not changed:
            return self.finish(changed, diffs)
        done = self.remove_plain(plain)
        if permanent_changed:
            new_text = doc.edited(self.detector, wanted_chains, wanted_rules)
            try:
                self.write_atomic(new_text)
            except (IOError, OSError) as exc:
                ok = self.rollback_plain(done)
                self.fail(
                    "backend: 'firewalld': writing %s failed: %s. It was left as it was%s"
                    % (self.path, exc, "" if ok else " (putting back the removed iptables rules failed)")
                )
        if ipv6_address:
            self.rs.passthrough(ipv6_address)
        return self.finish(True, diffs)

    def write_atomic(self, text):
        directory = os.path.dirname(self.path)
        if not os.path.isdir(directory):
            os.makedirs(directory, 0o750)
        fd, tmp = tempfile.mkstemp(prefix=".direct.xml.", dir=directory)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
            # same owner and mode as the file it replaces (0644 for a new one)
            try:
                st = os.stat(self.path)
                os.chmod(tmp, st.st_mode & 0o7777)
                os.chown(tmp, st.st_uid, st.st_gid)
            except OSError:
                os.chmod(tmp, 0o644)
            os.rename(tmp, self.path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def online(self, api, wanted_chains, wanted_rules, wanted_set):
        try:
            permanent = api.permanent()
            runtime = api.runtime()
        except FirewalldError as exc:
            self.fail("backend: 'firewalld': reading firewalld's direct configuration failed: %s" % exc)
        self.warn_passthroughs(permanent)
        runtime_kuma = dict((f, self.detector.part(runtime, f)) for f in FAMILIES)
        plain = self.plain_work(runtime_kuma)
        permanent_changed = self.detector.part(permanent) != wanted_set
        current_chains, current_rules = self.detector.part(runtime)
        ops = runtime_ops(current_chains, current_rules, wanted_chains, wanted_rules)
        ipv6_address = self.ipv6_action()
        self.info.update(permanent_changed=permanent_changed, runtime_changed=bool(ops))
        diffs = self.diff("permanent", permanent, wanted_set)
        if (current_chains, current_rules) != self.detector.part(permanent):
            diffs += self.diff("runtime", runtime, wanted_set)
        if runtime.empty() and ops and firewalld_backend() == "nftables":
            foreign = self.foreign_iptables_rules()
            if foreign:
                self.rs.warn(
                    "firewalld (FirewallBackend=nftables) flushes every iptables and ip6tables table when it applies "
                    "its first direct rule, and again on every reload while it has direct rules: the %d iptables rules "
                    "of other tools on this host will be lost" % foreign
                )
        changed = permanent_changed or ops or plain or ipv6_address
        if self.rs.check_mode or not changed:
            return self.finish(changed, diffs)

        done_plain = self.remove_plain(plain)
        try:
            done = apply_ops(api, ops, self.calls)
        except FirewalldError as exc:
            ok = self.rollback_plain(done_plain)
            self.fail(
                "backend: 'firewalld': changing the runtime direct rules failed: %s. %s%s; the permanent configuration "
                "was not changed"
                % (
                    exc,
                    "The runtime direct rules were put back" if getattr(exc, "undone", False) else "The runtime direct rules could not all be put back",
                    "" if ok else " (nor the removed plain iptables rules)",
                )
            )
        if permanent_changed:
            self.calls.append("config.direct.update")
            try:
                api.set_permanent(replaced(permanent, self.detector, wanted_chains, wanted_rules))
            except FirewalldError as exc:
                self.rollback_online(api, done, None, done_plain, "updating the permanent direct configuration failed: %s" % exc)
        problem = self.read_back(api, wanted_set)
        if problem:
            self.rollback_online(api, done, permanent if permanent_changed else None, done_plain, problem)
        if ipv6_address:
            self.rs.passthrough(ipv6_address)
        return self.finish(True, diffs)

    def read_back(self, api, wanted_set):
        """Why the state after the change is not the wanted one, or None."""
        try:
            permanent, runtime = api.permanent(), api.runtime()
        except FirewalldError as exc:
            return "reading firewalld's direct configuration back failed: %s" % exc
        if self.detector.part(permanent) != wanted_set:
            return "the permanent direct configuration read back differs from the wanted one"
        if self.detector.part(runtime) != wanted_set:
            return "the runtime direct configuration read back differs from the wanted one"
        if not self.plain:
            return None  # Kuma's plain iptables rules are the engine's iptables run's
        for family in FAMILIES:
            try:
                found = self.iptables_kuma(family, fresh=True)
            except FirewalldError as exc:
                return str(exc)
            in_iptables = sum(count_owned(owned) for _r, _t, _e, owned in found)
            expected = len([r for r in wanted_set[1] if r[0] == family])
            if in_iptables != expected:
                return "firewalld accepted the %s direct rules but iptables holds %d of Kuma's rules instead of %d" % (
                    family,
                    in_iptables,
                    expected,
                )
        return None

    def rollback_online(self, api, done, permanent_before, done_plain, problem):
        errors = []
        undo = undo_ops(api, done, self.calls)
        if undo:
            errors.append("runtime: " + undo)
        if permanent_before is not None:
            self.calls.append("config.direct.update")
            try:
                api.set_permanent(permanent_before)
            except FirewalldError as exc:
                errors.append("permanent: %s" % exc)
        if not self.rollback_plain(done_plain):
            errors.append("the removed plain iptables rules could not be put back")
        self.fail(
            "backend: 'firewalld': %s. %s"
            % (
                problem,
                "Rolling back failed: %s" % "; ".join(errors)
                if errors
                else "firewalld's runtime and permanent direct configuration were put back as they were",
            )
        )


def _gate_direct(entries, chains=(), claimed=None):
    """The payload gate for firewalld direct rules and chains: violations, [] when clean.
    ``claimed`` ({(ipv, table, chain, args)}) are Kuma's rules written without comments."""
    return list(tproxy_gate.check_direct_rules(
        entries, chains=chains, chain_prefix=CHAIN_PREFIX, comment_prefix=COMMENT_PREFIX, claimed=claimed or None))


def reconcile(engine, wanted, iptables_mode=None, present=None, plain=True, passthrough=True):
    """The firewalld store's run: (changed, diffs, info). ``present`` overrides the
    engine's state; ``plain``/``passthrough`` False leave Kuma's plain iptables rules
    and ::6 alone (the engine's iptables run owns them)."""
    return FirewalldRun(engine, wanted, iptables_mode, present, plain, passthrough).main()
