"""kuma_dp_ready: the URL grammar, the wait loop (a fake clock) and the module against a real HTTP server."""

import http.server
import json
import threading

import pytest
from hypothesis import given, settings, strategies as st

from ansible.module_utils import _internal as ansible_internal
from ansible.module_utils.testing import patch_module_args

from ansible_collections.kuma.mesh.plugins.module_utils import kuma_dp_ready as ready
from ansible_collections.kuma.mesh.plugins.modules import kuma_dp_ready


@pytest.mark.parametrize("url,endpoint", [
    ("http://127.0.0.1:9902/ready", ("127.0.0.1", 9902, "/ready")),
    ("http://[::1]:9902/ready", ("::1", 9902, "/ready")),
    ("http://localhost:1", ("localhost", 1, "/")),
])
def test_urls_the_role_builds_are_taken(url, endpoint):
    assert ready.parse_url(url) == ready.Endpoint(*endpoint)


@pytest.mark.parametrize("url", [
    "", "127.0.0.1:9902", "https://127.0.0.1:9902/ready", "http://127.0.0.1/ready", "http://127.0.0.1:0/ready",
    "http://127.0.0.1:65536/ready", "http://127.0.0.1:99999999/ready", "http://u@127.0.0.1:9902/ready",
    "http://127.0.0.1:9902/ready?x=1", "http://127.0.0.1:9902/ready#x", "http://127.0.0.1:9902/re ady",
    "http://127.0.0.1:9902/ready\n", " http://127.0.0.1:9902/ready", "http://127.0.0.1:٩٩٠٢/ready",
    "http://[::1:9902/ready", None, 9902, ["http://127.0.0.1:9902/ready"],
])
def test_anything_else_is_refused_naming_the_option_and_the_value(url):
    with pytest.raises(ready.ReadyInputError) as exc:
        ready.parse_url(url)
    assert str(exc.value).startswith("url: %r " % (url,))


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(), st.binary(), st.integers(), st.none(), st.floats(), st.lists(st.text())))
def test_parse_url_never_raises_anything_but_its_own_error(value):
    try:
        endpoint = ready.parse_url(value)
    except ready.ReadyInputError:
        return
    assert 0 < endpoint.port < 65536 and endpoint.path.startswith("/")


@pytest.mark.parametrize("value", [-1, 3601, float("nan"), float("inf"), True, "5", None])
def test_numbers_out_of_range_or_of_another_type_are_refused(value):
    with pytest.raises(ready.ReadyInputError) as exc:
        ready.check_number("timeout", value, 0, 3600)
    assert str(exc.value).startswith("timeout: %r " % (value,))


class FakeTime(object):
    def __init__(self):
        self.now = 0.0

    def clock(self):
        return self.now

    def sleep(self, seconds):
        assert seconds > 0
        self.now += seconds


def scripted(answers, fake, took=0.01):
    calls = []

    def probe(endpoint, timeout):
        calls.append(timeout)
        fake.now += took
        return answers[min(len(calls), len(answers)) - 1]

    return probe, calls


NOT_READY = ready.Answer(503, "NOT READY", None)
REFUSED = ready.Answer(None, "", "ConnectionRefusedError: [Errno 111] Connection refused")
READY = ready.Answer(200, "READY\n", None)
ENDPOINT = ready.Endpoint("127.0.0.1", 9902, "/ready")


def test_it_stops_at_the_first_ready_answer():
    fake = FakeTime()
    probe, calls = scripted([REFUSED, NOT_READY, READY], fake)
    outcome = ready.wait_ready(ENDPOINT, 120, 0.2, probe=probe, clock=fake.clock, sleep=fake.sleep)
    assert outcome.ready and outcome.attempts == 3 and outcome.last == READY
    assert outcome.elapsed == pytest.approx(0.43)


def test_it_gives_up_after_the_timeout_with_the_last_answer():
    fake = FakeTime()
    probe, calls = scripted([REFUSED, NOT_READY], fake)
    outcome = ready.wait_ready(ENDPOINT, 2, 0.2, probe=probe, clock=fake.clock, sleep=fake.sleep)
    assert not outcome.ready and outcome.last == NOT_READY
    # one last request at the deadline, then no more
    assert 2.0 <= fake.now <= 2.01 + 1e-9 and 9 <= outcome.attempts <= 11
    # no request may run past the deadline
    assert all(0 < t <= 2 for t in calls)
    assert ready.describe(outcome.last) == "503 NOT READY"
    assert ready.describe(REFUSED).startswith("no answer (ConnectionRefusedError")


def test_a_zero_timeout_asks_exactly_once():
    fake = FakeTime()
    probe, calls = scripted([NOT_READY], fake)
    outcome = ready.wait_ready(ENDPOINT, 0, 0.2, probe=probe, clock=fake.clock, sleep=fake.sleep)
    assert not outcome.ready and outcome.attempts == 1 == len(calls)


def test_only_200_with_the_body_ready_counts():
    assert ready.is_ready(ready.Answer(200, " READY \n", None))
    assert not ready.is_ready(ready.Answer(200, "NOT READY", None))
    assert not ready.is_ready(ready.Answer(503, "READY", None))


# -- the module, against a real server on the loopback ---------------------------------------------------

class Readiness(http.server.BaseHTTPRequestHandler):
    """503 NOT READY for the first `not_ready` requests, then 200 READY."""

    def do_GET(self):  # noqa: N802 - http.server's name
        self.server.requests += 1
        ok = self.server.requests > self.server.not_ready
        body = b"READY" if ok else b"NOT READY"
        self.send_response(200 if ok else 503)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.HTTPServer(("127.0.0.1", 0), Readiness)
    httpd.requests = 0
    httpd.not_ready = 2
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def module_side(monkeypatch):
    monkeypatch.setattr(ansible_internal, "is_controller", False)


def run_module(capsys, args, check=False):
    args = dict(args, _ansible_check_mode=check)
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            kuma_dp_ready.main()
    return json.loads(capsys.readouterr().out)


def test_the_module_waits_until_ready_in_one_call(capsys, server):
    url = "http://127.0.0.1:%d/ready" % server.server_port
    result = run_module(capsys, {"url": url, "timeout": 10, "interval": 0.05}, check=True)
    assert result["ready"] and not result["changed"] and not result.get("failed"), result
    assert result["attempts"] == 3 == server.requests
    assert result["status"] == 200 and result["last_answer"] == "200 READY"


def test_the_module_fails_with_the_last_answer(capsys, server):
    server.not_ready = 10 ** 6
    url = "http://127.0.0.1:%d/ready" % server.server_port
    result = run_module(capsys, {"url": url, "timeout": 0.3, "interval": 0.05})
    assert result["failed"] and not result["changed"] and not result["ready"]
    assert result["msg"].startswith("%s did not answer READY within 0.3 s (" % url)
    assert result["msg"].endswith("; last: 503 NOT READY)") and result["status"] == 503


def test_nothing_listening_is_no_answer(capsys, server):
    port = server.server_port
    server.shutdown()
    server.server_close()
    result = run_module(capsys, {"url": "http://127.0.0.1:%d/ready" % port, "timeout": 0})
    assert result["failed"] and "status" not in result and result["attempts"] == 1
    assert result["last_answer"].startswith("no answer (")


@pytest.mark.parametrize("args,option", [
    ({"url": "http://127.0.0.1:9902/ready\nX"}, "url"),
    ({"url": "http://127.0.0.1:9902/ready", "timeout": -1}, "timeout"),
    ({"url": "http://127.0.0.1:9902/ready", "interval": 0}, "interval"),
    ({"url": "http://127.0.0.1:9902/ready", "request_timeout": "nan"}, "invalid options: request_timeout"),
    ({"url": "http://127.0.0.1:9902/ready", "timeout": [1]}, "invalid options: timeout"),
    ({"url": "http://127.0.0.1:9902/ready", "timeout": "1e3"}, "invalid options: timeout"),
    ({"url": ["http://127.0.0.1:9902/ready"]}, "invalid options: url"),
])
def test_bad_input_fails_naming_the_option_without_a_traceback(capsys, args, option):
    result = run_module(capsys, args)
    assert result["failed"] and not result["changed"] and "exception" not in result
    assert result["msg"].startswith(option + ": "), result["msg"]
