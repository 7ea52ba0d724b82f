"""The wiring between kuma_tproxy's input side and its engine: config_file is read on
the host before anything else, iptables_executables choose the executables, legacy
restores get restore_lock_args, the gates get the claimed rules."""


from ansible_collections.kuma.mesh.plugins.module_utils import tproxy
from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_config as config
from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_facts as facts
from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_iptables as ipt
from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_rules as rules


def no_commands(args, **kwargs):
    """The run_command of a run that must fail before any process is started."""
    raise AssertionError("started %r" % (args,))


def given(**options):
    """The module's parameters as AnsibleModule passes them: options a task leaves out are None."""
    params = dict((k, None) for k in config.ARGUMENT_SPEC)
    params.update(state="present", iptables_mode="auto", backend="iptables")
    params.update(options)
    return params


def test_read_config_file(tmp_path):
    good = tmp_path / "tp.yaml"
    good.write_text("redirect:\n  inbound:\n    port: 15010\n")
    assert facts.read_config_file(str(good), 1000) == facts.ConfigFile(good.read_text(), None)
    missing = facts.read_config_file(str(tmp_path / "nope.yaml"), 1000)
    assert missing.text is None and missing.error.startswith("config_file: ") and "nope.yaml" in missing.error
    assert "not a regular file" in facts.read_config_file(str(tmp_path), 1000).error
    assert "larger than 10 bytes" in facts.read_config_file(str(good), 10).error
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe")
    assert "not UTF-8" in facts.read_config_file(str(binary), 1000).error


def test_config_file_is_merged_under_the_options(tmp_path):
    path = tmp_path / "tp.yaml"
    path.write_text('{"redirect": {"inbound": {"port": 15010}, "outbound": {"port": 15011}}, "wait": 9}')
    engine = tproxy.Engine(given(config_file=str(path), redirect={"outbound": {"port": 15020}}), no_commands)
    params = engine.effective(engine.params)
    assert params["redirect"]["inbound"]["port"] == 15010
    assert params["redirect"]["outbound"]["port"] == 15020  # the task's option wins
    assert params["wait"] == 9
    assert params["redirect"]["dns"]["port"] == 15053  # Kuma's default


def test_unreadable_config_file_fails_before_anything_is_read():
    outcome = tproxy.run(given(config_file="/nonexistent/kuma-tp.yaml"), no_commands)
    assert outcome.failed and "config_file: '/nonexistent/kuma-tp.yaml'" in outcome.failed
    assert outcome.result["changed"] is False and outcome.result["commands"] == []


def test_bad_merged_input_names_the_option(tmp_path):
    path = tmp_path / "tp.json"
    path.write_text('{"redirect": {"inbound": {"port": 70000}}}')
    outcome = tproxy.run(given(config_file=str(path)), no_commands)
    assert outcome.failed and "inbound" in outcome.failed and "70000" in outcome.failed
    outcome = tproxy.run(given(config_file="relative.yaml"), no_commands)
    assert outcome.failed and "config_file: 'relative.yaml'" in outcome.failed


def test_given_binaries():
    exe = dict(iptables="/opt/x/iptables", iptables_save="/opt/x/iptables-save", iptables_restore="/opt/x/iptables-restore")
    params = config.with_defaults({"iptables_executables": exe})
    mode, found = facts.given_binaries(params, "ipv4")
    assert mode == "nft"  # unknown target: nft, as Kuma assumes
    assert found == facts.Binaries("/opt/x/iptables-save", "/opt/x/iptables-restore")
    assert facts.given_binaries(params, "ipv6") is None
    params = config.with_defaults({"iptables_executables": exe, "iptables_mode": "legacy"})
    assert facts.given_binaries(params, "ipv4")[0] == "legacy"
    exe = dict(iptables="/usr/sbin/iptables-legacy", iptables_save="/usr/sbin/iptables-legacy-save",
               iptables_restore="/usr/sbin/iptables-legacy-restore")
    assert facts.given_binaries(config.with_defaults({"iptables_executables": exe}), "ipv4")[0] == "legacy"


def test_missing_given_executables_are_reported():
    exe = dict(ip6tables="/nonexistent/ip6tables", ip6tables_save="/nonexistent/s", ip6tables_restore="/bin/sh")
    errors = facts._executable_errors(config.with_defaults({"iptables_executables": exe}))
    assert len(errors) == 2 and errors[0].startswith("iptables_executables.ip6tables: '/nonexistent/ip6tables'")


def test_legacy_restore_gets_restore_lock_args():
    params = config.with_defaults({"wait": 0, "wait_interval": 300})
    runner = ipt.Iptables("/s", "/r", "legacy", "ipv4", no_commands, lock_args=config.restore_lock_args(params))
    assert runner._restore_args(test=True) == ["/r", "--noflush", "--wait=0", "--wait-interval=300", "--test"]
    runner = ipt.Iptables("/s", "/r", "nft", "ipv4", no_commands, lock_args=config.restore_lock_args(params))
    assert runner._restore_args() == ["/r", "--noflush"]


class EmptyStore(object):
    """An iptables store that holds no rules (what StorePlan reads)."""

    family, mode = "ipv4", "nft"

    def tables(self):
        return {}


def test_gate_accepts_claimed_uncommented_rules_only():
    params = config.with_defaults({"comments": {"disabled": True}, "redirect": {"dns": {"capture_all": True}}})
    ruleset = rules.build(config.family_config(params, ipv6=False, uid="5678"))
    plan = tproxy.StorePlan(EmptyStore(), ruleset, ipt.uncommented(ruleset))
    assert "-j CT --zone" in plan.script
    assert tproxy._gate(plan.script, None, plan.claimed()) == []
    # without the claims, the uncommented conntrack rules in raw's built-in chains are foreign
    assert any("not Kuma's" in v for v in tproxy._gate(plan.script, None, None))
    # removing them again (iptables-save form, as the engine claims them from the host)
    installed = ipt.parse_save("*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n%sCOMMIT\n" % "".join(
        line + "\n" for line in sorted(ipt.uncommented(ruleset)["raw"])))
    removal = ipt.transaction(installed, {}, ipt.uncommented(ruleset))
    assert "-D " in removal and tproxy._gate(removal, None, ipt.uncommented(ruleset)) == []
    assert tproxy._gate(removal, None, None)
