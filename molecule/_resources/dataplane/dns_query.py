"""One DNS query over UDP, for the dataplane-* scenarios' checks (standard library only).

  dns_query.py SERVER NAME [PORT] [TIMEOUT]

Asks SERVER (IPv4 or IPv6) for the A records of NAME and prints one line:
"answer: <address> ..." (possibly none), "rcode: <n>" for an error answer, or
"no answer: <reason>" when nothing answered within TIMEOUT seconds (default 2).
Always exits 0: the scenario asserts on the line.
"""

import random
import socket
import struct
import sys


def query(name, qid):
    labels = b"".join(struct.pack("!B", len(part)) + part.encode("ascii") for part in name.rstrip(".").split("."))
    return struct.pack("!6H", qid, 0x0100, 1, 0, 0, 0) + labels + b"\x00" + struct.pack("!2H", 1, 1)


def skip_name(data, i):
    while True:
        length = data[i]
        if length & 0xC0 == 0xC0:
            return i + 2
        if length == 0:
            return i + 1
        i += length + 1


def parse(data, qid):
    rid, flags, qdcount, ancount = struct.unpack("!4H", data[:8])
    if rid != qid or not flags & 0x8000:
        return None
    if flags & 0xF:
        return "rcode: %d" % (flags & 0xF)
    i = 12
    for dummy in range(qdcount):
        i = skip_name(data, i) + 4
    addresses = []
    for dummy in range(ancount):
        i = skip_name(data, i)
        rtype, _rclass, _ttl, length = struct.unpack("!2HIH", data[i:i + 10])
        i += 10
        if rtype == 1 and length == 4:
            addresses.append(socket.inet_ntoa(data[i:i + 4]))
        i += length
    return "answer: " + " ".join(addresses)


def main(argv):
    server, name = argv[1], argv[2]
    port = int(argv[3]) if len(argv) > 3 else 53
    timeout = float(argv[4]) if len(argv) > 4 else 2.0
    qid = random.randint(1, 0xFFFF)
    s = socket.socket(socket.AF_INET6 if ":" in server else socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(query(name, qid), (server, port))
        while True:
            line = parse(s.recv(4096), qid)
            if line is not None:
                print(line)
                return 0
    except (OSError, socket.timeout) as e:
        print("no answer: %s" % (e if str(e) else type(e).__name__))
        return 0
    finally:
        s.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
