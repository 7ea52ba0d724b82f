"""Makes the collection importable as ansible_collections.kuma.mesh in every test."""

import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared")


def _collections_dir():
    base = os.path.join(ROOT, ".cache", "collections")
    try:
        os.makedirs(os.path.join(base, "ansible_collections", "kuma"), exist_ok=True)
    except OSError:
        base = tempfile.mkdtemp(prefix="kuma-mesh-collections-")
        os.makedirs(os.path.join(base, "ansible_collections", "kuma"))
    link = os.path.join(base, "ansible_collections", "kuma", "mesh")
    if not os.path.exists(link):
        try:
            os.symlink(ROOT, link)
        except FileExistsError:  # another pytest-xdist worker was first
            pass
    return base


COLLECTIONS = _collections_dir()
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)
os.environ.setdefault("ANSIBLE_COLLECTIONS_PATH", COLLECTIONS)


# The order the fast tests run in: the quickest first, so that a broken
# build shows within a minute.
FAST_ORDER = ("tests/unit/", "tests/integration/", "tests/sanity/")


def pytest_collection_modifyitems(config, items):
    """The fast tests first (unit, integration, sanity), then the Molecule
    scenarios and the demo, shortest first: those run in the background from
    the start (tests/molecule/jobs.py), so their tests only collect results,
    in about the order they finish.

    Under pytest-xdist (--dist loadgroup), every test but the slow ones stays
    on one worker, in order: the integration tests share the host's network
    stack and time their traffic."""
    import pytest

    def rank(item):
        if item.get_closest_marker("molecule") is not None:
            expected = getattr(item.module, "expected", None)
            params = getattr(getattr(item, "callspec", None), "params", {})
            name = params.get("scenario", item.name)
            return (len(FAST_ORDER) + 1, expected(name) if expected else 0)
        path = os.path.relpath(str(item.fspath), ROOT) + "/"
        for i, prefix in enumerate(FAST_ORDER):
            if path.startswith(prefix):
                return (i, 0)
        return (len(FAST_ORDER), 0)

    items.sort(key=rank)  # stable: pytest's order within each rank
    for item in items:
        if item.get_closest_marker("molecule") is None:
            item.add_marker(pytest.mark.xdist_group("host"))
