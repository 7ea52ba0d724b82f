"""tproxy_runner: the one way kuma_tproxy's engine starts a process, on the real
AnsibleModule.run_command of the ansible-core under test (called on a stand-in
for the module object: only the attributes run_command reads)."""

import functools
import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kuma.mesh.plugins.module_utils import tproxy_runner
from ansible_collections.kuma.mesh.plugins.module_utils.tproxy_runner import Runner


class ModuleStandIn(object):
    """What AnsibleModule.run_command reads of its module; fail_json must never be reached."""

    _shell = None
    _debug = False
    run_command_environ_update = {}
    no_log_values = set()

    def fail_json(self, **kwargs):
        raise AssertionError("fail_json(%r)" % (kwargs,))

    def log(self, msg):
        pass

    def _clean_args(self, args):
        return " ".join(a.decode() if isinstance(a, bytes) else a for a in args)


def runner(log=None):
    return Runner(functools.partial(AnsibleModule.run_command, ModuleStandIn()), log)


SH = "/bin/sh"


def test_bytes_round_trip_exactly_both_ways():
    raw = b"-A OUTPUT -m comment --comment \"\xff\xfe\" -j RETURN\n\xc3\xa9 \x1c\x85\n"
    text = raw.decode("utf-8", "surrogateescape")
    rc, out, err = runner()([SH, "-c", "cat \"$1\"; printf '\\377' >&2", "sh"], data=text)
    assert rc == 0
    assert out == text and tproxy_runner.encode(out) == raw  # no newline added, nothing replaced
    assert tproxy_runner.encode(err) == b"\xff"


def test_every_command_is_logged_before_it_starts():
    log = []
    run = runner(log)
    run([SH, "-c", "exit 3"])
    rc, _out, err = run(["/nonexistent/iptables-nft-save"])
    assert log == [SH + " -c exit 3", "/nonexistent/iptables-nft-save"]
    assert rc == 127 and err.startswith("/nonexistent/iptables-nft-save: ")  # an OSError, not a fail_json


def test_a_failure_is_an_exit_code_never_fail_json():
    rc, out, err = runner()([SH, "-c", "echo out; echo err >&2; exit 4"])
    assert (rc, out, err) == (4, "out\n", "err\n")


def test_c_locale_and_nothing_expanded():
    rc, out, _err = runner()([SH, "-c", 'echo "$LC_ALL" "$1"', "sh", "$HOME ~"])
    assert rc == 0 and out == "C $HOME ~\n"


def test_input_is_a_private_file_named_last_removed_after():
    log = []
    rc, out, _err = runner(log)([SH, "-c", 'stat -c %a "$1"; cat "$1"; echo "$1" >&2', "sh"], data="")
    assert rc == 0 and out == "600\n" and log == [SH + " -c " + 'stat -c %a "$1"; cat "$1"; echo "$1" >&2' + " sh"]
    rc, _out, err = runner()([SH, "-c", 'echo "$1" >&2', "sh"], data="x")
    assert not os.path.exists(err.strip())


def test_a_tool_that_exits_before_reading_keeps_its_exit_code_and_message():
    """On stdin this was a race: the write hit EPIPE and the tool's own words were lost."""
    for _attempt in range(20):
        rc, _out, err = runner()([SH, "-c", "echo 'Another app is currently holding the xtables lock' >&2; exit 4",
                                  "sh"], data="*nat\nCOMMIT\n" * 20000)
        assert (rc, err) == (4, "Another app is currently holding the xtables lock\n")


def test_only_the_descriptors_asked_for_are_inherited():
    fd = os.open(os.devnull, os.O_RDONLY)
    try:
        check = [SH, "-c", "[ -e /proc/self/fd/%d ] && echo yes || echo no" % fd]
        assert runner()(check, pass_fds=(fd,))[1] == "yes\n"
        assert runner()(check)[1] == "no\n"
    finally:
        os.close(fd)
