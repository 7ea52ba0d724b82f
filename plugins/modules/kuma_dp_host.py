#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kuma.mesh maintainers
# Apache License 2.0 (see LICENSE)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: kuma_dp_host
short_description: The host side of a kuma-dp host (user, files, binaries, unit) compared and converged in one call
version_added: "0.1.0"
description:
  - Reads in one pass what the P(kuma.mesh.dataplane#role) role manages on a host - the kuma-dp system
    user and group, the configuration directory with the dataplane token, the CA certificate, the
    C(EnvironmentFile) and kuma-dp's transparent-proxy configuration, the installed release and its
    binaries, the stable link, the systemd unit and whether it is enabled - compares it with what is
    asked and changes only what differs.
  - The account is never taken over - an existing O(user) that is not the system account the module
    would have created (uid O(uid), shell C(/usr/sbin/nologin), home C(/nonexistent), primary group
    O(group) of gid O(gid), no other groups) is refused unless O(adopt_user) is set, and then used as
    it is. Uid 0 is always refused.
  - Binaries are taken from the release archive O(archive_path) (sent by the action plugin only when
    the version is not installed yet), only as regular files; a symbolic link, hard link or device
    member is refused with its name.
  - Refuses, when O(refuse_local_cp) is set, to run on a host where a C(kuma-cp) process runs.
  - O(state=absent) takes kuma-dp off the host in the same single call - stops and disables the unit,
    removes it (and reloads systemd), the configuration directory, every version directory the module
    installed (those with its marker), the stable link, the install directory when nothing else is in it,
    and with O(remove_user) the account and its group, only when they are the system account the module
    creates (another account is refused, with its uid, home and shell). A second run finds nothing and
    reports no change.
  - Used by the P(kuma.mesh.dataplane#role) role; the options mirror its variables.
author:
  - kuma.mesh maintainers (@kuma-mesh)
options:
  state:
    description: V(present) converges the host side of kuma-dp; V(absent) takes it off the host.
    type: str
    choices: [present, absent]
    default: present
  remove_user:
    description: With O(state=absent), also remove the kuma-dp account and its group (only the system account the module creates).
    type: bool
    default: false
  user:
    description:
      - The system user kuma-dp runs as (C(kuma_dp_user)) - lower-case letters, digits and C(_.-), starting with
        a letter or C(_), at most 31 characters and an optional trailing C($); V(root) is refused.
    type: str
    required: true
  group:
    description: Its primary group (C(kuma_dp_group)), a name of the same grammar as O(user).
    type: str
    required: true
  uid:
    description: Uid of a new O(user), 1-2147483646 (0 is refused).
    type: int
    required: true
  gid:
    description: Gid of a new O(group), 1-2147483646 (0 is refused).
    type: int
    required: true
  adopt_user:
    description: Use an existing O(user) that is not the account the module creates, as it is (never changed).
    type: bool
    default: false
  app_users:
    description:
      - Names or uids of the applications' users; refused when one is O(user).
      - Each is a user name of the grammar of O(user), or a uid (an int or ASCII digits, 0-4294967294).
    type: list
    elements: raw
    default: []
  config_dir:
    description:
      - Directory of the token, the CA certificate, the environment file and the Dataplane file.
      - An absolute path of printable ASCII letters, digits and C(_./+@%=,~-), without a C(..) component.
    type: path
    required: true
  token:
    description: The dataplane token; unset or null removes C(<config_dir>/token).
    type: str
  ca_cert:
    description: The control plane's CA certificate; unset or null removes C(<config_dir>/ca.crt).
    type: str
  environment:
    description:
      - Variables of kuma-dp's C(EnvironmentFile) C(<config_dir>/kuma-dp.env) (root, 0600). Names
        C([A-Za-z_][A-Za-z0-9_]*), values without control characters. Empty removes the file.
    type: dict
    default: {}
  tproxy_config:
    description:
      - kuma-dp's transparent-proxy configuration (C(--transparent-proxy-config)), written as
        C(<config_dir>/transparent-proxy.yaml). Unset removes the file.
    type: dict
  unit_name:
    description: Name of the systemd unit - letters, digits and C(:_.@-), ending in C(.service).
    type: str
    default: kuma-dp.service
  unit_path:
    description:
      - Path of the unit file, an absolute path of printable ASCII letters, digits and C(_./+@%=,~-), without a C(..) component.
      - Its file name must be O(unit_name) (systemd names a unit after its file).
    type: path
    default: /etc/systemd/system/kuma-dp.service
  unit_content:
    description: The unit file's text; unset leaves the unit alone.
    type: str
  install_dir:
    description:
      - Directory of the installed versions and the C(current) link.
      - An absolute path of printable ASCII letters, digits and C(_./+@%=,~-), without a C(..) component.
    type: path
    required: true
  version:
    description:
      - The Kuma release to install and point C(current) at, C(X.Y.Z) with an optional C(-suffix) (no leading
        C(v)). Required with O(state=present).
    type: str
  binaries:
    description: The binaries of the release to install from C(<archive_top>/bin/). Required with O(state=present).
    type: list
    elements: str
    default: []
  archive_top:
    description:
      - Top directory of the archive's members, a file name of letters, digits and C(_.+-) (not V(.) or V(..)).
        Required with O(state=present).
    type: str
  archive_sha256:
    description: The archive's sha256, 64 lower-case hex digits; the archive is refused when it differs.
    type: str
    default: ""
  archive_path:
    description: The release archive on the host (set by the action plugin from O(archive_src)).
    type: path
  archive_src:
    description: The release archive on the controller, sent to the host only when the version is not installed.
    type: path
  archive:
    description:
      - Where the release archive comes from, handled on the controller by the action plugin (the role passes it).
      - The sha256 the archive must have is worked out first, on every run - O(archive.checksum), or the
        archive's line in its checksum file (downloaded once into the cache as C(<path>.sha256), or read beside
        a local archive) - and passed as O(archive_sha256).
      - Only when the host does not have the release yet is the archive fetched into the cache (or the local
        archive taken) and verified, in check mode too, then sent to the host. A cached archive whose sha256
        differs is downloaded again; a download that does not verify is not kept; a local archive that does
        not verify is refused.
      - Downloads into one cache are serialized by a lock on C(<path>.lock), so the forks of a run, runs with
        the free strategy and concurrent playbooks download an archive once.
      - Sets O(archive_src) to O(archive.path).
    type: dict
    suboptions:
      name:
        description: The archive's file name, as its checksum file names it.
        type: str
        required: true
      path:
        description: The archive on the controller - the cached download or the local archive.
        type: path
        required: true
      url:
        description: Where to download it from (not needed when O(archive.local)).
        type: str
      checksum_url:
        description: Where to download its checksum file from; default O(archive.url) with C(.sha256) added.
        type: str
      checksum:
        description: Its sha256 (64 hex digits, optionally after C(sha256:)); the checksum file is then not used.
        type: str
      local:
        description: O(archive.path) is a local archive of an air-gapped site; nothing is downloaded.
        type: bool
        default: false
      timeout:
        description: Timeout of each download, in seconds.
        type: int
        default: 60
  readiness_url:
    description:
      - kuma-dp's readiness endpoint, asked when the unit is active and nothing is to restart; empty - not asked.
      - C(http://HOST:PORT/PATH) as M(kuma.mesh.kuma_dp_ready) takes it, nothing else.
    type: str
    default: ""
  refuse_local_cp:
    description: Refuse when a C(kuma-cp) process runs on the host.
    type: bool
    default: true
  after_firewalld:
    description:
      - Add C(firewalld.service) to the unit's C(After=) line - V(yes), V(no), or V(auto) when the host has
        firewalld enabled (read in the same C(systemctl show) as the unit's state).
    type: str
    choices: ["auto", "yes", "no"]
    default: "no"
notes:
  - "Every option is checked against its type before anything else, and refused naming the option's full
    path and the value: a whole number is an int or a string of ASCII digits with an optional leading C(-)
    (not C(' 80 '), C(80.0), C(1e3) or non-ASCII digits); a list is a list (a comma-separated string is
    refused); a dictionary is a dictionary; a boolean is one of Ansible's boolean words."
attributes:
  check_mode:
    support: full
    description: Reads the host and reports what would change (RV(changes)); nothing is written or started.
  diff_mode:
    support: full
    description: Shows the unit, the transparent-proxy configuration, the link and what would be created; secrets only as present or absent.
  platform:
    support: full
    platforms: posix
    description: Linux hosts with systemd.
"""

EXAMPLES = r"""
- name: Converge the host side of kuma-dp
  kuma.mesh.kuma_dp_host:
    user: kuma-dp
    group: kuma-dp
    uid: 5678
    gid: 5678
    config_dir: /etc/kuma-dp
    token: "{{ lookup('ansible.builtin.file', 'token') }}"
    environment:
      KUMA_DATAPLANE_RUNTIME_RESOURCES_MAX_HEAP_SIZE: "268435456"
    unit_content: "{{ lookup('ansible.builtin.template', 'kuma-dp.service.j2') }}"
    install_dir: /opt/kuma
    version: 2.14.3
    binaries: [kuma-dp, envoy, coredns]
    archive_top: kuma-2.14.3
    archive_src: /var/cache/kuma/kuma-2.14.3-linux-amd64.tar.gz
  register: host

- name: The same, the archive downloaded on the controller only when the host needs it
  kuma.mesh.kuma_dp_host:
    user: kuma-dp
    group: kuma-dp
    uid: 5678
    gid: 5678
    config_dir: /etc/kuma-dp
    install_dir: /opt/kuma
    version: 2.14.3
    binaries: [kuma-dp, envoy, coredns]
    archive_top: kuma-2.14.3
    archive:
      name: kuma-2.14.3-linux-amd64.tar.gz
      url: https://packages.konghq.com/public/kuma-binaries-release/raw/names/kuma-linux-amd64/versions/2.14.3/kuma-2.14.3-linux-amd64.tar.gz
      path: ~/.cache/kuma-mesh/kuma-2.14.3-linux-amd64.tar.gz

- name: Take kuma-dp off the host, its account included
  kuma.mesh.kuma_dp_host:
    state: absent
    remove_user: true
    user: kuma-dp
    group: kuma-dp
    uid: 5678
    gid: 5678
    config_dir: /etc/kuma-dp
    install_dir: /opt/kuma
"""

RETURN = r"""
changes:
  description: What differed (in check mode, what would change), as labels of the role's kuma_dp_changes.
  returned: always
  type: list
  elements: str
  sample: [unit, credentials]
restart:
  description: Whether something kuma-dp reads changed, so that it must be restarted.
  returned: always
  type: bool
archive_needed:
  description: The version is not installed and no archive was given (the action plugin then sends it).
  returned: always
  type: bool
check_mode:
  description: Whether the task ran in check mode (C(--check), or C(check_mode) on the task, block, role or play).
  returned: always
  type: bool
active:
  description: Whether the unit was active before this call.
  returned: always
  type: bool
unit_exists:
  description: Whether the unit file existed before this call.
  returned: always
  type: bool
ready:
  description: Whether kuma-dp answered READY on O(readiness_url) (asked only when active and nothing restarts).
  returned: always
  type: bool
config_dir_exists:
  description: Whether O(config_dir) existed before this call.
  returned: always
  type: bool
old_versions:
  description: Directories of other versions the role installed.
  returned: always
  type: list
  elements: str
uid:
  description: Uid of the kuma-dp user (planned for a new one).
  returned: always
  type: int
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kuma.mesh.plugins.module_utils.strict_args import strict_module

from ansible_collections.kuma.mesh.plugins.module_utils.kuma_dp_host import (
    HostError, Spec, apply, gather, plan, plan_absent, probe_ready, validate,
)


def main():
    module = strict_module(
        AnsibleModule,
        dict(
            user=dict(type="str", required=True),
            group=dict(type="str", required=True),
            uid=dict(type="int", required=True),
            gid=dict(type="int", required=True),
            adopt_user=dict(type="bool", default=False),
            app_users=dict(type="list", elements="raw", default=[]),
            config_dir=dict(type="path", required=True),
            token=dict(type="str", no_log=True),
            ca_cert=dict(type="str", no_log=True),
            environment=dict(type="dict", default={}),
            tproxy_config=dict(type="dict"),
            unit_name=dict(type="str", default="kuma-dp.service"),
            unit_path=dict(type="path", default="/etc/systemd/system/kuma-dp.service"),
            unit_content=dict(type="str"),
            install_dir=dict(type="path", required=True),
            version=dict(type="str"),
            binaries=dict(type="list", elements="str", default=[]),
            archive_top=dict(type="str"),
            archive_sha256=dict(type="str", default=""),
            archive_path=dict(type="path"),
            archive_src=dict(type="path"),
            archive=dict(type="dict", options=dict(
                name=dict(type="str", required=True),
                path=dict(type="path", required=True),
                url=dict(type="str"),
                checksum_url=dict(type="str"),
                checksum=dict(type="str", no_log=False),
                local=dict(type="bool", default=False),
                timeout=dict(type="int", default=60),
            )),
            readiness_url=dict(type="str", default=""),
            refuse_local_cp=dict(type="bool", default=True),
            after_firewalld=dict(type="str", choices=["auto", "yes", "no"], default="no"),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            remove_user=dict(type="bool", default=False),
        ),
        required_if=[("state", "present", ("version", "binaries", "archive_top"))],
        supports_check_mode=True,
        prefix="",
    )
    params = dict((field, module.params[field]) for field in Spec._fields)
    spec = Spec(**params)
    errors = validate(spec)
    if errors:
        module.fail_json(msg="; ".join(errors), errors=errors, changed=False)

    def run_command(argv):
        # a missing command is a failed step (HostError names it), not Ansible's own exit mid-run
        try:
            return module.run_command(argv, expand_user_and_vars=False, handle_exceptions=False)
        except OSError as exc:
            return 127, "", str(exc)

    if spec.state == "absent":
        spec = spec._replace(refuse_local_cp=False)
    try:
        host = gather(spec, run_command)
        the_plan = plan(spec, host) if spec.state == "present" else plan_absent(spec, host)
    except HostError as e:
        module.fail_json(msg="; ".join(e.args[0]), errors=e.args[0])
    except (IOError, OSError) as e:
        module.fail_json(msg="reading the host's state failed: %s" % e)

    active = host.unit_active in ("active", "activating", "reloading")
    result = dict(
        changed=bool(the_plan.steps), changes=the_plan.changes, restart=the_plan.restart,
        archive_needed=the_plan.archive_needed, active=active, unit_exists=host.files["unit"].exists,
        old_versions=list(host.old_versions), config_dir_exists=host.files["config_dir"].exists,
        uid=host.account.uid if host.account else spec.uid, ready=False,
    )
    if module._diff:
        result["diff"] = the_plan.diffs
    if spec.state == "absent":
        if not module.check_mode:
            try:
                apply(spec, the_plan, run_command)
            except HostError as e:
                module.fail_json(msg="; ".join(e.args[0]), errors=e.args[0], changes=the_plan.changes)
            except (IOError, OSError, EnvironmentError) as e:
                module.fail_json(msg="removing kuma-dp failed: %s" % e, changes=the_plan.changes)
        module.exit_json(**result)
    if the_plan.archive_needed or module.check_mode:
        # without the archive nothing is changed: the action plugin sends it and calls again
        result["ready"] = active and not the_plan.steps and probe_ready(spec.readiness_url)
        module.exit_json(**result)
    try:
        apply(spec, the_plan, run_command)
    except HostError as e:
        module.fail_json(msg="; ".join(e.args[0]), errors=e.args[0], changes=the_plan.changes)
    except (IOError, OSError, EnvironmentError) as e:
        module.fail_json(msg="changing the host failed: %s" % e, changes=the_plan.changes)
    result["ready"] = active and not the_plan.restart and probe_ready(spec.readiness_url)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
