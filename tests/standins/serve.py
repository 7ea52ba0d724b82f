"""Serve a directory over HTTP on loopback (tests only), e.g. stand-in Kuma archives.

Command line:
    python3 serve.py DIR [--host 127.0.0.1] [--port 0] [--port-file F] [--pid-file F] [--background]
Port 0 picks a free port. Prints the base URL (http://127.0.0.1:PORT/) on a
line of its own once it is listening. --background forks, detaches, prints
the URL and returns, which suits a Molecule prepare step; stop it with
`kill $(cat PIDFILE)`. Only loopback addresses are accepted.

From pytest:
    from serve import serve_directory
    with serve_directory(path) as server:
        urllib.request.urlopen(server.url + "kuma-2.14.3-linux-amd64.tar.gz")
        server.requests   # [(method, path, status), ...]

Standard library only; runs with /usr/bin/python3 (Debian 12 and 13).
"""

import argparse
import functools
import ipaddress
import os
import signal
import socket
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer


def check_loopback(host):
    if host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise ValueError("serve.py binds loopback addresses only, got %r" % host)


class DirectoryServer(object):
    """A ThreadingHTTPServer for one directory, run in a background thread."""

    def __init__(self, directory, host="127.0.0.1", port=0, quiet=True):
        check_loopback(host)
        self.directory = os.path.abspath(directory)
        if not os.path.isdir(self.directory):
            raise ValueError("not a directory: %s" % directory)
        self.requests = []
        owner = self

        class Handler(SimpleHTTPRequestHandler):
            def log_request(self, code="-", size="-"):
                owner.requests.append((self.command, self.path, int(code) if str(code).isdigit() else code))
                if not quiet:
                    SimpleHTTPRequestHandler.log_request(self, code, size)

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        server_cls = type("Server", (ThreadingHTTPServer,), {"address_family": family, "daemon_threads": True})
        self.httpd = server_cls((host, port), functools.partial(Handler, directory=self.directory))
        self.host = host
        self.port = self.httpd.server_address[1]
        self.thread = None

    @property
    def url(self):
        host = "[%s]" % self.host if ":" in self.host else self.host
        return "http://%s:%d/" % (host, self.port)

    def start(self):
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        if self.thread is not None:
            self.thread.join(5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False


def serve_directory(directory, host="127.0.0.1", port=0, quiet=True):
    """Context manager: `with serve_directory(d) as s: s.url`."""
    return DirectoryServer(directory, host, port, quiet)


def write_file(path, text):
    if path:
        with open(path, "w") as f:
            f.write(text)


def main(argv=None):
    p = argparse.ArgumentParser(description="Serve a directory over HTTP on loopback (tests only).")
    p.add_argument("directory")
    p.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port (default 0: pick a free one)")
    p.add_argument("--port-file", help="write the port to this file once listening")
    p.add_argument("--pid-file", help="write the serving process id to this file")
    p.add_argument("--background", action="store_true", help="detach after printing the URL")
    p.add_argument("--quiet", action="store_true", help="do not log requests to stderr")
    args = p.parse_args(argv)
    try:
        server = DirectoryServer(args.directory, args.host, args.port, quiet=args.quiet or args.background)
    except (ValueError, OSError) as e:
        p.error(str(e))
    if args.background:
        read_end, write_end = os.pipe()
        if os.fork():
            os.close(write_end)
            server.httpd.server_close()
            with os.fdopen(read_end) as r:
                line = r.readline()
            if not line:
                sys.stderr.write("serve.py: the background server did not start\n")
                return 1
            sys.stdout.write(line)
            return 0
        os.close(read_end)
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        write_file(args.pid_file, "%d\n" % os.getpid())
        write_file(args.port_file, "%d\n" % server.port)
        with os.fdopen(write_end, "w") as w:
            w.write(server.url + "\n")
    else:
        write_file(args.pid_file, "%d\n" % os.getpid())
        write_file(args.port_file, "%d\n" % server.port)
        sys.stdout.write(server.url + "\n")
        sys.stdout.flush()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.httpd.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
