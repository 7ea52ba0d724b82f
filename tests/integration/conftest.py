import os
import shutil
import sys

import pytest

from netns import Pair, Servers, ensure_kuma_dp_user  # noqa: E402  (tests/integration is on sys.path via rootdir)


def pytest_collection_modifyitems(config, items):
    reason = None
    if os.geteuid() != 0:
        reason = "network namespaces and iptables need root"
    elif not shutil.which("iptables-nft-save") or not shutil.which("setpriv"):
        reason = "iptables (nft) and util-linux setpriv are needed (run scripts/bootstrap)"
    if reason is None:
        return
    if os.environ.get("CI"):
        raise pytest.UsageError("integration tests cannot run in CI: " + reason)
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def kuma_dp_user():
    return ensure_kuma_dp_user()


@pytest.fixture
def pair(kuma_dp_user):
    p = Pair()
    yield p
    p.delete()


@pytest.fixture
def servers():
    s = Servers()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def firewalld_hosts():
    """One booted firewalld container per Debian release for the whole session (fwhost.py)."""
    import fwhost
    pool = fwhost.Pool()
    try:
        yield pool
    finally:
        pool.close()


def pytest_terminal_summary(terminalreporter):
    fwhost = sys.modules.get("fwhost")
    for pool in getattr(fwhost, "POOLS", ()):
        terminalreporter.write_line("firewalld containers: %d boots (%d replaced a container a reset could not put back), "
                                    "firewalld restarted by %d resets, %d podman commands, %d nsenter commands"
                                    % (pool.stats["boots"], pool.stats["replaced"], pool.stats["restarts"],
                                       fwhost.CALLS["podman"], fwhost.CALLS["nsenter"]))
        for line in pool.log:
            terminalreporter.write_line(line)


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item, nextitem):
    """The firewalld containers go as soon as the last test that uses them is done, not at
    the end of the whole suite (the session fixture's finalizer removes them in any case)."""
    fwhost = sys.modules.get("fwhost")
    if not getattr(fwhost, "POOLS", None) or "firewalld_hosts" not in getattr(item, "fixturenames", ()):
        return
    items = item.session.items
    later = items[items.index(item) + 1:] if item in items else [nextitem]
    if not any("firewalld_hosts" in getattr(i, "fixturenames", ()) for i in later if i is not None):
        for pool in fwhost.POOLS:
            pool.close()
