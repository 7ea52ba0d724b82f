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


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (--dist loadgroup, as scripts/run-tests runs it), keep
    every test but the Molecule scenarios on one worker, in order: the
    integration tests share the host's network stack and time their traffic,
    while each scenario has its own containers and runs beside the others."""
    import pytest

    for item in items:
        if item.get_closest_marker("molecule") is None:
            item.add_marker(pytest.mark.xdist_group("host"))
