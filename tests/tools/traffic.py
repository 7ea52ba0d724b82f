"""Real traffic for the tests: listeners and a client, standard library only.

  traffic.py origdst 4|6 PORT tcp|udp   a proxy stand-in: answers each TCP
                                        connection with "proxy:PORT orig=DST"
                                        (SO_ORIGINAL_DST), or echoes UDP as
                                        "dns-proxy:<data>" (bound to loopback:
                                        REDIRECTed UDP replies must come from there)
  traffic.py serve 4|6 PORT NAME        a service: answers "NAME:PORT"
  traffic.py connect ADDRESS PORT [tcp|udp]
                                        prints what the far end answered

Listeners print "ready" once bound. Runs with /usr/bin/python3 as any user
(the kuma-dp uid cannot run pyenv's shims), on test hosts and in namespaces.
"""

import socket
import struct
import sys

SOL_IPV6 = 41  # not exported by every Python's socket module
SO_ORIGINAL_DST = 80  # also IP6T_SO_ORIGINAL_DST


def original_destination(conn, family):
    if family == socket.AF_INET6:
        raw = conn.getsockopt(SOL_IPV6, SO_ORIGINAL_DST, 28)
        return "[%s]:%d" % (socket.inet_ntop(socket.AF_INET6, raw[8:24]), struct.unpack("!H", raw[2:4])[0])
    raw = conn.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    return "%s:%d" % (socket.inet_ntoa(raw[4:8]), struct.unpack("!H", raw[2:4])[0])


def listen(family, port, kind=socket.SOCK_STREAM, host=None):
    s = socket.socket(family, kind)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if host is None:
        host = "::" if family == socket.AF_INET6 else "0.0.0.0"
    s.bind((host, port))
    if kind == socket.SOCK_STREAM:
        s.listen(64)
    print("ready", flush=True)
    return s


def origdst(family, port, proto):
    if proto == "udp":
        s = listen(family, port, socket.SOCK_DGRAM, "::1" if family == socket.AF_INET6 else "127.0.0.1")
        while True:
            data, peer = s.recvfrom(512)
            s.sendto(b"dns-proxy:" + data, peer)
    s = listen(family, port)
    while True:
        conn, _peer = s.accept()
        try:
            dst = original_destination(conn, family)
        except OSError:
            dst = "not-redirected"
        conn.sendall(("proxy:%d orig=%s" % (port, dst)).encode())
        conn.close()


def serve(family, port, name):
    s = listen(family, port)
    while True:
        conn, _peer = s.accept()
        conn.sendall(("%s:%d" % (name, port)).encode())
        conn.close()


def connect(address, port, proto):
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    if proto == "udp":
        s = socket.socket(family, socket.SOCK_DGRAM)
        s.settimeout(3)
        s.sendto(b"query", (address, port))
        print(s.recvfrom(512)[0].decode())
        return
    s = socket.create_connection((address, port), timeout=3)
    print(s.recv(512).decode())


def main(argv):
    command = argv[1]
    if command == "connect":
        connect(argv[2], int(argv[3]), argv[4] if len(argv) > 4 else "tcp")
        return
    family = socket.AF_INET6 if argv[2] == "6" else socket.AF_INET
    if command == "origdst":
        origdst(family, int(argv[3]), argv[4])
    elif command == "serve":
        serve(family, int(argv[3]), argv[4])
    else:
        raise SystemExit("unknown command %r" % command)


if __name__ == "__main__":
    main(sys.argv)
