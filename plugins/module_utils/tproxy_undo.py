# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kuma.mesh maintainers
# Apache License 2.0 (see LICENSE)
"""The one undo stack of a kuma_tproxy run.

Every step that writes to the host pushes how to put it back *before* it
writes (a step that fails half-way is undone too). On failure the stack is
unwound newest first; each entry says what it restored, so the error message
can say exactly what is back and what is not.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class TproxyFailure(Exception):
    """Raised anywhere in a run; ``fields`` go into the result."""

    def __init__(self, msg, **fields):
        Exception.__init__(self, msg)
        self.msg = msg
        self.fields = fields


class UndoStack(object):
    def __init__(self):
        self._steps = []  # [(what, callable)]

    def push(self, what, undo):
        self._steps.append((what, undo))

    def __len__(self):
        return len(self._steps)

    def unwind(self):
        """Undo everything, newest first: ([restored], [(what, error)])."""
        restored, failed = [], []
        while self._steps:
            what, undo = self._steps.pop()
            try:
                undo()
                restored.append(what)
            except Exception as exc:  # pylint: disable=broad-except  # every undo is attempted
                failed.append((what, str(exc) or exc.__class__.__name__))
        return restored, failed

    def discard(self):
        self._steps = []


def outcome_text(restored, failed):
    parts = []
    if restored:
        parts.append("restored: " + "; ".join(restored))
    if failed:
        parts.append("NOT restored: " + "; ".join("%s (%s)" % f for f in failed))
    return ". ".join(parts) if parts else "nothing had been written"
