"""Validation and the per-family view of kuma_tproxy's options (no host needed)."""

import pytest

from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_config as config


def errors_for(overrides):
    return config.validate(config.with_defaults(overrides))


def test_defaults_are_valid_and_kumas():
    params = config.with_defaults()
    assert config.validate(params) == []
    cfg = config.family_config(params, ipv6=False, uid="5678")
    assert (cfg.inbound_port, cfg.outbound_port, cfg.dns_port) == (15006, 15001, 15053)
    assert cfg.comments and not cfg.dns_enabled and cfg.inbound_passthrough == "127.0.0.6/32"
    assert config.family_config(params, ipv6=True, uid="5678").localhost == "::1/128"


def test_unknown_option_is_refused():
    with pytest.raises(KeyError):
        config.with_defaults({"redirect": {"inbond": {}}})


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"redirect": {"inbound": {"port": 0}}}, "redirect.inbound.port: 0 is not a valid port (1-65535)"),
        ({"redirect": {"outbound": {"port": 65536}}}, "redirect.outbound.port: 65536 is not a valid port (1-65535)"),
        ({"redirect": {"dns": {"port": -1}}}, "redirect.dns.port: -1 is not a valid port (1-65535)"),
        ({"redirect": {"inbound": {"exclude_ports": [22, 70000]}}}, "redirect.inbound.exclude_ports: 70000"),
        ({"redirect": {"inbound": {"port": 15001}}}, "redirect.inbound.port and redirect.outbound.port: both are 15001"),
        ({"redirect": {"dns": {"enabled": True, "port": 15001}}}, "redirect.dns.port: 15001 is already used"),
        ({"redirect": {"outbound": {"exclude_ips": ["1.2.3"]}}}, "redirect.outbound.exclude_ips: '1.2.3' is not a valid IP"),
        ({"redirect": {"outbound": {"exclude_ips": ["10.0.0.0/33"]}}}, "'10.0.0.0/33' is not a valid IP"),
        ({"redirect": {"inbound": {"exclude_ips": ["fe80::1%eth0"]}}}, "'fe80::1%eth0' is not a valid IP"),
        ({"redirect": {"inbound": {"exclude_ips": [""]}}}, "redirect.inbound.exclude_ips: '': an entry cannot be empty"),
        ({"redirect": {"outbound": {"exclude_ports_for_uids": ["3000-5000:1:*"]}}}, "wildcard '*' is not allowed for UIDs"),
        (
            {"redirect": {"outbound": {"exclude_ports_for_uids": ["a3000-5000:1"]}}},
            "invalid port range: validation failed for value or range 'a3000-5000': invalid uint16 value: 'a3000'",
        ),
        ({"redirect": {"outbound": {"exclude_ports_for_uids": ["tcp,http:1:1"]}}}, "invalid or unsupported protocol: 'http'"),
        (
            {"redirect": {"outbound": {"exclude_ports_for_uids": ["3000-5000:1:1,2,3"]}}},
            "invalid UID entry: '1,2,3'. It should either be a single item or a range",
        ),
        ({"redirect": {"outbound": {"exclude_ports_for_uids": ["1:2:3:4"]}}}, "invalid format for excluding ports by UIDs"),
        ({"redirect": {"outbound": {"exclude_ports_for_uids": ["70000"]}}}, "invalid UID range"),
        ({"redirect": {"vnet": {"networks": ["docker0"]}}}, "redirect.vnet.networks: 'docker0' is not 'iface:CIDR'"),
        ({"redirect": {"vnet": {"networks": [":10.0.0.0/8"]}}}, "':10.0.0.0/8' is not 'iface:CIDR'"),
        ({"redirect": {"vnet": {"networks": ["br0:10.0.0.1"]}}}, "'10.0.0.1' is not a valid CIDR"),
        ({"redirect": {"vnet": {"networks": ["br0:300.0.0.0/8"]}}}, "'300.0.0.0/8' is not a valid CIDR"),
        ({"log": {"level": 9}}, "log.level: 9 is not a syslog level"),
        ({"retry": {"max_retries": -1}}, "retry.max_retries: -1"),
    ],
)
def test_bad_input_names_the_option_and_the_value(overrides, message):
    found = errors_for(overrides)
    assert any(message in e for e in found), found


def test_kumactl_error_wording_for_uid_exclusions():
    """The exact messages of kumactl's own tests (SOURCES.md)."""
    cases = {
        "a3000-5000:1": "invalid port range: validation failed for value or range 'a3000-5000': invalid uint16 value: 'a3000'",
        "http:3000-5000:1": "invalid or unsupported protocol: 'http'",
        "tcp,http:1:1": "invalid or unsupported protocol: 'http'",
        "3000-5000:1:*": "wildcard '*' is not allowed for UIDs",
        "3000-5000:1:1,2,3": "invalid UID entry: '1,2,3'. It should either be a single item or a range",
    }
    for entry, message in cases.items():
        with pytest.raises(ValueError) as exc:
            config.parse_exclude_ports_for_uids([entry])
        assert str(exc.value) == message


def test_uid_exclusions_expand_as_kuma_does():
    parse = config.parse_exclude_ports_for_uids
    assert parse(["123"]) == [config.UidExclusion("tcp", "1:65535", "123"), config.UidExclusion("udp", "1:65535", "123")]
    assert parse(["tcp:*:0"]) == [config.UidExclusion("tcp", "1:65535", "0")]
    assert parse(["53,3000-5000:106-108"])[1] == config.UidExclusion("udp", "53,3000:5000", "106:108")
    assert parse([":22:1"]) == [config.UidExclusion("tcp", "22", "1"), config.UidExclusion("udp", "22", "1")]


def test_addresses_go_to_their_own_family():
    params = config.with_defaults(
        {"redirect": {"outbound": {"exclude_ips": ["10.0.0.1,fd00::/8", "192.0.2.0/24"]}, "inbound": {"exclude_ips": ["fe80::1"]}}}
    )
    v4 = config.family_config(params, ipv6=False, uid="1")
    v6 = config.family_config(params, ipv6=True, uid="1")
    assert v4.outbound_exclusions == ["10.0.0.1", "192.0.2.0/24"] and v4.inbound_exclude_ips == []
    assert v6.outbound_exclusions == ["fd00::/8"] and v6.inbound_exclude_ips == ["fe80::1"]


def test_vnet_splits_at_the_first_colon():
    params = config.with_defaults({"redirect": {"vnet": {"networks": ["br+:172.18.0.0/16", "iface:::1/64"]}}})
    assert config.validate(params) == []
    assert config.family_config(params, ipv6=True, uid="1").vnet == {"iface": "::1/64"}
    assert config.family_config(params, ipv6=False, uid="1").vnet == {"br+": "172.18.0.0/16"}


def test_dns_follows_kuma():
    on = config.with_defaults({"redirect": {"dns": {"enabled": True}}})
    v4 = config.family_config(on, ipv6=False, uid="1", dns_servers=["127.0.0.53", "2001:db8::53"])
    assert v4.dns_enabled and v4.conntrack_zone_split and v4.dns_servers == ["127.0.0.53"]
    # a family without a name server gets no DNS rules
    v6 = config.family_config(on, ipv6=True, uid="1", dns_servers=["127.0.0.53"])
    assert not v6.dns_enabled and not v6.conntrack_zone_split
    # capture_all implies DNS redirection and needs no name server
    capture = config.with_defaults({"redirect": {"dns": {"capture_all": True}}})
    assert config.family_config(capture, ipv6=True, uid="1").dns_enabled
    # inside Docker with custom networks Kuma skips the zone split when capturing all
    assert not config.family_config(capture, ipv6=False, uid="1", docker_output=True).conntrack_zone_split


def test_the_ssh_port_is_added_once():
    params = config.with_defaults({"redirect": {"inbound": {"exclude_ports": [22]}}})
    assert config.family_config(params, False, "1", extra_inbound_exclude=[22]).inbound_exclude_ports == [22]
    assert config.family_config(params, False, "1", extra_inbound_exclude=[2022]).inbound_exclude_ports == [22, 2022]


# -- strict grammar (issue 10: injection, crashes, inputs that should not pass) --


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"redirect": {"vnet": {"networks": ["a\n-FDOCKER\n#:172.18.0.0/16"]}}}, "contains a control character"),
        ({"redirect": {"vnet": {"networks": ["!docker0:172.18.0.0/16"]}}}, "interface '!docker0' starts with '!'"),
        ({"redirect": {"vnet": {"networks": ["-j:172.18.0.0/16"]}}}, "interface '-j' starts with '-'"),
        ({"redirect": {"vnet": {"networks": ["averyveryverylong0:10.0.0.0/8"]}}}, "longer than 15 characters"),
        ({"redirect": {"vnet": {"networks": ["..:10.0.0.0/8"]}}}, "'..' is not a valid interface name"),
        ({"redirect": {"vnet": {"networks": ["br+x:10.0.0.0/8"]}}}, "'br+x' is not a valid interface name"),
        ({"redirect": {"vnet": {"networks": ["+:10.0.0.0/8"]}}}, "'+' is not a valid interface name"),
        ({"redirect": {"vnet": {"networks": ["br0:10.0.0.0/8", "br0:192.168.0.0/16"]}}}, "already has the IPv4 network"),
        ({"redirect": {"vnet": {"networks": ["eth\u00e90:10.0.0.0/8"]}}}, "non-ASCII"),
        ({"redirect": {"outbound": {"exclude_ports_for_uids": ["tcp:900-100:5"]}}}, "range '900-100' goes down"),
        ({"redirect": {"outbound": {"exclude_ports_for_uids": ["tcp:1-2-3:5"]}}}, "'1-2-3' is not a value or an a-b range"),
        ({"redirect": {"outbound": {"exclude_ports_for_uids": ["tcp:1:9-2"]}}}, "invalid UID range"),
        ({"redirect": {"outbound": {"exclude_ports_for_uids": ["tcp:53,,54:5"]}}}, "empty element"),
        ({"redirect": {"outbound": {"exclude_ports_for_uids": ["tcp:1\n-F:5"]}}}, "control character"),
        (
            {"redirect": {"outbound": {"exclude_ports_for_uids": [",".join(str(p) for p in range(1, 17)) + ":5"]}}},
            "more than 15 ports",
        ),
        ({"redirect": {"inbound": {"exclude_ports_for_uids": ["tcp:22:5"]}}}, "not supported for inbound traffic"),
        ({"redirect": {"outbound": {"exclude_ips": [",,"]}}}, "',,': an entry cannot be empty"),
        ({"redirect": {"outbound": {"exclude_ips": ["10.1"]}}}, "'10.1' is not a valid IP"),
        ({"redirect": {"outbound": {"exclude_ips": ["010.0.0.1"]}}}, "'010.0.0.1' is not a valid IP"),
        ({"redirect": {"outbound": {"exclude_ips": ["::ffff:10.0.0.1"]}}}, "'::ffff:10.0.0.1' is not a valid IP"),
        ({"redirect": {"outbound": {"exclude_ips": ["10.0.0.0/08"]}}}, "'10.0.0.0/08' is not a valid IP"),
        ({"redirect": {"outbound": {"exclude_ips": ["10.0.0.1\n-F DOCKER"]}}}, "control character"),
        ({"redirect": {"inbound": {"include_ports": [0]}}}, "redirect.inbound.include_ports: 0 is not a valid port"),
        ({"redirect": {"inbound": {"exclude_ports": list(range(1, 2000))}}}, "1999 entries, more than the 1024 allowed"),
        ({"kuma_dp_user": "root"}, "kuma_dp_user: 'root' is root (uid 0)"),
        ({"kuma_dp_user": "0"}, "kuma_dp_user: '0' is root (uid 0)"),
        ({"kuma_dp_user": "000"}, "kuma_dp_user: '000' is root (uid 0)"),
        ({"kuma_dp_user": "kuma\ndp"}, "is not a user name or a uid"),
        ({"kuma_dp_user": "-kuma"}, "is not a user name or a uid"),
        ({"retry": {"sleep_between_retries": float("nan")}}, "retry.sleep_between_retries: nan"),
        ({"retry": {"sleep_between_retries": float("inf")}}, "retry.sleep_between_retries: inf"),
        ({"retry": {"sleep_between_retries": 1e308}}, "retry.sleep_between_retries: 1e+308"),
        ({"retry": {"max_retries": 10**9}}, "retry.max_retries: 1000000000 is not a whole number from 0 to 100"),
        ({"wait": -1}, "wait: -1 is not a whole number from 0 to 3600 seconds"),
        ({"wait_interval": 1000000}, "wait_interval: 1000000"),
        ({"redirect": {"dns": {"resolv_conf": "etc/resolv.conf"}}}, "is not an absolute path"),
        ({"redirect": {"dns": {"resolv_conf": "/etc/resolv.conf\n"}}}, "control or non-ASCII"),
        ({"iptables_executables": {"iptables": "/usr/sbin/iptables"}}, "must be given together"),
        ({"iptables_executables": {"ip6tables": "ip6tables", "ip6tables_save": "/x", "ip6tables_restore": "/y"}},
         "iptables_executables.ip6tables: 'ip6tables' is not an absolute path"),
    ],
)
def test_strict_grammar_refuses_with_option_and_value(overrides, message):
    found = errors_for(overrides)
    assert any(message in e for e in found), found


def test_kuma_dp_user_may_be_left_empty():
    assert errors_for({"kuma_dp_user": ""}) == []
    assert config.with_defaults()["kuma_dp_user"] == ""
    assert errors_for({"kuma_dp_user": "5678"}) == [] and errors_for({"kuma_dp_user": "kuma-dp"}) == []


def test_validate_never_raises_on_wrong_types():
    for bad in (None, [], "x", {"redirect": "x"}, {"redirect": {"inbound": []}}, {"log": 3},
                {"redirect": {"inbound": {"exclude_ports": [None, "a", True, 2**70]}}},
                {"redirect": {"vnet": {"networks": [3, None]}}}, {"retry": {"sleep_between_retries": "2"}},
                {"iptables_executables": {"nope": "/x"}}, {"kuma_dp_user": 0}):
        assert isinstance(config.validate(bad), list)
    assert config.validate({"redirect": {"inbound": {"exclude_ports": [True]}}})


def test_duplicates_are_kept_once_in_the_order_given():
    params = config.with_defaults(
        {
            "redirect": {
                "inbound": {"exclude_ports": [22, 8080, 22], "exclude_ips": ["10.0.0.1,10.0.0.1", "10.0.0.1"]},
                "outbound": {"exclude_ports_for_uids": ["tcp:53:5", "tcp:53:5"], "exclude_ips": ["10.0.0.2", " 10.0.0.2"]},
                "vnet": {"networks": ["br0:10.0.0.0/8", "br0:10.0.0.0/8"]},
            }
        }
    )
    assert config.validate(params) == []
    cfg = config.family_config(params, False, "1", extra_inbound_exclude=[22, 2222])
    assert cfg.inbound_exclude_ports == [22, 8080, 2222]
    assert cfg.inbound_exclude_ips == ["10.0.0.1"]
    assert cfg.outbound_exclusions == [config.UidExclusion("tcp", "53", "5"), "10.0.0.2"]


def test_family_config_refuses_what_validate_refuses():
    with pytest.raises(config.ConfigError) as exc:
        config.family_config(config.with_defaults({"redirect": {"inbound": {"port": 0}}}), False, "1")
    assert "redirect.inbound.port: 0" in str(exc.value)


def test_resolv_conf_servers_that_are_not_addresses_are_dropped():
    on = config.with_defaults({"redirect": {"dns": {"enabled": True}}})
    cfg = config.family_config(on, False, "1", dns_servers=["192.0.2.53/24", "bogus", "192.0.2.1", "192.0.2.1"])
    assert cfg.dns_servers == ["192.0.2.1"]


def test_wait_is_passed_explicitly():
    assert config.restore_lock_args(config.with_defaults()) == ["--wait=5"]
    assert config.restore_lock_args(config.with_defaults({"wait": 0})) == ["--wait=0"]
    assert config.restore_lock_args(config.with_defaults({"wait_interval": 500})) == ["--wait=5", "--wait-interval=500"]


def test_addresses_follow_go_net_parsing():
    good = ["10.0.0.1", "0.0.0.0/0", "172.32.16.8/16", "fe80::1", "::1/128", "fd00::/8", "64:ff9b::1.2.3.4"]
    bad = ["10.1", "1", "10.0.0.256", "10.0.0.1/33", "fe80::1%eth0", "fe80::/129", " 10.0.0.1", "10.0.0.1/", "/8",
           "10.0.0.1/+8", "0x0a.0.0.1", "::ffff:1.2.3.4", "::ffff:0:0/96", "1.2.3.4/24/1", "١٠.0.0.1"]
    assert all(config.parse_ip(a) is not None for a in good), [a for a in good if config.parse_ip(a) is None]
    assert all(config.parse_ip(a) is None for a in bad), [a for a in bad if config.parse_ip(a) is not None]


# -- kumactl's configuration (issue 12, section 3) --


def unset(**given):
    params = dict((k, None) for k in config.ARGUMENT_SPEC)
    params.update(given)
    return params


def test_effective_params_precedence_is_kumactls():
    conf = {"redirect": {"inbound": {"port": 12345, "excludePorts": "22, 2222"}, "outbound": {"port": 12346}}, "wait": 9}
    text = '{"redirect": {"inbound": {"port": 1}, "dns": {"port": 7777}}, "wait": 1, "kumaDPUser": 5678}'
    params, errors = config.effective_params(
        unset(config=conf, config_file="/etc/kuma/tp.json", redirect={"outbound": {"port": 15001}}), text
    )
    assert errors == []
    assert params["redirect"]["inbound"]["port"] == 12345  # config over config_file
    assert params["redirect"]["inbound"]["exclude_ports"] == [22, 2222]  # kumactl's Ports from a string
    assert params["redirect"]["dns"]["port"] == 7777  # config_file over the defaults
    assert params["redirect"]["outbound"]["port"] == 15001  # the module's own option over config
    assert params["wait"] == 9 and params["kuma_dp_user"] == "5678"
    assert params["state"] == "present" and params["retry"]["max_retries"] == 4


def test_effective_params_lists_are_replaced_not_merged():
    params, errors = config.effective_params(
        unset(config={"redirect": {"outbound": {"excludePorts": [1, 2]}}}, redirect={"outbound": {"exclude_ports": [3]}})
    )
    assert errors == [] and params["redirect"]["outbound"]["exclude_ports"] == [3]


@pytest.mark.parametrize(
    "conf,message",
    [
        ({"redirect": {"inbound": {"chainName": "X"}}}, "config.redirect.inbound: unknown or unsupported kumactl configuration key 'chainName'"),
        ({"redirct": {}}, "config: unknown or unsupported kumactl configuration key 'redirct'"),
        ({"storeFirewalld": True}, "config.storeFirewalld: True is not supported (use the module's backend: firewalld)"),
        ({"dryRun": True}, "config.dryRun: True is not supported"),
        ({"cniMode": True}, "config.cniMode: True is not supported"),
        ({"verbose": True}, "config.verbose: True is not supported"),
        ({"ebpf": {"enabled": True}}, "config.ebpf"),
        ({"redirect": {"inbound": {"port": "15006"}}}, "config.redirect.inbound.port: '15006' is not a valid port"),
        ({"redirect": {"inbound": {"port": 0}}}, "config.redirect.inbound.port: 0 is not a valid port"),
        ({"redirect": {"inbound": {"excludePorts": "22,0"}}}, "value '0' is not a valid port"),
        ({"redirect": {"dns": {"enabled": "yes"}}}, "config.redirect.dns.enabled: 'yes' is not a boolean"),
        ({"retry": {"sleepBetweenRetries": "2 s"}}, "config.retry.sleepBetweenRetries: '2 s' is not a Go duration"),
        ({"ipFamilyMode": "ipv6"}, "config.ipFamilyMode: 'ipv6' must be one of 'dualstack' or 'ipv4'"),
        ({"redirect": []}, "config.redirect: [] is not a mapping"),
        ("redirect: [", "config: is not valid YAML"),
        (["x"], "config: ['x'] is not a dictionary or YAML/JSON text"),
    ],
)
def test_kumactl_configuration_is_refused_by_name(conf, message):
    _params, errors = config.effective_params(unset(config=conf))
    assert any(message in e for e in errors), errors


def test_redirect_dns_with_capture_all_as_kumactl():
    _p, errors = config.effective_params(unset(redirect={"dns": {"enabled": True, "capture_all": True}}))
    assert any("only one of '--redirect-dns' or '--redirect-all-dns-traffic'" in e for e in errors)
    # a configuration may hold both (kumactl accepts it): capture_all wins, and implies enabled
    params, errors = config.effective_params(unset(config={"redirect": {"dns": {"enabled": True, "captureAll": True}}}))
    assert errors == [] and params["redirect"]["dns"]["enabled"] and params["redirect"]["dns"]["capture_all"]
    params, errors = config.effective_params(unset(redirect={"dns": {"capture_all": True}}))
    assert errors == [] and params["redirect"]["dns"]["enabled"]


def test_config_file_must_be_read_by_the_caller():
    _p, errors = config.effective_params(unset(config_file="/etc/kuma/tp.yaml"))
    assert errors == ["config_file: '/etc/kuma/tp.yaml' was not read"]
    _p, errors = config.effective_params(unset(config_file="tp.yaml"), "{}")
    assert errors == ["config_file: 'tp.yaml' is not an absolute path"]


def test_go_durations():
    assert config.go_duration("2s") == 2.0 and config.go_duration("1m30s") == 90.0
    assert config.go_duration("500ms") == 0.5 and config.go_duration("0") == 0.0
    assert config.go_duration(2000000000) == 2.0
    for bad in ("", "2", "s", "1x", "nan", "inf", None, True):
        with pytest.raises(ValueError):
            config.go_duration(bad)


def test_iptables_executables_from_config():
    conf = {"iptablesExecutables": {"iptables": "/usr/sbin/iptables-nft", "iptables-save": "/usr/sbin/iptables-nft-save",
                                    "iptables-restore": "/usr/sbin/iptables-nft-restore"}}
    params, errors = config.effective_params(unset(config=conf))
    assert errors == [] and config.validate(params) == []
    assert params["iptables_executables"]["iptables_save"] == "/usr/sbin/iptables-nft-save"
    assert params["iptables_executables"]["ip6tables"] is None


def test_include_ports_as_kuma_builds_them():
    from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_rules as rules

    params = config.with_defaults(
        {"redirect": {"inbound": {"include_ports": [8080, 8443], "exclude_ports": [22], "exclude_ips": ["10.0.0.1"]},
                      "outbound": {"include_ports": [80], "exclude_ports": [25]}}}
    )
    nat = rules.build(config.family_config(params, False, "5678")).table("nat")
    inbound = [r.restore(False) for r in nat.chain(rules.INBOUND_CHAIN).rules]
    outbound = [r.restore(False) for r in nat.chain(rules.OUTBOUND_CHAIN).rules]
    assert inbound == [
        "-A KUMA_MESH_INBOUND -s 10.0.0.1 -j RETURN",
        "-A KUMA_MESH_INBOUND -p tcp --dport 8080 -j KUMA_MESH_INBOUND_REDIRECT",
        "-A KUMA_MESH_INBOUND -p tcp --dport 8443 -j KUMA_MESH_INBOUND_REDIRECT",
    ]  # Kuma: with include ports, exclude ports and the catch-all are left out
    assert "-A KUMA_MESH_OUTBOUND -p tcp --dport 25 -j RETURN" not in outbound
    assert outbound[-1] == "-A KUMA_MESH_OUTBOUND -p tcp --dport 80 -j KUMA_MESH_OUTBOUND_REDIRECT"
    assert outbound[-2] == "-A KUMA_MESH_OUTBOUND -d 127.0.0.1/32 -j RETURN"
