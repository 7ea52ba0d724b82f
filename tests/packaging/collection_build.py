"""Builds the collection as users get it: the tarball `ansible-galaxy collection
build` makes from this checkout, installed into an empty collections path
(fixture `installed_collection`, once per test session)."""

import json
import os
import shutil
import subprocess
import sys
import tarfile

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)


def tool(name):
    """A tool of the venv the tests run in (its ansible-core, not another one on PATH)."""
    path = os.path.join(BIN, name)
    if not os.path.exists(path):
        pytest.fail("%s is not installed in %s: install requirements-dev.txt" % (name, BIN), pytrace=False)
    return path


def isolated_env(collections_path, home):
    """Ansible sees only `collections_path`: not this checkout (tests/conftest.py
    links it into .cache/collections), not ~/.ansible, not the collections the
    `ansible` package puts on sys.path."""
    env = dict(os.environ)
    for key in list(env):
        if key.startswith("ANSIBLE_"):
            del env[key]
    env.update(
        HOME=home,
        ANSIBLE_COLLECTIONS_PATH=collections_path,
        ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false",
        ANSIBLE_ROLES_PATH=os.path.join(home, "roles"),
        ANSIBLE_LOCAL_TEMP=os.path.join(home, "tmp"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_DEPRECATION_WARNINGS="true",
        ANSIBLE_GALAXY_SERVER="http://127.0.0.1:9",  # never the network
    )
    return env


def run(cmd, env=None, cwd=None, timeout=300):
    """stdout of `cmd`; stderr (warnings) only shows when it fails."""
    proc = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=timeout, check=False)
    assert proc.returncode == 0, "$ %s\n(exit %d)\n%s\n%s" % (" ".join(cmd), proc.returncode, proc.stdout, proc.stderr)
    return proc.stdout


Collection = __import__("collections").namedtuple("Collection", "tarball members path env home")


def galaxy_meta():
    with open(os.path.join(ROOT, "galaxy.yml")) as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="session")
def installed_collection(tmp_path_factory):
    """Builds the tarball from the checkout as a user would, then installs it
    offline into an empty collections path."""
    work = str(tmp_path_factory.mktemp("kuma-mesh-packaging"))
    home = os.path.join(work, "home")
    for sub in ("", "tmp", "roles"):
        os.makedirs(os.path.join(home, sub), exist_ok=True)
    dist = os.path.join(work, "dist")
    collections = os.path.join(work, "collections")
    env = isolated_env(collections, home)
    run([tool("ansible-galaxy"), "collection", "build", "--output-path", dist, ROOT], env=env, cwd=work)
    meta = galaxy_meta()
    tarball = os.path.join(dist, "%s-%s-%s.tar.gz" % (meta["namespace"], meta["name"], meta["version"]))
    assert os.path.isfile(tarball), os.listdir(dist)
    with tarfile.open(tarball) as tar:
        members = sorted(m.name + ("/" if m.isdir() else "") for m in tar.getmembers())
    run([tool("ansible-galaxy"), "collection", "install", "--offline", "-p", collections, tarball],
        env=env, cwd=work)
    path = os.path.join(collections, "ansible_collections", meta["namespace"], meta["name"])
    assert os.path.isfile(os.path.join(path, "MANIFEST.json")), run(["find", collections])
    yield Collection(tarball, members, path, env, home)
    shutil.rmtree(work, ignore_errors=True)


def load_json(text):
    return json.loads(text)
