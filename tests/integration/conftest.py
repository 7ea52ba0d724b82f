import os
import shutil

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
