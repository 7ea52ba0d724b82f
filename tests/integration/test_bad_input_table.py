"""Hand-picked nasty inputs through the real kuma_tproxy in one network namespace: each
fails naming the option and the value, with no traceback, and changes nothing (both
families' iptables-save and the loopback's IPv6 addresses compared before and after).
Batched in one namespace after one real install, so the table runs in seconds."""

import json
import uuid

from netns import Namespace, run_module

BASE = {"kuma_dp_user": "kuma-dp"}
TABLE = [
    ({"redirect": {"inbound": {"port": " 80 "}}}, "redirect.inbound.port: ' 80 '"),
    ({"redirect": {"inbound": {"port": "\u0668\u0660"}}}, "redirect.inbound.port: '\u0668\u0660'"),
    ({"redirect": {"outbound": {"exclude_ports": ["80\n"]}}}, "redirect.outbound.exclude_ports[0]: '80\\n'"),
    ({"redirect": {"outbound": {"exclude_ips": ["10.0.0.0/33", "::/129", "fe80::1%eth0"]}}}, "redirect.outbound.exclude_ips: '10.0.0.0/33'"),
    ({"redirect": {"outbound": {"exclude_ports_for_uids": ["tcp:5-2:1000"]}}}, "redirect.outbound.exclude_ports_for_uids: 'tcp:5-2:1000'"),
    ({"redirect": {"vnet": {"networks": ["docker0:10.0.0.0/8\n-F DOCKER"]}}}, "redirect.vnet.networks: 'docker0:10.0.0.0/8\\n-F DOCKER'"),
    ({"redirect": {"inbound": "x"}}, "redirect.inbound: 'x' is not a dictionary"),
    ({"log": [1]}, "log: [1] is not a dictionary"),
    ({"wait": "inf"}, "wait: 'inf'"),
    ({"kuma_dp_user": "0"}, "kuma_dp_user: '0' is root"),
    ({"boot_persistence": {"script": "/bin/sh"}}, "boot_persistence.script: '/bin/sh' exists and was not written by kuma.mesh"),
    ({"boot_persistence": {"dir": "/tmp"}}, "boot_persistence.dir: '/tmp' holds files kuma.mesh did not write"),
    ({"config_file": "/etc/kuma/../passwd"}, "config_file: '/etc/kuma/../passwd' has a '..' component"),
]


def state(ns):
    return ns.save("ipv4"), ns.save("ipv6"), ns.run("ip", "-6", "addr", "show", "dev", "lo").stdout


def test_nasty_inputs_fail_clearly_and_change_nothing(kuma_dp_user):
    ns = Namespace("kmb-" + uuid.uuid4().hex[:6])
    try:
        ns.run("ip", "link", "add", "d0", "type", "veth", "peer", "name", "d1")
        ns.run("ip", "-6", "addr", "add", "2001:db8::1/64", "dev", "d0", "nodad")
        assert not run_module(ns, BASE).get("failed")
        before = state(ns)
        for bad, expected in TABLE:
            result = run_module(ns, dict(BASE, **bad))
            assert result.get("failed") is True and result["changed"] is False, (bad, result)
            assert expected in result["msg"], (bad, result["msg"])
            assert "exception" not in result and "Traceback" not in json.dumps(result), result
            assert state(ns) == before, bad
    finally:
        ns.delete()
