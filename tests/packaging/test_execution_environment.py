"""What AWX and Automation Platform read: the collection's
meta/execution-environment.yml (requirements.txt, bindep.txt) and the example
docs/execution-environment.yml for ansible-builder.

`ansible-builder create` writes the build context (a Containerfile and
_build/) without a container runtime or a registry; the introspection the
build then runs inside the image (_build/scripts/introspect.py, the script
`create` wrote) is run here on the installed tarball, so the test sees the
requirements the image would get, attributed to kuma.mesh.
"""

import os
import shutil

import pytest
import yaml

from collection_build import BIN, ROOT, galaxy_meta, run

EXAMPLE = os.path.join(ROOT, "docs", "execution-environment.yml")


def requirement_lines(name):
    with open(os.path.join(ROOT, name)) as f:
        return [line.split("#", 1)[0].strip() for line in f if line.split("#", 1)[0].strip()]


@pytest.fixture(scope="module")
def builder():
    path = os.path.join(BIN, "ansible-builder")
    if not os.path.exists(path):
        message = "ansible-builder is not in %s: install requirements-dev.txt (scripts/bootstrap)" % BIN
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return path


def test_collection_declares_its_requirements():
    with open(os.path.join(ROOT, "meta", "execution-environment.yml")) as f:
        meta = yaml.safe_load(f)
    assert meta["version"] == 1
    assert meta["dependencies"] == {"python": "requirements.txt", "system": "bindep.txt"}
    assert requirement_lines("bindep.txt"), "bindep.txt lists nothing"


def test_example_names_this_version_of_the_collection():
    meta = galaxy_meta()
    tarball = "%s-%s-%s.tar.gz" % (meta["namespace"], meta["name"], meta["version"])
    with open(EXAMPLE) as f:
        ee = yaml.safe_load(f)
    assert ee["version"] == 3
    assert ee["dependencies"]["galaxy"]["collections"] == [{"name": "collections/" + tarball, "type": "file"}]
    assert ee["additional_build_files"] == [{"src": tarball, "dest": "collections"}]


def test_ansible_builder_create_writes_a_context_with_the_collection_and_its_requirements(
        builder, installed_collection, tmp_path):
    c = installed_collection
    work = str(tmp_path)
    shutil.copy(EXAMPLE, work)
    shutil.copy(c.tarball, work)
    run([builder, "create", "-f", "execution-environment.yml", "-c", "context"], env=c.env, cwd=work)
    build = os.path.join(work, "context", "_build")
    with open(os.path.join(work, "context", "Containerfile")) as f:
        containerfile = f.read()
    assert "ansible-galaxy collection install" in containerfile and "introspect" in containerfile
    with open(os.path.join(build, "requirements.yml")) as f:
        galaxy = yaml.safe_load(f)
    name = os.path.basename(c.tarball)
    assert galaxy["collections"] == [{"name": "collections/" + name, "type": "file"}]
    assert os.path.isfile(os.path.join(build, "collections", name))

    # What the image build does next: introspect the installed collections.
    collections_path = os.path.dirname(os.path.dirname(os.path.dirname(c.path)))
    out = run([os.path.join(BIN, "python"), os.path.join(build, "scripts", "introspect.py"), "introspect",
               collections_path], env=c.env, cwd=work)
    found = yaml.safe_load(out[out.index("---"):])
    system = [line.split("#", 1)[0].strip() for line in found["system"]]
    python = [line.split("#", 1)[0].strip() for line in found["python"]]
    assert system == requirement_lines("bindep.txt"), found
    assert python == requirement_lines("requirements.txt"), found
    assert all(line.endswith("# from collection kuma.mesh") for line in found["system"] + found["python"]), found
