# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kuma.mesh maintainers
# Apache License 2.0 (see LICENSE)
"""The options' types, checked strictly at the module boundary, before AnsibleModule
converts them.

AnsibleModule's own conversions are lenient and, for some inputs, raise:
``type: int`` takes ``" 80 "``, ``"80\\n"``, ``"1e3"``, ``"+80"``, ``80.0`` and
Unicode digits (``"٨٠"``) and raises OverflowError for ``"inf"``; ``type: dict``
with suboptions raises TypeError for a list; its messages do not always name
the option. Every module of the collection builds its AnsibleModule with
``strict_module``, which first checks the raw options against the argument
spec with one grammar per type, and fails with every error naming the option
(its full dotted path, list items as ``name[i]``) and the offending value:

* ``int``: an int (not a bool), or a string of ASCII decimal digits with an
  optional leading ``-`` and no leading zero (what a template renders);
* ``float``: a finite int or float (not a bool), or an ASCII decimal string
  (``2``, ``2.5``); no ``nan``, ``inf``, exponent or space;
* ``bool``: a bool, 0 or 1, or one of Ansible's boolean words (``yes``,
  ``no``, ``true``, ``false``, ``on``, ``off``, ``y``, ``n``, ``t``, ``f``,
  ``1``, ``0``, any case);
* ``str``/``path``: a string, or an int (not a bool), which Ansible turns
  into its decimal text;
* ``list``: a list (a comma-separated string is refused), each element of
  ``elements``' type;
* ``dict``: a dictionary; with ``options``, only those keys, each checked;
* ``raw`` and callables: anything (the module checks them);
* ``choices``: the value (each element, for a list) is one of them, exactly;
* ``required``: present and not null.

``None`` means "not set" and is left to Ansible (defaults). Pure; never raises.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import math
import re

_DECIMAL = re.compile(r"\A-?(0|[1-9][0-9]{0,18})\Z")
_FLOAT = re.compile(r"\A-?(0|[1-9][0-9]{0,18})(\.[0-9]{1,18})?\Z")
BOOLEAN_WORDS = ("yes", "no", "true", "false", "on", "off", "y", "n", "t", "f", "1", "0")
MAX_SHOWN = 200


def show(value, secret=False):
    """``repr`` of a value for an error message: control characters escaped, cut to
    about 200 characters, never raising (huge ints, odd objects); ``secret`` hides it."""
    if secret:
        return "<hidden: no_log option>"
    try:
        text = repr(value)
    except Exception:  # pylint: disable=broad-except  # e.g. an int with more digits than str() allows
        text = "<%s that cannot be shown>" % type(value).__name__
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + "..."


def is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def type_problem(kind, value):
    """Why ``value`` (not None) is not of the argument-spec type ``kind``, or None."""
    if kind in ("str", "path"):
        if isinstance(value, str) or is_int(value):
            return None
        return "is not a string"
    if kind == "int":
        if is_int(value) or (isinstance(value, str) and _DECIMAL.match(value)):
            return None
        return "is not a whole number (digits only, no sign other than '-', no space, no fraction)"
    if kind == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return None if math.isfinite(value) else "is not a finite number"
        if isinstance(value, str) and _FLOAT.match(value):
            return None
        return "is not a number (decimal digits with an optional fraction; no nan, inf or exponent)"
    if kind == "bool":
        if isinstance(value, bool) or (is_int(value) and value in (0, 1)):
            return None
        if isinstance(value, str) and value.lower() in BOOLEAN_WORDS:
            return None
        return "is not a boolean (true/false, yes/no, on/off, 1/0)"
    if kind == "list":
        return None if isinstance(value, list) else "is not a list"
    if kind == "dict":
        return None if isinstance(value, dict) else "is not a dictionary"
    return None  # raw, jsonarg, callables...: the module checks them


def _join(path, key):
    return "%s.%s" % (path, key) if path else key


def _kind(value):
    """bool, int, float or str for a value of (a subclass of) that type, else its type: choices
    compare within a kind (True is not 1), and the controller's templated values are subclasses
    of str and int (ansible-core 2.19 and later tag them)."""
    for kind in (bool, int, float, str):
        if isinstance(value, kind):
            return kind
    return type(value)


def _check_choices(errors, name, value, choices, secret):
    try:
        ok = any(value == c and _kind(value) is _kind(c) for c in choices) or (
            is_int(value) and str(value) in [c for c in choices if isinstance(c, str)])
    except Exception:  # pylint: disable=broad-except
        ok = False
    if not ok:
        errors.append("%s: %s is not one of %s" % (name, show(value, secret), ", ".join(str(c) for c in choices)))


def _check_option(errors, name, value, spec):
    secret = bool(spec.get("no_log"))
    if value is None:
        if spec.get("required"):
            errors.append("%s: is required" % name)
        return
    kind = spec.get("type", "str")
    if callable(kind):
        return
    problem = type_problem(kind, value)
    if problem:
        errors.append("%s: %s %s" % (name, show(value, secret), problem))
        return
    if kind == "list":
        elements = spec.get("elements")
        for index, item in enumerate(value):
            item_name = "%s[%d]" % (name, index)
            if elements is not None and not callable(elements):
                if item is None:
                    errors.append("%s: is null" % item_name)
                    continue
                problem = type_problem(elements, item)
                if problem:
                    errors.append("%s: %s %s" % (item_name, show(item, secret), problem))
                    continue
            if spec.get("choices") is not None:
                _check_choices(errors, item_name, item, spec["choices"], secret)
            if elements == "dict" and spec.get("options"):
                check(spec["options"], item, item_name, errors)
        return
    if spec.get("choices") is not None:
        _check_choices(errors, name, value, spec["choices"], secret)
    if kind == "dict" and spec.get("options"):
        check(spec["options"], value, name, errors)


def check(argument_spec, params, path="", errors=None):
    """Errors of ``params`` (the raw options, as the module receives them) against
    ``argument_spec``; [] when every option has its type. Never raises."""
    errors = [] if errors is None else errors
    try:
        if not isinstance(params, dict):
            errors.append("%s: %s is not a dictionary" % (path or "options", show(params)))
            return errors
        for key in params:
            if not isinstance(key, str) or (not path and key.startswith("_ansible_")):
                continue
            if key not in argument_spec:
                errors.append("%s: %s is not an option (known: %s)" % (
                    path or "options", show(key), ", ".join(sorted(argument_spec))))
        for key, spec in argument_spec.items():
            _check_option(errors, _join(path, key), params.get(key), spec or {})
    except Exception as exc:  # pylint: disable=broad-except  # a bug here must not be a traceback
        errors.append("%s: could not be checked (%s)" % (path or "options", type(exc).__name__))
    return errors


def _permissive(argument_spec, params):
    """A spec that takes any value of every option given (to report errors with)."""
    spec = dict((k, dict(type="raw", no_log=bool((v or {}).get("no_log")))) for k, v in argument_spec.items())
    for key in params if isinstance(params, dict) else ():
        if isinstance(key, str) and not key.startswith("_ansible_") and key not in spec:
            spec[key] = dict(type="raw")
    return spec


def strict_module(module_class, argument_spec, prefix="invalid options: ", **kwargs):
    """``module_class(argument_spec=argument_spec, **kwargs)`` once the raw options
    passed ``check``; otherwise fails (``msg`` = ``prefix`` + the errors joined by
    ``; ``, ``errors`` = the list, ``changed`` false) before the module does anything."""
    from ansible.module_utils import basic  # only on the target, inside a module run

    params = basic._load_params()  # pylint: disable=protected-access  # cached: AnsibleModule reads the same
    # None: no options were loaded (tools such as ansible-test's validate-modules); AnsibleModule decides
    errors = [] if params is None else check(argument_spec, params)
    if not errors:
        return module_class(argument_spec=argument_spec, **kwargs)
    loose = dict((k, v) for k, v in kwargs.items() if k in ("supports_check_mode", "no_log"))
    module = module_class(argument_spec=_permissive(argument_spec, params), **loose)
    module.fail_json(msg=prefix + "; ".join(errors), errors=errors, changed=False)
    return None  # not reached
