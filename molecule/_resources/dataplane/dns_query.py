"""One DNS query over UDP, for the dataplane-* scenarios' checks (standard library only).

  dns_query.py SERVER NAME [PORT] [TIMEOUT]

Asks SERVER (IPv4 or IPv6) for the A records of NAME and prints one line:
"answer: <address> ..." (possibly none), "rcode: <n>" for an error answer, or
"no answer: <reason>" when nothing answered within TIMEOUT seconds (default 2).
Always exits 0: the scenario asserts on the line.
"""

import os
import sys

HERE = os.path.dirname(os.path.realpath(__file__))
# The collection's own DNS probe (kuma_tproxy_check's): beside this file on a
# test host (prepare.yml copies both), in the checkout when run from there.
for _candidate in (HERE, os.path.join(HERE, "..", "..", "..", "plugins", "module_utils")):
    if os.path.isfile(os.path.join(_candidate, "tproxy_check.py")):
        sys.path.insert(0, _candidate)
        break
import tproxy_check  # noqa: E402  pylint: disable=wrong-import-position


def main(argv):
    server, name = argv[1], argv[2]
    port = int(argv[3]) if len(argv) > 3 else 53
    timeout = float(argv[4]) if len(argv) > 4 else 2.0
    family = "ipv6" if ":" in server else "ipv4"
    reply = tproxy_check.dns_probe(family, server, name, timeout, port)()
    if not reply["answered"]:
        print("no answer: %s" % reply["error"])
    elif reply["rcode"]:
        print("rcode: %d" % reply["rcode"])
    else:
        print("answer: " + " ".join(reply["addresses"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
