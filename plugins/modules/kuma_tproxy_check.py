#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kuma.mesh maintainers
# Apache License 2.0 (see LICENSE)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: kuma_tproxy_check
short_description: Proves on the host that Kuma's transparent proxy redirects traffic
version_added: "0.1.0"
description:
  - Does on the host what C(kumactl install transparent-proxy-validator) does, and more - it makes
    connections that only the transparent-proxy rules can make succeed, and says per IP family what
    was proven. It changes nothing - O(ignore:changed) is always false.
  - C(outbound) - a TCP connection, as O(test_user), to O(target_ipv4) / O(target_ipv6) (TEST-NET
    addresses that route nowhere) must be accepted at once, which only happens when the rules hand
    it to the outbound redirect port. The same connection as kuma-dp's uid must not be accepted
    (kuma-dp's own traffic is not redirected, or it would loop).
  - C(inbound) - Kuma's validator's own check - a TCP connection from C(127.0.0.1) to C(127.0.0.6)
    (C(::1) to C(::6)) on a random port, as kuma-dp's uid, must reach the inbound redirect port (Kuma's
    rules send kuma-dp's traffic to the loopback, but not to C(127.0.0.1), there).
  - C(dns) - a UDP DNS query, as O(test_user), to the first nameserver of the family (from
    O(resolv_conf) or O(dns_servers)) must be answered through the DNS redirect port, and the same query
    as kuma-dp's uid must not reach it. A resolver the host has no route to is skipped with that reason
    (no application reaches it either).
  - With O(listener=own) (or O(listener=auto) when the redirect port is free, for example before
    kuma-dp starts) the module listens on the redirect port itself, as Kuma's validator does, and
    the proof is exact - every answer carries a random token, the listener reads back each
    connection's original destination, and its DNS answer is an address no resolver gives.
    With the running proxy (O(listener=running), or C(auto) when kuma-dp holds the port) an
    accepted connection to an address that routes nowhere is the proof; DNS counts as proven when
    the same query as kuma-dp (never redirected) gets no answer, or gets no address for O(dns_name)
    (a C(.mesh) name only the DNS proxy knows) while the application's query does. Otherwise the
    answer is reported as not told apart from the resolver's (C(note)), not as a failure.
  - The probes run in forked children that drop to the user's uid and gid, so the module runs as
    root (C(become=true)). Nothing leaves the host when the rules redirect; when they do not, the
    probes' SYNs and queries go to addresses nobody answers for.
author:
  - kuma.mesh maintainers (@kuma-mesh)
requirements:
  - Linux with Kuma's transparent-proxy rules installed (M(kuma.mesh.kuma_tproxy))
attributes:
  check_mode:
    support: full
    description: The module only reads; it runs the same probes in check mode.
  diff_mode:
    support: none
    description: Nothing changes, so there is nothing to show.
  platform:
    platforms: posix
    support: full
    description: Linux hosts. Tested in network namespaces with Kuma's rules.
options:
  kuma_dp_user:
    description:
      - The user kuma-dp runs as, whose traffic the rules leave alone (a name or a uid). Empty -
        Kuma's default, uid 5678 when it exists, else the user named C(kuma-dp).
    type: str
    default: ""
  test_user:
    description:
      - The user (a name or a uid) the redirected probes run as - an application's user, anyone but kuma-dp.
    type: str
    default: nobody
  families:
    description:
      - The IP families to check. Unset - IPv4, and IPv6 when the host has an IPv6 address other
        than the loopback (Kuma's rule for installing IPv6 rules).
    type: list
    elements: str
    choices: [ipv4, ipv6]
  checks:
    description:
      - What to prove. Add C(dns) when the rules redirect DNS (O(kuma.mesh.kuma_tproxy#module:redirect.dns.enabled)).
    type: list
    elements: str
    choices: [outbound, inbound, dns]
    default: [outbound, inbound]
  listener:
    description:
      - C(own) - listen on the redirect ports (loopback) for the time of the check; fails when a port is taken.
      - C(running) - test the proxy that listens there (kuma-dp's Envoy and DNS proxy).
      - C(auto) - C(own) for each port that is free, C(running) for the others.
    type: str
    choices: [auto, own, running]
    default: auto
  outbound_port:
    description: The outbound redirect port of the rules (C(redirect.outbound.port) of M(kuma.mesh.kuma_tproxy)).
    type: int
    default: 15001
  inbound_port:
    description: The inbound redirect port of the rules (C(redirect.inbound.port)).
    type: int
    default: 15006
  dns_port:
    description: The DNS redirect port of the rules (C(redirect.dns.port)).
    type: int
    default: 15053
  target_ipv4:
    description:
      - The IPv4 address the outbound probe connects to; the host must have a route to it and nothing
        may answer there.
      - Empty - C(203.0.113.1) (TEST-NET-3) when the host routes it off the host, else a free address of
        a connected subnet (see the description).
    type: str
    default: ""
  target_ipv6:
    description:
      - The IPv6 address the outbound probe connects to, as O(target_ipv4).
      - Empty - C(2001:db8:ffff::1) (documentation prefix) when routed off the host, else a random
        address of a connected subnet.
    type: str
    default: ""
  target_port:
    description:
      - The TCP port of the outbound probe. C(0) - a random port in 20000-29999, as Kuma's validator.
        Pick one the rules do not exclude.
    type: int
    default: 0
  dns_servers:
    description: The resolvers the DNS probe asks (the first of each family). Unset - the nameservers of O(resolv_conf).
    type: list
    elements: str
  resolv_conf:
    description: Where the resolvers are read from when O(dns_servers) is unset.
    type: path
    default: /etc/resolv.conf
  dns_name:
    description:
      - The name the DNS probe asks for. Unset - a random name under C(kuma-tproxy-check.invalid).
        With the running DNS proxy give a C(.mesh) name of your mesh to prove that the proxy answered.
    type: str
  timeout:
    description:
      - Seconds each probe waits. A redirected connection is accepted at once; the kuma-dp probe waits
        the whole timeout to show it is not redirected.
    type: float
    default: 1.0
notes:
  - "Every option is checked against its type before anything else, and refused naming the option's full
    path and the value: a whole number is an int or a string of ASCII digits with an optional leading C(-)
    (not C(' 80 '), C(80.0), C(1e3) or non-ASCII digits); a list is a list (a comma-separated string is
    refused); a dictionary is a dictionary; a boolean is one of Ansible's boolean words."
  - Binds loopback ports only for the time of the check (with O(listener=own) or C(auto)) and changes nothing else.
  - Kuma's own validator (C(kumactl install transparent-proxy-validator)) proves only the inbound
    redirect, through the loopback, which needs no route; this module adds the outbound and DNS
    redirects and kuma-dp's exclusion, which need a path off the host - hence the connected-subnet target.
seealso:
  - module: kuma.mesh.kuma_tproxy
  - name: Kuma's transparent-proxy validator
    description: kumactl install transparent-proxy-validator (pkg/transparentproxy/validate in Kuma's source).
    link: https://kuma.io/docs/latest/reference/kumactl/
"""

EXAMPLES = r"""
- name: Prove the rules before kuma-dp starts (the module listens on the redirect ports itself)
  kuma.mesh.kuma_tproxy_check:
    kuma_dp_user: kuma-dp
    checks: [outbound, inbound, dns]
    listener: own
  become: true

- name: Prove the running proxy takes the traffic, DNS through a mesh name
  kuma.mesh.kuma_tproxy_check:
    listener: running
    checks: [outbound, inbound, dns]
    dns_name: backend.mesh
    families: [ipv4, ipv6]
  become: true
  register: tproxy_proof

- name: Show what was proven
  ansible.builtin.debug:
    var: tproxy_proof.proven
"""

RETURN = r"""
changed:
  description: Always false; the module changes nothing.
  returned: always
  type: bool
  sample: false
proven:
  description: Per family, one sentence per check that was proven.
  returned: success
  type: dict
  sample:
    ipv4:
      - TCP to 192.0.2.254:24242 (free address of the connected subnet 192.0.2.0/24 on eth0) as nobody is redirected
        to port 15001; as kuma-dp (uid 5678) it is not
      - TCP from 127.0.0.1 to 127.0.0.6:21212 is redirected to the inbound port 15006
families:
  description:
    - Per family and check, what the probes saw - C(listener) (C(own) or C(running)), C(target) and
      C(target_chosen) (why that address) or C(server), C(redirected) (true, false, or null when the
      running DNS proxy could not be told apart from the resolver, then C(note) says so), C(proven),
      C(skipped) with the reason, C(error), and each probe's raw result (C(as_test_user), C(as_kuma_dp) -
      C(connected)/C(answered), C(addresses), C(elapsed), C(error)).
    - Also returned when the module fails.
  returned: always
  type: dict
  sample:
    ipv4:
      outbound:
        target: 203.0.113.1:24242
        target_chosen: TEST-NET address, routed off the host (source 10.0.0.5)
        listener: own
        redirected: true
        as_test_user: {connected: true, elapsed: 0.0004, reply: kuma-tproxy-check-0123456789abcdef}
        as_kuma_dp: {connected: false, elapsed: 1.0012, error: timed out after the timeout}
users:
  description: The users the probes ran as.
  returned: success
  type: dict
  sample: {kuma_dp: {name: kuma-dp, uid: 5678}, test: {name: nobody, uid: 65534}}
msg:
  description: What was proven per family, and what was skipped and why; or why the proof failed.
  returned: always
  type: str
  sample: "transparent proxy checked - ipv4: outbound, inbound, dns proven | ipv6: outbound, inbound, dns proven"
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kuma.mesh.plugins.module_utils.strict_args import strict_module

from ansible_collections.kuma.mesh.plugins.module_utils.tproxy_check import (
    CheckFailed,
    CheckInputError,
    parse_params,
    proven_summary,
    run_checks,
    summary_msg,
)

ARGUMENT_SPEC = dict(
    kuma_dp_user=dict(type="str", default=""),
    test_user=dict(type="str", default="nobody"),
    families=dict(type="list", elements="str", choices=["ipv4", "ipv6"]),
    checks=dict(type="list", elements="str", choices=["outbound", "inbound", "dns"], default=["outbound", "inbound"]),
    listener=dict(type="str", choices=["auto", "own", "running"], default="auto"),
    outbound_port=dict(type="int", default=15001),
    inbound_port=dict(type="int", default=15006),
    dns_port=dict(type="int", default=15053),
    target_ipv4=dict(type="str", default=""),
    target_ipv6=dict(type="str", default=""),
    target_port=dict(type="int", default=0),
    dns_servers=dict(type="list", elements="str"),
    resolv_conf=dict(type="path", default="/etc/resolv.conf"),
    dns_name=dict(type="str"),
    timeout=dict(type="float", default=1.0),
)


def main():
    module = strict_module(AnsibleModule, ARGUMENT_SPEC, supports_check_mode=True)
    try:
        settings = parse_params(module.params)
        families = run_checks(settings)
    except CheckInputError as e:
        module.fail_json(msg=str(e), changed=False, families={})
    except CheckFailed as e:
        module.fail_json(msg=e.msg, changed=False, families=e.families)
    proven = proven_summary(families)
    module.exit_json(
        changed=False, families=families, proven=proven,
        users={"kuma_dp": {"name": settings.kuma_dp_user, "uid": settings.kuma_dp_uid},
               "test": {"name": settings.test_user, "uid": settings.test_uid}},
        msg=summary_msg(families),
    )


if __name__ == "__main__":
    main()
