"""The release archive on the controller (plugins/plugin_utils/dp_archive.py), against a real HTTP server."""

import hashlib
import http.server
import multiprocessing
import os
import re
import subprocess
import sys
import threading

import pytest

from ansible.module_utils.urls import open_url

from ansible_collections.kuma.mesh.plugins.plugin_utils import dp_archive

NAME = "kuma-2.14.3-linux-amd64.tar.gz"
BODY = b"release archive " * 4096
SHA = hashlib.sha256(BODY).hexdigest()


def fetch(url, timeout):
    return open_url(url, timeout=timeout, http_agent="kuma.mesh-test")


class Server(object):
    """Serves `files` (path -> bytes) and counts the GETs per path."""

    def __init__(self, files):
        self.files = dict(files)
        self.gets = {}
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802  (http.server's name)
                server.gets[self.path] = server.gets.get(self.path, 0) + 1
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server({"/" + NAME: BODY, "/" + NAME + ".sha256": ("%s  %s\n" % (SHA, NAME)).encode()})
    yield s
    s.close()


def archive(server, cache, **extra):
    value = dict(name=NAME, path=str(cache / NAME), url=server.url + "/" + NAME, timeout=10)
    value.update(extra)
    return dp_archive.archive_from(value)


def test_checksum_file_is_downloaded_once_and_read_from_the_cache(server, tmp_path):
    a = archive(server, tmp_path / "cache")
    assert dp_archive.expected_sha256(a, fetch) == SHA
    assert dp_archive.expected_sha256(a, fetch) == SHA
    assert server.gets == {"/" + NAME + ".sha256": 1}
    assert (tmp_path / "cache" / (NAME + ".sha256")).read_text().startswith(SHA)


def test_a_given_checksum_needs_no_checksum_file(server, tmp_path):
    a = archive(server, tmp_path, checksum="sha256:" + SHA.upper())
    assert dp_archive.expected_sha256(a, fetch) == SHA
    assert server.gets == {}


def test_a_checksum_file_without_the_archive_is_refused_by_name(server, tmp_path):
    server.files["/" + NAME + ".sha256"] = ("%s  other.tar.gz\n" % SHA).encode()
    with pytest.raises(dp_archive.ArchiveError, match="No sha256 for %s: set kuma_dp_checksum, or check .*%s.sha256"
                       % (NAME, NAME)):
        dp_archive.expected_sha256(archive(server, tmp_path), fetch)


def test_a_failed_download_says_which_url_and_leaves_nothing(server, tmp_path):
    a = archive(server, tmp_path, url=server.url + "/missing.tar.gz")
    with pytest.raises(dp_archive.ArchiveError, match="downloading %s/missing.tar.gz.sha256 failed: .*404"
                       % server.url):
        dp_archive.expected_sha256(a, fetch)
    assert sorted(os.listdir(str(tmp_path))) == [NAME + ".lock"]


def test_archive_is_downloaded_verified_and_then_reused(server, tmp_path):
    a = archive(server, tmp_path)
    assert dp_archive.ensure_archive(a, SHA, fetch) == a.path
    assert dp_archive.ensure_archive(a, SHA, fetch) == a.path
    assert server.gets == {"/" + NAME: 1}
    with open(a.path, "rb") as f:
        assert f.read() == BODY
    assert oct(os.stat(a.path).st_mode & 0o777) == "0o644"


def test_a_corrupt_cached_archive_is_downloaded_again(server, tmp_path):
    a = archive(server, tmp_path)
    with open(a.path, "wb") as f:
        f.write(b"truncated")
    dp_archive.ensure_archive(a, SHA, fetch)
    with open(a.path, "rb") as f:
        assert f.read() == BODY
    assert server.gets == {"/" + NAME: 1}


def test_a_download_that_does_not_verify_is_not_kept(server, tmp_path):
    a = archive(server, tmp_path)
    with pytest.raises(dp_archive.ArchiveError, match="has sha256 %s, expected %s .*not kept" % (SHA, "0" * 64)):
        dp_archive.ensure_archive(a, "0" * 64, fetch)
    assert sorted(os.listdir(str(tmp_path))) == [NAME + ".lock"]


def test_a_local_archive_is_verified_never_downloaded_or_replaced(server, tmp_path):
    local = tmp_path / NAME
    local.write_bytes(BODY + b"x")
    (tmp_path / (NAME + ".sha256")).write_text("%s *%s\n" % (SHA, NAME))
    a = dp_archive.archive_from(dict(name=NAME, path=str(local), local=True))
    assert dp_archive.expected_sha256(a, fetch) == SHA
    with pytest.raises(dp_archive.ArchiveError, match="%s on the controller has sha256 [0-9a-f]{64}, expected %s: "
                       "refusing to install it" % (local, SHA)):
        dp_archive.ensure_archive(a, SHA, fetch)
    assert local.read_bytes() == BODY + b"x" and server.gets == {}
    local.unlink()
    with pytest.raises(dp_archive.ArchiveError, match="does not exist"):
        dp_archive.ensure_archive(a, SHA, fetch)


def test_a_local_archive_without_a_checksum_names_the_file_to_write(tmp_path):
    a = dp_archive.archive_from(dict(name=NAME, path=str(tmp_path / NAME), local="true"))
    with pytest.raises(dp_archive.ArchiveError, match="put its sha256sum line in %s.sha256 on the controller"
                       % (tmp_path / NAME)):
        dp_archive.expected_sha256(a, fetch)


@pytest.mark.parametrize("value, message", [
    (None, "archive: expected a dict"),
    ({"name": NAME}, "archive: path missing"),
    ({"name": NAME, "path": "/x", "url": "http://h/a", "checksum": "md5:abc"}, "archive.checksum: 'md5:abc'"),
    ({"name": NAME, "path": "/x", "url": "http://h/a", "timeout": "soon"}, "archive.timeout: 'soon'"),
    ({"name": NAME, "path": "/x", "url": "http://h/a", "timeout": 0}, "archive.timeout: 0 is not between"),
    ({"name": NAME, "path": "/x"}, "archive.url: missing"),
])
def test_bad_archive_options_are_named(value, message):
    with pytest.raises(dp_archive.ArchiveError) as exc:
        dp_archive.archive_from(value)
    assert str(exc.value).startswith(message)


def _ensure_in_a_process(value, queue):
    try:
        a = dp_archive.archive_from(value)
        queue.put(dp_archive.ensure_archive(a, dp_archive.expected_sha256(a, fetch), fetch))
    except Exception as exc:  # pylint: disable=broad-except
        queue.put(repr(exc))


def test_concurrent_hosts_download_each_file_once(tmp_path):
    """The forks of one run (or runs of strategy free) need the same archive at once.
    (The server is a process of its own: forking beside a server thread could deadlock.)"""
    served = tmp_path / "served"
    served.mkdir()
    (served / NAME).write_bytes(BODY)
    (served / (NAME + ".sha256")).write_text("%s  %s\n" % (SHA, NAME))
    log = tmp_path / "access.log"
    with open(str(log), "w") as log_file:
        httpd = subprocess.Popen([sys.executable, "-u", "-m", "http.server", "--bind", "127.0.0.1", "0"],
                                 cwd=str(served), stdout=subprocess.PIPE, stderr=log_file, universal_newlines=True)
    try:
        port = int(re.search(r"port (\d+)", httpd.stdout.readline()).group(1))
        value = dict(name=NAME, path=str(tmp_path / "cache" / NAME), url="http://127.0.0.1:%d/%s" % (port, NAME),
                     timeout=10)
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        procs = [ctx.Process(target=_ensure_in_a_process, args=(value, queue)) for _worker in range(6)]
        for p in procs:
            p.start()
        results = [queue.get(timeout=60) for _proc in procs]
        for p in procs:
            p.join(30)
    finally:
        httpd.terminate()
        httpd.wait(10)
    assert results == [value["path"]] * 6
    gets = re.findall(r'"GET (\S+) HTTP', log.read_text())
    assert sorted(gets) == ["/" + NAME, "/" + NAME + ".sha256"]


@pytest.mark.parametrize("text, expected", [
    (SHA + "  kuma-2.14.3-linux-amd64.tar.gz\n", SHA),
    (SHA + " *kuma-2.14.3-linux-amd64.tar.gz\n", SHA),
    (SHA.upper() + "  kuma-2.14.3-linux-amd64.tar.gz", SHA),
    (SHA + "\n", SHA),
    ("b" * 64 + "  other.tar.gz\n" + SHA + "  kuma-2.14.3-linux-amd64.tar.gz\n", SHA),
    ("b" * 64 + "  other.tar.gz\n", ""),
    (SHA + "\n" + "b" * 64 + "\n", ""),
    ("not-hex  kuma-2.14.3-linux-amd64.tar.gz", ""),
    ("", ""),
    (None, ""),
])
def test_sha256_from_checksum_file(text, expected):
    assert dp_archive.sha256_from_checksum_file(text, ["kuma-2.14.3-linux-amd64.tar.gz"]) == expected
