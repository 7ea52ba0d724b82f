# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kuma.mesh maintainers
# Apache License 2.0 (see LICENSE)
"""kuma_dp_ready's logic: ask kuma-dp's readiness endpoint on the host until it
answers READY, polling locally, so a start costs one remote call instead of
one per attempt. Standard library only (runs on the target)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import math
import re
import time

from http.client import HTTPConnection

# Answer of one request: HTTP status (None when none came), the body's start, and why it failed.
Answer = collections.namedtuple("Answer", ["status", "content", "error"])
# The whole wait: ready or not, the last answer, how many requests, how long.
Outcome = collections.namedtuple("Outcome", ["ready", "last", "attempts", "elapsed"])
# What to ask: host, port and path of an http:// URL.
Endpoint = collections.namedtuple("Endpoint", ["host", "port", "path"])

READY = "READY"
# http://host:port/path, host a name, an IPv4 address or a bracketed IPv6 address; nothing else
# (no user info, query, fragment or whitespace; \Z, since $ would let a trailing newline through): the role
# builds it from kuma_dp_readiness_port.
_URL = re.compile(r"\Ahttp://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})(/[A-Za-z0-9._~/-]*)?\Z")
MAX_TIMEOUT = 3600


class ReadyInputError(Exception):
    """A parameter is not what the module takes; the message names it and the value."""


def parse_url(url, option="url"):
    """The Endpoint of an http://host:port/path URL, or ReadyInputError naming the option and the value."""
    match = _URL.match(url) if isinstance(url, str) else None
    port = int(match.group(2)) if match else 0
    if not match or not 0 < port < 65536:
        raise ReadyInputError("%s: %r is not an http://host:port/path URL with a port in 1-65535" % (option, url))
    return Endpoint(match.group(1).strip("[]"), port, match.group(3) or "/")


def check_number(name, value, low, high):
    """value as a float within [low, high], or ReadyInputError naming the option and the value."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or not low <= value <= high:
        raise ReadyInputError("%s: %r is not a number of seconds from %s to %s" % (name, value, low, high))
    return float(value)


def ask(endpoint, timeout):
    """One GET of the readiness endpoint; never raises."""
    try:
        connection = HTTPConnection(endpoint.host, endpoint.port, timeout=timeout)
        try:
            connection.request("GET", endpoint.path)
            response = connection.getresponse()
            return Answer(response.status, response.read(4096).decode("utf-8", "replace"), None)
        finally:
            connection.close()
    except Exception as exc:  # noqa: BLE001 - any failure is an answer: not ready yet
        return Answer(None, "", "%s: %s" % (exc.__class__.__name__, exc))


def is_ready(answer):
    return answer.status == 200 and answer.content.strip() == READY


def wait_ready(endpoint, timeout, interval, request_timeout=2.0, probe=ask, clock=time.monotonic, sleep=time.sleep):
    """Ask until READY or until `timeout` seconds have passed (at least one request); an Outcome."""
    start = clock()
    deadline = start + timeout
    attempts = 0
    while True:
        attempts += 1
        answer = probe(endpoint, max(0.05, min(request_timeout, deadline - clock())))
        if is_ready(answer):
            return Outcome(True, answer, attempts, clock() - start)
        left = deadline - clock()
        if left <= 0:
            return Outcome(False, answer, attempts, clock() - start)
        sleep(min(interval, left))


def describe(answer):
    """The last answer, for the failure message."""
    if answer.status is None:
        return "no answer (%s)" % answer.error
    return "%d %s" % (answer.status, answer.content.strip()[:200] or "(empty body)")
