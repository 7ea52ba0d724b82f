#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kuma.mesh maintainers
# Apache License 2.0 (see LICENSE)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: kuma_dp_ready
short_description: Waits on the host until kuma-dp's readiness endpoint answers READY
version_added: "0.1.0"
description:
  - Asks kuma-dp's readiness endpoint (C(http://127.0.0.1:9902/ready) by default in Kuma) on the host itself,
    every O(interval) seconds, until it answers C(200 READY) or O(timeout) seconds have passed.
  - One remote call for the whole wait, where M(ansible.builtin.uri) with C(until) costs one per attempt, and
    kuma-dp is seen ready within O(interval) of becoming ready instead of within a whole retry delay. The
    C(kuma.mesh.dataplane) role uses it after starting or restarting kuma-dp.
  - It changes nothing - O(ignore:changed) is always false.
notes:
  - "Every option is checked against its type before anything else, and refused naming the option's full
    path and the value: a whole number is an int or a string of ASCII digits with an optional leading C(-)
    (not C(' 80 '), C(80.0), C(1e3) or non-ASCII digits); a number is finite (no C(nan), C(inf) or
    exponent); a boolean is one of Ansible's boolean words."
author:
  - kuma.mesh maintainers (@kuma-mesh)
attributes:
  check_mode:
    support: full
    description: The module only reads; it waits in check mode too.
  diff_mode:
    support: none
    description: Nothing changes, so there is nothing to show.
  platform:
    platforms: posix
    support: full
    description: Any host with Python 3; the endpoint is asked from the host.
options:
  url:
    description:
      - The readiness endpoint, C(http://HOST:PORT/PATH) - HOST a name, an IPv4 address or a bracketed IPv6
        address. Nothing else is taken (no user, query or fragment).
    type: str
    required: true
  timeout:
    description:
      - Seconds to wait, from 0 to 3600. At least one request is made; with V(0) exactly one.
    type: float
    default: 120
  interval:
    description:
      - Seconds between two requests, from 0.05 to 60.
    type: float
    default: 0.2
  request_timeout:
    description:
      - Seconds one request may take, from 0.05 to 60 (never past O(timeout)).
    type: float
    default: 2
"""

EXAMPLES = r"""
- name: Wait up to two minutes for kuma-dp to report ready
  kuma.mesh.kuma_dp_ready:
    url: http://127.0.0.1:9902/ready
    timeout: 120
  register: kuma_dp_ready

- name: Ask once, without failing the play when it is not ready
  kuma.mesh.kuma_dp_ready:
    url: http://[::1]:9902/ready
    timeout: 0
  register: kuma_dp_ready_now
  failed_when: false
"""

RETURN = r"""
ready:
  description: Whether the endpoint answered C(200) with the body C(READY).
  returned: always
  type: bool
  sample: true
status:
  description: HTTP status of the last answer; absent when no answer came (refused, timed out).
  returned: when an answer came
  type: int
  sample: 200
content:
  description: Body of the last answer (at most 4096 bytes).
  returned: always
  type: str
  sample: READY
last_answer:
  description: The last answer in words - C(200 READY), C(503 NOT READY), or C(no answer) and why.
  returned: always
  type: str
  sample: "no answer (ConnectionRefusedError: [Errno 111] Connection refused)"
attempts:
  description: Requests made.
  returned: always
  type: int
  sample: 3
elapsed:
  description: Seconds the wait took.
  returned: always
  type: float
  sample: 1.4
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kuma.mesh.plugins.module_utils.kuma_dp_ready import (
    MAX_TIMEOUT, ReadyInputError, check_number, describe, parse_url, wait_ready,
)
from ansible_collections.kuma.mesh.plugins.module_utils.strict_args import strict_module

ARGUMENT_SPEC = dict(
    url=dict(type="str", required=True),
    timeout=dict(type="float", default=120),
    interval=dict(type="float", default=0.2),
    request_timeout=dict(type="float", default=2),
)


def main():
    module = strict_module(AnsibleModule, ARGUMENT_SPEC, supports_check_mode=True)
    try:
        endpoint = parse_url(module.params["url"])
        timeout = check_number("timeout", module.params["timeout"], 0, MAX_TIMEOUT)
        interval = check_number("interval", module.params["interval"], 0.05, 60)
        request_timeout = check_number("request_timeout", module.params["request_timeout"], 0.05, 60)
    except ReadyInputError as exc:
        module.fail_json(msg=str(exc), changed=False)
    outcome = wait_ready(endpoint, timeout, interval, request_timeout)
    result = dict(changed=False, ready=outcome.ready, content=outcome.last.content, attempts=outcome.attempts,
                  elapsed=round(outcome.elapsed, 3), last_answer=describe(outcome.last))
    if outcome.last.status is not None:
        result["status"] = outcome.last.status
    if not outcome.ready:
        module.fail_json(msg="%s did not answer READY within %g s (%d requests; last: %s)"
                         % (module.params["url"], timeout, outcome.attempts, result["last_answer"]), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
