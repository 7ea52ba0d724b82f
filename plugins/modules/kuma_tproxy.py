#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kuma.mesh maintainers
# Apache License 2.0 (see LICENSE)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: kuma_tproxy
short_description: Kuma's transparent-proxy iptables rules, applied idempotently and atomically
version_added: "0.1.0"
description:
  - Installs or removes the iptables and ip6tables rules that
    C(kumactl install transparent-proxy) writes for a Kuma data plane in
    Universal mode, so that an application's inbound, outbound and DNS traffic
    is redirected to kuma-dp.
  - The rules are Kuma's own, rule for rule - the same chains
    (C(KUMA_MESH_INBOUND), C(KUMA_MESH_OUTBOUND), C(KUMA_MESH_INBOUND_REDIRECT),
    C(KUMA_MESH_OUTBOUND_REDIRECT)), order, inserted-versus-appended positions,
    matches and C(kuma/mesh/transparent/proxy/) comments (Kuma 2.14 and 3.x),
    so C(kumactl uninstall transparent-proxy) and Kuma's troubleshooting
    documentation apply unchanged, and rules written by kumactl are adopted.
  - The module reads the current rules with C(iptables-save), compares only
    Kuma's part with the wanted rules, and when they are equal writes nothing
    and reports no change. Otherwise it replaces Kuma's part with one validated
    C(iptables-restore --noflush) transaction per family. Rules that are not
    Kuma's (Docker's chains, the user's own) are never part of the transaction.
  - Every transaction passes a payload gate before it is applied - it may create, fill or delete only Kuma's
    chains and rules (in raw, nat and mangle) - and a run holds a host lock (C(/run/kuma-mesh-tproxy.lock))
    from its first read to its read-back, so runs on one host never interleave.
  - On any failure after a write, every table the run wrote is restored whole from the snapshot it read at
    the start (foreign rules and policies included; a table the run created is deleted again; C(::6/128) is
    taken off again), the result lists what was put back (RV(rolled_back)) and what could not be
    (RV(rollback_failed)), and the error says what failed. C(changed) then says whether the host still
    differs from before the run.
  - C(state=absent) removes exactly Kuma's rules and chains (also those written
    by kumactl, in either iptables backend) and leaves every other rule as it was;
    nft tables that only Kuma's rules used are deleted again (with C(nft), when installed).
  - When the module runs over SSH, the port of that SSH session is kept out of
    inbound redirection unless O(protect_ssh_session=false), so a run cannot
    lock its own operator out.
  - With O(backend=iptables) the rules do not survive a reboot by themselves; O(boot_persistence) adds a
    systemd unit that restores at boot the rules the module last applied. With O(backend=firewalld)
    they are firewalld permanent direct rules and do. O(backend=auto) picks firewalld when
    C(firewalld.service) is installed and enabled, and O(other_backend=remove) takes Kuma's rules out
    of the backend not used, so one task switches between the two.
  - On a host whose running firewalld (before 2.0) rejects IPv6 connections redirected to the proxy,
    O(firewalld_ipv6_redirect) turns firewalld's C(RFC3964_IPv4) filter off or refuses to install.
author:
  - kuma.mesh maintainers (@kuma-mesh)
requirements:
  - iptables (nft or legacy; ip6tables for IPv6)
  - iproute2, to add C(::6/128) to the loopback as Kuma does for IPv6
  - Python 3.8 or newer on the target; the module uses only the standard library (no netaddr)
  - PyYAML on the target only to read O(config_file), or O(config) given as text, in YAML (JSON needs nothing)
extends_documentation_fragment: []
attributes:
  check_mode:
    support: full
    description: Reads the rules and reports what would change; the host is not touched.
  diff_mode:
    support: full
    description: Shows Kuma's rules before and after, per family, backend and table, as iptables-save prints
      them, and the files of O(boot_persistence) and firewalld's configuration before and after.
  platform:
    platforms: posix
    support: full
    description: Linux hosts with iptables. Tested on Debian 12 and 13.
options:
  state:
    description:
      - V(present) installs Kuma's rules for the settings given; V(absent) removes every Kuma rule and chain.
    type: str
    choices: [present, absent]
    default: present
  config:
    description:
      - A kumactl transparent-proxy configuration, as it is - the YAML or JSON that
        C(kumactl install transparent-proxy --config) takes (camelCase keys, Kuma 2.14 and 3.x) - given
        as a dictionary, or as YAML or JSON text (YAML text needs PyYAML on the target; JSON does not).
      - "Precedence is kumactl's: Kuma's defaults, then O(config_file), then O(config), then every option
        of this module the task sets explicitly. Dictionaries merge key by key; lists are replaced, not merged."
      - "Keys: C(kumaDPUser), C(ipFamilyMode), C(redirect.inbound)/C(redirect.outbound) (C(enabled), C(port),
        C(includePorts), C(excludePorts), C(excludePortsForUIDs), C(excludePortsForIPs),
        C(insertRedirectInsteadOfAppend)), C(redirect.dns) (C(enabled), C(port), C(captureAll),
        C(skipConntrackZoneSplit), C(resolvConfigPath)), C(redirect.vnet.networks), C(dropInvalidPackets),
        C(log.enabled), C(log.level), C(wait), C(waitInterval), C(retry.maxRetries),
        C(retry.sleepBetweenRetries) (a Go duration such as C(2s), or nanoseconds), C(comments.disabled),
        C(iptablesExecutables) (C(iptables), C(iptables-save), C(iptables-restore), C(ip6tables),
        C(ip6tables-save), C(ip6tables-restore))."
      - C(verbose), C(dryRun), C(storeFirewalld), C(cniMode) and 2.x's C(ebpf) are accepted only when
        false (disabled); any other key is refused by name, and every value is checked as the module's
        own option is.
      - A configuration may set both C(redirect.dns.enabled) and C(captureAll), as kumactl allows
        (all DNS is captured).
    type: raw
  config_file:
    description:
      - Absolute path, on the target, of a kumactl transparent-proxy configuration file (YAML or JSON),
        as C(kumactl install transparent-proxy --config-file) takes it. See O(config) for the keys and
        the precedence; O(config) overrides this file.
      - An absolute path of printable ASCII letters, digits and C(_./+@%=,~-), without a C(..) component.
      - Read on the target at the start of every run (at most 1 MiB of UTF-8 text); a file that is missing
        or cannot be read fails the run with nothing changed.
    type: str
  kuma_dp_user:
    description:
      - Name or uid of the user kuma-dp runs as. Its traffic is not redirected.
      - Left empty (the default) the module finds the user as Kuma does - uid C(5678), else a user named
        C(kuma-dp) - and fails when there is neither.
      - A given user must exist on the host (Kuma's C(--kuma-dp-user)). C(root), uid C(0) and any user whose
        uid is 0 are refused - every process of root would bypass the proxy.
      - "Grammar: a user name (letters, digits, C(_), C(.), C(-), at most 32 characters, not starting with
        C(-)) or a uid (0-4294967294)."
      - The application must not run as this user, or its traffic bypasses the proxy.
      - Default - empty, unless O(config) or O(config_file) sets C(kumaDPUser).
    type: str
  ip_family_mode:
    description:
      - V(dualstack) writes IPv4 and IPv6 rules; V(ipv4) only IPv4 rules (and removes Kuma's IPv6 rules).
      - As in Kuma, IPv6 rules are skipped when the host has no non-loopback IPv6 address.
        C(::6), the passthrough address Kuma itself puts on the loopback, does not count.
      - Default V(dualstack), unless O(config) or O(config_file) sets C(ipFamilyMode).
    type: str
    choices: [dualstack, ipv4]
  iptables_mode:
    description:
      - Which iptables backend to write to.
      - V(auto) chooses as Kuma does - the backend that already holds Kuma's rules, else the one
        that holds rules (nft when both do, unless only legacy has Docker's C(DOCKER_OUTPUT) chain).
        On a host with no rules at all it takes the backend the host's C(iptables) command points to
        (C(update-alternatives)), where Kuma would take nft.
      - Kuma's rules found in the other backend are removed, so a switch leaves no duplicates.
    type: str
    choices: [auto, nft, legacy]
    default: auto
  iptables_executables:
    description:
      - Paths of the iptables executables to use instead of finding them (kumactl's C(--iptables-executables),
        C(iptablesExecutables) in O(config)).
      - The three of a family are given together or not at all (kumactl ignores a partial set with a
        warning; the module refuses it).
      - Each is an absolute path of printable ASCII letters, digits and C(_./+@%=,~-), without a C(..) component.
      - Default - none, the executables are found as O(iptables_mode) says.
    type: dict
    suboptions:
      iptables:
        description: The C(iptables) executable.
        type: str
      iptables_save:
        description: The C(iptables-save) executable.
        type: str
      iptables_restore:
        description: The C(iptables-restore) executable.
        type: str
      ip6tables:
        description: The C(ip6tables) executable.
        type: str
      ip6tables_save:
        description: The C(ip6tables-save) executable.
        type: str
      ip6tables_restore:
        description: The C(ip6tables-restore) executable.
        type: str
  redirect:
    description:
      - What is redirected where (Kuma's C(redirect) section).
      - Every suboption left out takes Kuma's default (given with it), unless O(config) or O(config_file) sets it.
      - "Every list takes at most 1024 entries. Duplicate entries (the same port, address, exclusion or
        network) are kept once, in the order first given."
    type: dict
    suboptions:
      inbound:
        description: Inbound TCP redirection (C(KUMA_MESH_INBOUND)).
        type: dict
        suboptions:
          enabled:
            description:
              - Redirect inbound TCP to O(redirect.inbound.port). When V(false) the chain only returns.
              - Default V(true).
            type: bool
          port:
            description:
              - Envoy's inbound port, C(networking.transparentProxying.redirectPortInbound) of the Dataplane (1-65535).
              - Default V(15006).
            type: int
          include_ports:
            description:
              - Only inbound TCP to these destination ports is redirected (Kuma's C(includePorts)); when given,
                O(redirect.inbound.exclude_ports) is ignored, as in Kuma (1-65535 each).
              - Default - empty, every port is redirected.
            type: list
            elements: int
          exclude_ports:
            description:
              - Destination ports of inbound TCP that are not redirected (e.g. C(22)), 1-65535 each.
              - Default - empty.
            type: list
            elements: int
          exclude_ips:
            description:
              - Source addresses or CIDRs, IPv4 and IPv6 mixed, whose inbound traffic is not redirected.
              - Each family gets only its own addresses. An entry may hold a comma-separated list, as in kumactl;
                spaces around the commas are dropped; an entry without an address is refused.
              - "Addresses are read as Kuma reads them (Go's C(net.ParseIP)/C(net.ParseCIDR)): dotted IPv4 with
                four parts and no leading zeros, IPv6 without a zone, an optional C(/prefix). IPv4-mapped IPv6
                addresses (C(::ffff:a.b.c.d)) are refused (Kuma would write them into IPv4 rules)."
              - Default - empty.
            type: list
            elements: str
          exclude_ports_for_uids:
            description:
              - Kuma's C(redirect.inbound.excludePortsForUIDs), for configuration parity only - a non-empty list
                is refused - Kuma's builder turns each entry into C(-A KUMA_MESH_INBOUND -j RETURN), which
                ends all inbound redirection (inbound packets have no owner uid). Use
                O(redirect.inbound.exclude_ports) or O(redirect.inbound.exclude_ips).
              - Default - empty.
            type: list
            elements: str
          insert_instead_of_append:
            description:
              - Insert the C(PREROUTING) jump at the top instead of appending it.
              - Default V(false).
            type: bool
      outbound:
        description: Outbound TCP redirection (C(KUMA_MESH_OUTBOUND)).
        type: dict
        suboptions:
          enabled:
            description:
              - Redirect outbound TCP to O(redirect.outbound.port). When V(false) the chain only returns.
              - Default V(true).
            type: bool
          port:
            description:
              - Envoy's outbound port, C(networking.transparentProxying.redirectPortOutbound) of the Dataplane (1-65535).
              - Default V(15001).
            type: int
          include_ports:
            description:
              - Only outbound TCP to these destination ports is redirected (Kuma's C(includePorts)); when given,
                O(redirect.outbound.exclude_ports) is ignored, as in Kuma (1-65535 each).
              - Default - empty, every port is redirected.
            type: list
            elements: int
          exclude_ports:
            description:
              - Destination ports of outbound TCP that are not redirected, 1-65535 each.
              - Default - empty.
            type: list
            elements: int
          exclude_ips:
            description:
              - Destination addresses or CIDRs, IPv4 and IPv6 mixed, that are not redirected.
              - Same grammar as O(redirect.inbound.exclude_ips).
              - Default - empty.
            type: list
            elements: str
          exclude_ports_for_uids:
            description:
              - "Ports excluded for some uids, Kuma's format C([proto:][ports:]uids): proto is C(tcp), C(udp),
                a comma list of them, C(*) or empty (both); ports are values, lists and C(a-b) ranges,
                C(*) or empty meaning all; uids are one value or one C(a-b) range."
              - "Stricter than Kuma: numbers are 0-65535 (as in Kuma), a range has exactly two parts with
                low <= high (C(900-100) and C(1-2-3) are refused), no empty list element, at most 15 ports
                (a range counts 2, the limit of iptables' multiport match)."
              - Example C(udp:53:106-108) or C(53,3000-5000:1000).
              - Default - empty.
            type: list
            elements: str
          insert_instead_of_append:
            description:
              - Insert the C(OUTPUT) jump into C(KUMA_MESH_OUTBOUND) instead of appending it.
              - Default V(false).
            type: bool
      dns:
        description: DNS redirection to kuma-dp's DNS proxy.
        type: dict
        suboptions:
          enabled:
            description:
              - Redirect UDP DNS sent to the name servers of O(redirect.dns.resolv_conf) to O(redirect.dns.port).
              - A family with no name server in that file gets no DNS rules (with a warning), as in Kuma.
              - Setting both this and O(redirect.dns.capture_all) to V(true) is refused, as kumactl refuses
                C(--redirect-dns) with C(--redirect-all-dns-traffic) (a configuration in O(config) may hold both).
              - Default V(false).
            type: bool
          capture_all:
            description:
              - Redirect all UDP DNS, whatever the server. Implies O(redirect.dns.enabled).
              - Default V(false).
            type: bool
          port:
            description:
              - The port kuma-dp's DNS proxy listens on (1-65535).
              - Default V(15053).
            type: int
          skip_conntrack_zone_split:
            description:
              - Do not write the raw-table conntrack zone rules that keep DNS replies apart.
              - Default V(false).
            type: bool
          resolv_conf:
            description:
              - The resolv.conf whose name servers are redirected. Must exist when DNS is enabled.
              - An absolute path of printable ASCII letters, digits and C(_./+@%=,~-), without a C(..) component.
              - Default V(/etc/resolv.conf).
            type: str
      vnet:
        description: Virtual networks (bridges of containers on the host) whose traffic is redirected too.
        type: dict
        suboptions:
          networks:
            description:
              - "C(iface:CIDR) entries, split at the first colon, e.g. C(docker0:172.17.0.0/16),
                C(br+:172.18.0.0/16) or C(iface:fd00::/64)."
              - "The interface name has 1-15 characters (the kernel's limit) of letters, digits, C(_), C(.) and
                C(-), does not start with C(-) and is not C(.) or C(..); a trailing C(+) (iptables' wildcard)
                matches every interface starting with the name. The CIDR follows the grammar of
                O(redirect.inbound.exclude_ips) and needs a prefix."
              - One network per interface and family (a second one is refused).
              - Default - empty.
            type: list
            elements: str
  drop_invalid_packets:
    description:
      - Drop packets in conntrack state INVALID (mangle C(PREROUTING)), as Kuma's C(dropInvalidPackets).
      - Default V(false).
    type: bool
  log:
    description: Kernel logging of matching packets (LOG rules).
    type: dict
    suboptions:
      enabled:
        description:
          - Add Kuma's LOG rules.
          - Default V(false).
        type: bool
      level:
        description:
          - Syslog level of the LOG rules (0-7).
          - Default V(7).
        type: int
  comments:
    description: Rule comments.
    type: dict
    suboptions:
      disabled:
        description:
          - Write the rules without Kuma's comments.
          - Without comments, rules in built-in chains are recognised as Kuma's only by being equal to
            the rules of the current settings, so rules of older settings cannot be found. Keep comments on.
          - Default V(false).
        type: bool
  wait:
    description:
      - Seconds to wait for the xtables lock (legacy backend; nft needs no lock), 0-3600.
      - Passed explicitly as C(--wait=N); V(0) means do not wait - the restore fails at once when another
        program holds the lock (Kuma passes no C(--wait) for 0).
      - Also bounds the wait for the module's own host lock (C(/run/kuma-mesh-tproxy.lock)), held by another
        kuma_tproxy run or a restore it started; a run that cannot get it within O(wait) seconds fails with
        nothing changed.
      - Default V(5).
    type: int
  wait_interval:
    description:
      - Microseconds between tries for the xtables lock (legacy backend), 0-999999 (iptables refuses 1 second
        or more); V(0) leaves iptables' default.
      - Default V(0).
    type: int
  retry:
    description: Retries of a failed restore; the tables a failed restore wrote are restored whole from the
      run's snapshot before every retry.
    type: dict
    suboptions:
      max_retries:
        description:
          - Retries after the first try, 0-100.
          - Default V(4).
        type: int
      sleep_between_retries:
        description:
          - Seconds between tries, a finite number from 0 to 600 (C(nan), C(inf) and larger values are refused).
          - Default V(2.0).
        type: float
  protect_ssh_session:
    description:
      - When the module runs over SSH, add the port of that SSH session to the inbound excluded ports,
        so new SSH connections are not redirected to the proxy and the operator is not locked out.
      - Set V(false) only when something else keeps SSH reachable.
    type: bool
    default: true
  backend:
    description:
      - Where Kuma's rules are kept.
      - V(iptables) writes them into the kernel with C(iptables-restore), as kumactl does; they do not
        survive a reboot by themselves.
      - V(firewalld) keeps them as firewalld direct rules, ipv4 and ipv6, in firewalld's permanent
        configuration (C(/etc/firewalld/direct.xml), so they survive C(firewall-cmd --reload), a restart
        of firewalld and a reboot) and, while firewalld runs, in its runtime configuration too. Kuma's
        C(KUMA_MESH_*) chains become direct chains; in every chain Kuma's rules get distinct priorities
        in Kuma's order (inserted rules from -10000, appended rules and those of Kuma's chains from
        10000), comments kept. Other direct chains, rules and passthroughs are left alone.
      - With V(firewalld) and firewalld running, the permanent configuration is replaced in one D-Bus
        call and the runtime one rule by rule (firewalld has no bulk call for runtime direct rules); a
        failure puts both back as they were. With firewalld stopped, only C(direct.xml) is rewritten,
        atomically and with every foreign byte kept; the rules take effect when firewalld starts.
      - With V(firewalld), Kuma's rules found as plain iptables rules (written with V(iptables) or by
        kumactl) are removed first, so traffic is not redirected twice. C(state=absent) removes every
        Kuma direct entry, permanent and runtime, also those C(kumactl install transparent-proxy
        --store-firewalld) wrote.
      - V(firewalld) needs firewalld's Python client (Debian and RHEL package C(python3-firewall)) in the
        module's Python while firewalld runs. With firewalld's default C(FirewallBackend=nftables),
        firewalld flushes every iptables table when it applies its first direct rule and on every reload;
        the module warns when other tools' iptables rules would be lost. See C(docs/firewalld.md).
      - V(auto) is V(firewalld) when C(firewalld.service) is installed and enabled (read from its unit
        file and the symlinks of C(systemctl enable), no process), else V(iptables); RV(backend) says
        which. With O(state=absent), V(auto) removes Kuma's rules from both.
    type: str
    choices: [auto, iptables, firewalld]
    default: iptables
  other_backend:
    description:
      - What to do with Kuma's rules kept by the backend this run does not use.
      - V(remove) with O(backend=iptables) (also when V(auto) resolves to it) removes Kuma's firewalld
        direct rules, permanent and runtime, when firewalld is installed, before the rules are applied
        (a switch from firewalld to iptables). With O(backend=firewalld), Kuma's plain iptables rules
        are removed in any case (see O(backend)); O(boot_persistence) removes the unit that restored them.
      - V(keep) leaves the other backend alone (with O(backend=iptables), Kuma's firewalld direct rules
        then fail the run, as before).
    type: str
    choices: [keep, remove]
    default: keep
  firewalld_ipv6_redirect:
    description:
      - Firewalld before 2.0 (Debian 12 has 1.3) rejects, with its C(RFC3964_IPv4) filter (on by default),
        every IPv6 packet to C(::/96), which holds C(::1), the address Kuma's IPv6 OUTPUT rule redirects to,
        so every outbound IPv6 connection of the applications fails. Firewalld 2.x accepts DNATed packets
        first (C(ct status dnat accept) in its C(filter_OUTPUT) chain) and is left alone.
      - Checked only when this run installs IPv6 rules (RV(families)), firewalld runs, and
        C(/etc/firewalld/firewalld.conf) does not already say C(RFC3964_IPv4=no); then the module reads
        firewalld's C(filter_OUTPUT) chain with C(nft).
      - V(allow) saves the C(RFC3964_IPv4) line firewalld has in O(firewalld_rfc3964_backup) (once), sets
        C(RFC3964_IPv4=no) and reloads firewalld, before the rules are applied (both undone if the run fails).
      - V(refuse) fails with nothing changed, and the result holds RV(firewalld_ipv6_refused).
      - With V(allow) or V(refuse), O(state=absent) puts the saved line back (reloading a running firewalld)
        and removes O(firewalld_rfc3964_backup).
      - V(ignore) does neither.
    type: str
    choices: [ignore, allow, refuse]
    default: ignore
  firewalld_rfc3964_backup:
    description:
      - Where O(firewalld_ipv6_redirect=allow) keeps the C(RFC3964_IPv4) line it replaced (an empty line when
        there was none), for O(state=absent). Its directory is created (0755) when missing; the file is 0644.
      - An absolute path of printable ASCII letters, digits and C(_./+@%=,~-), without a C(..) component.
    type: str
    default: /etc/kuma-mesh/firewalld-rfc3964-ipv4.orig
  boot_persistence:
    description:
      - A systemd unit that restores, at boot, the rules this module applied, before the network is up and
        before C(kuma-dp.service). Left out, nothing of it is touched.
      - With O(boot_persistence.state=present), O(state=present) and the iptables backend (O(backend=iptables),
        or V(auto) resolving to it), the module writes C(<dir>/ipv4.rules) and C(<dir>/ipv6.rules) (exactly
        the C(iptables-restore --noflush) input it applied, RV(rules), 0640; the file of a family not
        installed is removed), C(<dir>/iptables-mode) (RV(iptables_mode), 0640), the restore script (0755)
        and C(/etc/systemd/system/<unit>) (0644), all root-owned, each only when its content or mode differs
        (atomically), then reloads systemd when the unit file changed and enables and starts the unit when
        it is not. The unit's state is read with one C(systemctl show); a run that changes nothing starts
        no other process.
      - Otherwise (O(boot_persistence.state=absent), O(state=absent), or the firewalld backend, which
        keeps the rules itself) the unit is stopped and disabled, its files removed, systemd reloaded,
        and the directory removed, as is its parent when that is named C(kuma-mesh) and empty.
      - Every file written or removed is put back as it was if the run fails later.
    type: dict
    suboptions:
      state:
        description: V(present) keeps the rules across reboots with the unit; V(absent) removes it.
        type: str
        choices: [present, absent]
        default: present
      dir:
        description:
          - The directory of the rules the unit restores (0750). An absolute path as O(firewalld_rfc3964_backup).
          - An existing directory must be kuma.mesh's own - holding only C(ipv4.rules), C(ipv6.rules) and
            C(iptables-mode) as this module writes them; otherwise the module fails with nothing changed.
        type: str
        default: /etc/kuma-mesh/transparent-proxy
      script:
        description:
          - The restore script the unit runs. An absolute path as O(firewalld_rfc3964_backup).
          - An existing file there must be one kuma.mesh wrote (its header line); any other (V(/bin/sh)) is
            refused, neither overwritten nor removed.
        type: str
        default: /usr/local/sbin/kuma-mesh-tproxy-restore
      unit:
        description:
          - The name of the unit, in C(/etc/systemd/system) (letters, digits and C(:_.@-), ending in C(.service)).
          - An existing unit file of that name must be one kuma.mesh wrote; any other (V(ssh.service)) is refused,
            neither replaced nor disabled.
        type: str
        default: kuma-mesh-tproxy.service
notes:
  - "Every option is checked against its type before anything else, and refused naming the option's full
    path and the value: a whole number is an int or a string of ASCII digits with an optional leading C(-)
    (not C(' 80 '), C(80.0), C(1e3) or non-ASCII digits); a list is a list (a comma-separated string is
    refused); a dictionary is a dictionary; a boolean is one of Ansible's boolean words."
  - "Input is checked before anything on the host is read or changed, and refused with every error
    naming the option and the value: every string that can reach a rule has a grammar (printable
    ASCII; no control character, quote, backslash, leading C(-) or C(!)), every number a range, every
    list at most 1024 entries. Rule values are checked again when a rule is written, and every payload
    (C(iptables-restore) input, firewalld direct entries) passes a gate that refuses any line that does
    not create, fill or delete Kuma's own chains and rules in the raw, nat and mangle tables."
  - Kuma probes iptables extensions by running C(iptables -m X -h); this module does not, so that a
    no-change run starts no process but the C(iptables-save) reads. A missing extension makes the
    validating C(iptables-restore --test) fail, before anything is changed.
  - When a command the run needs is missing (C(iptables-save) and C(iptables-restore) of the backend,
    their C(ip6tables) peers when IPv6 rules are wanted, C(ip) to put C(::6) on the loopback), O(state=present)
    fails before anything is changed, naming them in RV(missing_commands). The
    M(kuma.mesh.transparent_proxy) role then installs C(iptables) and C(iproute2) and applies again.
  - Tested on Debian 12 and 13 with iptables-nft and iptables-legacy; the code is distribution-neutral
    but RHEL-family hosts are untested.
seealso:
  - name: Kuma transparent proxying
    description: Kuma's documentation of the transparent proxy on Universal hosts.
    link: https://kuma.io/docs/latest/production/dp-config/transparent-proxying/
  - module: kuma.mesh.kuma_dataplane
"""

EXAMPLES = r"""
- name: Redirect traffic as kumactl install transparent-proxy would (SSH stays reachable)
  kuma.mesh.kuma_tproxy:
    kuma_dp_user: kuma-dp

- name: DNS through kuma-dp, some outbound destinations and ports left alone
  kuma.mesh.kuma_tproxy:
    kuma_dp_user: kuma-dp
    redirect:
      dns:
        enabled: true
      outbound:
        exclude_ips: [169.254.169.254, "fd00::/8"]
        exclude_ports_for_uids: ["udp:53:106-108"]
      inbound:
        exclude_ports: [22, 9100]

- name: Show the rules kumactl --dry-run would print, without touching the host
  kuma.mesh.kuma_tproxy:
    kuma_dp_user: kuma-dp
  check_mode: true
  register: tproxy

- name: Print the IPv4 restore input
  ansible.builtin.debug:
    msg: "{{ tproxy.rules.ipv4 }}"

- name: Keep a site's kumactl configuration; the task's own options override it
  kuma.mesh.kuma_tproxy:
    config_file: /etc/kuma/transparent-proxy.yaml
    config:
      redirect:
        dns:
          enabled: true
        outbound:
          includePorts: [80, 443]
    redirect:
      inbound:
        exclude_ports: [22]

- name: Use these iptables executables, not the ones found on PATH
  kuma.mesh.kuma_tproxy:
    iptables_executables:
      iptables: /usr/sbin/iptables-nft
      iptables_save: /usr/sbin/iptables-nft-save
      iptables_restore: /usr/sbin/iptables-nft-restore

- name: Remove Kuma's rules (also ones kumactl wrote), leave every other rule alone
  kuma.mesh.kuma_tproxy:
    state: absent

- name: Rules kept by firewalld when it is enabled, else by a systemd unit; the other way cleaned up
  kuma.mesh.kuma_tproxy:
    kuma_dp_user: kuma-dp
    backend: auto
    other_backend: remove
    firewalld_ipv6_redirect: allow
    boot_persistence:
      state: present

- name: Remove everything again - rules in both backends, the unit, firewalld's RFC3964_IPv4 line
  kuma.mesh.kuma_tproxy:
    state: absent
    backend: auto
    firewalld_ipv6_redirect: allow
    boot_persistence:
      state: absent
"""

RETURN = r"""
rules:
  description:
    - The iptables-restore input Kuma writes for these settings, per family (what C(kumactl install
      transparent-proxy --dry-run) prints). Families not installed are absent.
  returned: always
  type: dict
  sample:
    ipv4: "* nat\n-N KUMA_MESH_INBOUND\n...\nCOMMIT\n"
families:
  description: The families whose rules are installed (V(ipv6) only with IPv6 on the host and in O(ip_family_mode)).
  returned: always
  type: list
  elements: str
  sample: [ipv4, ipv6]
iptables_mode:
  description: The backend written to, V(nft) or V(legacy).
  returned: success
  type: str
  sample: nft
ssh_session_port:
  description: The server port of the SSH session the module ran under, or null when not run over SSH.
  returned: when O(state=present)
  type: int
  sample: 22
ssh_port_excluded:
  description: Whether RV(ssh_session_port) was added to the inbound excluded ports by this run's protection.
  returned: when O(state=present)
  type: bool
  sample: true
ssh_session_found_by:
  description: How the SSH session was found, V(SSH_CONNECTION) or V(sshd socket) (the local port of the socket
    of the sshd session process serving this run), or null when the run sees no session.
  returned: when O(state=present)
  type: str
  sample: SSH_CONNECTION
ssh_ports_kept:
  description: Ports an earlier run excluded from inbound redirection for an SSH session (ports sshd serves)
    that stay excluded although this run does not see that session; removed only with O(protect_ssh_session=false).
  returned: when O(state=present)
  type: list
  elements: int
  sample: [22]
lock:
  description: The lock file that keeps kuma_tproxy runs on one host one at a time (held from the first read to
    the read-back, waited for at most O(wait) seconds).
  returned: always
  type: str
  sample: /run/kuma-mesh-tproxy.lock
stores_changed:
  description: The iptables stores (family and backend) whose Kuma part differed and was (or, in check mode, would
    be) rewritten.
  returned: with O(backend=iptables), when the options are valid
  type: list
  elements: str
  sample: [ipv4 nft, ipv6 nft]
rolled_back:
  description: What a failed run put back, newest first (whole tables from their snapshot, V(::6/128)).
  returned: when a run failed after writing
  type: list
  elements: str
  sample: ["ipv4 nft tables nat, raw (whole tables, foreign rules included)"]
rollback_failed:
  description: What a failed run could not put back, with the reason; empty when the rollback was complete.
  returned: when a run failed after writing
  type: list
  elements: str
  sample: []
resolv_conf_restored:
  description: The resolv.conf put back from the C(resolv.conf.kuma-backup) that kumactl left (uninstall only).
  returned: when O(state=absent) and kumactl's backup existed
  type: str
  sample: /etc/resolv.conf
commands:
  description: Every process the module started, in order (a no-change run shows only the reads).
  returned: always
  type: list
  elements: str
  sample: [/usr/sbin/iptables-nft-save, /usr/sbin/ip6tables-nft-save]
errors:
  description: Every problem found in the options, each naming the option and the value.
  returned: when the options are invalid
  type: list
  elements: str
  sample: ["redirect.inbound.port: 70000 is not a valid port (1-65535)"]
left_out:
  description:
    - Per family, the features of Kuma's rules the host cannot carry and that were left out, as Kuma leaves them
      out - V(comment) (the comment module), V(conntrack_zone) (conntrack zones for DNS), V(mangle) (the mangle
      table, for O(drop_invalid_packets)) - each with the reason (the kernel's refusal).
    - Said in a warning on a run that changes something; empty on a host that has everything.
  returned: always
  type: dict
  sample: {"ipv4": {"comment": "iptables-restore: line 2 failed: -m comment: no such module"}}
dns_not_redirected:
  description:
    - Per family that gets rules, why its DNS traffic is not redirected (no DNS server of that family in
      C(/etc/resolv.conf)), as Kuma skips it. A warning only when DNS redirection was asked for and no family has a
      server.
  returned: always
  type: dict
  sample: {"ipv6": "no IPv6 DNS servers found in /etc/resolv.conf"}
failed_family:
  description: The family whose transaction failed (see RV(rolled_back) and RV(rollback_failed)).
  returned: when applying failed
  type: str
  sample: ipv6
backend:
  description: The backend this run used, V(iptables) or V(firewalld) (O(backend=auto) resolved).
  returned: when the options are valid
  type: str
  sample: iptables
missing_commands:
  description: The commands the run needs that are not installed (nothing was changed).
  returned: when such commands are missing
  type: list
  elements: str
  sample: [iptables-save, iptables-restore, ip]
firewalld_ipv6:
  description: What O(firewalld_ipv6_redirect) found and did.
  returned: when O(firewalld_ipv6_redirect) is not V(ignore)
  type: dict
  contains:
    mode:
      description: O(firewalld_ipv6_redirect).
      type: str
      returned: always
      sample: allow
    conf:
      description: firewalld's configuration file.
      type: str
      returned: always
      sample: /etc/firewalld/firewalld.conf
    backup:
      description: O(firewalld_rfc3964_backup).
      type: str
      returned: always
      sample: /etc/kuma-mesh/firewalld-rfc3964-ipv4.orig
    line:
      description: The C(RFC3964_IPv4) line found ('' when there is none), or null when not read.
      type: str
      returned: always
      sample: RFC3964_IPv4=yes
    blocks:
      description: Whether the running firewalld would reject IPv6 redirected to the proxy.
      type: bool
      returned: always
      sample: true
    changed:
      description: Whether the setting was (or, in check mode, would be) changed or put back.
      type: bool
      returned: always
      sample: true
firewalld_ipv6_refused:
  description: With O(firewalld_ipv6_redirect=refuse), why the run refused (nothing changed).
  returned: when refused
  type: dict
  sample: {conf: /etc/firewalld/firewalld.conf, line: RFC3964_IPv4=yes}
boot_persistence:
  description: What O(boot_persistence) did.
  returned: when O(boot_persistence) is given and the rules were applied
  type: dict
  contains:
    state:
      description: O(boot_persistence.state).
      type: str
      returned: always
      sample: present
    dir:
      description: O(boot_persistence.dir).
      type: str
      returned: always
      sample: /etc/kuma-mesh/transparent-proxy
    script:
      description: O(boot_persistence.script).
      type: str
      returned: always
      sample: /usr/local/sbin/kuma-mesh-tproxy-restore
    unit:
      description: O(boot_persistence.unit).
      type: str
      returned: always
      sample: kuma-mesh-tproxy.service
    files_changed:
      description: The files and directories written or removed (or, in check mode, that would be).
      type: list
      elements: str
      returned: always
      sample: [/etc/kuma-mesh/transparent-proxy/ipv4.rules]
    systemctl:
      description: The systemctl calls that changed the unit's state (or would, in check mode).
      type: list
      elements: str
      returned: always
      sample: [daemon-reload, enable --now kuma-mesh-tproxy.service]
firewalld:
  description: What the firewalld backend found and did (with O(other_backend=remove), what removing Kuma's
    direct rules found and did).
  returned: when the firewalld backend was used or cleaned up
  type: dict
  contains:
    running:
      description: Whether firewalld was running (runtime and permanent configuration changed over D-Bus), or not
        (only C(direct.xml) written).
      returned: always
      type: bool
      sample: true
    permanent_changed:
      description: Whether Kuma's entries in the permanent direct configuration differed from the wanted ones.
      returned: always
      type: bool
      sample: true
    runtime_changed:
      description: Whether Kuma's entries in firewalld's runtime direct configuration differed from the wanted ones.
      returned: always
      type: bool
      sample: true
    direct_xml:
      description: The permanent direct configuration file.
      returned: always
      type: str
      sample: /etc/firewalld/direct.xml
    direct:
      description: The wanted direct chains and rules per family, as C(firewall-cmd --direct --get-all-chains)
        and C(--get-all-rules) print them.
      returned: always
      type: dict
      sample:
        ipv4: ["ipv4 nat KUMA_MESH_INBOUND", "ipv4 nat OUTPUT 10000 -m comment --comment '...' -p tcp -j KUMA_MESH_OUTBOUND"]
    iptables_removed:
      description: The iptables backends and families whose plain Kuma rules (written without firewalld) were removed.
      returned: always
      type: list
      elements: str
      sample: [nft ipv4]
    calls:
      description: The D-Bus calls that changed firewalld, in order (rollback calls included).
      returned: always
      type: list
      elements: str
      sample: ["direct.addChain ipv4 nat KUMA_MESH_INBOUND", "config.direct.update"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kuma.mesh.plugins.module_utils.strict_args import strict_module

from ansible_collections.kuma.mesh.plugins.module_utils.tproxy import ARGUMENT_SPEC, run


def main():
    module = strict_module(AnsibleModule, ARGUMENT_SPEC, supports_check_mode=True)
    # every process the engine starts goes through run_command (tproxy_runner.Runner)
    outcome = run(module.params, module.run_command, check_mode=module.check_mode, diff_mode=module._diff)
    for warning in outcome.warnings:
        module.warn(warning)
    if outcome.failed:
        module.fail_json(msg=outcome.failed, **outcome.result)
    module.exit_json(**outcome.result)


if __name__ == "__main__":
    main()
